/**
 * GPU weight statistics against the CPU reference (analysis/weightStats.ts). Stated tolerance:
 * histogram, log histogram and outlier counts exactly equal; min/max/absmax exactly; mean and
 * variance within 1e-5 relative; kurtosis (tensor and per row) within 1e-3 relative (f32 per-segment sums).
 * Subnormal inputs count as signed zero on the GPU (see rowMoments.wgsl): the reference gets them flushed.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { computeTensorStats, DEFAULT_WEIGHT_STATS_OPTIONS, type TensorStats } from '../../src/core/analysis/weightStats';
import { tensorStatsOnGpu, type RowData, type RowSource } from '../../src/core/gpu/stats';
import type { GpuContext } from '../../src/core/gpu/device';
import type { GpuRunOptions } from '../../src/core/gpu/quantize';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { CancelledError } from '../../src/core/errors';
import { fixturesDir, tinyLlamaDir } from '../helpers/paths';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

after(releaseSharedGpu);

function near(actual: number, expected: number, rel: number, what: string): void {
  const tol = rel * Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: GPU ${actual} vs CPU ${expected}`);
}

function assertAgree(gpu: TensorStats, cpu: TensorStats): void {
  for (const k of ['count', 'nanCount', 'infCount', 'min', 'max', 'absMax'] as const) assert.equal(gpu[k], cpu[k], `${cpu.name} ${k}`);
  near(gpu.mean, cpu.mean, 1e-5, `${cpu.name} mean`);
  near(gpu.variance, cpu.variance, 1e-5, `${cpu.name} variance`);
  near(gpu.kurtosis, cpu.kurtosis, 1e-3, `${cpu.name} kurtosis`);
  // The threshold is sigma * std, a float statistic: equal within the variance tolerance.
  near(gpu.outlierThreshold, cpu.outlierThreshold, 1e-5, `${cpu.name} outlier threshold`);
  assert.deepEqual(gpu.histogram.counts, cpu.histogram.counts, `${cpu.name} histogram`);
  assert.deepEqual(gpu.logHistogram.counts, cpu.logHistogram.counts, `${cpu.name} log histogram`);
  assert.equal(gpu.logHistogram.underflow, cpu.logHistogram.underflow);
  assert.deepEqual(gpu.rowAbsMax, cpu.rowAbsMax);
  assert.deepEqual(gpu.rowMin, cpu.rowMin);
  for (let r = 0; r < cpu.rows; r++) {
    near(gpu.rowMean[r]!, cpu.rowMean[r]!, 1e-5, `${cpu.name} row ${r} mean`);
    near(gpu.rowKurtosis[r]!, cpu.rowKurtosis[r]!, 1e-3, `${cpu.name} row ${r} kurtosis`);
  }
}

/** The GPU kernels read subnormal values as signed zero (GPUs may flush them): the CPU reference gets the same input. */
function flushSubnormals(values: Float32Array): Float32Array {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const out = new Float32Array(values);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) if ((bits[i]! & 0x7f800000) === 0) outBits[i] = bits[i]! & 0x80000000;
  return out;
}

/** GPU vs CPU; outlier counts must be identical given the same threshold and center (rerun with the CPU's when the f32/f64 values differ by an ulp). */
async function check(gpu: GpuContext, name: string, shape: number[], source: RowSource, values: Float32Array, run: GpuRunOptions = {}): Promise<TensorStats> {
  const cpu = computeTensorStats(name, shape, flushSubnormals(values));
  const g = await tensorStatsOnGpu(gpu, name, shape, source, DEFAULT_WEIGHT_STATS_OPTIONS, run);
  assertAgree(g, cpu);
  near(g.outlierCenter, cpu.outlierCenter, 1e-5, `${name} outlier center`);
  const same =
    g.outlierThreshold === cpu.outlierThreshold && g.outlierCenter === cpu.outlierCenter
      ? g
      : await tensorStatsOnGpu(gpu, name, shape, source, { ...DEFAULT_WEIGHT_STATS_OPTIONS, outlierAbsThreshold: cpu.outlierThreshold, outlierCenter: cpu.outlierCenter }, run);
  assert.equal(same.outlierCount, cpu.outlierCount, `${name} outlier count`);
  assert.deepEqual(same.rowOutlierCounts, cpu.rowOutlierCounts, `${name} row outliers`);
  assert.deepEqual(same.columnOutlierCounts, cpu.columnOutlierCounts, `${name} column outliers`);
  return g;
}

const f32Source = (x: Float32Array, rowLength: number): RowSource => ({ read: async (start, count) => ({ kind: 'f32', values: x.subarray(start * rowLength, (start + count) * rowLength) }) });

function synthetic(rows: number, cols: number): Float32Array {
  const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 12.9898) * 0.05);
  for (let r = 0; r < rows; r++) x[r * cols + 7] = 2 + r / rows; // an outlier column
  return x;
}

test('GPU statistics agree with the CPU reference, with NaN and Inf in the data', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const rows = 96;
  const cols = 700;
  const x = synthetic(rows, cols);
  x[5] = Number.NaN;
  x[cols * 3 + 2] = Infinity;
  x[cols * 9 + 1] = -Infinity;
  const g = await check(gpu, 'synthetic', [rows, cols], f32Source(x, cols), x);
  assert.equal(g.nanCount, 1);
  assert.equal(g.infCount, 2);
  assert.equal(g.columnOutlierCounts[7], rows);
});

test('windows of rows, and rows longer than one window (pieces merged on the host), agree too', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const x = synthetic(40, 3000);
  let reads = 0;
  const counting: RowSource = { read: (s, c) => (reads++, f32Source(x, 3000).read(s, c)) };
  await check(gpu, 'w', [40, 3000], counting, x, { maxChunkBytes: 7 * 3000 * 4 });
  assert.ok(reads >= 2 * Math.ceil(40 / 7), 'both passes stream the windows');
  await check(gpu, 'w', [40, 3000], f32Source(x, 3000), x, { maxChunkBytes: 1024 * 4 });
  const oneD = Float32Array.from({ length: 50_000 }, (_, i) => Math.cos(i) * (i === 4321 ? 40 : 1));
  await check(gpu, 'v', [50_000], f32Source(oneD, 50_000), oneD, { maxChunkBytes: 8192 * 4 });
});

test('raw BF16, F16 and F8 rows are decoded on the GPU to the same values the CPU decodes', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  // Every 16-bit pattern once (NaNs and Infs included), as BF16 and as F16; every byte as F8.
  const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
  const bytes = new Uint8Array(bits.buffer);
  const bf16 = Float32Array.from(bits, (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]!);
  const f16 = Float32Array.from(bits, (b) => halfToFloat(b));
  const raw = (dtype: RowData & { kind: 'raw' }): RowSource => ({ read: async () => dtype });
  await check(gpu, 'bf16', [256, 256], raw({ kind: 'raw', dtype: 'BF16', bytes }), bf16);
  await check(gpu, 'f16', [256, 256], raw({ kind: 'raw', dtype: 'F16', bytes }), f16);
  const all8 = Uint8Array.from({ length: 256 }, (_, i) => i);
  const e5m2 = Float32Array.from(all8, (b) => halfToFloat(b << 8));
  await check(gpu, 'e5m2', [2, 128], raw({ kind: 'raw', dtype: 'F8_E5M2', bytes: all8 }), e5m2);
  const e4m3 = Float32Array.from(all8, (b) => e4m3ToFloat(b));
  await check(gpu, 'e4m3', [2, 128], raw({ kind: 'raw', dtype: 'F8_E4M3', bytes: all8 }), e4m3);
});

test('real weights: micro-llama and tiny-llama tensors (BF16, decoded on the GPU)', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const models: [string, string[]][] = [[join(fixturesDir, 'micro-llama'), ['model.embed_tokens.weight', 'model.layers.1.mlp.down_proj.weight', 'model.norm.weight']]];
  if (tinyLlamaDir.skip === false) models.push([tinyLlamaDir.path, ['model.layers.0.self_attn.q_proj.weight', 'model.layers.5.mlp.up_proj.weight', 'model.layers.7.mlp.down_proj.weight']]);
  else console.log(`# tiny-llama part skipped: ${tinyLlamaDir.skip}`);
  for (const [path, names] of models) {
    const checkpoint = await openCheckpoint(path);
    try {
      for (const name of names) {
        const entry = checkpoint.tensors.find((e) => e.name === name);
        assert.ok(entry !== undefined && entry.dtype === 'BF16', name);
        const source: RowSource = { read: async (s, c) => ({ kind: 'raw', dtype: 'BF16', bytes: await checkpoint.readRawRows(name, s, c) }) };
        await check(gpu, name, entry.shape, source, await checkpoint.readRowsF32(name));
      }
    } finally {
      await checkpoint.close();
    }
  }
});

test('zero-size tensors and cancellation between windows', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const empty = await tensorStatsOnGpu(gpu, 'empty', [0, 64], f32Source(new Float32Array(0), 64), DEFAULT_WEIGHT_STATS_OPTIONS);
  assert.equal(empty.count, 0);
  assert.equal(empty.mean, 0);
  const x = synthetic(64, 512);
  const controller = new AbortController();
  await assert.rejects(
    tensorStatsOnGpu(gpu, 'w', [64, 512], f32Source(x, 512), DEFAULT_WEIGHT_STATS_OPTIONS, {
      maxChunkBytes: 8 * 512 * 4,
      signal: controller.signal,
      onPhase: (phase, index) => phase === 'compute' && index === 3 && controller.abort(),
    }),
    CancelledError,
  );
});

test('the oracle vectors (ties, tiny and huge blocks) give the same statistics', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const b = readFileSync(join(fixturesDir, 'ggml-oracle', 'vectors.f32'));
  const x = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
  await check(gpu, 'vectors', [256, 32], f32Source(x, 32), x);
});

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

function e4m3ToFloat(b: number): number {
  const sign = b & 0x80 ? -1 : 1;
  const e = (b >> 3) & 0xf;
  const m = b & 7;
  if (e === 15 && m === 7) return Number.NaN;
  if (e === 0) return sign * m * 2 ** -9;
  return sign * (1 + m / 8) * 2 ** (e - 7);
}
