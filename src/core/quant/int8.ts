/**
 * INT8 weight quantization of a 2-D weight [rows = output channels, cols = input channels].
 *
 * Absmax (symmetric, LLM.int8() "vector-wise" when per channel):
 *   scale = f32(max|w| / 127) over the tensor or over each output row (scale 0 -> 1)
 *   q = clamp(roundEven(f32(w / scale)), -127, 127) as int8; w' = f32(q * scale)
 *   Rounding: half to even (torch.round); -128 is never produced, so the range is symmetric.
 *
 * Zero-point (asymmetric), per tensor or per output row:
 *   lo = min(min(w), 0), hi = max(max(w), 0), scale = f32((hi - lo) / 255) (0 -> 1)
 *   zero = clamp(roundEven(f32(-lo / scale)), 0, 255)
 *   q = clamp(roundEven(f32(w / scale)) + zero, 0, 255) as uint8; w' = f32(f32(q - zero) * scale)
 * This is intN.ts's asymmetric rule at 8 bits with one group per row (or per tensor).
 */
import { InvalidArgumentError } from '../errors';
import { quantizeGroupIntN, roundHalfEven } from './intN';

export type Int8Granularity = 'tensor' | 'channel';

export interface Int8AbsmaxQuantized {
  rows: number;
  cols: number;
  granularity: Int8Granularity;
  values: Int8Array;
  /** One scale per tensor ([1]) or per output row ([rows]). */
  scales: Float32Array;
}

export interface Int8ZeroPointQuantized {
  rows: number;
  cols: number;
  granularity: Int8Granularity;
  values: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
}

const f32 = Math.fround;

function checkSize(weights: Float32Array, rows: number, cols: number): void {
  if (weights.length !== rows * cols) throw new InvalidArgumentError(`expected ${rows}x${cols} = ${rows * cols} weights, got ${weights.length}`);
}

function absmaxScale(weights: Float32Array, start: number, end: number): number {
  let absmax = 0;
  for (let i = start; i < end; i++) {
    const a = Math.abs(weights[i]!);
    if (a > absmax) absmax = a;
  }
  return int8AbsmaxScale(absmax);
}

/** scale = f32(absmax / 127), 1 for an all-zero span. */
export function int8AbsmaxScale(absmax: number): number {
  const scale = f32(absmax / 127);
  return scale === 0 ? 1 : scale;
}

/** q = clamp(roundEven(f32(w / scale)), -127, 127) for every weight, into out[outStart...]. */
export function quantizeInt8WithScale(weights: Float32Array, scale: number, out: Int8Array, outStart: number): void {
  for (let i = 0; i < weights.length; i++) {
    let q = roundHalfEven(f32(weights[i]! / scale));
    if (q > 127) q = 127;
    else if (q < -127) q = -127;
    out[outStart + i] = q;
  }
}

export function quantizeInt8Absmax(weights: Float32Array, rows: number, cols: number, granularity: Int8Granularity): Int8AbsmaxQuantized {
  checkSize(weights, rows, cols);
  const values = new Int8Array(rows * cols);
  const scales = new Float32Array(granularity === 'tensor' ? 1 : rows);
  const spans = granularity === 'tensor' ? 1 : rows;
  const span = granularity === 'tensor' ? rows * cols : cols;
  for (let s = 0; s < spans; s++) {
    const start = s * span;
    const scale = absmaxScale(weights, start, start + span);
    scales[s] = scale;
    quantizeInt8WithScale(weights.subarray(start, start + span), scale, values, start);
  }
  return { rows, cols, granularity, values, scales };
}

export function dequantizeInt8Absmax(q: Int8AbsmaxQuantized, out: Float32Array = new Float32Array(q.rows * q.cols)): Float32Array {
  const span = q.granularity === 'tensor' ? q.rows * q.cols : q.cols;
  for (let i = 0; i < q.values.length; i++) out[i] = f32(q.values[i]! * q.scales[(i / span) | 0]!);
  return out;
}

export function quantizeInt8ZeroPoint(weights: Float32Array, rows: number, cols: number, granularity: Int8Granularity): Int8ZeroPointQuantized {
  checkSize(weights, rows, cols);
  const values = new Uint8Array(rows * cols);
  const spans = granularity === 'tensor' ? 1 : rows;
  const span = granularity === 'tensor' ? rows * cols : cols;
  const scales = new Float32Array(spans);
  const zeros = new Uint8Array(spans);
  const params = new Float64Array(2);
  for (let s = 0; s < spans; s++) {
    quantizeGroupIntN(weights, s * span, span, 8, false, 0, values, params);
    scales[s] = params[0]!;
    zeros[s] = params[1]!;
  }
  return { rows, cols, granularity, values, scales, zeros };
}

export function dequantizeInt8ZeroPoint(q: Int8ZeroPointQuantized, out: Float32Array = new Float32Array(q.rows * q.cols)): Float32Array {
  const span = q.granularity === 'tensor' ? q.rows * q.cols : q.cols;
  for (let i = 0; i < q.values.length; i++) {
    const s = (i / span) | 0;
    out[i] = f32((q.values[i]! - q.zeros[s]!) * q.scales[s]!);
  }
  return out;
}
