import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantizeInt8Absmax, dequantizeInt8ZeroPoint, quantizeInt8Absmax, quantizeInt8ZeroPoint } from '../../src/core/quant/int8';

test('absmax per channel: scale = absmax/127 per row, ties to even, never -128', () => {
  // Row 0: absmax 127 -> scale 1; 2.5 -> 2, -3.5 -> -4, 0.5 -> 0. Row 1: absmax 254 -> scale 2; 5 / 2 = 2.5 -> 2.
  const w = Float32Array.from([127, 2.5, -3.5, 0.5, -127, -254, 5, 3, 1, 254]);
  const q = quantizeInt8Absmax(w, 2, 5, 'channel');
  assert.deepEqual([...q.scales], [1, 2]);
  assert.deepEqual([...q.values], [127, 2, -4, 0, -127, -127, 2, 2, 0, 127]);
  assert.deepEqual([...dequantizeInt8Absmax(q)], [127, 2, -4, 0, -127, -254, 4, 4, 0, 254]);
});

test('absmax per tensor shares one scale; an all-zero tensor stays zero', () => {
  const w = Float32Array.from([1, -0.5, 0.25, 12.7]);
  const q = quantizeInt8Absmax(w, 2, 2, 'tensor');
  assert.equal(q.scales.length, 1);
  assert.equal(q.scales[0], Math.fround(12.7 / 127));
  assert.equal(q.values[3], 127);
  const zero = quantizeInt8Absmax(new Float32Array(6), 2, 3, 'tensor');
  assert.deepEqual([...dequantizeInt8Absmax(zero)], [0, 0, 0, 0, 0, 0]);
});

test('absmax error is at most half a step, also next to a huge outlier', () => {
  const w = new Float32Array(256);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(Math.sin(i * 1.7) * 0.3);
  w[100] = 60;
  const q = quantizeInt8Absmax(w, 4, 64, 'channel');
  const back = dequantizeInt8Absmax(q);
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i]! - w[i]!) <= q.scales[Math.floor(i / 64)]! / 2 + 1e-9, `i ${i}`);
  // The outlier's row keeps only coarse steps; other rows are unaffected.
  assert.ok(q.scales[1]! > 100 * q.scales[0]!);
});

test('zero-point per channel: scale (max-min)/255 with 0 in range, zero = round(-min/scale)', () => {
  // Row 0: min -1, max 1.55 -> scale 0.01, zero 100. Row 1 is all positive: lo clamps to 0, zero 0.
  const w = Float32Array.from([-1, 1.55, 0, 0.005, 2, 4, 5.1, 0.01]);
  const q = quantizeInt8ZeroPoint(w, 2, 4, 'channel');
  assert.equal(q.scales[0], Math.fround(Math.fround(2.55) / 255));
  assert.equal(q.zeros[0], 100);
  assert.equal(q.zeros[1], 0);
  const back = dequantizeInt8ZeroPoint(q);
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i]! - w[i]!) <= q.scales[Math.floor(i / 4)]! / 2 + 1e-7, `i ${i}`);
  assert.equal(back[2], 0); // zero is exactly representable
});

test('zero-point per tensor', () => {
  const w = Float32Array.from([-3, -1, 0, 2]);
  const q = quantizeInt8ZeroPoint(w, 1, 4, 'tensor');
  assert.equal(q.scales.length, 1);
  const back = dequantizeInt8ZeroPoint(q);
  assert.equal(back[2], 0);
  assert.ok(Math.abs(back[0]! + 3) <= q.scales[0]! / 2);
});
