/**
 * GPTQ (Frantar et al. 2022) for one linear layer, following the reference gptq.py
 * (IST-DASLab/gptq `GPTQ.fasterquant`, also AutoGPTQ): Hessian H = 2/n * sum x x^T over the
 * calibration tokens; dead columns (H_ii == 0) get H_ii = 1 and a zero weight column;
 * damping = percdamp * mean(diag H) on the diagonal; Hinv = upper Cholesky of H^-1; columns
 * processed in blocks, each column quantized, its error / Hinv[i,i] spread over the rest of the
 * block with Hinv's row, and the whole block's error over the remaining columns afterwards
 * (lazy batch update). Everything runs in float64 on the CPU.
 *
 * Weights are row-major (rows = output features, cols = input features), as in nn.Linear.
 */
import { CancelledError, InvalidArgumentError, NumericError } from '../errors';
import { matmul } from '../model/wasmMatmul';
import { tryUpperCholeskyOfInverse } from './linalg';
import { lazyBatchUpdateWasm } from './wasm/denseF64';
import { GgmlBlockWriter, ggmlBlockShape, type GptqGgmlType } from './gptqGgml';
import { intGridCode, intGridParams } from './grids';

/**
 * Accumulates sum x x^T of a layer's inputs. Chunks of up to 256 token rows are multiplied with the
 * runtime's SIMD matmul (f32 sums within a chunk, as the reference's f32 Hessian), and the chunks are
 * summed in float64, so that 32k+ calibration tokens lose nothing to f32 accumulation across chunks.
 */
export class HessianAccumulator {
  readonly columns: number;
  /** Number of token rows added so far. */
  tokens = 0;
  private readonly sum: Float64Array;
  private static readonly CHUNK = 256;
  /** The chunk transposed (columns x CHUNK), zero-padded: X^T X = matmul(X^T, X^T). */
  private readonly transposed: Float32Array;
  private readonly product: Float32Array;

  constructor(columns: number) {
    if (!Number.isInteger(columns) || columns <= 0) throw new InvalidArgumentError(`Hessian: invalid column count ${columns}`);
    this.columns = columns;
    this.sum = new Float64Array(columns * columns);
    this.transposed = new Float32Array(columns * HessianAccumulator.CHUNK);
    this.product = new Float32Array(columns * columns);
  }

  /** Adds `rowCount` token rows of a row-major (rowCount x columns) activation matrix. */
  addRows(x: Float32Array, rowCount: number): void {
    const n = this.columns;
    if (x.length < rowCount * n) throw new InvalidArgumentError(`Hessian: ${x.length} values do not hold ${rowCount} rows of ${n}`);
    const chunk = HessianAccumulator.CHUNK;
    const xt = this.transposed;
    const p = this.product;
    const s = this.sum;
    for (let t0 = 0; t0 < rowCount; t0 += chunk) {
      const tCount = Math.min(chunk, rowCount - t0);
      // Inner length rounded up to 4 (the SIMD kernel's step); the padding rows are zeros.
      const inner = (tCount + 3) & ~3;
      for (let c = 0; c < n; c++) {
        const dst = c * inner;
        for (let t = 0; t < tCount; t++) xt[dst + t] = x[(t0 + t) * n + c]!;
        for (let t = tCount; t < inner; t++) xt[dst + t] = 0;
      }
      matmul(xt.subarray(0, n * inner), xt.subarray(0, n * inner), p, n, inner, n);
      for (let i = 0; i < n * n; i++) s[i]! += p[i]!;
    }
    this.tokens += rowCount;
  }

  /** H = 2/n * sum x x^T as a full symmetric matrix. */
  hessian(): Float64Array {
    return hessianFromSum(this.sum, this.columns, this.tokens);
  }
}

/**
 * H = 2/tokens * sum, a full symmetric matrix from the upper triangle of `sum` (sum x x^T over `tokens` rows, n x n):
 * the two f32 halves of a chunk's product can differ in the last bit, and the GPU accumulator fills only the upper one.
 */
export function hessianFromSum(sum: Float64Array, n: number, tokens: number): Float64Array {
  if (tokens === 0) throw new InvalidArgumentError('Hessian: no calibration tokens reached this layer');
  const h = new Float64Array(n * n);
  const f = 2 / tokens;
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      const v = sum[i * n + j]! * f;
      h[i * n + j] = v;
      h[j * n + i] = v;
    }
  }
  return h;
}

/** Where GPTQ's columns are rounded to: a group-wise integer grid, or a ggml block type's grid. */
export type GptqTarget = { kind: 'int'; bits: number; groupSize: number; sym: boolean } | { kind: 'ggml'; type: GptqGgmlType };

export interface GptqOptions {
  target: GptqTarget;
  /** Damping as a fraction of mean(diag H); reference default 0.01. */
  percDamp?: number;
  /** Columns per lazy-batch block; reference default 128 (256 for ggml K types: a block must hold whole super-blocks). */
  blockSize?: number;
  /** Process columns by descending diag H (int targets only). */
  actOrder?: boolean;
  signal?: AbortSignal;
}

export interface GptqLayerResult {
  rows: number;
  cols: number;
  /** The quantized weights, dequantized, row-major in the original column order. */
  dequantized: Float32Array;
  /** int targets: codes 0..2^bits-1 per weight (original column order). ggml: unused (empty). */
  codes: Uint8Array;
  /** int targets: per group and output row, [nGroups x rows] (the GPTQ checkpoint layout's order). */
  scales: Float32Array;
  zeros: Int32Array;
  /** int targets: the group of each original column (act-order makes it non-monotonic). */
  gIdx: Int32Array;
  /** ggml targets: the blocks in ggml layout, rows one after another (rows * cols/blockValues blocks). */
  ggmlBytes: Uint8Array;
  /** The damping fraction finally used (larger than requested when H was not positive definite). */
  dampFraction: number;
  /** How many times damping was increased (x10 each) before the Cholesky succeeded. */
  dampIncreases: number;
  deadColumns: number;
  /** sum over weights of (w - q)^2 / Hinv_ii^2 / 2, the reference's reported loss. */
  loss: number;
}

const MAX_DAMP_INCREASES = 4;

/** Tokens of calibration needed before a Hessian of `columns` inputs can have full rank. */
export function minimumCalibrationTokens(columns: number): number {
  return columns;
}

/**
 * One layer's GPTQ state between the steps below: the (permuted) weights being updated, the upper Cholesky
 * factor of H^-1, the current grid per row and the outputs filled column by column. The CPU driver
 * (gptqQuantizeLayer) and the WebGPU one (src/core/gpu) run the same steps:
 *   prepareGptq -> for each block of columns [i1, i2): quantizeColumnBlock (CPU, column by column) ->
 *   lazy batch update W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] (applyLazyBatchUpdate here, a matmul on the GPU)
 *   -> finishGptq.
 */
export interface GptqLayerState {
  readonly rows: number;
  readonly cols: number;
  readonly target: GptqTarget;
  /** Columns per lazy-batch block. */
  readonly blockSize: number;
  /** Row-major rows x cols float64, in processing (permuted) order; updated by the lazy batch updates. */
  readonly wp: Float64Array;
  /** Upper Cholesky factor of the damped H^-1 (cols x cols, processing order). */
  readonly hinv: Float64Array;
  /** Processing position -> original column. */
  readonly perm: Int32Array;
  readonly dampFraction: number;
  readonly dampIncreases: number;
  readonly deadColumns: number;
  readonly signal?: AbortSignal;
  /** Outputs in processing order, and the running loss. */
  readonly dequantP: Float64Array;
  readonly codesP: Uint8Array;
  readonly scales: Float32Array;
  readonly zeros: Int32Array;
  readonly ggmlBytes: Uint8Array;
  /** ggml targets: the blocks being filled (ggmlBytes is its buffer); null for int targets. */
  readonly ggmlBlocks: GgmlBlockWriter | null;
  readonly groupSize: number;
  readonly ggmlBlockBytes: number;
  readonly maxq: number;
  /** Current grid per row (int targets): scale and zero (rowInv unused). */
  readonly rowScale: Float64Array;
  readonly rowZero: Float64Array;
  readonly rowInv: Float64Array;
  loss: number;
}

/**
 * Checks the options, zeroes dead columns, applies act-order, damps H (increasing the damping x10 up to
 * four times when H is not positive definite) and factors H^-1. `weight` and `hessian` are not modified.
 */
export function prepareGptq(weight: Float32Array, rows: number, cols: number, hessian: Float64Array, options: GptqOptions): GptqLayerState {
  if (weight.length !== rows * cols) throw new InvalidArgumentError(`GPTQ: weight has ${weight.length} values, expected ${rows}x${cols}`);
  if (hessian.length !== cols * cols) throw new InvalidArgumentError(`GPTQ: Hessian is not ${cols}x${cols}`);
  const target = options.target;
  const blockValues = target.kind === 'ggml' ? ggmlBlockShape(target.type).values : 1;
  const blockSize = options.blockSize ?? (blockValues > 128 ? blockValues : 128);
  const percDamp = options.percDamp ?? 0.01;
  const actOrder = options.actOrder ?? false;
  if (!(percDamp >= 0)) throw new InvalidArgumentError(`GPTQ: damping must be >= 0, got ${percDamp}`);
  if (target.kind === 'ggml') {
    if (actOrder) throw new InvalidArgumentError(`GPTQ into ggml blocks cannot use act-order: a ${target.type} block is ${blockValues} consecutive columns`);
    if (cols % blockValues !== 0) throw new InvalidArgumentError(`GPTQ into ${target.type}: ${cols} columns are not a multiple of its block of ${blockValues}`);
    // A ggml block's parameters come from all its columns at once: they must all be inside one lazy batch.
    if (blockSize % blockValues !== 0) throw new InvalidArgumentError(`GPTQ into ${target.type}: block size ${blockSize} is not a multiple of ${blockValues}`);
  } else if (!(target.bits >= 2 && target.bits <= 8 && Number.isInteger(target.bits))) {
    throw new InvalidArgumentError(`GPTQ: bits must be 2..8, got ${target.bits}`);
  }

  const h = Float64Array.from(hessian);
  const w = new Float64Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = weight[i]!;

  let deadColumns = 0;
  for (let c = 0; c < cols; c++) {
    if (h[c * cols + c] === 0) {
      h[c * cols + c] = 1;
      deadColumns++;
      for (let r = 0; r < rows; r++) w[r * cols + c] = 0;
    }
  }

  // Column order: identity, or descending diag H (torch.argsort descending; ties keep index order here).
  const perm = new Int32Array(cols);
  for (let c = 0; c < cols; c++) perm[c] = c;
  if (actOrder) {
    const diag = Array.from({ length: cols }, (_, c) => h[c * cols + c]!);
    const order = Array.from(perm).sort((a, b) => diag[b]! - diag[a]! || a - b);
    perm.set(order);
  }
  const wp = actOrder ? permuteColumns(w, rows, cols, perm) : w;
  const hp = actOrder ? permuteSymmetric(h, cols, perm) : h;

  let meanDiag = 0;
  for (let c = 0; c < cols; c++) meanDiag += hp[c * cols + c]!;
  meanDiag /= cols;

  let dampFraction = percDamp;
  let dampIncreases = 0;
  let hinv: Float64Array | undefined;
  for (;;) {
    const damped = Float64Array.from(hp);
    const damp = dampFraction * meanDiag;
    for (let c = 0; c < cols; c++) damped[c * cols + c]! += damp;
    const outcome = tryUpperCholeskyOfInverse(damped, cols);
    if (outcome.ok) {
      hinv = outcome.factor;
      break;
    }
    if (dampIncreases >= MAX_DAMP_INCREASES) {
      throw new NumericError(
        `GPTQ: Hessian is not positive definite even with damping ${dampFraction} x mean(diag H) (pivot ${outcome.failedPivot}); the calibration data may not reach this layer`,
      );
    }
    dampFraction = dampFraction > 0 ? dampFraction * 10 : 0.01;
    dampIncreases++;
  }

  const groupSize = target.kind === 'int' ? (target.groupSize > 0 ? target.groupSize : cols) : blockValues;
  const nGroups = Math.ceil(cols / groupSize);
  const ggmlBlocks = target.kind === 'ggml' ? new GgmlBlockWriter(target.type, rows, cols) : null;
  return {
    rows,
    cols,
    target,
    blockSize,
    wp,
    hinv,
    perm,
    dampFraction,
    dampIncreases,
    deadColumns,
    signal: options.signal,
    dequantP: new Float64Array(rows * cols),
    codesP: new Uint8Array(target.kind === 'int' ? rows * cols : 0),
    scales: new Float32Array(target.kind === 'int' ? nGroups * rows : 0),
    zeros: new Int32Array(target.kind === 'int' ? nGroups * rows : 0),
    ggmlBytes: ggmlBlocks?.bytes ?? new Uint8Array(0),
    ggmlBlocks,
    groupSize,
    ggmlBlockBytes: ggmlBlocks?.shape.bytes ?? 0,
    maxq: target.kind === 'int' ? 2 ** target.bits - 1 : 0,
    rowScale: new Float64Array(rows),
    rowZero: new Float64Array(rows),
    rowInv: new Float64Array(rows),
    loss: 0,
  };
}

/**
 * Quantizes columns [i1, i2) one by one. `w1` holds W[:, i1:i2] (rows x (i2 - i1), row-major) as the lazy
 * batch updates left it; it is updated in place within the block (reference semantics: W itself is not
 * touched here). Returns Err1 (rows x (i2 - i1)): each column's error divided by Hinv[col, col].
 * Group / block grids are computed where a group starts: int targets from `state.wp` (the block-start state
 * of the group's columns, as the reference's find_params), ggml targets from `w1`.
 */
export function quantizeColumnBlock(state: GptqLayerState, i1: number, i2: number, w1: Float64Array): Float64Array {
  if (state.signal?.aborted) throw new CancelledError('GPTQ cancelled');
  const { rows, cols, target, wp, hinv, groupSize, ggmlBlocks, maxq, rowScale, rowZero, scales, zeros, codesP, dequantP } = state;
  const count = i2 - i1;
  const err1 = new Float64Array(rows * count);
  for (let k = 0; k < count; k++) {
    const col = i1 + k;
    const d = hinv[col * cols + col]!;
    if (target.kind === 'int') {
      if (col % groupSize === 0) {
        // find_params over W[:, col:col+groupSize], the block-start state of those columns.
        const gEnd = Math.min(cols, col + groupSize);
        const g = col / groupSize;
        for (let r = 0; r < rows; r++) {
          let lo = Infinity;
          let hi = -Infinity;
          for (let c = col; c < gEnd; c++) {
            const v = wp[r * cols + c]!;
            if (v < lo) lo = v;
            if (v > hi) hi = v;
          }
          const p = intGridParams(Math.fround(lo), Math.fround(hi), maxq, target.sym);
          rowScale[r] = p.scale;
          rowZero[r] = p.zero;
          scales[g * rows + r] = p.scale;
          zeros[g * rows + r] = p.zero;
        }
      }
    } else if (ggmlBlocks !== null && col % groupSize === 0) {
      // ggml block start: the block's parameters from the error-updated weights of its columns, by the type's
      // _ref quantizer (gptqGgml.ts). They must all be in W1 (prepareGptq makes blockSize a multiple of the block).
      if (col + groupSize > i2) throw new InvalidArgumentError(`GPTQ into ${ggmlBlocks.type}: columns [${i1}, ${i2}) split the block at column ${col}`);
      ggmlBlocks.startBlock(col / groupSize, (r, j) => w1[r * count + k + j]!);
    }

    for (let r = 0; r < rows; r++) {
      const wv = w1[r * count + k]!;
      let q: number;
      if (ggmlBlocks !== null) {
        // The type's own rounding rule with the block's fixed parameters; q is ggml's dequantized value.
        q = ggmlBlocks.quantize(r, col, wv);
      } else {
        const code = intGridCode(wv, rowScale[r]!, rowZero[r]!, maxq);
        codesP[r * cols + col] = code;
        q = rowScale[r]! * (code - rowZero[r]!);
      }
      dequantP[r * cols + col] = q;
      const e = (wv - q) / d;
      state.loss += (e * e) / 2;
      err1[r * count + k] = e;
      // W1[:, k:] -= err * Hinv[col, col:i2]
      const hRow = col * cols;
      const wBase = r * count;
      for (let kk = k + 1; kk < count; kk++) w1[wBase + kk]! -= e * hinv[hRow + i1 + kk]!;
    }
  }
  return err1;
}

/** W[:, i1:i2] of the current weights (rows x (i2 - i1)), the block quantizeColumnBlock works on. */
export function columnBlockOf(state: GptqLayerState, i1: number, i2: number): Float64Array {
  const { rows, cols, wp } = state;
  const count = i2 - i1;
  const w1 = new Float64Array(rows * count);
  for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) w1[r * count + k] = wp[r * cols + i1 + k]!;
  return w1;
}

/**
 * Lazy batch update on the CPU: W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]. The f64x2 WebAssembly kernel
 * (wasm/denseF64.ts) where it runs, else the scalar loop; both update each weight w = w - e*h over the
 * block's columns in order (the same bits; the scalar loop skips e = 0, which can only change a zero's sign).
 */
export function applyLazyBatchUpdate(state: GptqLayerState, i1: number, i2: number, err1: Float64Array): void {
  const { rows, cols, wp, hinv } = state;
  const count = i2 - i1;
  if (i2 >= cols) return;
  if (lazyBatchUpdateWasm(wp, rows, cols, i1, i2, err1, hinv)) return;
  for (let r = 0; r < rows; r++) {
    const wRow = r * cols;
    for (let k = 0; k < count; k++) {
      const e = err1[r * count + k]!;
      if (e === 0) continue;
      const hRow = (i1 + k) * cols;
      for (let c = i2; c < cols; c++) wp[wRow + c]! -= e * hinv[hRow + c]!;
    }
  }
}

/** Undoes the permutation: results in original column order; g_idx[orig] = (position in processing order) / groupSize. */
export function finishGptq(state: GptqLayerState): GptqLayerResult {
  const { rows, cols, target, perm, groupSize, dequantP, codesP } = state;
  const dequantized = new Float32Array(rows * cols);
  const codes = new Uint8Array(codesP.length);
  const gIdx = new Int32Array(target.kind === 'int' ? cols : 0);
  for (let p = 0; p < cols; p++) {
    const orig = perm[p]!;
    if (target.kind === 'int') gIdx[orig] = Math.floor(p / groupSize);
    for (let r = 0; r < rows; r++) {
      dequantized[r * cols + orig] = dequantP[r * cols + p]!;
      if (target.kind === 'int') codes[r * cols + orig] = codesP[r * cols + p]!;
    }
  }
  const { scales, zeros, ggmlBytes, dampFraction, dampIncreases, deadColumns, loss } = state;
  return { rows, cols, dequantized, codes, scales, zeros, gIdx, ggmlBytes, dampFraction, dampIncreases, deadColumns, loss };
}

/**
 * GPTQ-quantizes one layer on the CPU. `weight` is row-major (rows x cols) float32; `hessian` is H
 * (cols x cols), e.g. from HessianAccumulator.hessian() (it is copied, not modified).
 */
export function gptqQuantizeLayer(weight: Float32Array, rows: number, cols: number, hessian: Float64Array, options: GptqOptions): GptqLayerResult {
  const state = prepareGptq(weight, rows, cols, hessian, options);
  for (let i1 = 0; i1 < cols; i1 += state.blockSize) {
    const i2 = Math.min(i1 + state.blockSize, cols);
    const err1 = quantizeColumnBlock(state, i1, i2, columnBlockOf(state, i1, i2));
    applyLazyBatchUpdate(state, i1, i2, err1);
  }
  return finishGptq(state);
}

function permuteColumns(w: Float64Array, rows: number, cols: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let p = 0; p < cols; p++) out[r * cols + p] = w[r * cols + perm[p]!]!;
  return out;
}

function permuteSymmetric(h: Float64Array, n: number, perm: Int32Array): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) out[i * n + j] = h[perm[i]! * n + perm[j]!]!;
  return out;
}

/** Round-to-nearest with the same int grid (the baseline GPTQ is measured against). */
export function rtnQuantizeLayer(weight: Float32Array, rows: number, cols: number, bits: number, groupSize: number, sym: boolean): Float32Array {
  const maxq = 2 ** bits - 1;
  const g = groupSize > 0 ? groupSize : cols;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c0 = 0; c0 < cols; c0 += g) {
      const c1 = Math.min(cols, c0 + g);
      let lo = Infinity;
      let hi = -Infinity;
      for (let c = c0; c < c1; c++) {
        const v = weight[r * cols + c]!;
        lo = Math.min(lo, v);
        hi = Math.max(hi, v);
      }
      const { scale, zero } = intGridParams(lo, hi, maxq, sym);
      for (let c = c0; c < c1; c++) out[r * cols + c] = scale * (intGridCode(weight[r * cols + c]!, scale, zero, maxq) - zero);
    }
  }
  return out;
}
