import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bf16BitsToF32, bitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundToF16 } from '../../src/core/numeric/half';

test('f32 -> f16: exact values, max, overflow and the sign of zero', () => {
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(-65504), 0xfbff);
  assert.equal(f32ToF16Bits(0), 0x0000);
  assert.equal(f32ToF16Bits(-0), 0x8000);
  assert.equal(f32ToF16Bits(Infinity), 0x7c00);
  assert.equal(f32ToF16Bits(-Infinity), 0xfc00);
  assert.equal(f32ToF16Bits(1e6), 0x7c00, 'beyond the f16 range overflows to +Inf');
});

test('f32 -> f16 rounds to nearest, ties to even (also at the top of the range)', () => {
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: the even mantissa (1.0) wins
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00);
  // 1 + 3 * 2^-11 is halfway between mantissas 1 and 2: 2 (even) wins
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);
  assert.equal(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01, 'just above the tie rounds up');
  // 65520 is halfway between 65504 (odd mantissa 0x3ff) and 65536 (Inf): ties to even gives Inf
  assert.equal(f32ToF16Bits(65520), 0x7c00);
  assert.equal(f32ToF16Bits(Math.fround(65519.996)), 0x7bff);
});

test('f32 -> f16 denormals round to nearest even', () => {
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001, 'smallest f16 denormal');
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000, 'half of it ties to even: 0');
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002, '1.5 ulps ties to 2');
  assert.equal(f32ToF16Bits(2 ** -14), 0x0400, 'smallest normal');
  assert.equal(f32ToF16Bits(-(2 ** -24)), 0x8001);
  assert.equal(f32ToF16Bits(1e-40), 0x0000, 'an f32 denormal is far below f16');
});

test('f32 -> f16: every NaN becomes 0x7E00 with its sign (ggml)', () => {
  assert.equal(f32ToF16Bits(NaN), 0x7e00);
  assert.equal(f32ToF16Bits(bitsToF32(0xffc00001)), 0xfe00);
  assert.equal(f32ToF16Bits(bitsToF32(0x7f800001)), 0x7e00, 'a signalling NaN too');
});

test('f16 -> f32 is exact for every f16 and round-trips every finite one', () => {
  for (let h = 0; h < 0x10000; h++) {
    const v = f16BitsToF32(h);
    const exponent = (h >> 10) & 0x1f;
    if (exponent === 31 && (h & 0x3ff) !== 0) {
      assert.ok(Number.isNaN(v));
      continue;
    }
    assert.equal(f32ToF16Bits(v), h, `f16 0x${h.toString(16)}`);
  }
  assert.equal(f16BitsToF32(0x7bff), 65504);
  assert.equal(f16BitsToF32(0x0001), 2 ** -24);
  assert.equal(roundToF16(0.1), f16BitsToF32(0x2e66));
});

test('f32 -> bf16 rounds to nearest even, keeps denormals, quiets NaN (ggml_compute_fp32_to_bf16)', () => {
  assert.equal(f32ToBf16Bits(1), 0x3f80);
  assert.equal(f32ToBf16Bits(1 + 2 ** -8), 0x3f80, 'tie to even (down)');
  assert.equal(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82, 'tie to even (up)');
  assert.equal(f32ToBf16Bits(1 + 2 ** -8 + 2 ** -20), 0x3f81);
  assert.equal(f32ToBf16Bits(-Infinity), 0xff80);
  assert.equal(f32ToBf16Bits(bitsToF32(0x7f800001)), 0x7fc0, 'signalling NaN forced quiet, top bits kept');
  assert.equal(f32ToBf16Bits(bitsToF32(0xffa00000)), 0xffe0);
  assert.equal(f32ToBf16Bits(bitsToF32(0x00010000)), 0x0001, 'denormal kept, not flushed');
  assert.equal(f32ToBf16Bits(bitsToF32(0x7f7fffff)), 0x7f80, 'FLT_MAX rounds up to Inf');
  assert.equal(bf16BitsToF32(0x3f80), 1);
  assert.equal(bf16BitsToF32(0xc0a0), -5);
});
