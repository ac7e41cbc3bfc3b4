/**
 * AWQ (Lin et al. 2023), following llm-awq / AutoAWQ `auto_scale` and `auto_clip` on the captured
 * inputs of one group of linear layers that share an input (q/k/v; o; gate/up; down).
 *
 * Scale search: s = mean|x|^r (clamped >= 1e-4) normalised by sqrt(max(s) * min(s)) for r = i/20,
 * i = 0..19; each layer's W*diag(s) is fake-quantized and divided by s again; the r with the lowest
 * mean squared output error of the group's linear outputs wins (r = 0 is plain round-to-nearest).
 * The reference measures the output of the whole attention / MLP module for the q/k/v and gate/up groups;
 * here the objective is the group's own linear outputs, computed exactly over all calibration tokens
 * through the Gram matrix G = (1/n) sum x x^T: mean((X dW^T)^2) = sum_r dW_r^T G dW_r / (n_rows).
 *
 * Clip search: per output row and group, max |w| shrunk by (1 - i/20), i = 0..9; the shrink with the
 * lowest error of that group's partial output wins; weights are clamped to it (q and k are not clipped,
 * as in the reference, because of the q.k product).
 *
 * Quantizer (AutoAWQ pseudo_quantize_tensor, zero_point=True): per group, scale = max(max - min, 1e-5) / (2^b - 1),
 * zero = clamp(-round_half_even(min / scale), 0, 2^b - 1), q = clamp(round_half_even(w / scale) + zero, 0, 2^b - 1).
 */
import { CancelledError, InvalidArgumentError } from '../errors';
import { roundHalfEven } from './grids';

export interface AwqQuantConfig {
  bits: number;
  /** Columns per group; <= 0 means the whole row. */
  groupSize: number;
}

/** AutoAWQ pseudo_quantize_tensor on a row-major (rows x cols) matrix, in place. */
export function awqPseudoQuantizeInPlace(w: Float64Array, rows: number, cols: number, config: AwqQuantConfig): void {
  const maxInt = 2 ** config.bits - 1;
  const g = config.groupSize > 0 ? config.groupSize : cols;
  if (cols % g !== 0) throw new InvalidArgumentError(`AWQ: ${cols} columns are not a multiple of the group size ${g}`);
  for (let r = 0; r < rows; r++) {
    for (let c0 = r * cols; c0 < (r + 1) * cols; c0 += g) {
      let lo = Infinity;
      let hi = -Infinity;
      for (let c = c0; c < c0 + g; c++) {
        const v = w[c]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
      const scale = Math.max(hi - lo, 1e-5) / maxInt;
      const zero = Math.min(maxInt, Math.max(0, -roundHalfEven(lo / scale)));
      for (let c = c0; c < c0 + g; c++) {
        const q = Math.min(maxInt, Math.max(0, roundHalfEven(w[c]! / scale) + zero));
        w[c] = (q - zero) * scale;
      }
    }
  }
}

/** d^T G d for symmetric G (cols x cols), reading the upper triangle only. */
function quadraticForm(g: Float64Array, d: Float64Array, dOffset: number, cols: number): number {
  let total = 0;
  for (let i = 0; i < cols; i++) {
    const di = d[dOffset + i]!;
    if (di === 0) continue;
    const row = i * cols;
    let acc = 0;
    for (let j = i + 1; j < cols; j++) acc += g[row + j]! * d[dOffset + j]!;
    total += di * (g[row + i]! * di + 2 * acc);
  }
  return total;
}

/** sum over rows r of d_r^T G d_r, four rows per pass over G (G is streamed once per four rows). */
function quadraticFormRows(g: Float64Array, d: Float64Array, rows: number, cols: number): number {
  let total = 0;
  let r = 0;
  for (; r + 4 <= rows; r += 4) {
    const o0 = r * cols;
    const o1 = o0 + cols;
    const o2 = o1 + cols;
    const o3 = o2 + cols;
    for (let i = 0; i < cols; i++) {
      const row = i * cols;
      let a0 = 0;
      let a1 = 0;
      let a2 = 0;
      let a3 = 0;
      for (let j = i + 1; j < cols; j++) {
        const gij = g[row + j]!;
        a0 += gij * d[o0 + j]!;
        a1 += gij * d[o1 + j]!;
        a2 += gij * d[o2 + j]!;
        a3 += gij * d[o3 + j]!;
      }
      const gii = g[row + i]!;
      const d0 = d[o0 + i]!;
      const d1 = d[o1 + i]!;
      const d2 = d[o2 + i]!;
      const d3 = d[o3 + i]!;
      total += d0 * (gii * d0 + 2 * a0) + d1 * (gii * d1 + 2 * a1) + d2 * (gii * d2 + 2 * a2) + d3 * (gii * d3 + 2 * a3);
    }
  }
  for (; r < rows; r++) total += quadraticForm(g, d, r * cols, cols);
  return total;
}

export interface AwqLinear {
  name: string;
  /** Row-major (rows x cols) float32 weights. */
  weight: Float32Array;
  rows: number;
}

export interface AwqScaleResult {
  /** The chosen ratio r (0 = no scaling helps). */
  ratio: number;
  /** Per input channel scale (multiply W's columns, divide the input). */
  scales: Float64Array;
  /** Loss for each ratio i/nGrid, i = 0..nGrid-1. */
  losses: number[];
}

/**
 * Mean output squared error of the group after quantizing W*diag(s) and dividing by s,
 * `gram` = (1/n) sum x x^T over the calibration tokens (cols x cols, symmetric).
 */
export function awqGroupLoss(linears: AwqLinear[], cols: number, gram: Float64Array, scales: Float64Array, config: AwqQuantConfig): number {
  let total = 0;
  let totalRows = 0;
  for (const layer of linears) {
    const scaled = new Float64Array(layer.rows * cols);
    for (let r = 0; r < layer.rows; r++) for (let c = 0; c < cols; c++) scaled[r * cols + c] = layer.weight[r * cols + c]! * scales[c]!;
    awqPseudoQuantizeInPlace(scaled, layer.rows, cols, config);
    // dW = W - Q(W s) / s, reusing the buffer.
    for (let r = 0; r < layer.rows; r++) {
      for (let c = 0; c < cols; c++) scaled[r * cols + c] = layer.weight[r * cols + c]! - scaled[r * cols + c]! / scales[c]!;
    }
    total += quadraticFormRows(gram, scaled, layer.rows, cols);
    totalRows += layer.rows;
  }
  return total / totalRows;
}

/** The scale search over ratios r = i / nGrid. `meanAbs` = mean |x| per input channel. */
export function awqSearchScales(
  linears: AwqLinear[],
  cols: number,
  meanAbs: Float64Array,
  gram: Float64Array,
  config: AwqQuantConfig,
  options: { nGrid?: number; signal?: AbortSignal } = {},
): AwqScaleResult {
  if (linears.length === 0) throw new InvalidArgumentError('AWQ: a group needs at least one linear layer');
  if (meanAbs.length !== cols || gram.length !== cols * cols) throw new InvalidArgumentError(`AWQ: statistics do not match ${cols} input channels`);
  for (const l of linears) if (l.weight.length !== l.rows * cols) throw new InvalidArgumentError(`AWQ: ${l.name} is not ${l.rows}x${cols}`);
  const nGrid = options.nGrid ?? 20;
  const losses: number[] = [];
  let best = Infinity;
  let bestRatio = 0;
  let bestScales: Float64Array = new Float64Array(cols).fill(1);
  for (let i = 0; i < nGrid; i++) {
    if (options.signal?.aborted) throw new CancelledError('AWQ cancelled');
    const ratio = i / nGrid;
    const scales = awqScalesForRatio(meanAbs, ratio);
    const loss = awqGroupLoss(linears, cols, gram, scales, config);
    losses.push(loss);
    if (loss < best) {
      best = loss;
      bestRatio = ratio;
      bestScales = scales;
    }
  }
  return { ratio: bestRatio, scales: bestScales, losses };
}

/** s = mean|x|^r clamped >= 1e-4, divided by sqrt(max(s) * min(s)). */
export function awqScalesForRatio(meanAbs: Float64Array, ratio: number): Float64Array {
  const s = new Float64Array(meanAbs.length);
  let max = 0;
  let min = Infinity;
  for (let c = 0; c < s.length; c++) {
    const v = Math.max(meanAbs[c]! ** ratio, 1e-4);
    s[c] = v;
    if (v > max) max = v;
    if (v < min) min = v;
  }
  const norm = Math.sqrt(max * min);
  for (let c = 0; c < s.length; c++) s[c] = s[c]! / norm;
  return s;
}

/** Multiplies W's columns by s in place (the linear side of folding the scales). */
export function scaleColumnsInPlace(w: Float32Array, rows: number, cols: number, scales: ArrayLike<number>): void {
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) w[r * cols + c] = w[r * cols + c]! * scales[c]!;
}

/** Divides a vector (RMSNorm weight) or the rows of the previous linear by s in place (the other side of the fold). */
export function divideRowsInPlace(w: Float32Array, rows: number, cols: number, scales: ArrayLike<number>): void {
  for (let r = 0; r < rows; r++) {
    const s = scales[r]!;
    for (let c = 0; c < cols; c++) w[r * cols + c] = w[r * cols + c]! / s;
  }
}

/** Gram matrix of inputs divided by s: G'_ij = G_ij / (s_i s_j) (the inputs after folding). */
export function scaleGram(gram: Float64Array, cols: number, scales: ArrayLike<number>): Float64Array {
  const out = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) out[i * cols + j] = gram[i * cols + j]! / (scales[i]! * scales[j]!);
  return out;
}

/**
 * The clip search for one layer (already scaled): per output row and group, the max |w| to clamp to.
 * Returns max values as (rows x nGroups). `gram` is of this layer's (scaled) input.
 */
export function awqSearchClip(
  weight: Float32Array,
  rows: number,
  cols: number,
  gram: Float64Array,
  config: AwqQuantConfig,
  options: { nGrid?: number; maxShrink?: number; signal?: AbortSignal } = {},
): Float64Array {
  const nGrid = options.nGrid ?? 20;
  const maxShrink = options.maxShrink ?? 0.5;
  const g = config.groupSize > 0 ? config.groupSize : cols;
  if (cols % g !== 0) throw new InvalidArgumentError(`AWQ clip: ${cols} columns are not a multiple of the group size ${g}`);
  const nGroups = cols / g;
  const best = new Float64Array(rows * nGroups);
  const groupGram = new Float64Array(g * g);
  const d = new Float64Array(g);
  const q = new Float64Array(g);
  const steps = Math.floor(maxShrink * nGrid);
  for (let gi = 0; gi < nGroups; gi++) {
    if (options.signal?.aborted) throw new CancelledError('AWQ cancelled');
    const c0 = gi * g;
    for (let i = 0; i < g; i++) for (let j = 0; j < g; j++) groupGram[i * g + j] = gram[(c0 + i) * cols + c0 + j]!;
    for (let r = 0; r < rows; r++) {
      const base = r * cols + c0;
      let orgMax = 0;
      for (let c = 0; c < g; c++) orgMax = Math.max(orgMax, Math.abs(weight[base + c]!));
      let minErr = Infinity;
      let bestMax = orgMax;
      for (let s = 0; s < steps; s++) {
        const maxVal = orgMax * (1 - s / nGrid);
        for (let c = 0; c < g; c++) q[c] = Math.min(maxVal, Math.max(-maxVal, weight[base + c]!));
        awqPseudoQuantizeInPlace(q, 1, g, { bits: config.bits, groupSize: g });
        for (let c = 0; c < g; c++) d[c] = weight[base + c]! - q[c]!;
        const err = quadraticForm(groupGram, d, 0, g);
        if (err < minErr) {
          minErr = err;
          bestMax = maxVal;
        }
      }
      best[r * nGroups + gi] = bestMax;
    }
  }
  return best;
}

/** Clamps each (row, group) of W to [-maxVal, maxVal] in place. */
export function applyClipInPlace(weight: Float32Array, rows: number, cols: number, groupSize: number, maxVal: Float64Array): void {
  const g = groupSize > 0 ? groupSize : cols;
  const nGroups = cols / g;
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < nGroups; gi++) {
      const m = maxVal[r * nGroups + gi]!;
      for (let c = gi * g; c < (gi + 1) * g; c++) weight[r * cols + c] = Math.min(m, Math.max(-m, weight[r * cols + c]!));
    }
  }
}

/** AWQ's final fake quantization of a layer (after scaling and clipping), returning a new float32 matrix. */
export function awqFakeQuantize(weight: Float32Array, rows: number, cols: number, config: AwqQuantConfig): Float32Array {
  const w = Float64Array.from(weight);
  awqPseudoQuantizeInPlace(w, rows, cols, config);
  return Float32Array.from(w);
}
