import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeE4M3, decodeE5M2, dequantizeFp8E4M3, E4M3_VALUES, encodeE4M3, quantizeFp8E4M3 } from '../../src/core/quant/fp8';

test('E4M3 decode: max 448, NaN at S.1111.111, subnormal steps of 2^-9', () => {
  assert.equal(decodeE4M3(0x7e), 448);
  assert.equal(decodeE4M3(0xfe), -448);
  assert.ok(Number.isNaN(decodeE4M3(0x7f)) && Number.isNaN(decodeE4M3(0xff)));
  assert.equal(decodeE4M3(0x01), 2 ** -9);
  assert.equal(decodeE4M3(0x07), 7 * 2 ** -9);
  assert.equal(decodeE4M3(0x08), 2 ** -6);
  assert.equal(decodeE4M3(0x38), 1);
  assert.ok(Object.is(decodeE4M3(0x80), -0));
});

test('E4M3 encode inverts decode on every finite code', () => {
  for (let code = 0; code < 256; code++) {
    if ((code & 0x7f) === 0x7f) continue;
    assert.equal(encodeE4M3(E4M3_VALUES[code]!), code, `code 0x${code.toString(16)}`);
  }
});

test('E4M3 encode rounds half to even and saturates at 448', () => {
  assert.equal(encodeE4M3(1.5 * 2 ** -9), 0x02); // tie between subnormals 1 and 2 -> even
  assert.equal(encodeE4M3(0.5 * 2 ** -9), 0x00); // tie between 0 and the smallest subnormal -> 0
  assert.equal(encodeE4M3(2.125), 0x40); // tie between 2.0 (m 0) and 2.25 (m 1) -> m 0
  assert.equal(encodeE4M3(2.375), 0x42); // tie between 2.25 and 2.5 -> m 2
  assert.equal(encodeE4M3(7.75 * 2 ** -9), 0x08); // rounds up into the first normal
  assert.equal(encodeE4M3(15.5), 0x58); // tie between 15 (0x57, m 7) and 16 (0x58, m 0) -> even mantissa
  assert.equal(encodeE4M3(440), 0x7e); // tie between 416 and 448 -> 448 (m 6 even)
  assert.equal(encodeE4M3(460), 0x7e);
  assert.equal(encodeE4M3(1e30), 0x7e);
  assert.equal(encodeE4M3(-500), 0xfe);
  assert.equal(encodeE4M3(-0), 0x80);
  assert.throws(() => encodeE4M3(NaN));
});

test('E5M2 decode: Inf, NaN, max 57344, subnormals 2^-16', () => {
  assert.equal(decodeE5M2(0x7c), Infinity);
  assert.equal(decodeE5M2(0xfc), -Infinity);
  assert.ok(Number.isNaN(decodeE5M2(0x7d)));
  assert.equal(decodeE5M2(0x7b), 57344);
  assert.equal(decodeE5M2(0x3c), 1);
  assert.equal(decodeE5M2(0x01), 2 ** -16);
});

test('FP8 weights: per-channel scale = absmax/448, relative error <= 2^-4 in the normal range', () => {
  const rows = 4;
  const cols = 32;
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(Math.cos(i * 0.37) * (1 + Math.floor(i / cols) * 10));
  for (const granularity of ['tensor', 'channel'] as const) {
    const q = quantizeFp8E4M3(w, rows, cols, granularity);
    assert.equal(q.scales.length, granularity === 'tensor' ? 1 : rows);
    const back = dequantizeFp8E4M3(q);
    for (let i = 0; i < w.length; i++) {
      const scale = q.scales[granularity === 'tensor' ? 0 : Math.floor(i / cols)]!;
      const x = Math.abs(w[i]!) / scale;
      const bound = x >= 2 ** -6 ? Math.abs(w[i]!) * 2 ** -4 : 2 ** -10 * scale;
      assert.ok(Math.abs(back[i]! - w[i]!) <= bound * (1 + 1e-6), `${granularity} i ${i}: ${w[i]} -> ${back[i]}`);
    }
  }
  const zeros = quantizeFp8E4M3(new Float32Array(8), 2, 4, 'channel');
  assert.deepEqual([...dequantizeFp8E4M3(zeros)], [0, 0, 0, 0, 0, 0, 0, 0]);
});

test('E4M3 encode equals a brute-force nearest-code search (ties to the even code) on 20000 values', () => {
  const finite = [...Array(256).keys()].filter((c) => (c & 0x7f) !== 0x7f && c < 0x80);
  const reference = (x: number): number => {
    const a = Math.abs(x);
    let best = 0;
    for (const c of finite) {
      const d = Math.abs(E4M3_VALUES[c]! - a);
      const bd = Math.abs(E4M3_VALUES[best]! - a);
      if (d < bd || (d === bd && (c & 1) === 0 && (best & 1) === 1)) best = c;
    }
    return (x < 0 || Object.is(x, -0) ? 0x80 : 0) | best;
  };
  let seed = 7;
  for (let i = 0; i < 20000; i++) {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    const u = seed / 2147483648;
    // log-uniform magnitudes from 2^-12 to 2^9, both signs; every 4th value is an exact midpoint
    let x = Math.fround(2 ** (u * 21 - 12) * (i % 2 === 0 ? 1 : -1));
    if (i % 4 === 0) {
      const c = encodeE4M3(Math.min(Math.abs(x), 440)) & 0x7f;
      if (c > 0 && c < 0x7e) x = Math.fround((E4M3_VALUES[c]! + E4M3_VALUES[c + 1]!) / 2);
    }
    assert.equal(encodeE4M3(x), reference(x), `x = ${x}`);
  }
});
