/**
 * The quantization grids the calibrated methods search over or compensate into.
 * Kept here (not in quant/) because GPTQ needs them one column at a time with parameters
 * fixed earlier, which the row quantizers in quant/ do not expose.
 */
import { f16BitsToF32, f32ToF16Bits } from '../numeric/half';

export { f16BitsToF32, f32ToF16Bits };

/** Round half to even, as torch.round and ggml's nearest_int do. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // Math.round rounds .5 towards +inf; move ties at odd results back to the even neighbour.
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

/** C's roundf: half away from zero (ggml Q8_0). */
export function roundHalfAwayFromZero(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

/** A value rounded through fp16 and back (what a 16-bit kept dimension holds). */
export function roundThroughF16(value: number): number {
  return f16BitsToF32(f32ToF16Bits(value));
}

/**
 * Group-wise integer grid parameters of the reference GPTQ/AutoGPTQ `Quantizer.find_params`
 * (weight=True, per channel): over the values of one row in the group,
 * xmin = min(min x, 0), xmax = max(max x, 0); symmetric: xmax = max(|xmin|, xmax), xmin = -xmax when xmin < 0;
 * both zero -> [-1, 1]; scale = (xmax - xmin) / maxq; zero = (maxq + 1) / 2 (sym) or round_half_even(-xmin / scale).
 */
export function intGridParams(xmin: number, xmax: number, maxq: number, sym: boolean): { scale: number; zero: number } {
  let lo = Math.min(xmin, 0);
  let hi = Math.max(xmax, 0);
  if (sym) {
    hi = Math.max(Math.abs(lo), hi);
    if (lo < 0) lo = -hi;
  }
  if (lo === 0 && hi === 0) {
    lo = -1;
    hi = 1;
  }
  const scale = (hi - lo) / maxq;
  const zero = sym ? (maxq + 1) / 2 : roundHalfEven(-lo / scale);
  return { scale, zero };
}

/** Integer code of x on the grid: clamp(round_half_even(x / scale) + zero, 0, maxq). */
export function intGridCode(x: number, scale: number, zero: number, maxq: number): number {
  const q = roundHalfEven(x / scale) + zero;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/** Fake-quantizes each row of a row-major (rows x cols) matrix in place with groups of `groupSize` columns (<= 0: whole row). */
export function fakeQuantizeRowsInPlace(w: Float32Array | Float64Array, rows: number, cols: number, bits: number, groupSize: number, sym: boolean): void {
  const maxq = 2 ** bits - 1;
  const g = groupSize > 0 ? groupSize : cols;
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let c0 = 0; c0 < cols; c0 += g) {
      const c1 = Math.min(cols, c0 + g);
      let lo = Infinity;
      let hi = -Infinity;
      for (let c = c0; c < c1; c++) {
        const v = w[base + c]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const { scale, zero } = intGridParams(lo, hi, maxq, sym);
      for (let c = c0; c < c1; c++) w[base + c] = scale * (intGridCode(w[base + c]!, scale, zero, maxq) - zero);
    }
  }
}
