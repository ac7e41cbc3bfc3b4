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
import { InvalidArgumentError } from '../errors';
import { roundHalfEven, roundThroughF16 } from './grids';

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
      else x[base + c] = scale > 0 ? roundHalfEven(v / scale) * scale : 0;
    }
  }
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
