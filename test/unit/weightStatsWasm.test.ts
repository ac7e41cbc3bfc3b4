/**
 * The stats job's CPU path (src/core/analysis/wasm/*): the generated module is a build of the current
 * weightStats.as; the kernels, on one, two and three threads, give the JS reference's (weightStats.ts) histogram,
 * log-histogram and outlier counts exactly and its moments within 1e-12 (float64 sums in another order), on
 * vectors with NaN / Inf / subnormals / zeros, values on bin edges, row lengths that are not a multiple of 4,
 * rows longer than a kernel piece and an infinite histogram scale; the engine over real checkpoints (micro-llama
 * BF16, the F32 GGUF, tiny-llama) in windows of a few rows equals the reference on whole tensors; cancel.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, microLlamaDir, microLlamaF32Gguf, tinyLlamaDir } from '../helpers/paths';
import { normalRng } from '../helpers/random';
import { weightStatsSourceHash } from '../../src/core/analysis/wasm/buildInfo';
import { WEIGHT_STATS_SOURCE_SHA256 } from '../../src/core/analysis/wasm/weightStatsWasm';
import { WeightStatsKernels, type SlotValues } from '../../src/core/analysis/wasm/statsKernels';
import { CpuStatsEngine } from '../../src/core/analysis/wasm/cpuStatsEngine';
import {
  computeTensorStats,
  emptySecondPassCounts,
  momentsOf,
  secondPassSpecOf,
  statsFromPasses,
  summarizeMoments,
  DEFAULT_WEIGHT_STATS_OPTIONS,
  type TensorStats,
  type WeightStatsOptions,
} from '../../src/core/analysis/weightStats';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { CancelledError } from '../../src/core/errors';

test('the generated WebAssembly is a build of the current weightStats.as, flags and asc version', () => {
  const source = readFileSync(join(repoRoot, 'src', 'core', 'analysis', 'wasm', 'weightStats.as'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'node_modules', 'assemblyscript', 'package.json'), 'utf8')) as { version: string };
  assert.equal(WEIGHT_STATS_SOURCE_SHA256, weightStatsSourceHash(source, pkg.version), 'stale: run `npx tsx src/core/analysis/wasm/build.ts`');
});

function close(actual: number, expected: number, rel: number, what: string, scale = Math.abs(expected)): void {
  const tol = rel * Math.max(1e-30, scale);
  assert.ok(Math.abs(actual - expected) <= tol || actual === expected, `${what}: ${actual} vs ${expected} (tolerance ${tol})`);
}

/** Counts exactly, moments within `rel` (relative), per-row arrays within f32 rounding of `rel`. */
function assertSameStats(actual: TensorStats, expected: TensorStats, rel: number, what: string): void {
  for (const k of ['count', 'nanCount', 'infCount', 'min', 'max', 'absMax', 'outlierCount', 'outlierThreshold', 'outlierCenter', 'rows', 'rowLength'] as const) assert.equal(actual[k], expected[k], `${what}: ${k}`);
  // Relative to the quantity's scale: the mean to the standard deviation, the excess kurtosis to n M4 / M2^2 (= it + 3).
  close(actual.mean, expected.mean, rel, `${what}: mean`, Math.max(Math.abs(expected.mean), Math.sqrt(expected.variance)));
  close(actual.variance, expected.variance, rel, `${what}: variance`);
  close(actual.kurtosis, expected.kurtosis, rel, `${what}: kurtosis`, Math.abs(expected.kurtosis) + 3);
  assert.deepEqual(actual.histogram, expected.histogram, `${what}: histogram`);
  assert.deepEqual(actual.logHistogram, expected.logHistogram, `${what}: log histogram`);
  assert.deepEqual(actual.rowOutlierCounts, expected.rowOutlierCounts, `${what}: row outliers`);
  assert.deepEqual(actual.columnOutlierCounts, expected.columnOutlierCounts, `${what}: column outliers`);
  for (const k of ['rowAbsMax', 'rowMin', 'rowMax'] as const) assert.deepEqual(actual[k], expected[k], `${what}: ${k}`);
  for (const k of ['rowMean', 'rowVariance', 'rowKurtosis'] as const) {
    const a = actual[k];
    const e = expected[k];
    for (let r = 0; r < e.length; r++) close(a[r]!, e[r]!, Math.max(rel, 2 ** -23), `${what}: ${k}[${r}]`, k === 'rowKurtosis' ? Math.abs(e[r]!) + 3 : k === 'rowMean' ? Math.max(Math.abs(e[r]!), Math.sqrt(expected.rowVariance[r]!)) : Math.abs(e[r]!));
  }
}

/**
 * Both passes of one in-memory tensor on the kernels (what the engine does for a tensor of one window). With
 * 'bf16' the slot holds the top halves of `values` as Checkpoint.readRowsBf16Into leaves BF16 rows (the caller
 * passes values that are BF16, so the reference sees the same numbers).
 */
function kernelStats(kernels: WeightStatsKernels, shape: readonly number[], values: Float32Array, options: WeightStatsOptions = DEFAULT_WEIGHT_STATS_OPTIONS, held: SlotValues = 'f32'): TensorStats {
  const rows = shape.length <= 1 ? 1 : shape[0]!;
  const rowLength = rows === 0 ? 0 : values.length / rows;
  kernels.reserve(1, values.length);
  const slot = kernels.slotView(0, values.length);
  if (held === 'f32') slot.set(values);
  else {
    slot.fill(Number.NaN);
    const halves = new Uint16Array(slot.buffer, slot.byteOffset + values.length * 2, values.length);
    const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
    for (let i = 0; i < values.length; i++) halves[i] = bits[i]! >>> 16;
  }
  const rowMoments = kernels.rowMoments(0, rows, rowLength, held);
  const total = summarizeMoments(rowMoments.total());
  const spec = secondPassSpecOf(total, options);
  const counts = emptySecondPassCounts(spec, rows, rowLength);
  // As the engine: the kernel's unmasked pass when pass 1 found no NaN / Inf.
  kernels.secondPass(0, rows, rowLength, 0, spec, counts, total.nanCount + total.infCount === 0, held);
  return statsFromPasses('t', shape, rowMoments, spec, counts);
}

/** `values` rounded toward zero to BF16 (their top 16 bits), as f32. */
function truncatedToBf16(values: Float32Array): Float32Array {
  const bits = new Uint32Array(Float32Array.from(values).buffer);
  for (let i = 0; i < bits.length; i++) bits[i] = bits[i]! & 0xffff0000;
  return new Float32Array(bits.buffer);
}

/** Weights-like rows: normal values, an emergent column, a few huge values, with the edge cases sprinkled in. */
function edgeVectors(rows: number, cols: number, seed: number): Float32Array {
  const rnd = normalRng(seed);
  const x = Float32Array.from({ length: rows * cols }, () => rnd() * 0.02);
  for (let r = 0; r < rows; r++) x[r * cols + (3 % cols)] = 0.9 * (r % 2 === 0 ? 1 : -1);
  const specials = [Number.NaN, Infinity, -Infinity, 0, -0, 1e-40, -3e-39, 2 ** -126, 3.4e38 / 1e30, -7.5];
  specials.forEach((v, i) => {
    x[(i * 7919) % x.length] = v;
  });
  return x;
}

/** Waits until every helper thread listens (they take tens of ms to start; until then their parts stay on this thread). */
async function allThreadsReady(kernels: WeightStatsKernels): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (kernels.readyThreads < kernels.threads) {
    assert.ok(Date.now() < deadline, `only ${kernels.readyThreads} of ${kernels.threads} threads started`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('kernels on one, two and three threads equal the JS reference: specials, odd row lengths, edges', async () => {
  for (const threads of [1, 2, 3]) {
    // Chunks of 600 values: every thread takes some of each block.
    const kernels = WeightStatsKernels.create(threads, 600);
    assert.ok(kernels !== null, 'the kernels run in this Node');
    assert.equal(kernels.threads, threads);
    await allThreadsReady(kernels);
    try {
      for (const [rows, cols] of [
        [1, 1],
        [1, 3],
        [5, 37],
        [64, 129],
        [300, 1024],
        [2, 200_000],
        [9000, 5],
        [20_000, 9],
      ] as const) {
        const x = edgeVectors(rows, cols, rows * 31 + cols);
        const shape = rows === 1 ? [cols] : [rows, cols];
        assertSameStats(kernelStats(kernels, shape, x), computeTensorStats('t', shape, x), 1e-12, `${threads} threads, [${rows}, ${cols}]`);
      }
      // Values exactly on the fixed bins' edges (a grid of the range) and an absolute outlier threshold.
      const grid = Float32Array.from({ length: 4 * 257 }, (_, i) => -1 + (i % 257) / 128);
      const options = { ...DEFAULT_WEIGHT_STATS_OPTIONS, histogramBins: 256, outlierAbsThreshold: 0.5, outlierCenter: 0.25 };
      assertSameStats(kernelStats(kernels, [4, 257], grid, options), computeTensorStats('t', [4, 257], grid, options), 1e-12, `${threads} threads, bin edges`);
      // A range so narrow that bins / span overflows f32: the reference drops those values (NaN bin), so must we.
      const narrow = Float32Array.from({ length: 40 }, (_, i) => (i % 3 === 0 ? 1e-45 : 0));
      const narrowStats = kernelStats(kernels, [40], narrow);
      assertSameStats(narrowStats, computeTensorStats('t', [40], narrow), 1e-12, `${threads} threads, infinite scale`);
      // Finite values whose differences overflow f32 (x - lo = Inf, threshold Inf), without NaN/Inf: the unmasked pass.
      const huge = Float32Array.from({ length: 3 * 12 }, (_, i) => (i % 5 === 0 ? 3e38 : i % 7 === 0 ? -3e38 : i * 1e36));
      assertSameStats(kernelStats(kernels, [3, 12], huge), computeTensorStats('t', [3, 12], huge), 1e-12, `${threads} threads, overflowing range`);
      // Random rows without specials (the unmasked pass), 4 values short of a multiple of 4 in length.
      const plain = Float32Array.from({ length: 50 * 253 }, normalRng(17));
      assertSameStats(kernelStats(kernels, [50, 253], plain), computeTensorStats('t', [50, 253], plain), 1e-12, `${threads} threads, finite rows`);
      // Constant and all-NaN rows.
      const flat = new Float32Array(3 * 8).fill(2.5);
      flat.fill(Number.NaN, 8, 16);
      assertSameStats(kernelStats(kernels, [3, 8], flat), computeTensorStats('t', [3, 8], flat), 1e-12, `${threads} threads, constant / NaN rows`);
      // Rows shorter than one SIMD vector: all NaN, NaN beside a value, negative zeros.
      const short = Float32Array.from([Number.NaN, Number.NaN, Number.NaN, Number.NaN, -2, Number.NaN, -0, -0, -0]);
      assertSameStats(kernelStats(kernels, [3, 3], short), computeTensorStats('t', [3, 3], short), 1e-12, `${threads} threads, short rows`);
    } finally {
      kernels.dispose();
    }
  }
});

test('row moments from power sums (|mean| <= std / 4) and from two passes (the rest) both agree with momentsOf within 1e-12', async () => {
  const kernels = WeightStatsKernels.create(1);
  assert.ok(kernels !== null);
  try {
    const rowLength = 4099;
    // Row r: mean = ratio * std, std 0.02; the ratios straddle the switch at 1/4 and go far past it.
    const ratios = [0, 0.01, 0.1, 0.2, 0.249, 0.25, 0.251, 0.3, 1, 10, 1000, -0.2, -0.26, -50];
    const rnd = normalRng(4);
    const x = new Float32Array(ratios.length * rowLength);
    ratios.forEach((ratio, r) => {
      for (let c = 0; c < rowLength; c++) x[r * rowLength + c] = ratio * 0.02 + 0.02 * rnd();
    });
    kernels.reserve(1, x.length);
    kernels.slotView(0, x.length).set(x);
    const got = kernels.rowMoments(0, ratios.length, rowLength);
    ratios.forEach((ratio, r) => {
      const want = momentsOf(x, r * rowLength, (r + 1) * rowLength);
      const a = got.get(r);
      const what = `row mean ${ratio} std`;
      for (const k of ['count', 'min', 'max', 'absMax', 'nanCount', 'infCount'] as const) assert.equal(a[k], want[k], `${what}: ${k}`);
      const sigma = Math.sqrt(want.m2 / want.count);
      close(a.mean, want.mean, 1e-12, `${what}: mean`, Math.max(Math.abs(want.mean), sigma));
      close(a.m2, want.m2, 1e-12, `${what}: m2`);
      close(a.m3, want.m3, 1e-12, `${what}: m3`, want.count * sigma ** 3);
      close(a.m4, want.m4, 1e-12, `${what}: m4`);
    });
  } finally {
    kernels.dispose();
  }
});

test('the finite pass (one joint table slot per value) splits ranks that straddle bins as the reference does', async () => {
  const kernels = WeightStatsKernels.create(2, 1000);
  assert.ok(kernels !== null);
  await allThreadsReady(kernels);
  try {
    // Magnitudes over 2^-149 .. 2^40 (subnormals, zeros of both signs, both signs), so that ranks (sign, exponent,
    // two mantissa bits) of large values span several fixed bins and one bin spans many ranks near zero.
    let seed = 99;
    const next = () => (seed = (seed * 1664525 + 1013904223) >>> 0) / 2 ** 32;
    const spread = Float32Array.from({ length: 40 * 251 }, (_, i) => (i % 97 === 0 ? (i % 2 === 0 ? 0 : -0) : (next() < 0.5 ? -1 : 1) * 2 ** (next() * 189 - 149)));
    // Values on every quarter-octave edge 2^e * {1, 1.25, 1.5, 1.75} and one float either side of it.
    const edges: number[] = [];
    for (let e = -8; e <= 3; e++) {
      for (const m of [1, 1.25, 1.5, 1.75]) {
        const v = Math.fround(m * 2 ** e);
        edges.push(v, -v, Math.fround(v * (1 + 2 ** -23)), Math.fround(v * (1 - 2 ** -24)), -Math.fround(v * (1 - 2 ** -24)));
      }
    }
    const edgy = Float32Array.from({ length: 8 * edges.length }, (_, i) => edges[i % edges.length]! * (1 + (Math.floor(i / edges.length) % 2) * 2 ** -22));
    for (const [name, x, rows] of [['spread', spread, 40], ['quarter-octave edges', edgy, 8]] as const) {
      const shape = [rows, x.length / rows];
      for (const histogramBins of [1, 3, 64, 256]) {
        const options = { ...DEFAULT_WEIGHT_STATS_OPTIONS, histogramBins };
        assertSameStats(kernelStats(kernels, shape, x, options), computeTensorStats('t', shape, x, options), 1e-12, `${name}, ${histogramBins} bins`);
      }
    }
  } finally {
    kernels.dispose();
  }
});

test('a row longer than one kernel piece (1-D, 600,001 values) is merged from pieces', async () => {
  const kernels = WeightStatsKernels.create(3);
  assert.ok(kernels !== null);
  await allThreadsReady(kernels);
  try {
    const x = edgeVectors(1, 600_001, 5);
    assertSameStats(kernelStats(kernels, [600_001], x), computeTensorStats('t', [600_001], x), 1e-11, 'long row');
    const b = truncatedToBf16(x);
    assertSameStats(kernelStats(kernels, [600_001], b, DEFAULT_WEIGHT_STATS_OPTIONS, 'bf16'), computeTensorStats('t', [600_001], b), 1e-11, 'long BF16 row');
  } finally {
    kernels.dispose();
  }
});

test('BF16 rows as stored (widened as the kernels load them) equal the reference on their f32 values, 1 and 2 threads', async () => {
  for (const threads of [1, 2]) {
    const kernels = WeightStatsKernels.create(threads, 600);
    assert.ok(kernels !== null);
    await allThreadsReady(kernels);
    try {
      for (const [rows, cols] of [
        [1, 1],
        [1, 7],
        [5, 37],
        [64, 129],
        [300, 1024],
        [9000, 5],
      ] as const) {
        const shape = rows === 1 ? [cols] : [rows, cols];
        // With NaN / Inf / subnormals (the masked passes), and finite only (the clean ones).
        const special = truncatedToBf16(edgeVectors(rows, cols, rows + cols));
        const finite = truncatedToBf16(Float32Array.from({ length: rows * cols }, normalRng(rows * cols)));
        for (const [name, x] of [['specials', special], ['finite', finite]] as const) {
          assertSameStats(kernelStats(kernels, shape, x, DEFAULT_WEIGHT_STATS_OPTIONS, 'bf16'), computeTensorStats('t', shape, x), 1e-12, `${threads} threads, BF16 ${name} [${rows}, ${cols}]`);
        }
      }
    } finally {
      kernels.dispose();
    }
  }
});

/** The engine's stats of every tensor equal the reference; returns the tensor count and the window reads made. */
async function engineAgainstReference(path: string, windowElements: number, threads: number, residentElements?: number): Promise<{ tensors: number; reads: number; slots: number }> {
  const checkpoint = await openCheckpoint(path);
  const engine = CpuStatsEngine.create(checkpoint, checkpoint.tensors, windowElements, threads, residentElements);
  assert.ok(engine !== null);
  try {
    for (const [index, t] of checkpoint.tensors.entries()) {
      const values = await checkpoint.readRowsF32(t.name);
      const expected = computeTensorStats(t.name, t.shape, values);
      assertSameStats(await engine.tensorStats(index, DEFAULT_WEIGHT_STATS_OPTIONS), expected, 1e-12, `${path}: ${t.name}`);
    }
    return { tensors: checkpoint.tensors.length, reads: engine.reads, slots: engine.slotCount };
  } finally {
    await engine.dispose();
    await checkpoint.close();
  }
}

test('engine over micro-llama (BF16 folder, F32 GGUF) in windows of 3 rows of 64 and whole tensors equals the reference', async () => {
  assert.equal((await engineAgainstReference(microLlamaDir, 3 * 64, 2)).tensors, 21);
  assert.equal((await engineAgainstReference(microLlamaF32Gguf, 1 << 20, 1)).tensors, 21);
});

test('engine: a tensor within the resident budget is read once, a larger one twice; both equal the reference', async () => {
  const checkpoint = await openCheckpoint(microLlamaDir);
  const windowRows = (t: (typeof checkpoint.tensors)[number]) => (t.shape.length <= 1 ? 1 : t.shape[0]!);
  const windowsOf = (t: (typeof checkpoint.tensors)[number]) => {
    const rows = windowRows(t);
    const rowLength = t.shape.reduce((a, b) => a * b, 1) / rows;
    return Math.ceil(rows / Math.max(1, Math.floor(192 / rowLength)));
  };
  const windows = checkpoint.tensors.map(windowsOf);
  await checkpoint.close();
  const most = Math.max(...windows);
  assert.ok(most > 16 && windows.some((n) => n > 1 && n <= 16), `micro-llama's windows of 192 values: ${windows.join(', ')}`);
  // Default budget: every tensor resident, one read per window, a ring of the most windows + 1.
  const all = await engineAgainstReference(microLlamaDir, 192, 2);
  assert.equal(all.reads, windows.reduce((a, n) => a + n, 0));
  assert.equal(all.slots, most + 1);
  // A budget of 16 windows: tensors of more are read again for pass 2.
  const some = await engineAgainstReference(microLlamaDir, 192, 2, 16 * 192);
  assert.equal(some.reads, windows.reduce((a, n) => a + (n > 16 ? 2 * n : n), 0));
  assert.equal(some.slots, 17);
});

test('engine over tiny-llama (BF16, 18.9 M values) equals the reference', { skip: tinyLlamaDir.skip }, async () => {
  assert.ok((await engineAgainstReference(tinyLlamaDir.path, 100_000, 3)).tensors > 50);
  // Every tensor of several windows read twice (the resident budget is one window).
  assert.ok((await engineAgainstReference(tinyLlamaDir.path, 100_000, 2, 100_000)).tensors > 50);
});

test('engine: tensors out of the planned order are still right; a cancelled signal stops it', async () => {
  const checkpoint = await openCheckpoint(microLlamaDir);
  const engine = CpuStatsEngine.create(checkpoint, checkpoint.tensors, 5 * 64, 2);
  assert.ok(engine !== null);
  try {
    for (const index of [4, 1, 1, 20, 0]) {
      const t = checkpoint.tensors[index]!;
      assertSameStats(await engine.tensorStats(index, DEFAULT_WEIGHT_STATS_OPTIONS), computeTensorStats(t.name, t.shape, await checkpoint.readRowsF32(t.name)), 1e-12, t.name);
    }
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(engine.tensorStats(2, DEFAULT_WEIGHT_STATS_OPTIONS, controller.signal), CancelledError);
  } finally {
    await engine.dispose();
    await checkpoint.close();
  }
});

test('kernels a job releases serve the next job on as many threads; others, and large ones, are ended', async () => {
  const first = WeightStatsKernels.acquire(2);
  assert.ok(first !== null);
  await allThreadsReady(first);
  first.release();
  // The next job on 2 threads gets them back, helper already listening, and they still compute right.
  const again = WeightStatsKernels.acquire(2);
  assert.equal(again, first);
  assert.equal(again.readyThreads, 2);
  const x = Float32Array.from({ length: 64 * 100 }, normalRng(3));
  assertSameStats(kernelStats(again, [64, 100], x), computeTensorStats('t', [64, 100], x), 1e-12, 'reused kernels');
  again.release();
  // Another thread count: new kernels (the kept ones are ended).
  const three = WeightStatsKernels.acquire(3);
  assert.ok(three !== null && three !== first);
  assert.equal(three.threads, 3);
  // Kernels whose memory grew past what is kept are ended on release, not handed to the next job.
  assert.ok(three.reserve(1, 40 * 2 ** 20));
  three.release();
  const fresh = WeightStatsKernels.acquire(3);
  assert.ok(fresh !== null && fresh !== three);
  fresh.dispose();
  // Ended kernels are never handed out.
  const ended = WeightStatsKernels.acquire(1);
  assert.ok(ended !== null);
  ended.dispose();
  ended.release();
  const next = WeightStatsKernels.acquire(1);
  assert.ok(next !== null && next !== ended);
  next.dispose();
});
