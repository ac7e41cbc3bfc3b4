import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dequantizeGgml, findNonFinite, ggmlByteSize, GGML_CODEC_TYPES, quantizeGgml, type GgmlCodecType } from '../../src/core/quant/ggml/index';
import { nearestInt, roundHalfAway, truncToInt } from '../../src/core/quant/ggml/rounding';
import { f32ToF16Bits } from '../../src/core/numeric/half';
import { InvalidArgumentError, UnsupportedError } from '../../src/core/errors';
import { gaussian, mulberry32 } from '../fixtures/oracles/syntheticValues';

function quantize(type: GgmlCodecType, values: number[] | Float32Array): Uint8Array {
  const src = values instanceof Float32Array ? values : Float32Array.from(values);
  const dst = new Uint8Array(ggmlByteSize(type, src.length));
  quantizeGgml(type, src, dst);
  return dst;
}

function block32(fill: (i: number) => number): Float32Array {
  return Float32Array.from({ length: 32 }, (_, i) => fill(i));
}

test('the three C rounding rules: nearest_int ties to even, roundf ties away, casts truncate', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5].map((v) => nearestInt(v) + 0), [0, 2, 2, 0, -2, -2, 4]);
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -2.5].map(roundHalfAway), [1, 2, 3, -1, -3]);
  assert.deepEqual([8.99, -0.99, 1e10, NaN, Infinity].map((v) => truncToInt(v) + 0), [8, 0, -2147483648, -2147483648, -2147483648]);
  // beyond |x| > 4194303 ggml's bit trick (assert compiled out) is reproduced, not a real rounding
  // 5000000.5 + 12582912 = 17582912.5 rounds (f32, ulp 2) to 17582912 = 2^24 + 2 * 402848:
  // mantissa bits 402848 - 0x400000 = -3791456
  assert.equal(nearestInt(Math.fround(5000000.5)), -3791456);
});

test('Q8_0: d = amax/127, q = roundf(x/d) rounds ties AWAY from zero', () => {
  const values = [127, 0.5, -0.5, 1.5, 2.5, -2.5, 0, 126.5, ...new Array<number>(24).fill(0)];
  const q = quantize('Q8_0', values);
  assert.deepEqual([...q.subarray(0, 2)], [0x00, 0x3c], 'd = 1.0 as f16');
  assert.deepEqual([...q.subarray(2, 10)], [127, 1, 0xff, 2, 3, 0xfd, 0, 127]);
});

test('Q4_0: d = max/-8, q = min(15, trunc(x/d + 8.5)): half-up at ties, clamped', () => {
  const x = block32(() => 0);
  x[0] = -8; // the signed max: d = -8 / -8 = 1
  x[1] = 0.5; // 9.0 -> 9
  x[2] = -0.5; // 8.0 -> 8
  x[3] = 7.5; // 16 -> clamped 15
  x[4] = Math.fround(0.49); // 8.99 -> 8
  x[16] = -7.5; // 1.0 -> 1
  const q = quantize('Q4_0', x);
  assert.deepEqual([...q.subarray(0, 2)], [0x00, 0x3c]);
  assert.equal(q[2], 0x10, 'elem 0 -> 0 (low nibble), elem 16 -> 1 (high nibble)');
  assert.equal(q[3], 0x89);
  assert.equal(q[4], 0x88);
  assert.equal(q[5], 0x8f);
  assert.equal(q[6], 0x88);
});

test('Q5_0: d = max/-16, q = min(31, trunc(x/d + 16.5)), 5th bits in qh', () => {
  const x = block32(() => 0);
  x[0] = -16; // d = 1
  x[1] = 0.5; // 17
  x[2] = -0.5; // 16
  x[3] = 15.5; // 32 -> 31
  const q = quantize('Q5_0', x);
  assert.deepEqual([...q.subarray(0, 2)], [0x00, 0x3c]);
  const qh = (q[2]! | (q[3]! << 8) | (q[4]! << 16) | (q[5]! << 24)) >>> 0;
  assert.equal(qh & 1, 0, 'elem 0 quantizes to 0');
  assert.equal(qh, 0xfffffffe, 'every other element is >= 16');
  assert.deepEqual([...q.subarray(6, 10)], [0x00, 0x01, 0x00, 0x0f]);
});

test('all-zero blocks: zero scales; Q4_0 / Q5_0 store d = -0 (0/-8 in C) and the zero point (8 / 16)', () => {
  for (const type of GGML_CODEC_TYPES) {
    const q = quantize(type, new Float32Array(256));
    if (type === 'Q4_0') {
      for (let b = 0; b < 8; b++) assert.deepEqual([...q.subarray(b * 18, b * 18 + 18)], [0x00, 0x80, ...new Array<number>(16).fill(0x88)]);
    } else if (type === 'Q5_0') {
      for (let b = 0; b < 8; b++) assert.deepEqual([...q.subarray(b * 22, b * 22 + 22)], [0x00, 0x80, 0xff, 0xff, 0xff, 0xff, ...new Array<number>(16).fill(0)]);
    } else {
      assert.ok(q.every((v) => v === 0), `${type}: an all-zero block is all zero bytes`);
    }
    const back = new Float32Array(256);
    dequantizeGgml(type, q, back);
    assert.ok(back.every((v) => v === 0), `${type}: decodes to zeros`);
  }
});

test('a single huge outlier: it keeps the full code, the rest collapse to zero', () => {
  const x = block32(() => 0.001);
  x[5] = 1000;
  const q = quantize('Q8_0', x);
  const d = f32ToF16Bits(Math.fround(1000 / 127));
  assert.deepEqual([...q.subarray(0, 2)], [d & 0xff, d >> 8]);
  assert.equal(q[2 + 5], 127);
  for (let j = 0; j < 32; j++) if (j !== 5) assert.equal(q[2 + j], 0);
  // K-quants keep the outlier within a few percent too
  for (const type of ['Q4_K', 'Q6_K', 'Q3_K', 'Q2_K', 'Q5_K'] as const) {
    const big = new Float32Array(256).fill(0.001);
    big[100] = 1000;
    const back = new Float32Array(256);
    dequantizeGgml(type, quantize(type, big), back);
    assert.ok(Math.abs(back[100]! - 1000) < 60, `${type}: outlier decoded as ${back[100]}`);
  }
});

test('denormal inputs: the scale underflows, and C (x86) writes zero codes', () => {
  const x = block32((i) => (i % 2 === 0 ? 1 : -1) * 1e-40 * (1 + i));
  assert.ok(quantize('Q8_0', x).every((v) => v === 0), 'd is 0 in f16 and 1/d overflows: cvttss2si gives INT_MIN, whose low byte is 0');
  assert.ok(quantize('Q4_0', x).every((v) => v === 0));
});

test('+-65504 (max f16): codes +-127 and a representable scale', () => {
  const x = block32(() => 0);
  x[0] = 65504;
  x[1] = -65504;
  const q = quantize('Q8_0', x);
  const d = f32ToF16Bits(Math.fround(65504 / 127));
  assert.deepEqual([...q.subarray(0, 4)], [d & 0xff, d >> 8, 127, 0x81]);
  const back = new Float32Array(32);
  dequantizeGgml('Q8_0', q, back);
  assert.ok(Math.abs(back[0]! - 65504) / 65504 < 1e-3);
});

const MAX_RELATIVE_RMSE: Record<GgmlCodecType, number> = {
  F32: 0, F16: 3e-4, BF16: 3e-3, Q8_0: 0.006, Q4_0: 0.1, Q4_1: 0.09, Q5_0: 0.05, Q5_1: 0.045,
  Q2_K: 0.35, Q3_K: 0.19, Q4_K: 0.085, Q5_K: 0.045, Q6_K: 0.02,
};

test('round trips stay within each type\'s known error (uniform weights)', () => {
  const rand = mulberry32(99);
  const n = 256 * 16;
  const x = Float32Array.from({ length: n }, () => rand() * 2 - 1);
  let rms = 0;
  for (const v of x) rms += v * v;
  rms = Math.sqrt(rms / n);
  for (const type of GGML_CODEC_TYPES) {
    const back = new Float32Array(n);
    dequantizeGgml(type, quantize(type, x), back);
    let err = 0;
    for (let i = 0; i < n; i++) err += (x[i]! - back[i]!) ** 2;
    const relative = Math.sqrt(err / n) / rms;
    assert.ok(relative <= MAX_RELATIVE_RMSE[type], `${type}: relative RMSE ${relative.toFixed(5)} > ${MAX_RELATIVE_RMSE[type]}`);
  }
});

test('Q8_0 error is at most half a step per block (plus the f16 rounding of d)', () => {
  const rand = mulberry32(5);
  const x = Float32Array.from({ length: 32 * 64 }, () => 0.05 * gaussian(rand));
  const back = new Float32Array(x.length);
  dequantizeGgml('Q8_0', quantize('Q8_0', x), back);
  for (let b = 0; b < 64; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = amax / 127;
    for (let j = 0; j < 32; j++) assert.ok(Math.abs(x[b * 32 + j]! - back[b * 32 + j]!) <= 0.5 * d + amax * 1e-3);
  }
});

test('argument checks: block multiples, buffer sizes, unsupported types; NaN/Inf are found for the caller', () => {
  assert.throws(() => quantizeGgml('Q4_K', new Float32Array(100), new Uint8Array(1000)), InvalidArgumentError);
  assert.throws(() => quantizeGgml('Q8_0', new Float32Array(64), new Uint8Array(67)), InvalidArgumentError);
  assert.throws(() => dequantizeGgml('Q8_K', new Uint8Array(292), new Float32Array(256)), UnsupportedError);
  assert.equal(findNonFinite(Float32Array.from([0, 1, -2])), -1);
  assert.equal(findNonFinite(Float32Array.from([0, 1, NaN])), 2);
  assert.equal(findNonFinite(Float32Array.from([-Infinity, 1])), 0);
  // long inputs (eight values per step, then the tail), views at an offset, the first of several
  const long = new Float32Array(1003).fill(0.5);
  assert.equal(findNonFinite(long), -1);
  for (const at of [0, 7, 8, 13, 999, 1002]) {
    const x = long.slice();
    x[at] = at % 2 === 0 ? NaN : -Infinity;
    x[1002] = Infinity;
    assert.equal(findNonFinite(x), at, `non-finite at ${at}`);
    assert.equal(findNonFinite(x.subarray(3)), at - 3 >= 0 ? at - 3 : 999, `view from 3, non-finite at ${at}`);
  }
  assert.equal(findNonFinite(Float32Array.from([3.4028234663852886e38, -1e-45, 0])), -1, 'FLT_MAX and subnormals are finite');
});
