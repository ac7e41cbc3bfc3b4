/**
 * The `analyze` job: the calibration pass of `quantlens analyze` in the job worker (a real worker_threads
 * Worker through tsx) on micro-llama with a few tokens of the calibration fixture; the same report as
 * analyzeModel in-process, one progress message per layer, and cancellation.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CancelledError, FormatError } from '../../src/core/errors';
import { runJobInWorker } from '../../src/core/jobs/jobRunner';
import { runJob } from '../../src/core/jobs/runJob';
import { analyzeModel } from '../../src/core/model/analyzeModel';
import { readTextFile } from '../../src/core/model/calibration';
import { loadModel } from '../../src/core/model/loadModel';
import { isJobSpec, type AnalyzeJobSpec, type JobProgress } from '../../src/protocol/jobs';
import { activationHistogramsFromAnalysis, outlierMapFromAnalysis } from '../../src/protocol/viewModels';
import { errorPartsForOutput, findQuantCardOutput, summarizeDataset, withActivations } from '../../src/host/analysisDataset';
import { WEBVIEW_PROTOCOL_VERSION, type WebviewDataset } from '../../src/protocol/webview';
import { fixturesDir, microLlamaDir } from '../helpers/paths';

const calibrationFile = join(fixturesDir, 'calib-64k.txt');
const spec: AnalyzeJobSpec = { kind: 'analyze', modelPath: microLlamaDir, calibrationFile, tokens: 96, ctx: 32 };

test('the analyze spec guard accepts the spec and refuses a malformed one', () => {
  assert.ok(isJobSpec(spec));
  assert.ok(isJobSpec({ ...spec, threshold: 4 }));
  assert.ok(!isJobSpec({ ...spec, tokens: -1 }));
  assert.ok(!isJobSpec({ ...spec, calibrationFile: 3 }));
  assert.ok(!isJobSpec({ ...spec, ctx: 1.5 }));
});

test('the analyze job in the worker: the report analyzeModel gives in-process, progress per layer', async () => {
  const progress: JobProgress[] = [];
  const result = await runJobInWorker(spec, { onProgress: (p) => progress.push(p) });
  assert.equal(result.kind, 'analyze');
  const report = result.report;
  assert.equal(report.layers, 2);
  assert.equal(report.tokens, 96);
  assert.equal(report.windows, 3);
  assert.equal(report.calibrationFile, 'calib-64k.txt');

  const lm = await loadModel(microLlamaDir);
  try {
    const direct = await analyzeModel(lm.model, lm.tokenizer, await readTextFile(calibrationFile), { tokens: 96, ctx: 32, modelName: 'micro-llama', calibrationFile: 'calib-64k.txt' });
    // Same forward pass, same numbers (structured clone keeps doubles exact).
    assert.deepEqual(report.sites, direct.sites);
    assert.deepEqual(report.systematic, direct.systematic);
    assert.deepEqual(report.weights, direct.weights);
  } finally {
    await lm.close();
  }

  const computeSteps = progress.filter((p) => p.phase === 'compute');
  assert.deepEqual(
    computeSteps.map((p) => [p.tensorIndex, p.tensorCount, p.tensorName]),
    [
      [0, 3, 'layer 0 (1/3)'],
      [1, 3, 'layer 1 (2/3)'],
      [2, 3, 'final norm (3/3)'],
    ],
    'one compute message per decoder layer, then the final norm',
  );
  assert.equal(progress.at(-1)?.phase, 'done');

  // What the Outlier Explorer draws from it.
  const map = outlierMapFromAnalysis(report, 'attn_in');
  assert.equal(map.layers, 2);
  assert.equal(map.dims, 64);
  assert.ok(map.magnitude.some((m) => m > 0));
  assert.ok(activationHistogramsFromAnalysis(report).length >= 4);
});

test('the analyze job is cancelled between layers', async () => {
  const controller = new AbortController();
  await assert.rejects(
    runJob(spec, {
      jobId: 1,
      signal: controller.signal,
      progress: (p) => {
        if (p.phase === 'compute') controller.abort();
      },
      notice: () => undefined,
    }),
    CancelledError,
  );
});

test('the analyze job names a missing calibration file', async () => {
  await assert.rejects(runJobInWorker({ ...spec, calibrationFile: join(fixturesDir, 'no-such-calib.txt') }), /no-such-calib\.txt/);
});

test('the explorer dataset: activations replace older ones, weights stay; the quant card gives the heatmap', async () => {
  const result = await runJob(spec, { jobId: 2, signal: new AbortController().signal, progress: () => undefined, notice: () => undefined });
  assert.equal(result.kind, 'analyze');
  if (result.kind !== 'analyze') return;
  const weight = { ...activationHistogramsFromAnalysis(result.report)[0]!, id: 'w:x', source: 'weights' as const };
  const stale = { ...activationHistogramsFromAnalysis(result.report)[0]!, id: 'a:stale' };
  const base: WebviewDataset = { version: WEBVIEW_PROTOCOL_VERSION, histograms: [weight, stale] };
  const merged = withActivations(base, result.report);
  const summary = summarizeDataset(merged);
  assert.equal(summary.weightHistograms, 1);
  assert.equal(summary.activationHistograms, result.report.sites.length);
  assert.ok(!merged.histograms!.some((h) => h.id === 'a:stale'));
  assert.deepEqual(summary.outlierMaps, ['attn_in@6', 'mlp_in@6', 'residual@6']);

  const dir = await mkdtemp(join(tmpdir(), 'quantlens-analyze-job-'));
  try {
    const output = join(dir, 'out.safetensors');
    assert.equal(await errorPartsForOutput(output, 2), undefined, 'no card yet');
    const quantized = await runJob({ kind: 'quantize', request: { input: microLlamaDir, output, target: 'int8' } }, { jobId: 3, signal: new AbortController().signal, progress: () => undefined, notice: () => undefined });
    assert.equal(quantized.kind, 'quantize');
    const parts = await errorPartsForOutput(output, 2);
    assert.ok(parts?.errors !== undefined);
    assert.equal(parts.errors.cells.length, 14, '7 linears x 2 layers (embeddings and head stay)');
    assert.ok(parts.errors.cells.every((c) => c.sqnrDb !== null && c.sqnrDb > 20), JSON.stringify(parts.errors.cells.map((c) => c.sqnrDb)));
    // An earlier session's card is found beside the output, and only for its own source.
    assert.equal(await findQuantCardOutput(microLlamaDir, [dir, join(dir, 'missing')]), output);
    assert.equal(await findQuantCardOutput(join(fixturesDir, 'micro-llama-f32.gguf'), [dir]), undefined);
    await writeFile(`${output}.quant.json`, '{ not json');
    assert.equal(await findQuantCardOutput(microLlamaDir, [dir]), undefined, 'a malformed card is skipped');
    await assert.rejects(errorPartsForOutput(output, 2), (e: unknown) => e instanceof FormatError && e.message.includes('out.safetensors.quant.json'));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
