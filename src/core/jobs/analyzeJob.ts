/**
 * The `analyze` job: the calibration pass and outlier analysis of `quantlens analyze` (core/model/
 * analyzeModel.ts) run in the worker, one progress message per transformer layer, cancelled through
 * the job's signal (the pass checks it between layers).
 */
import { basename } from 'node:path';
import type { AnalyzeJobResult, AnalyzeJobSpec } from '../../protocol/jobs';
import { InvalidArgumentError } from '../errors';
import { analyzeModel } from '../model/analyzeModel';
import { readTextFile } from '../model/calibration';
import { loadModel } from '../model/loadModel';
import type { JobContext } from './jobContext';
import { ProgressTracker } from './progressTracker';

export async function runAnalyzeJob(spec: AnalyzeJobSpec, ctx: JobContext): Promise<AnalyzeJobResult> {
  const started = performance.now();
  const text = await readTextFile(spec.calibrationFile);
  const loaded = await loadModel(spec.modelPath);
  try {
    const config = loaded.model.config;
    if (spec.ctx !== undefined && spec.ctx > config.maxPositionEmbeddings) {
      throw new InvalidArgumentError(`ctx ${spec.ctx} is longer than the model's max_position_embeddings (${config.maxPositionEmbeddings})`);
    }
    // Progress counts the pass's steps (each decoder layer, then the final norm); `bytes` count steps too.
    const steps = config.numLayers + 1;
    const tracker = new ProgressTracker(ctx.jobId, steps, steps, ctx.progress);
    tracker.update('open', 0, basename(spec.calibrationFile));
    const report = await analyzeModel(loaded.model, loaded.tokenizer, text, {
      tokens: spec.tokens,
      ...(spec.ctx !== undefined ? { ctx: spec.ctx } : {}),
      ...(spec.threshold !== undefined ? { threshold: spec.threshold } : {}),
      signal: ctx.signal,
      modelName: basename(spec.modelPath),
      calibrationFile: basename(spec.calibrationFile),
      onProgress: (done, total) => {
        tracker.setTensorCount(total);
        // The pass reports once per decoder layer, then once for the final norm.
        const step = `${done <= config.numLayers ? `layer ${done - 1}` : 'final norm'} (${done}/${total})`;
        tracker.update('compute', Math.max(0, Math.min(done, total) - 1), step, done);
      },
    });
    tracker.update('done', steps - 1, '', steps);
    return { kind: 'analyze', report, seconds: (performance.now() - started) / 1000 };
  } finally {
    await loaded.close();
  }
}
