/**
 * FP8 weights as vLLM / compressed-tensors store them: `weight` in F8_E4M3 (OCP "e4m3fn") and an
 * f32 `weight_scale`, one per tensor or one per output channel; w' = decode(q) * scale.
 *
 * Scale: absmax / 448 (f32) over the tensor or the output row (absmax 0: scale = 1).
 * Encode (f32 -> E4M3, as torch's `.to(torch.float8_e4m3fn)` after dividing in f32):
 *   round to nearest, ties to even on the 3-bit mantissa; subnormals below 2^-6 (step 2^-9);
 *   saturating: any |x| >= 448 (including values that would round to 464) becomes +-448;
 *   -0 keeps its sign bit; NaN / Inf are refused before we get here (the pipeline checks).
 * E4M3: 1 sign, 4 exponent bits (bias 7), 3 mantissa bits; no Inf; S.1111.111 is NaN; max 448.
 * E5M2 (decode only): 1 sign, 5 exponent bits (bias 15), 2 mantissa bits, IEEE Inf / NaN, max 57344.
 */
import { InvalidArgumentError, NumericError } from '../errors';
import { roundHalfEven } from './intN';

export const E4M3_MAX = 448;
export type Fp8ScaleGranularity = 'tensor' | 'channel';

const f32 = Math.fround;

function buildE4M3Table(): Float32Array {
  const table = new Float32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 3) & 0x0f;
    const mantissa = code & 0x07;
    let magnitude: number;
    if (exponent === 0x0f && mantissa === 0x07) magnitude = NaN;
    else if (exponent === 0) magnitude = mantissa * 2 ** -9;
    else magnitude = (1 + mantissa / 8) * 2 ** (exponent - 7);
    table[code] = sign * magnitude;
  }
  return table;
}

function buildE5M2Table(): Float32Array {
  const table = new Float32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 2) & 0x1f;
    const mantissa = code & 0x03;
    let magnitude: number;
    if (exponent === 0x1f) magnitude = mantissa === 0 ? Infinity : NaN;
    else if (exponent === 0) magnitude = mantissa * 2 ** -16;
    else magnitude = (1 + mantissa / 4) * 2 ** (exponent - 15);
    table[code] = sign * magnitude;
  }
  return table;
}

export const E4M3_VALUES: Float32Array = buildE4M3Table();
export const E5M2_VALUES: Float32Array = buildE5M2Table();

export function decodeE4M3(code: number): number {
  return E4M3_VALUES[code & 0xff]!;
}

export function decodeE5M2(code: number): number {
  return E5M2_VALUES[code & 0xff]!;
}

/** f32 value -> E4M3 code, round half to even, saturating at +-448. */
export function encodeE4M3(value: number): number {
  if (Number.isNaN(value)) throw new NumericError('cannot encode NaN as F8_E4M3');
  const sign = value < 0 || Object.is(value, -0) ? 0x80 : 0;
  const a = Math.abs(value);
  if (a >= E4M3_MAX) return sign | 0x7e;
  if (a < 2 ** -6) {
    // Subnormal range: multiples of 2^-9; a result of 8 is the smallest normal (code 0x08), which is consistent.
    return sign | roundHalfEven(a * 2 ** 9);
  }
  let exponent = Math.floor(Math.log2(a));
  if (2 ** exponent > a) exponent -= 1;
  else if (2 ** (exponent + 1) <= a) exponent += 1;
  let mantissa = roundHalfEven((a / 2 ** exponent - 1) * 8);
  if (mantissa === 8) {
    mantissa = 0;
    exponent += 1;
  }
  const code = ((exponent + 7) << 3) | mantissa;
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
