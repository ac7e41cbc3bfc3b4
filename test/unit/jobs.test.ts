/**
 * The job worker for real: a worker_threads Worker running src/core/jobs/workerMain.ts (through tsx),
 * driven by JobRunner. CPU device here; test/gpu/jobsGpu.test.ts runs the GPU paths.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobRunner, WorkerDiedError, runJobInWorker } from '../../src/core/jobs/jobRunner';
import { ProgressTracker } from '../../src/core/jobs/progressTracker';
import type { JobProgress, StatsJobSpec } from '../../src/protocol/jobs';
import { computeTensorStats } from '../../src/core/analysis/weightStats';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { quantizeGgml, ggmlByteSize } from '../../src/core/quant/ggml/index';
import { CancelledError, QuantLensError } from '../../src/core/errors';
import { microLlamaDir } from '../helpers/paths';

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'quantlens-jobs-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const statsSpec = (modelPath: string, extra: Partial<StatsJobSpec> = {}): StatsJobSpec => ({
  kind: 'stats',
  modelPath,
  device: 'cpu',
  histogramBins: 32,
  logOctaves: 16,
  outlierSigma: 6,
  topChannels: 4,
  ...extra,
});

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A small F32 safetensors file written by hand (header JSON padded to 8, then the data). */
function writeSafetensors(path: string, tensors: { name: string; shape: number[]; values: Float32Array }[]): void {
  const header: Record<string, unknown> = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.values.byteLength] };
    offset += t.values.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, 'utf8');
  let at = 8 + json.length;
  for (const t of tensors) {
    Buffer.from(t.values.buffer, t.values.byteOffset, t.values.byteLength).copy(out, at);
    at += t.values.byteLength;
  }
  writeFileSync(path, out);
}

test('stats job in the worker: progress in order, results equal the CPU reference', async () => {
  const progress: JobProgress[] = [];
  const result = await runJobInWorker(statsSpec(microLlamaDir), { onProgress: (p) => progress.push(p) });
  assert.equal(result.kind, 'stats');
  assert.equal(result.device, 'cpu');
  assert.equal(result.tensors.length, 21);
  assert.equal(progress[0]!.phase, 'open');
  assert.equal(progress.at(-1)!.phase, 'done');
  assert.equal(progress.at(-1)!.bytesDone, progress.at(-1)!.bytesTotal);
  for (let i = 1; i < progress.length; i++) {
    assert.ok(progress[i]!.tensorIndex >= progress[i - 1]!.tensorIndex, 'tensor index never goes back');
    assert.ok(progress[i]!.bytesDone >= progress[i - 1]!.bytesDone, 'bytes done never go back');
    assert.equal(progress[i]!.tensorCount, 21);
  }
  const seen = new Set(progress.map((p) => p.tensorIndex));
  assert.equal(seen.size, 21, 'every tensor reported');
  const checkpoint = await openCheckpoint(microLlamaDir);
  try {
    const name = 'model.layers.0.self_attn.q_proj.weight';
    const entry = checkpoint.tensors.find((t) => t.name === name)!;
    const ref = computeTensorStats(name, entry.shape, await checkpoint.readRowsF32(name), { histogramBins: 32, logOctaves: 16, outlierSigma: 6, topChannels: 4 });
    const got = result.tensors.find((t) => t.name === name)!;
    assert.equal(got.dtype, 'BF16');
    // The WebAssembly kernels' moments agree with the reference to float64 rounding (weightStatsWasm.test.ts).
    assert.ok(Math.abs(got.kurtosis - ref.kurtosis) <= 1e-12 * (Math.abs(ref.kurtosis) + 3), `kurtosis ${got.kurtosis} vs ${ref.kurtosis}`);
    assert.deepEqual(got.histogram.counts, [...ref.histogram.counts]);
    assert.equal(got.outlierCount, ref.outlierCount);
  } finally {
    await checkpoint.close();
  }
});

test('quantizeTensors job: output equals quantizeGgml per tensor, 1-D tensors skipped, source untouched', async () => {
  const out = join(dir, 'micro.q8_0.bin');
  const before = sha256(join(microLlamaDir, 'model.safetensors'));
  const result = await runJobInWorker({ kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: out, ggmlType: 'Q8_0', device: 'cpu' });
  assert.equal(sha256(join(microLlamaDir, 'model.safetensors')), before);
  assert.ok(result.skipped.some((s) => s.name === 'model.norm.weight' && s.reason === '1-D'));
  const bytes = new Uint8Array(readFileSync(out));
  const checkpoint = await openCheckpoint(microLlamaDir);
  try {
    let end = 0;
    for (const record of result.tensors) {
      const values = await checkpoint.readRowsF32(record.name);
      const expected = new Uint8Array(ggmlByteSize('Q8_0', values.length));
      quantizeGgml('Q8_0', values, expected);
      assert.deepEqual(bytes.subarray(record.offset, record.offset + record.nbytes), expected, record.name);
      end = Math.max(end, record.offset + record.nbytes);
    }
    assert.equal(end, bytes.length);
  } finally {
    await checkpoint.close();
  }
});

test('cancel mid-job: CancelledError, no file at the output path, no temp file left, worker still usable', async () => {
  const out = join(dir, 'cancelled.bin');
  const runner = await JobRunner.start();
  try {
    const controller = new AbortController();
    let writes = 0;
    await assert.rejects(
      runner.run(
        { kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: out, ggmlType: 'Q4_0', device: 'cpu', testFaults: { delayMsPerTensor: 30 } },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.phase === 'write' && ++writes === 6) controller.abort();
          },
        },
      ),
      CancelledError,
    );
    assert.equal(existsSync(out), false);
    assert.deepEqual(readdirSync(dir).filter((f) => f.includes('cancelled')), []);
    const again = await runner.run({ kind: 'diagnostic', action: 'sleep', ms: 1 });
    assert.equal(again.kind, 'diagnostic');
  } finally {
    await runner.dispose();
  }
});

test('a worker terminated mid-job ends the job with WorkerDiedError; no partial output; the host stays up', async () => {
  const out = join(dir, 'killed.bin');
  const runner = await JobRunner.start();
  let killed = false;
  const job = runner.run(
    { kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: out, ggmlType: 'Q8_0', device: 'cpu', testFaults: { delayMsPerTensor: 50 } },
    {
      onProgress: (p) => {
        if (!killed && p.phase === 'write' && p.tensorIndex === 2) {
          killed = true;
          void runner.terminate();
        }
      },
    },
  );
  await assert.rejects(job, (e: unknown) => e instanceof WorkerDiedError && /exited/.test(e.message));
  assert.equal(existsSync(out), false);
  assert.equal(runner.alive, false);
  await assert.rejects(runner.run({ kind: 'diagnostic', action: 'sleep', ms: 1 }), WorkerDiedError);
});

test('process.exit and an uncaught exception inside the worker become typed job errors', async () => {
  await assert.rejects(runJobInWorker({ kind: 'diagnostic', action: 'exit', ms: 20 }), (e: unknown) => e instanceof WorkerDiedError && /exited with code 3/.test(e.message));
  await assert.rejects(runJobInWorker({ kind: 'diagnostic', action: 'uncaught', ms: 20 }), (e: unknown) => e instanceof WorkerDiedError && /diagnostic: an uncaught exception/.test(e.message));
});

test('errors inside a job keep their code: missing model (IO), output = input (INVALID_ARGUMENT), NaN weights (NUMERIC)', async () => {
  const runner = await JobRunner.start();
  try {
    await assert.rejects(runner.run(statsSpec(join(dir, 'nope.safetensors'))), (e: unknown) => e instanceof QuantLensError && e.code === 'IO');
    const model = join(dir, 'nan.safetensors');
    const good = Float32Array.from({ length: 64 }, (_, i) => i / 64);
    const bad = good.slice();
    bad[40] = Number.NaN;
    writeSafetensors(model, [
      { name: 'good', shape: [2, 32], values: good },
      { name: 'bad', shape: [2, 32], values: bad },
    ]);
    const before = sha256(model);
    await assert.rejects(
      runner.run({ kind: 'quantizeTensors', modelPath: model, outputPath: model, ggmlType: 'Q8_0', device: 'cpu' }),
      (e: unknown) => e instanceof QuantLensError && e.code === 'INVALID_ARGUMENT',
    );
    assert.equal(sha256(model), before, 'the source was not touched');
    const out = join(dir, 'nan.q8.bin');
    await assert.rejects(
      runner.run({ kind: 'quantizeTensors', modelPath: model, outputPath: out, ggmlType: 'Q8_0', device: 'cpu' }),
      (e: unknown) => e instanceof QuantLensError && e.code === 'NUMERIC' && /bad rows 0\.\.1: value 40 is NaN/.test(e.message),
    );
    assert.equal(existsSync(out), false);
    // Statistics count the NaN instead of failing.
    const stats = await runner.run(statsSpec(model));
    assert.equal(stats.tensors.find((t) => t.name === 'bad')!.nanCount, 1);
  } finally {
    await runner.dispose();
  }
});

test('progress tracker: rate and ETA from the elapsed time, bytes clamp and never go back', () => {
  let now = 0;
  const seen: JobProgress[] = [];
  const tracker = new ProgressTracker(7, 4, 1000, (p) => seen.push(p), () => now);
  tracker.update('read', 0, 'a');
  assert.equal(seen[0]!.etaSeconds, null);
  now = 2000;
  tracker.update('compute', 1, 'b', 500);
  assert.equal(seen[1]!.bytesPerSecond, 250);
  assert.equal(seen[1]!.etaSeconds, 2);
  tracker.update('compute', 1, 'b', 100);
  assert.equal(seen[2]!.bytesDone, 500);
  tracker.update('done', 3, 'd', 5000);
  assert.equal(seen[3]!.bytesDone, 1000);
  assert.equal(seen[3]!.etaSeconds, 0);
  assert.equal(seen[3]!.jobId, 7);
});

test('quantize job: the real pipeline runs in the worker, progress streams, the result carries the card', async () => {
  const output = join(dir, 'micro-int8.safetensors');
  const progress: JobProgress[] = [];
  const r = await runJobInWorker({ kind: 'quantize', request: { input: microLlamaDir, output, target: 'int8' } }, { onProgress: (p) => progress.push(p) });
  assert.equal(r.kind, 'quantize');
  assert.equal(r.result.outputPath, output);
  assert.ok(existsSync(output) && existsSync(r.result.cardPath));
  assert.equal(progress.at(-1)!.phase, 'done');
  assert.equal(progress.at(-1)!.bytesDone, progress.at(-1)!.bytesTotal);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i]!.bytesDone >= progress[i - 1]!.bytesDone);
  await assert.rejects(runJobInWorker({ kind: 'quantize', request: { input: microLlamaDir, output: join(dir, 'x.safetensors'), target: 'int99' } }), (e: unknown) => e instanceof QuantLensError && e.code !== 'INTERNAL');
  // A GGUF target runs the GGUF exporter inside the worker too.
  const gguf = join(dir, 'micro-q8_0.gguf');
  const g = await runJobInWorker({ kind: 'quantize', request: { input: microLlamaDir, output: gguf, target: 'Q8_0' } });
  assert.equal(g.result.outputPath, gguf);
  assert.equal(readFileSync(gguf).subarray(0, 4).toString('latin1'), 'GGUF');
});

test('maxHeapMb limits the worker heap: a job that allocates past it ends as WorkerDiedError, the host stays up', async () => {
  const runner = await JobRunner.start({ maxHeapMb: 64 });
  try {
    assert.equal(runner.busy, false);
    await assert.rejects(runner.run({ kind: 'diagnostic', action: 'allocate', ms: 0 }), (e: unknown) => e instanceof WorkerDiedError);
    assert.equal(runner.alive, false);
  } finally {
    await runner.dispose();
  }
});
