/**
 * Jobs on the GPU path, in the worker: same bytes and statistics as the CPU path, and an adapter that
 * vanishes mid-job (device.destroy() at a chosen tensor) falls back to the CPU once with `auto` and
 * fails cleanly with `gpu`; the stats job under `auto` gives a software adapter back.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobRunner } from '../../src/core/jobs/jobRunner';
import type { StatsJobSpec } from '../../src/protocol/jobs';
import { QuantLensError } from '../../src/core/errors';
import { microLlamaDir } from '../helpers/paths';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';
import { isSoftwareAdapter } from '../../src/core/jobs/computeDevice';

let dir = '';
let runner: JobRunner | null = null;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'quantlens-gpujobs-'));
  runner = await JobRunner.start();
});
after(async () => {
  await runner?.dispose();
  await releaseSharedGpu();
  rmSync(dir, { recursive: true, force: true });
});

const tensorNames = ['model.embed_tokens.weight', 'model.layers.0.self_attn.q_proj.weight', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight'];
const stats = (device: StatsJobSpec['device']): StatsJobSpec => ({ kind: 'stats', modelPath: microLlamaDir, device, histogramBins: 64, logOctaves: 24, outlierSigma: 6, topChannels: 8, tensorNames });

test('stats job: GPU and CPU paths agree (counts exactly, moments within 1e-5 / kurtosis 1e-3)', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const gpu = await runner!.run(stats('gpu'));
  const cpu = await runner!.run(stats('cpu'));
  assert.equal(gpu.device, 'gpu');
  assert.equal(cpu.device, 'cpu');
  gpu.tensors.forEach((g, i) => {
    const c = cpu.tensors[i]!;
    assert.equal(g.name, c.name);
    assert.deepEqual([g.count, g.min, g.max, g.absMax], [c.count, c.min, c.max, c.absMax]);
    assert.deepEqual(g.histogram.counts, c.histogram.counts);
    assert.deepEqual(g.logHistogram.counts, c.logHistogram.counts);
    assert.ok(Math.abs(g.variance - c.variance) <= 1e-5 * c.variance, `${g.name} variance`);
    assert.ok(Math.abs(g.kurtosis - c.kurtosis) <= 1e-3 * Math.max(1, Math.abs(c.kurtosis)), `${g.name} kurtosis`);
    if (g.outlierThreshold === c.outlierThreshold) assert.deepEqual(g.topOutlierColumns, c.topOutlierColumns);
  });
});

test('stats job under auto: a software adapter is given back (said once) and the CPU path runs; a hardware one is used', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const notices: string[] = [];
  const auto = await runner!.run(stats('auto'), { onNotice: (m) => notices.push(m) });
  if (isSoftwareAdapter(gpu.description)) {
    assert.equal(auto.device, 'cpu');
    assert.equal(notices.length, 1);
    assert.match(notices[0]!, /software renderer/);
  } else assert.equal(auto.device, 'gpu');
});

test('quantizeTensors job: GPU output file is byte-identical to the CPU one', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  for (const ggmlType of ['Q4_1', 'Q5_0'] as const) {
    const gpuOut = join(dir, `gpu.${ggmlType}.bin`);
    const cpuOut = join(dir, `cpu.${ggmlType}.bin`);
    const g = await runner!.run({ kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: gpuOut, ggmlType, device: 'gpu', tensorNames });
    await runner!.run({ kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: cpuOut, ggmlType, device: 'cpu', tensorNames });
    assert.equal(g.device, 'gpu');
    assert.ok(readFileSync(gpuOut).equals(readFileSync(cpuOut)), ggmlType);
  }
});

test('the adapter vanishing mid-job: auto falls back to the CPU and says so once; gpu fails with no output', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const notices: string[] = [];
  const out = join(dir, 'fallback.bin');
  const result = await runner!.run(
    { kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: out, ggmlType: 'Q8_0', device: 'auto', tensorNames, testFaults: { loseGpuAtTensor: 1 } },
    { onNotice: (m) => notices.push(m) },
  );
  assert.equal(notices.length, 1);
  assert.match(notices[0]!, /GPU failed .*continuing on the CPU/);
  assert.equal(result.device, 'cpu');
  const reference = join(dir, 'reference.bin');
  await runner!.run({ kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: reference, ggmlType: 'Q8_0', device: 'cpu', tensorNames });
  assert.ok(readFileSync(out).equals(readFileSync(reference)), 'the fallback finished with the same bytes');

  const strict = join(dir, 'strict.bin');
  await assert.rejects(
    runner!.run({ kind: 'quantizeTensors', modelPath: microLlamaDir, outputPath: strict, ggmlType: 'Q8_0', device: 'gpu', tensorNames, testFaults: { loseGpuAtTensor: 1 } }),
    (e: unknown) => e instanceof QuantLensError && e.code === 'GPU_UNAVAILABLE',
  );
  assert.equal(existsSync(strict), false);

  const statsNotices: string[] = [];
  // useSoftwareAdapter: under auto the stats job gives lavapipe back (the CPU path is faster there); this test needs the GPU path.
  const s = await runner!.run({ ...stats('auto'), testFaults: { loseGpuAtTensor: 2, useSoftwareAdapter: true } }, { onNotice: (m) => statsNotices.push(m) });
  assert.equal(statsNotices.length, 1);
  assert.equal(s.tensors.length, tensorNames.length);
});
