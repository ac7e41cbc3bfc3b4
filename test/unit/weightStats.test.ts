import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  computeTensorStats,
  emptyMoments,
  fixedBinOf,
  fixedHistogramSpec,
  logBinOf,
  logHistogramSpec,
  mergeMoments,
  momentsOf,
  summarizeMoments,
  tensorStatsStreamed,
  topCounts,
  DEFAULT_WEIGHT_STATS_OPTIONS,
} from '../../src/core/analysis/weightStats';
import { CancelledError, InvalidArgumentError } from '../../src/core/errors';

function close(actual: number, expected: number, rel: number, what: string): void {
  const tol = rel * Math.max(1, Math.abs(expected));
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tolerance ${tol})`);
}

test('moments of known distributions: two-point (kurtosis -2), uniform grid (-1.2), constant (0)', () => {
  const twoPoint = Float32Array.from({ length: 1000 }, (_, i) => (i % 2 === 0 ? 1 : -1));
  const s = summarizeMoments(momentsOf(twoPoint));
  assert.equal(s.mean, 0);
  assert.equal(s.variance, 1);
  close(s.kurtosis, -2, 1e-12, 'two-point kurtosis');
  const n = 100001;
  const uniform = Float32Array.from({ length: n }, (_, i) => i / (n - 1));
  const u = summarizeMoments(momentsOf(uniform));
  close(u.mean, 0.5, 1e-9, 'uniform mean');
  close(u.variance, 1 / 12, 1e-4, 'uniform variance');
  close(u.kurtosis, -1.2, 1e-3, 'uniform kurtosis');
  const constant = summarizeMoments(momentsOf(new Float32Array(50).fill(3.5)));
  assert.deepEqual([constant.mean, constant.variance, constant.kurtosis, constant.min, constant.max], [3.5, 0, 0, 3.5, 3.5]);
});

test('stable: a large offset does not destroy the variance (naive sum of squares would)', () => {
  const x = Float32Array.from({ length: 4096 }, (_, i) => 1e4 + (i % 2 === 0 ? 0.5 : -0.5));
  const s = summarizeMoments(momentsOf(x));
  close(s.variance, 0.25, 1e-9, 'variance around 1e4');
});

test('merging moments of parts equals the moments of the whole (any split)', () => {
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const x = Float32Array.from({ length: 5000 }, () => rnd() ** 3 * 4);
  const whole = momentsOf(x);
  for (const cut of [1, 17, 2500, 4999]) {
    const merged = mergeMoments(momentsOf(x, 0, cut), momentsOf(x, cut));
    for (const k of ['count', 'mean', 'm2', 'm3', 'm4', 'min', 'max', 'absMax'] as const) close(merged[k], whole[k], 1e-9, `${k} at cut ${cut}`);
  }
  assert.deepEqual(mergeMoments(emptyMoments(), whole), whole);
});

test('NaN and Inf are counted and excluded from every moment, range and histogram', () => {
  const x = new Float32Array([1, 2, Number.NaN, 3, Infinity, -Infinity, 4]);
  const st = computeTensorStats('t', [7], x);
  assert.equal(st.count, 4);
  assert.equal(st.nanCount, 1);
  assert.equal(st.infCount, 2);
  assert.equal(st.mean, 2.5);
  assert.equal(st.min, 1);
  assert.equal(st.max, 4);
  assert.equal(st.histogram.counts.reduce((a, b) => a + b, 0), 4);
  assert.equal(st.logHistogram.counts.reduce((a, b) => a + b, 0) + st.logHistogram.underflow, 4);
});

test('zero-size tensors give empty statistics, not NaN', () => {
  const st = computeTensorStats('empty', [0, 16], new Float32Array(0));
  assert.equal(st.count, 0);
  assert.equal(st.rows, 0);
  for (const v of [st.mean, st.variance, st.kurtosis, st.min, st.max]) assert.equal(v, 0);
  assert.equal(st.histogram.counts.reduce((a, b) => a + b, 0), 0);
});

test('fixed bins: edges in f32, max value in the last bin, below-range clamps to 0', () => {
  const spec = fixedHistogramSpec(4, -1, 1);
  assert.deepEqual([-1, -0.5, -0.4999, 0, 0.5, 1].map((x) => fixedBinOf(x, spec)), [0, 1, 1, 2, 3, 3]);
  assert.equal(fixedBinOf(-2, spec), 0);
});

test('log bins: quarter octaves below the absmax octave, zero and tiny values underflow', () => {
  const spec = logHistogramSpec(2, 3.9); // octave [2, 4) is the top one, [1, 2) below it
  assert.equal(logBinOf(3.9, spec), 7);
  assert.equal(logBinOf(2, spec), 4);
  assert.equal(logBinOf(-2.5, spec), 5);
  assert.equal(logBinOf(1, spec), 0);
  assert.equal(logBinOf(1.75, spec), 3);
  assert.equal(logBinOf(0.99, spec), -1);
  assert.equal(logBinOf(0, spec), -1);
});

test('outliers per row and per column over sigma * std; top lists ordered', () => {
  const rows = 8;
  const cols = 64;
  const x = new Float32Array(rows * cols).map((_, i) => ((i * 37) % 11) / 100 - 0.05);
  // Column 5 is an emergent feature in every row; row 3 has two more.
  for (let r = 0; r < rows; r++) x[r * cols + 5] = 10;
  x[3 * cols + 40] = -12;
  x[3 * cols + 41] = 11;
  const st = computeTensorStats('w', [rows, cols], x, { ...DEFAULT_WEIGHT_STATS_OPTIONS, outlierSigma: 3 });
  assert.equal(st.outlierCount, 10);
  assert.equal(st.columnOutlierCounts[5], 8);
  assert.equal(st.rowOutlierCounts[3], 3);
  assert.deepEqual(topCounts(st.columnOutlierCounts, 2), [
    { index: 5, count: 8 },
    { index: 40, count: 1 },
  ]);
  assert.equal(st.rowAbsMax[3], 12);
  // Outliers are measured from the mean: a norm-like tensor (all near 0.85) has none.
  const norm = Float32Array.from({ length: 64 }, (_, i) => 0.85 + ((i % 7) - 3) * 0.01);
  assert.equal(computeTensorStats('norm', [64], norm, { ...DEFAULT_WEIGHT_STATS_OPTIONS, outlierSigma: 3 }).outlierCount, 0);
  // An absolute threshold overrides sigma.
  const abs = computeTensorStats('w', [rows, cols], x, { ...DEFAULT_WEIGHT_STATS_OPTIONS, outlierAbsThreshold: 11.5 });
  assert.equal(abs.outlierCount, 1);
});

test('streamed statistics (windows of rows) equal the whole-tensor reference', async () => {
  const rows = 37;
  const cols = 96;
  const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i * 0.37) * (i % 97 === 0 ? 9 : 0.1));
  const whole = computeTensorStats('w', [rows, cols], x);
  let reads = 0;
  const streamed = await tensorStatsStreamed(
    'w',
    [rows, cols],
    async (start, count) => {
      reads++;
      return x.slice(start * cols, (start + count) * cols);
    },
    DEFAULT_WEIGHT_STATS_OPTIONS,
    { maxWindowElements: 5 * cols },
  );
  assert.equal(reads, 2 * Math.ceil(rows / 5), 'two passes over 8 windows');
  assert.deepEqual(streamed.histogram.counts, whole.histogram.counts);
  assert.deepEqual(streamed.rowOutlierCounts, whole.rowOutlierCounts);
  close(streamed.kurtosis, whole.kurtosis, 1e-9, 'kurtosis');
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(tensorStatsStreamed('w', [rows, cols], async () => x, DEFAULT_WEIGHT_STATS_OPTIONS, { signal: controller.signal }), CancelledError);
});

test('bad shapes and options are refused with InvalidArgumentError', () => {
  assert.throws(() => computeTensorStats('w', [3, 4], new Float32Array(11)), InvalidArgumentError);
  assert.throws(() => computeTensorStats('w', [4], new Float32Array(4), { ...DEFAULT_WEIGHT_STATS_OPTIONS, histogramBins: 0 }), InvalidArgumentError);
  assert.throws(() => computeTensorStats('w', [4], new Float32Array(4), { ...DEFAULT_WEIGHT_STATS_OPTIONS, histogramBins: 300 }), InvalidArgumentError);
});

test('topCounts: the largest counts, ties by index, zeros left out; the same as sorting every count', () => {
  let seed = 7;
  const next = () => (seed = (seed * 1664525 + 1013904223) >>> 0);
  for (const [length, range] of [
    [0, 1],
    [5, 1],
    [1000, 4],
    [1000, 1000],
    [30_000, 50],
  ] as const) {
    const counts = Uint32Array.from({ length }, () => next() % (range + 1));
    const sorted = Array.from(counts, (count, index) => ({ index, count }))
      .filter((c) => c.count > 0)
      .sort((a, b) => b.count - a.count || a.index - b.index);
    for (const top of [0, 1, 3, 8, 2000]) assert.deepEqual(topCounts(counts, top), sorted.slice(0, top), `${length} counts up to ${range}, top ${top}`);
  }
});
