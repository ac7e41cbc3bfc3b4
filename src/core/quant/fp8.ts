/**
 * FP8 weights as vLLM / compressed-tensors store them: `weight` in F8_E4M3 (OCP "e4m3fn") and an
 * f32 `weight_scale`, one per tensor or one per output channel; w' = decode(q) * scale.
 *
 * Scale: absmax / 448 (f32) over the tensor or the output row (absmax 0: scale = 1).
 * Encode (f32 -> E4M3, as torch's `.to(torch.float8_e4m3fn)` after dividing in f32):
 *   round to nearest, ties to even on the 3-bit mantissa; subnormals below 2^-6 (step 2^-9);
 *   saturating: every |x| >= 448 (including values that would round to 464) becomes +-448;
 *   -0 keeps its sign bit; NaN / Inf are refused before we get here (the pipeline checks).
 * The E4M3 / E5M2 definitions and decode tables live in numeric/float8.ts (E5M2 is decode only).
 */
import { InvalidArgumentError, NumericError } from '../errors';
import { F8_E4M3_MAX, F8_E4M3_TO_F32, F8_E5M2_TO_F32 } from '../numeric/float8';
import { roundHalfEven } from './intN';

export const E4M3_MAX = F8_E4M3_MAX;
export type Fp8ScaleGranularity = 'tensor' | 'channel';

const f32 = Math.fround;

/** Code -> value tables (owned by numeric/float8, which decodes the formats for the readers). */
export const E4M3_VALUES: Float32Array = F8_E4M3_TO_F32;
export const E5M2_VALUES: Float32Array = F8_E5M2_TO_F32;

export function decodeE4M3(code: number): number {
  return E4M3_VALUES[code & 0xff]!;
}

export function decodeE5M2(code: number): number {
  return E5M2_VALUES[code & 0xff]!;
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
const BITS_448 = 0x43e00000;
const BITS_MIN_NORMAL = 0x3c800000; // 2^-6

/**
 * f32 value -> E4M3 code, round half to even, saturating at +-448. Works on the f32 bits: the
 * 23-bit mantissa is rounded to 3 bits (a carry moves into the exponent, as it should).
 */
export function encodeE4M3(value: number): number {
  if (Number.isNaN(value)) throw new NumericError('cannot encode NaN as F8_E4M3');
  scratchF32[0] = value;
  const bits = scratchU32[0]!;
  const sign = (bits >>> 24) & 0x80;
  const a = bits & 0x7fffffff;
  if (a >= BITS_448) return sign | 0x7e;
  if (a < BITS_MIN_NORMAL) {
    // Subnormal range: multiples of 2^-9; a result of 8 is the smallest normal (code 0x08), which is consistent.
    return sign | roundHalfEven(Math.abs(scratchF32[0]!) * 2 ** 9);
  }
  const exponent = (a >>> 23) - 127;
  const mantissa = a & 0x7fffff;
  let code = ((exponent + 7) << 3) | (mantissa >>> 20);
  const rest = mantissa & 0xfffff;
  if (rest > 0x80000 || (rest === 0x80000 && (code & 1) === 1)) code += 1;
  return sign | Math.min(code, 0x7e);
}

export interface Fp8Quantized {
  rows: number;
  cols: number;
  granularity: Fp8ScaleGranularity;
  codes: Uint8Array;
  scales: Float32Array;
}

export function quantizeFp8E4M3(weights: Float32Array, rows: number, cols: number, granularity: Fp8ScaleGranularity): Fp8Quantized {
  if (weights.length !== rows * cols) throw new InvalidArgumentError(`expected ${rows * cols} weights, got ${weights.length}`);
  const spans = granularity === 'tensor' ? 1 : rows;
  const span = granularity === 'tensor' ? rows * cols : cols;
  const codes = new Uint8Array(rows * cols);
  const scales = new Float32Array(spans);
  for (let s = 0; s < spans; s++) {
    const start = s * span;
    let absmax = 0;
    for (let i = start; i < start + span; i++) {
      const a = Math.abs(weights[i]!);
      if (a > absmax) absmax = a;
    }
    const scale = fp8Scale(absmax);
    scales[s] = scale;
    encodeFp8WithScale(weights.subarray(start, start + span), scale, codes, start);
  }
  return { rows, cols, granularity, codes, scales };
}

/** scale = f32(absmax / 448), 1 for an all-zero span. */
export function fp8Scale(absmax: number): number {
  const scale = f32(absmax / E4M3_MAX);
  return scale === 0 ? 1 : scale;
}

export function encodeFp8WithScale(weights: Float32Array, scale: number, codes: Uint8Array, outStart: number): void {
  for (let i = 0; i < weights.length; i++) codes[outStart + i] = encodeE4M3(f32(weights[i]! / scale));
}

export function dequantizeFp8E4M3(q: Fp8Quantized, out: Float32Array = new Float32Array(q.rows * q.cols)): Float32Array {
  const span = q.granularity === 'tensor' ? q.rows * q.cols : q.cols;
  for (let i = 0; i < q.codes.length; i++) out[i] = f32(E4M3_VALUES[q.codes[i]!]! * q.scales[(i / span) | 0]!);
  return out;
}
