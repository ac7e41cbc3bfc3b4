/**
 * Group-wise integer quantization of a 2-D weight [rows = output channels, cols = input channels],
 * groups of `groupSize` consecutive input columns within a row (groupSize = cols: per channel).
 * Levels are stored unsigned in [0, 2^bits - 1] with a per-group zero point, as the GPTQ layout wants.
 *
 * All arithmetic is f32 (each step rounded with Math.fround), as PyTorch does on f32 tensors.
 * Rounding rule: round half to even (torch.round), applied to the f32 quotient w / scale.
 *
 * Asymmetric (the PyTorch reference fake-quant of micro-llama-reference.json, and AutoGPTQ's
 * Quantizer.find_params):
 *   lo = min(min(group), 0), hi = max(max(group), 0)     (the range always holds 0, so zero fits [0, maxq])
 *   maxq = 2^bits - 1, scale = f32((hi - lo) / maxq)     (scale 0, an all-zero group: scale = 1)
 *   zero = clamp(roundEven(f32(-lo / scale)), minZero, maxq)
 *   q = clamp(roundEven(f32(w / scale)) + zero, 0, maxq); w' = f32(f32(q - zero) * scale)
 * Every group of a real weight matrix holds both signs, so lo / hi equal the reference's plain
 * min / max there (test/unit/intN.test.ts checks it for every linear weight of micro-llama).
 *
 * Symmetric (absmax; bits = 8 per channel is the reference W8: levels [-127, 127]):
 *   qmax = 2^(bits-1) - 1, scale = f32(max|group| / qmax) (0: scale = 1)
 *   q = clamp(roundEven(f32(w / scale)), -qmax, qmax) + 2^(bits-1); zero = 2^(bits-1)
 * (the lowest stored level 0 is unused, so that the zero point is exactly 2^(bits-1) as
 * GPTQ loaders assume when sym = true).
 */
import { InvalidArgumentError } from '../errors';

export type IntBits = 2 | 3 | 4 | 8;
export const INT_BITS: readonly IntBits[] = [2, 3, 4, 8];

export interface IntNScheme {
  bits: IntBits;
  /** Input columns per group; -1 (or cols) = one group per output channel. */
  groupSize: number;
  symmetric: boolean;
  /**
   * Smallest zero point written (asymmetric only). The GPTQ v1 checkpoint format stores zero - 1,
   * so a zero of 0 cannot be stored; the GPTQ writer asks for 1 (see gptqLayout.ts).
   */
  minZero?: number;
}

/** One row-major level per weight, and per-group scale and zero point ([rows, groups]). */
export interface IntNQuantized {
  rows: number;
  cols: number;
  bits: IntBits;
  groupSize: number;
  symmetric: boolean;
  levels: Uint8Array;
  scales: Float32Array;
  zeros: Uint8Array;
}

const f32 = Math.fround;

/** Round half to even (torch.round, numpy.rint, WGSL round). `x` must be finite. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties go up here
  if (r - x === 0.5 && r % 2 !== 0) return r - 1;
  return r;
}

export function isIntBits(n: number): n is IntBits {
  return n === 2 || n === 3 || n === 4 || n === 8;
}

/**
 * The effective group size for a row of `cols`: -1 means per channel. A row that is not a multiple
 * of the group ends with a shorter group (AutoGPTQ's g_idx = i // group_size does the same), so
 * there are ceil(cols / groupSize) groups.
 */
export function resolveGroupSize(groupSize: number, cols: number): number {
  if (groupSize === -1) return cols;
  if (!Number.isInteger(groupSize) || groupSize <= 0) {
    throw new InvalidArgumentError(`group size ${groupSize} is not a positive integer or -1 (per channel)`);
  }
  return groupSize;
}

export function groupCount(cols: number, groupSize: number): number {
  return Math.ceil(cols / groupSize);
}

export function allocateIntN(rows: number, cols: number, scheme: IntNScheme): IntNQuantized {
  const groupSize = resolveGroupSize(scheme.groupSize, cols);
  const groups = groupCount(cols, groupSize);
  return {
    rows,
    cols,
    bits: scheme.bits,
    groupSize,
    symmetric: scheme.symmetric,
    levels: new Uint8Array(rows * cols),
    scales: new Float32Array(rows * groups),
    zeros: new Uint8Array(rows * groups),
  };
}

/**
 * Quantizes one group weights[start, start + length) into levels[start...] and returns
 * [scale, zero] through `params` (index 0 scale, 1 zero). Allocation-free.
 */
export function quantizeGroupIntN(
  weights: Float32Array,
  start: number,
  length: number,
  bits: IntBits,
  symmetric: boolean,
  minZero: number,
  levels: Uint8Array,
  params: Float64Array,
): void {
  const end = start + length;
  if (symmetric) {
    const qmax = (1 << (bits - 1)) - 1;
    const zero = 1 << (bits - 1);
    let absmax = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(weights[i]!);
      if (a > absmax) absmax = a;
    }
    let scale = f32(absmax / qmax);
    if (scale === 0) scale = 1;
    for (let i = start; i < end; i++) {
      let q = roundHalfEven(f32(weights[i]! / scale));
      if (q > qmax) q = qmax;
      else if (q < -qmax) q = -qmax;
      levels[i] = q + zero;
    }
    params[0] = scale;
    params[1] = zero;
    return;
  }
  let lo = 0;
  let hi = 0;
  for (let i = start; i < end; i++) {
    const w = weights[i]!;
    if (w < lo) lo = w;
    if (w > hi) hi = w;
  }
  asymmetricParams(lo, hi, bits, minZero, params);
  quantizeAsymmetricWithParams(weights, start, length, params[0]!, params[1]!, bits, levels, start);
}

/**
 * Scale and zero point of the asymmetric rule for a range [lo, hi] that already includes 0 (callers
 * pass min(min, 0) and max(max, 0)), into params[0] (scale) and params[1] (zero).
 */
export function asymmetricParams(lo: number, hi: number, bits: IntBits, minZero: number, params: Float64Array): void {
  const maxq = (1 << bits) - 1;
  let scale = f32(f32(hi - lo) / maxq);
  if (scale === 0) scale = 1;
  let zero = roundHalfEven(f32(-lo / scale));
  if (zero < minZero) zero = minZero;
  if (zero > maxq) zero = maxq;
  params[0] = scale;
  params[1] = zero;
}

/** q = clamp(roundEven(f32(w / scale)) + zero, 0, 2^bits - 1) for weights[start, start + length) into levels[outStart...]. */
export function quantizeAsymmetricWithParams(weights: Float32Array, start: number, length: number, scale: number, zero: number, bits: IntBits, levels: Uint8Array, outStart: number): void {
  const maxq = (1 << bits) - 1;
  for (let k = 0; k < length; k++) {
    let q = roundHalfEven(f32(weights[start + k]! / scale)) + zero;
    if (q < 0) q = 0;
    else if (q > maxq) q = maxq;
    levels[outStart + k] = q;
  }
}

/** Quantizes a row-major [rows, cols] block of weights group by group into `out` (from allocateIntN). */
export function quantizeRowsIntN(weights: Float32Array, out: IntNQuantized, minZero = 0): void {
  const { rows, cols, groupSize, bits, symmetric } = out;
  if (weights.length !== rows * cols) throw new InvalidArgumentError(`expected ${rows * cols} weights, got ${weights.length}`);
  const groups = groupCount(cols, groupSize);
  const params = new Float64Array(2);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < groups; g++) {
      const length = Math.min(groupSize, cols - g * groupSize);
      quantizeGroupIntN(weights, r * cols + g * groupSize, length, bits, symmetric, minZero, out.levels, params);
      out.scales[r * groups + g] = params[0]!;
      out.zeros[r * groups + g] = params[1]!;
    }
  }
}

/** w' = f32(f32(q - zero) * scale) for every weight. */
export function dequantizeRowsIntN(q: IntNQuantized, out: Float32Array = new Float32Array(q.rows * q.cols)): Float32Array {
  const { rows, cols, groupSize } = q;
  const groups = groupCount(cols, groupSize);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const g = r * groups + ((c / groupSize) | 0);
      out[r * cols + c] = f32((q.levels[r * cols + c]! - q.zeros[g]!) * q.scales[g]!);
    }
  }
  return out;
}

/**
 * Quantize then dequantize (the reference's fake quant): the weights a runtime would see.
 * `group` -1 = per output channel. Pure: returns a new array.
 */
export function fakeQuantizeRowsIntN(weights: Float32Array, rows: number, cols: number, bits: number, group: number, sym: boolean): Float32Array {
  if (!isIntBits(bits)) throw new InvalidArgumentError(`bits ${bits} is not one of ${INT_BITS.join(', ')}`);
  const q = allocateIntN(rows, cols, { bits, groupSize: group, symmetric: sym });
  quantizeRowsIntN(weights, q);
  return dequantizeRowsIntN(q);
}
