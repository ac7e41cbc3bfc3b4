import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DYNAMIC_CODE,
  dequantizeNf4,
  dynamicCodeOf,
  effectiveAbsmax,
  NF4_CODE,
  nf4CodeOf,
  quantizeNf4,
} from '../../src/core/quant/nf4';

test('NF4 table: 16 sorted values from -1 to 1 with an exact 0 (bitsandbytes get_4bit_type("nf4"))', () => {
  assert.equal(NF4_CODE.length, 16);
  assert.equal(NF4_CODE[0], -1);
  assert.equal(NF4_CODE[7], 0);
  assert.equal(NF4_CODE[15], 1);
  assert.equal(NF4_CODE[8], Math.fround(0.07958029955625534));
  for (let i = 1; i < 16; i++) assert.ok(NF4_CODE[i]! > NF4_CODE[i - 1]!);
});

test('nf4CodeOf is nearest-value with ties (the midpoint thresholds) going to the lower code', () => {
  for (let c = 0; c < 16; c++) assert.equal(nf4CodeOf(NF4_CODE[c]!), c, `value of code ${c}`);
  // bnb's thresholds are the midpoints of neighbouring values (to ~1e-7)
  for (let c = 0; c < 15; c++) {
    const mid = (NF4_CODE[c]! + NF4_CODE[c + 1]!) / 2;
    assert.equal(nf4CodeOf(mid - 1e-6), c);
    assert.equal(nf4CodeOf(mid + 1e-6), c + 1);
  }
  assert.equal(nf4CodeOf(Math.fround(0.03979014977812767)), 7); // exactly on a threshold: `x > t` is false
  assert.equal(nf4CodeOf(NaN), 0); // what the kernel returns for 0 * Inf
});

test('blocks of 64, high nibble first, absmax reconstructs exactly, all-zero block stays zero', () => {
  const values = new Float32Array(64 * 3 + 5); // odd count: a last block of 5 values
  for (let i = 0; i < 64; i++) values[i] = Math.fround(Math.sin(i) * 2);
  values[3] = -4; // absmax of block 0, negative
  // block 1 all zero
  for (let i = 128; i < values.length; i++) values[i] = Math.fround((i - 128) * 0.01);
  const q = quantizeNf4(values);
  assert.equal(q.packed.length, Math.ceil(values.length / 2));
  assert.deepEqual([...q.absmax], [4, 0, Math.fround(63 * 0.01), Math.fround(68 * 0.01)]); // 197 values: 4 blocks, the last of 5
  assert.equal(q.packed[1]! & 0x0f, 0); // element 3 = -absmax -> code 0 in the low nibble (odd index)
  const back = dequantizeNf4(q);
  assert.equal(back[3], -4);
  for (let i = 64; i < 128; i++) assert.ok(back[i] === 0, `i ${i}`); // -1 * 0 = -0, as in bnb
  assert.equal(back[values.length - 1], Math.fround(68 * 0.01));
  // Max gap between neighbouring NF4 values is 1 - 0.7229...: error <= half of it times absmax.
  for (let i = 0; i < values.length; i++) {
    const absmax = q.absmax[Math.floor(i / 64)]!;
    assert.ok(Math.abs(back[i]! - values[i]!) <= absmax * 0.1386 + 1e-7, `i ${i}`);
  }
});

test('packing order: first of each pair in the high nibble', () => {
  const values = new Float32Array(64);
  values[0] = 1; // code 15
  values[1] = -1; // code 0
  values[2] = 0; // code 7
  values[3] = 0.5626170039176941; // code 13
  const q = quantizeNf4(values);
  assert.equal(q.packed[0], 0xf0);
  assert.equal(q.packed[1], 0x7d);
});

test('dynamic 8-bit map matches bnb create_dynamic_map(signed=True)', () => {
  assert.equal(DYNAMIC_CODE.length, 256);
  for (let i = 1; i < 256; i++) assert.ok(DYNAMIC_CODE[i]! > DYNAMIC_CODE[i - 1]!, `sorted at ${i}`);
  assert.equal(DYNAMIC_CODE[255], 1);
  assert.ok(DYNAMIC_CODE.includes(0));
  assert.ok(Math.abs(DYNAMIC_CODE[254]! - 0.99296875) < 1e-6);
  assert.ok(Math.abs(DYNAMIC_CODE[0]! + 0.99296875) < 1e-6);
  // smallest magnitudes: 1e-6 * 0.55
  const positives = [...DYNAMIC_CODE].filter((v) => v > 0);
  assert.ok(Math.abs(Math.min(...positives) - 5.5e-7) < 1e-12);
  for (let i = 0; i < 256; i++) assert.equal(dynamicCodeOf(DYNAMIC_CODE, DYNAMIC_CODE[i]!), i);
});

test('double quantization: absmax decodes to the nearest dynamic code value, plus the mean offset', () => {
  const values = new Float32Array(64 * 600);
  for (let i = 0; i < values.length; i++) values[i] = Math.fround(Math.sin(i * 0.013) * (1 + (Math.floor(i / 64) % 17)));
  const q = quantizeNf4(values, { doubleQuant: true });
  const dq = q.doubleQuant;
  assert.ok(dq !== null);
  assert.equal(dq.quantizedAbsmax.length, 600);
  assert.equal(dq.nestedAbsmax.length, 3);
  const decoded = effectiveAbsmax(q);
  for (let i = 0; i < 600; i++) {
    const nested = dq.nestedAbsmax[Math.floor(i / 256)]!;
    const x = (q.absmax[i]! - dq.offset) / nested;
    const k = dq.quantizedAbsmax[i]!;
    const err = Math.abs(DYNAMIC_CODE[k]! - x);
    if (k > 0) assert.ok(err <= Math.abs(DYNAMIC_CODE[k - 1]! - x) + 1e-6, `block ${i}`);
    if (k < 255) assert.ok(err <= Math.abs(DYNAMIC_CODE[k + 1]! - x) + 1e-6, `block ${i}`);
    assert.ok(Math.abs(decoded[i]! - q.absmax[i]!) <= 0.02 * nested + 1e-6, `block ${i}: ${decoded[i]} vs ${q.absmax[i]}`);
  }
  // Dequantization uses the decoded absmax, so it differs slightly from the plain one.
  const back = dequantizeNf4(q);
  let maxDiff = 0;
  for (let i = 0; i < values.length; i++) maxDiff = Math.max(maxDiff, Math.abs(back[i]! - values[i]!));
  assert.ok(maxDiff < 18 * 0.16);
});
