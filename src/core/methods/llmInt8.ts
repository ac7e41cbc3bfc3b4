/**
 * LLM.int8() (Dettmers et al. 2022) mixed-precision decomposition, simulated in float:
 * an input dimension is an outlier when the calibration pass saw |x| >= threshold (6.0) in it;
 * outlier dimensions are multiplied in 16 bit (values rounded through fp16, both X and W),
 * the others in INT8 with vector-wise absmax scales: per token row of X and per output row of W
 * (the paper's column-wise for W stored as in x out), scale = absmax / 127, q = round_half_even(v / scale).
 * `keepFraction` additionally keeps that fraction of the remaining dimensions (largest max|x| first) in 16 bit.
 * Variants: 'decomposed' (the method), 'plain' (absmax INT8 on every dimension), 'outliers-zeroed'
 * (the outlier dimensions dropped: what is lost when they are zeroed).
 */
import { FormatError, InvalidArgumentError } from '../errors';
import { f16BitsToF32, f32ToF16Bits, roundHalfEven, roundThroughF16 } from './grids';

export type LlmInt8Variant = 'decomposed' | 'plain' | 'outliers-zeroed';

export interface LlmInt8Plan {
  columns: number;
  /** 1 where the dimension is multiplied in 16 bit. */
  keep16: Uint8Array;
  /** Dimensions kept because they reached the threshold. */
  outlierDims: number[];
  /** Dimensions kept because of keepFraction. */
  extraDims: number[];
}

/** Chooses the 16-bit dimensions from max |x| per input channel. */
export function planLlmInt8(maxAbs: ArrayLike<number>, threshold = 6, keepFraction = 0): LlmInt8Plan {
  if (!(threshold > 0)) throw new InvalidArgumentError(`LLM.int8(): threshold must be > 0, got ${threshold}`);
  if (!(keepFraction >= 0 && keepFraction <= 1)) throw new InvalidArgumentError(`LLM.int8(): keep fraction must be in [0, 1], got ${keepFraction}`);
  const columns = maxAbs.length;
  const keep16 = new Uint8Array(columns);
  const outlierDims: number[] = [];
  const rest: number[] = [];
  for (let c = 0; c < columns; c++) {
    if (maxAbs[c]! >= threshold) {
      keep16[c] = 1;
      outlierDims.push(c);
    } else rest.push(c);
  }
  rest.sort((a, b) => maxAbs[b]! - maxAbs[a]! || a - b);
  const extraCount = Math.round(keepFraction * rest.length);
  const extraDims = rest.slice(0, extraCount).sort((a, b) => a - b);
  for (const c of extraDims) keep16[c] = 1;
  return { columns, keep16, outlierDims, extraDims };
}

/**
 * Fake-quantizes rows (weight rows or token rows) in place under the plan: kept dimensions rounded
 * through fp16, the others absmax INT8 over the non-kept dimensions of the row; 'outliers-zeroed'
 * sets the kept dimensions to 0; 'plain' ignores the plan.
 */
export function fakeQuantizeRowsLlmInt8(x: Float32Array, rows: number, cols: number, plan: LlmInt8Plan, variant: LlmInt8Variant): void {
  if (plan.columns !== cols) throw new InvalidArgumentError(`LLM.int8(): plan for ${plan.columns} dimensions applied to ${cols}`);
  const keep = plan.keep16;
  const usePlan = variant !== 'plain';
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let amax = 0;
    for (let c = 0; c < cols; c++) if (!usePlan || keep[c] === 0) amax = Math.max(amax, Math.abs(x[base + c]!));
    const scale = amax / 127;
    for (let c = 0; c < cols; c++) {
      const v = x[base + c]!;
      if (usePlan && keep[c] === 1) x[base + c] = variant === 'outliers-zeroed' ? 0 : roundThroughF16(v);
      // `|| 0`: a level of -0 (Math.round(-0.3)) is stored as the int8 0, so it dequantizes to +0.
      else x[base + c] = scale > 0 ? (roundHalfEven(v / scale) || 0) * scale : 0;
    }
  }
}

/** The kept (16-bit) input dimensions of a plan, ascending. */
export function keptDimsOf(plan: LlmInt8Plan): Int32Array {
  const dims: number[] = [];
  for (let c = 0; c < plan.columns; c++) if (plan.keep16[c] === 1) dims.push(c);
  return Int32Array.from(dims);
}

/** A plan that keeps exactly `keptDims` (e.g. read back from a written file, which does not say why a dim was kept). */
export function planFromKeptDims(columns: number, keptDims: Int32Array): LlmInt8Plan {
  const keep16 = checkKeptDims(keptDims, columns, (d) => new InvalidArgumentError(`LLM.int8(): ${d}`));
  return { columns, keep16, outlierDims: Array.from(keptDims), extraDims: [] };
}

/**
 * The stored LLM.int8() decomposition of a weight [rows, cols]: bitsandbytes' serialized Linear8bitLt
 * (`CB` int8 [rows, cols] + `SCB` f32 [rows], dequantized as CB * SCB / 127) plus the kept columns in f16.
 */
export interface LlmInt8Stored {
  rows: number;
  cols: number;
  /** CB, row-major [rows, cols]. Kept columns hold clamp(round(w / scale), -127, 127) for loaders that ignore `kept`. */
  codes: Int8Array;
  /** SCB: per row, absmax over the non-kept columns (scale = SCB / 127). */
  absmax: Float32Array;
  /** Kept input dimensions, strictly ascending. */
  keptDims: Int32Array;
  /** f16 bit patterns of the kept columns, row-major [rows, keptDims.length]. */
  kept: Uint16Array;
}

function checkKeptDims(keptDims: Int32Array, cols: number, fail: (defect: string) => Error): Uint8Array {
  const keep = new Uint8Array(cols);
  for (let k = 0; k < keptDims.length; k++) {
    const c = keptDims[k]!;
    if (!(c >= 0 && c < cols)) throw fail(`kept dimension ${c} is outside [0, ${cols})`);
    if (k > 0 && c <= keptDims[k - 1]!) throw fail(`kept dimensions are not strictly ascending at index ${k} (${keptDims[k - 1]}, ${c})`);
    keep[c] = 1;
  }
  return keep;
}

/**
 * Encodes rows of a weight under the decomposition; `dequantizeLlmInt8` of the result equals
 * fakeQuantizeRowsLlmInt8(w, 'decomposed') with the same kept dims bit for bit.
 * Rounding rule: scale = absmax(non-kept columns of the row) / 127, q = round_half_even(w / scale) (never
 * beyond +-127 there); kept columns: f16 round to nearest even; in CB they get the same rule clamped to +-127.
 */
export function quantizeRowsLlmInt8(w: Float32Array, rows: number, cols: number, keptDims: Int32Array): LlmInt8Stored {
  if (w.length !== rows * cols) throw new InvalidArgumentError(`LLM.int8(): ${w.length} values for [${rows}, ${cols}]`);
  const keep = checkKeptDims(keptDims, cols, (d) => new InvalidArgumentError(`LLM.int8(): ${d}`));
  const k = keptDims.length;
  const codes = new Int8Array(rows * cols);
  const absmax = new Float32Array(rows);
  const kept = new Uint16Array(rows * k);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let amax = 0;
    for (let c = 0; c < cols; c++) if (keep[c] === 0) amax = Math.max(amax, Math.abs(w[base + c]!));
    absmax[r] = amax;
    const scale = amax / 127;
    for (let c = 0; c < cols; c++) {
      const q = scale > 0 ? roundHalfEven(w[base + c]! / scale) : 0;
      codes[base + c] = Math.max(-127, Math.min(127, q));
    }
    for (let j = 0; j < k; j++) kept[r * k + j] = f32ToF16Bits(w[base + keptDims[j]!]!);
  }
  return { rows, cols, codes, absmax, keptDims, kept };
}

/** What a reader of the layout reconstructs: CB * SCB / 127, with the kept columns taken from their f16 values. */
export function dequantizeLlmInt8(s: LlmInt8Stored, file = '<llm-int8>'): Float32Array {
  const { rows, cols, keptDims } = s;
  const k = keptDims.length;
  if (s.codes.length !== rows * cols || s.absmax.length !== rows || s.kept.length !== rows * k) {
    throw new FormatError(file, `LLM.int8() tensors of ${s.codes.length} codes, ${s.absmax.length} SCB, ${s.kept.length} kept values do not fit [${rows}, ${cols}] with ${k} kept dims`);
  }
  checkKeptDims(keptDims, cols, (d) => new FormatError(file, d));
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const scale = s.absmax[r]! / 127;
    const base = r * cols;
    for (let c = 0; c < cols; c++) out[base + c] = scale > 0 ? s.codes[base + c]! * scale : 0;
    for (let j = 0; j < k; j++) out[base + keptDims[j]!] = f16BitsToF32(s.kept[r * k + j]!);
  }
  return out;
}

/** Bytes of one layer's weights: kept dimensions in fp16, the rest int8, plus one f32 scale per output row. */
export function llmInt8WeightBytes(rows: number, cols: number, keptDims: number): number {
  return rows * (keptDims * 2 + (cols - keptDims)) + rows * 4;
}

export interface LlmInt8LayerReport {
  name: string;
  columns: number;
  outlierDims: number[];
  extraDims: number;
  /** Weight bytes of the decomposition, of plain INT8 (both with f32 row scales) and of FP16. */
  bytes: { decomposed: number; plainInt8: number; fp16: number };
  /** Relative output error ||Y - Y_fp|| / ||Y_fp|| on the sampled calibration rows. */
  relError: { decomposed: number; plainInt8: number; outliersZeroed: number; fp16: number };
}

/** Measures the decomposition on one layer against FP16 and plain INT8 over sampled input rows (tokens x cols). */
export function llmInt8LayerReport(name: string, weight: Float32Array, rows: number, cols: number, sample: Float32Array, tokens: number, plan: LlmInt8Plan): LlmInt8LayerReport {
  if (tokens === 0) throw new InvalidArgumentError(`LLM.int8(): no calibration rows reached ${name}`);
  const reference = matmulRows(sample, weight, tokens, cols, rows);
  const errorOf = (variant: LlmInt8Variant | 'fp16'): number => {
    const w = Float32Array.from(weight);
    const x = Float32Array.from(sample.subarray(0, tokens * cols));
    if (variant === 'fp16') {
      for (let i = 0; i < w.length; i++) w[i] = roundThroughF16(w[i]!);
      for (let i = 0; i < x.length; i++) x[i] = roundThroughF16(x[i]!);
    } else {
      fakeQuantizeRowsLlmInt8(w, rows, cols, plan, variant);
      fakeQuantizeRowsLlmInt8(x, tokens, cols, plan, variant);
    }
    const y = matmulRows(x, w, tokens, cols, rows);
    let num = 0;
    let den = 0;
    for (let i = 0; i < y.length; i++) {
      const d = y[i]! - reference[i]!;
      num += d * d;
      den += reference[i]! * reference[i]!;
    }
    return den > 0 ? Math.sqrt(num / den) : 0;
  };
  const kept = plan.outlierDims.length + plan.extraDims.length;
  return {
    name,
    columns: cols,
    outlierDims: plan.outlierDims,
    extraDims: plan.extraDims.length,
    bytes: { decomposed: llmInt8WeightBytes(rows, cols, kept), plainInt8: llmInt8WeightBytes(rows, cols, 0), fp16: rows * cols * 2 },
    relError: { decomposed: errorOf('decomposed'), plainInt8: errorOf('plain'), outliersZeroed: errorOf('outliers-zeroed'), fp16: errorOf('fp16') },
  };
}

/** Y = X W^T in float64 (X: tokens x cols, W: rows x cols). */
function matmulRows(x: Float32Array, w: Float32Array, tokens: number, cols: number, rows: number): Float64Array {
  const y = new Float64Array(tokens * rows);
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let acc = 0;
      for (let c = 0; c < cols; c++) acc += x[t * cols + c]! * w[r * cols + c]!;
      y[t * rows + r] = acc;
    }
  }
  return y;
}
