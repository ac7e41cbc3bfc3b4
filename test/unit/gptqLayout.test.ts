import { test } from 'node:test';
import assert from 'node:assert/strict';
import { allocateIntN, dequantizeRowsIntN, quantizeRowsIntN, type IntBits } from '../../src/core/quant/intN';
import { dequantizeGptq, f16BitsToF32, f32ToF16Bits, GPTQ_MIN_ZERO, packGptq, unpackGptq, type GptqTensors } from '../../src/core/quant/gptqLayout';
import { FormatError, InvalidArgumentError } from '../../src/core/errors';

/** AutoGPTQ's QuantLinear.pack loop for one column, literally (numpy uint32 arithmetic). */
function autoGptqPackColumn(values: number[], bits: number): number[] {
  const words: number[] = new Array<number>((values.length * bits) / 32).fill(0);
  let i = 0;
  let row = 0;
  if (bits === 2 || bits === 4 || bits === 8) {
    while (row < words.length) {
      for (let j = i; j < i + 32 / bits; j++) words[row] = (words[row]! | (values[j]! << (bits * (j - i)))) >>> 0;
      i += 32 / bits;
      row += 1;
    }
    return words;
  }
  while (row < words.length) {
    for (let j = i; j < i + 10; j++) words[row] = (words[row]! | (values[j]! << (3 * (j - i)))) >>> 0;
    i += 10;
    words[row] = (words[row]! | (values[i]! << 30)) >>> 0;
    row += 1;
    words[row] = (words[row]! | ((values[i]! >> 2) & 1)) >>> 0;
    i += 1;
    for (let j = i; j < i + 10; j++) words[row] = (words[row]! | (values[j]! << (3 * (j - i) + 1))) >>> 0;
    i += 10;
    words[row] = (words[row]! | (values[i]! << 31)) >>> 0;
    row += 1;
    words[row] = (words[row]! | ((values[i]! >> 1) & 0x3)) >>> 0;
    i += 1;
    for (let j = i; j < i + 10; j++) words[row] = (words[row]! | (values[j]! << (3 * (j - i) + 2))) >>> 0;
    i += 10;
    row += 1;
  }
  return words;
}

function weights(rows: number, cols: number, seed: number): Float32Array {
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(Math.sin(i * 0.731 + seed) * (1 + (i % 5)));
  return w;
}

test('f32 -> f16 rounds to nearest even, overflows to Inf, keeps subnormals', () => {
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(65520), 0x7c00);
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // tie with 0 -> even
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002);
  for (const bits of [0x0001, 0x03ff, 0x0400, 0x3c01, 0x7bff, 0xbc00]) assert.equal(f32ToF16Bits(f16BitsToF32(bits)), bits);
});

test('4-bit qweight: input channels packed along the input dim, value j at bits 4j; matches AutoGPTQ pack', () => {
  const out = 8;
  const inF = 16;
  const q = allocateIntN(out, inF, { bits: 4, groupSize: 8, symmetric: true });
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) q.levels[o * inF + i] = (o + 3 * i) % 16;
  q.scales.fill(1);
  q.zeros.fill(8);
  const t = packGptq(q);
  assert.equal(t.qweight.length, 2 * out); // [in/8, out]
  for (let o = 0; o < out; o++) {
    const column = Array.from({ length: inF }, (_, i) => q.levels[o * inF + i]!);
    const want = autoGptqPackColumn(column, 4);
    assert.deepEqual([t.qweight[o]! >>> 0, t.qweight[out + o]! >>> 0], want, `column ${o}`);
  }
  // Symmetric zero 8 stored as 7 in every nibble: the familiar 0x77777777.
  assert.deepEqual([...t.qzeros].map((v) => v >>> 0), [0x77777777, 0x77777777]);
  assert.deepEqual([...t.gIdx], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
});

test('3-bit and 2-bit streams equal AutoGPTQ packing (3-bit values straddle words)', () => {
  for (const bits of [2, 3, 8] as IntBits[]) {
    const out = 32;
    const inF = 64;
    const q = allocateIntN(out, inF, { bits, groupSize: 32, symmetric: false });
    quantizeRowsIntN(weights(out, inF, bits), q, GPTQ_MIN_ZERO);
    const t = packGptq(q);
    const wordsPerColumn = (inF * bits) / 32;
    for (let o = 0; o < out; o++) {
      const column = Array.from({ length: inF }, (_, i) => q.levels[o * inF + i]!);
      const got = Array.from({ length: wordsPerColumn }, (_, w) => t.qweight[w * out + o]! >>> 0);
      assert.deepEqual(got, autoGptqPackColumn(column, bits), `bits ${bits} column ${o}`);
    }
    // qzeros: zero - 1 along the output dim, same stream
    for (let g = 0; g < 2; g++) {
      const zerosMinusOne = Array.from({ length: out }, (_, o) => q.zeros[o * 2 + g]! - 1);
      const got = Array.from({ length: bits }, (_, w) => t.qzeros[g * bits + w]! >>> 0);
      assert.deepEqual(got, autoGptqPackColumn(zerosMinusOne, bits), `bits ${bits} qzeros group ${g}`);
    }
  }
});

test('reader adds 1 back to qzeros and reproduces the quantizer with f16 scales, for every bit width', () => {
  for (const bits of [2, 3, 4, 8] as IntBits[]) {
    for (const symmetric of [false, true]) {
      const out = 32;
      const inF = 96;
      const q = allocateIntN(out, inF, { bits, groupSize: 32, symmetric });
      quantizeRowsIntN(weights(out, inF, 7), q, GPTQ_MIN_ZERO);
      const t = packGptq(q);
      const u = unpackGptq(t);
      assert.deepEqual([...u.levels], [...q.levels]);
      assert.deepEqual([...u.zeros], [...q.zeros]);
      const f16 = { ...q, scales: Float32Array.from(q.scales, (s) => f16BitsToF32(f32ToF16Bits(s))) };
      assert.deepEqual([...dequantizeGptq(t)], [...dequantizeRowsIntN(f16)], `bits ${bits} sym ${symmetric}`);
    }
  }
});

test('a zero point of 0 cannot be stored in the v1 (zero - 1) layout: refused, and minZero avoids it', () => {
  const out = 8;
  const inF = 8;
  const w = new Float32Array(out * inF);
  for (let i = 0; i < w.length; i++) w[i] = (i % 8) * 0.1; // all >= 0: natural zero point 0
  const bad = allocateIntN(out, inF, { bits: 4, groupSize: -1, symmetric: false });
  quantizeRowsIntN(w, bad, 0);
  assert.equal(bad.zeros[0], 0);
  assert.throws(() => packGptq(bad), InvalidArgumentError);
  const good = allocateIntN(out, inF, { bits: 4, groupSize: -1, symmetric: false });
  quantizeRowsIntN(w, good, GPTQ_MIN_ZERO);
  const back = dequantizeGptq(packGptq(good));
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i]! - w[i]!) <= 0.7 / 15 + 1e-4, `i ${i}: ${w[i]} -> ${back[i]}`);
});

test('unpack validates shapes and g_idx', () => {
  const q = allocateIntN(8, 8, { bits: 4, groupSize: -1, symmetric: true });
  q.scales.fill(1);
  q.zeros.fill(8);
  const t = packGptq(q);
  const broken: GptqTensors = { ...t, qweight: t.qweight.subarray(1) };
  assert.throws(() => unpackGptq(broken, 'x.safetensors'), FormatError);
  assert.throws(() => unpackGptq({ ...t, gIdx: t.gIdx.subarray(1) }), FormatError);
  assert.throws(() => packGptq(allocateIntN(4, 8, { bits: 4, groupSize: -1, symmetric: true })), InvalidArgumentError); // 4 outputs x 4 bits < 32
});
