/**
 * The `quantize` job: the quantize pipeline (core/quant/pipeline.ts, written atomically there) run in
 * the worker, its step progress turned into JobProgress with bytes from the checkpoint's headers.
 */
import type { QuantizeJobResult, QuantizeJobSpec } from '../../protocol/jobs';
import { ggufExporter as ggufExporterImpl } from '../convert/ggufExporter';
import { openCheckpoint } from '../formats/openCheckpoint';
import { runMethodQuantize } from '../methods/methodQuantize';
import { isGgufTarget, runQuantize, type QuantizeProgress } from '../quant/pipeline';
import type { JobContext } from './jobContext';
import { ProgressTracker } from './progressTracker';

export async function runQuantizeJob(spec: QuantizeJobSpec, ctx: JobContext): Promise<QuantizeJobResult> {
  const sizes = new Map<string, number>();
  const checkpoint = await openCheckpoint(spec.request.input);
  try {
    for (const t of checkpoint.tensors) sizes.set(t.name, t.nbytes);
  } finally {
    await checkpoint.close();
  }
  const bytesTotal = [...sizes.values()].reduce((a, b) => a + b, 0);
  const tracker = new ProgressTracker(ctx.jobId, sizes.size, bytesTotal, ctx.progress);
  const counted = new Set<string>();
  let bytesDone = 0;
  tracker.update('open', 0, '');
  // GGUF targets go through the llama.cpp-exact exporter (imported statically: a dynamic import of a
  // .ts module would not resolve in the worker when it runs from source under tsx).
  const ggufExporter = isGgufTarget(spec.request.target) ? ggufExporterImpl : undefined;
  const onProgress = (p: QuantizeProgress): void => {
    if ((p.action === 'quantize' || p.action === 'copy') && !counted.has(p.tensor)) {
      counted.add(p.tensor);
      // GGUF outputs report llama.cpp tensor names (blk.0.attn_q.weight), not the source's: those count an even share.
      bytesDone = Math.min(bytesTotal, bytesDone + (sizes.get(p.tensor) ?? bytesTotal / Math.max(1, p.total)));
    }
    tracker.setTensorCount(p.total);
    const phase = p.action === 'hash' ? 'read' : p.action === 'quantize' ? 'compute' : 'write';
    tracker.update(phase, Math.max(0, Math.min(p.step - 1, Math.max(0, p.total - 1))), p.tensor, bytesDone);
  };
  const method = spec.request.method;
  const result =
    method === undefined
      ? await runQuantize(spec.request, { ggufExporter, signal: ctx.signal, onWarning: ctx.notice, onProgress })
      : (
          await runMethodQuantize(spec.request, method, {
            signal: ctx.signal,
            onWarning: ctx.notice,
            onProgress,
            // Calibration first, one step per layer; bytes move only once tensors are written.
            onCalibration: (done, layers) => {
              tracker.setTensorCount(layers);
              tracker.update('compute', Math.min(done, layers - 1), `calibrating ${method.method}: layer ${Math.min(done + 1, layers)} of ${layers}`, 0);
            },
          })
        ).result;
  tracker.update('done', Math.max(0, sizes.size - 1), '', bytesTotal);
  return { kind: 'quantize', result };
}
