import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeErrorMetrics, ERROR_HISTOGRAM_BINS, ErrorAccumulator, ErrorHistogramAccumulator } from '../../src/core/analysis/errorMetrics';
import { NumericError } from '../../src/core/errors';

test('metrics on a hand-worked example', () => {
  const x = Float32Array.from([1, 2, 3, 4]);
  const y = Float32Array.from([1, 2, 3, 5]);
  const m = computeErrorMetrics(x, y, 2, 2);
  assert.equal(m.mse, 0.25);
  assert.equal(m.maxAbsError, 1);
  assert.ok(Math.abs(m.relRmse! - Math.sqrt(1 / 30)) < 1e-15);
  assert.ok(Math.abs(m.sqnrDb! - 10 * Math.log10(30)) < 1e-12);
  assert.ok(Math.abs(m.cosine - 34 / Math.sqrt(30 * 39)) < 1e-15);
  assert.deepEqual(m.errorMap, { rowBands: 2, colBands: 2, values: [0, 0, 0, 1] });
});

test('exact reconstruction: SQNR null (infinite), cosine 1; all-zero source and output', () => {
  const x = Float32Array.from([0.5, -1, 2]);
  const exact = computeErrorMetrics(x, x, 1, 3);
  assert.equal(exact.mse, 0);
  assert.equal(exact.sqnrDb, null);
  assert.equal(exact.cosine, 1);
  const zeros = computeErrorMetrics(new Float32Array(4), new Float32Array(4), 2, 2);
  assert.equal(zeros.cosine, 1);
  assert.equal(zeros.relRmse, 0);
  assert.equal(computeErrorMetrics(new Float32Array(2), Float32Array.from([1, 0]), 1, 2).relRmse, null);
});

test('streaming in row blocks equals one shot; the map is at most 64 x 64 bands', () => {
  const rows = 300;
  const cols = 130;
  const x = new Float32Array(rows * cols);
  const y = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.sin(i * 0.01);
    y[i] = x[i]! + (i % 13 === 0 ? 0.01 * (i / x.length) : 0);
  }
  const whole = computeErrorMetrics(x, y, rows, cols);
  const acc = new ErrorAccumulator(rows, cols);
  for (let r = 0; r < rows; r += 7) {
    const end = Math.min(rows, r + 7) * cols;
    acc.addRows(x.subarray(r * cols, end), y.subarray(r * cols, end));
  }
  const streamed = acc.result();
  assert.equal(streamed.errorMap.rowBands, 64);
  assert.equal(streamed.errorMap.colBands, 64);
  assert.equal(streamed.errorMap.values.length, 64 * 64);
  assert.ok(Math.abs(streamed.mse - whole.mse) < 1e-18);
  assert.deepEqual(streamed.errorMap, whole.errorMap);
  // The error grows with the flat index, so the last row band has the largest mean error.
  const v = streamed.errorMap.values;
  const firstBand = v.slice(0, 64).reduce((a, b) => a + b, 0);
  const lastBand = v.slice(63 * 64).reduce((a, b) => a + b, 0);
  assert.ok(lastBand > 100 * firstBand);
  assert.throws(() => acc.addRows(x.subarray(0, cols), y.subarray(0, cols)));
});

test('non-finite values are reported with the flat index', () => {
  const x = Float32Array.from([1, 2, 3, 4]);
  const y = Float32Array.from([1, 2, NaN, 4]);
  assert.throws(() => computeErrorMetrics(x, y, 2, 2, 'w'), (e: unknown) => e instanceof NumericError && /w: .*flat index 2/.test(e.message));
});

test('error histogram: e = q - x binned over a symmetric range that holds max |e|, counts exact, zeros counted', () => {
  // Errors -0.75, 0, 0, 0.25, 0.5 (q - x). max |e| = 0.75: first R = 1, extent 384 fine bins -> 12 per bin,
  // range = 1 * 32 * 12 / 512 = 0.75, bin width 0.75 / 32 = 0.0234375.
  const x = Float32Array.from([1, 2, 3, 4, 5, 6]);
  const y = Float32Array.from([0.25, 2, 3, 4.25, 5.5, 6]);
  const h = computeErrorMetrics(x, y, 2, 3).errorHistogram;
  assert.equal(h.range, 0.75);
  assert.equal(h.counts.length, ERROR_HISTOGRAM_BINS);
  assert.equal(h.zeros, 3);
  const width = (2 * h.range) / ERROR_HISTOGRAM_BINS;
  const binOf = (e: number): number => Math.min(ERROR_HISTOGRAM_BINS - 1, Math.floor((e + h.range) / width));
  const expected = new Array<number>(ERROR_HISTOGRAM_BINS).fill(0);
  for (const e of [-0.75, 0, 0, 0, 0.25, 0.5]) expected[binOf(e)]! += 1;
  assert.deepEqual(h.counts, expected);
  assert.equal(expected[0], 1); // -0.75 sits at the lower edge
  assert.equal(expected[32], 3); // the zeros
});

test('error histogram: streaming with a growing range equals the one-shot histogram and a direct binning', () => {
  const rows = 200;
  const cols = 96;
  const x = new Float32Array(rows * cols);
  const y = new Float32Array(rows * cols);
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.sin(i * 0.37) * 3;
    // Error amplitude grows by three orders of magnitude down the rows: the range must double many times.
    const amp = 1e-4 * 10 ** ((3 * Math.floor(i / cols)) / rows);
    y[i] = x[i]! + (i % 17 === 0 ? 0 : amp * Math.cos(i * 1.3));
  }
  const whole = computeErrorMetrics(x, y, rows, cols);
  const acc = new ErrorAccumulator(rows, cols);
  for (let r = 0; r < rows; r += 9) {
    const end = Math.min(rows, r + 9) * cols;
    acc.addRows(x.subarray(r * cols, end), y.subarray(r * cols, end));
  }
  const h = acc.result().errorHistogram;
  assert.deepEqual(h, whole.errorHistogram);
  const total = h.counts.reduce((a, b) => a + b, 0);
  assert.equal(total, rows * cols);
  assert.ok(h.range >= whole.maxAbsError, `${h.range} >= ${whole.maxAbsError}`);
  assert.ok(h.range <= whole.maxAbsError * 1.13, `range ${h.range} is within 1/8 of max |e| ${whole.maxAbsError}`);
  let zeros = 0;
  for (let i = 0; i < x.length; i++) if (y[i] === x[i]) zeros++;
  assert.equal(h.zeros, zeros);
  // Away from bin edges a direct binning of q - x agrees (a value within 1e-9 of an edge may fall either side).
  const width = (2 * h.range) / ERROR_HISTOGRAM_BINS;
  const direct = new Array<number>(ERROR_HISTOGRAM_BINS).fill(0);
  let nearEdge = 0;
  for (let i = 0; i < x.length; i++) {
    const t = (y[i]! - x[i]! + h.range) / width;
    if (Math.abs(t - Math.round(t)) < 1e-9 && y[i] !== x[i]) nearEdge++;
    direct[Math.min(ERROR_HISTOGRAM_BINS - 1, Math.floor(t))]! += 1;
  }
  const diff = direct.reduce((s, c, k) => s + Math.abs(c - h.counts[k]!), 0);
  assert.ok(diff <= 2 * nearEdge, `histograms differ by ${diff} (values near an edge: ${nearEdge})`);
});

test('error histogram of an exact reconstruction: range 0, every element a zero in the centre bin', () => {
  const x = Float32Array.from([0.5, -1, 2, 7]);
  const h = computeErrorMetrics(x, x, 2, 2).errorHistogram;
  assert.equal(h.range, 0);
  assert.equal(h.zeros, 4);
  assert.equal(h.counts[ERROR_HISTOGRAM_BINS / 2], 4);
  assert.equal(h.counts.reduce((a, b) => a + b, 0), 4);
});

test('error histogram: the loop inlined in ErrorAccumulator bins exactly like ErrorHistogramAccumulator.add', () => {
  const rows = 50;
  const cols = 40;
  const x = new Float32Array(rows * cols);
  const y = new Float32Array(rows * cols);
  const alone = new ErrorHistogramAccumulator();
  for (let i = 0; i < x.length; i++) {
    x[i] = Math.cos(i * 0.7) * (1 + (i % 7));
    y[i] = i % 5 === 0 ? x[i]! : Math.round(x[i]! * 16) / 16;
    alone.add(y[i]! - x[i]!);
  }
  const acc = new ErrorAccumulator(rows, cols);
  for (let r = 0; r < rows; r += 3) {
    const end = Math.min(rows, r + 3) * cols;
    acc.addRows(x.subarray(r * cols, end), y.subarray(r * cols, end));
  }
  const h = acc.result().errorHistogram;
  assert.deepEqual(h, alone.result());
  assert.ok(h.zeros >= rows * cols / 5);
});
