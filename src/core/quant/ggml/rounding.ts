/**
 * The scalar rounding rules of ggml-quants.c, emulated in JS doubles.
 * C computes the quantizers in float (x86-64 SSE, no FMA contraction in ggml-base): every float
 * operation is followed by Math.fround here so each intermediate equals the C one bit for bit.
 */
import { f32ToBits } from '../../numeric/half';

export const fround = Math.fround;

/** GROUP_MAX_EPS (1e-15f): below this a group counts as all zero. */
export const GROUP_MAX_EPS = Math.fround(1e-15);

/**
 * ggml's `nearest_int(float)`: adds 12582912.f (1.5 * 2^23) in float and reads the low mantissa bits.
 * For |v| <= 4194303 that is round to nearest, ties to even. Beyond that C's assert is compiled out
 * and the bit trick gives a deterministic wrong value; we reproduce it too.
 * `v` must already be an f32 value.
 */
export function nearestInt(v: number): number {
  if (v <= 4194303 && v >= -4194303) return fround(v + 12582912) - 12582912;
  const bits = f32ToBits(v + 12582912);
  return (bits & 0x007fffff) - 0x00400000;
}

/** C `roundf`: ties away from zero. `v` is an f32 value. */
export function roundHalfAway(v: number): number {
  return v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5);
}

/**
 * C float -> int conversion as x86-64 does it (cvttss2si): truncation toward zero, and the
 * "integer indefinite" INT32_MIN for NaN, +-Inf and anything outside int32. Narrowing to int8 / uint8
 * then keeps the low byte, so those cases give 0.
 */
export function truncToInt(v: number): number {
  if (v > -2147483649 && v < 2147483648) return Math.trunc(v);
  return -2147483648;
}
