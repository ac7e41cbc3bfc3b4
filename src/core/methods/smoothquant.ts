/**
 * SmoothQuant (Xiao et al. 2023), following smoothquant/smooth.py `smooth_ln_fcs`:
 * s_j = max|X_j|^alpha / max_over_layers(max|W_:,j|)^(1-alpha), with max|X_j| and max|W_j| clamped >= 1e-5
 * and s clamped >= 1e-5; the preceding RMSNorm weight is divided by s and each linear's columns
 * multiplied by s, which leaves the float function unchanged (x/s . (W s)^T = x . W^T).
 * Then W8A8 as in smoothquant/fake_quant.py: weights per output channel absmax INT8, activations
 * per token absmax INT8, round half to even, levels [-127, 127].
 */
import { InvalidArgumentError } from '../errors';
import { roundHalfEven } from './grids';

export interface SmoothLinear {
  weight: Float32Array;
  rows: number;
}

/** Smoothing factors for the linears that share one normalised input. `actMaxAbs` = max |x| per input channel. */
export function smoothQuantScales(actMaxAbs: ArrayLike<number>, linears: SmoothLinear[], cols: number, alpha: number): Float64Array {
  if (!(alpha >= 0 && alpha <= 1)) throw new InvalidArgumentError(`SmoothQuant: alpha must be in [0, 1], got ${alpha}`);
  if (actMaxAbs.length !== cols) throw new InvalidArgumentError(`SmoothQuant: ${actMaxAbs.length} activation scales for ${cols} channels`);
  const wMax = new Float64Array(cols);
  for (const l of linears) {
    if (l.weight.length !== l.rows * cols) throw new InvalidArgumentError(`SmoothQuant: weight is not ${l.rows}x${cols}`);
    for (let r = 0; r < l.rows; r++) for (let c = 0; c < cols; c++) wMax[c] = Math.max(wMax[c]!, Math.abs(l.weight[r * cols + c]!));
  }
  const s = new Float64Array(cols);
  for (let c = 0; c < cols; c++) {
    const a = Math.max(actMaxAbs[c]!, 1e-5);
    const w = Math.max(wMax[c]!, 1e-5);
    s[c] = Math.max(a ** alpha / w ** (1 - alpha), 1e-5);
  }
  return s;
}

/** Folds s: norm weight /= s, every linear's column j *= s_j (all in place, float32 storage). */
export function foldSmoothing(normWeight: Float32Array, linears: SmoothLinear[], cols: number, scales: ArrayLike<number>): void {
  if (normWeight.length !== cols) throw new InvalidArgumentError(`SmoothQuant: norm weight has ${normWeight.length} values for ${cols} channels`);
  for (let c = 0; c < cols; c++) normWeight[c] = normWeight[c]! / scales[c]!;
  for (const l of linears) for (let r = 0; r < l.rows; r++) for (let c = 0; c < cols; c++) l.weight[r * cols + c] = l.weight[r * cols + c]! * scales[c]!;
}

/**
 * Per-row absmax INT8 fake quantization in place: scale = max(max|row|, 1e-5) / 127,
 * q = round_half_even(x / scale) (within [-127, 127] by construction). Rows are output channels for
 * weights (per channel) and tokens for activations (per token).
 */
export function fakeQuantizeRowsAbsmaxInt8(x: Float32Array, rows: number, cols: number): void {
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let amax = 0;
    for (let c = 0; c < cols; c++) amax = Math.max(amax, Math.abs(x[base + c]!));
    const scale = Math.max(amax, 1e-5) / 127;
    for (let c = 0; c < cols; c++) x[base + c] = roundHalfEven(x[base + c]! / scale) * scale;
  }
}
