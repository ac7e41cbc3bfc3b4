import { test } from 'node:test';
import assert from 'node:assert/strict';
import { computeErrorMetrics, ErrorAccumulator } from '../../src/core/analysis/errorMetrics';
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
