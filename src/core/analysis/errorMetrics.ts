/**
 * Error of a quantized tensor against its source, accumulated in a stream: feed row blocks of
 * (original, reconstructed) values in order and read the totals at the end. Memory is bounded by
 * the block-error map (at most 64 x 64 cells), whatever the tensor size.
 *
 * - MSE = sum (x - y)^2 / n
 * - relative RMSE = sqrt(sum (x - y)^2 / sum x^2); null when the source is all zeros and the error is not
 * - SQNR (dB) = 10 log10(sum x^2 / sum (x - y)^2); null when it is infinite (exact: mse 0) or
 *   undefined (an all-zero source reconstructed with error): JSON has no Infinity
 * - max abs error = max |x - y|
 * - cosine similarity = sum x*y / sqrt(sum x^2 * sum y^2) (1 when both are all zeros)
 * - block-error map: rows split into min(64, rows) bands and columns into min(64, cols) bands,
 *   band b covering [floor(b * n / bands), floor((b + 1) * n / bands)); each cell is the MSE of its block.
 * - error histogram: counts of the element-wise error e = y - x (dequantized minus original) in
 *   ERROR_HISTOGRAM_BINS equal bins over [-range, range], range >= max |e| (see ErrorHistogramAccumulator).
 * Sums are f64, in element order. The per-value work runs in WebAssembly (quant/ggml/wasm/ggmlQuants.as
 * accumulateError), the same f64 operations in the same order as the JS loop it replaced: the same bits.
 */
import { InvalidArgumentError, NumericError } from '../errors';
import type { GgmlTypeName } from '../formats/gguf/ggmlTypes';
import { dequantizeGgml, ggmlByteSize } from '../quant/ggml';
import { isWasmQuantType, localWasmQuantizer, type ErrorAccumulationState, type WasmQuantType } from '../quant/ggml/wasm/ggmlWasm';

export const MAX_ERROR_MAP_BANDS = 64;

export interface ErrorMap {
  rowBands: number;
  colBands: number;
  /** Row-major [rowBands, colBands] MSE per block. */
  values: number[];
}

/** Output bins of the element-wise error histogram (over a range symmetric around 0). */
export const ERROR_HISTOGRAM_BINS = 64;
/** Fine bins per side kept while streaming; the output merges whole groups of them. */
const FINE_BINS_PER_SIDE = 512;

export interface ErrorHistogram {
  /** Bins cover [-range, range] in ERROR_HISTOGRAM_BINS equal steps; bin k is [-range + k w, -range + (k + 1) w), w = 2 range / bins. 0 when every error is 0. */
  range: number;
  /** ERROR_HISTOGRAM_BINS counts; they sum to the element count (an error of exactly 0 is in bin bins / 2). */
  counts: number[];
  /** Elements reconstructed exactly (error 0), also counted in bin bins / 2. */
  zeros: number;
}

/**
 * Histogram of e = y - x over a range that is not known before the last element, in one pass and fixed
 * memory: fine bins over [-R, R] with R a power of two; when |e| > R, R doubles and pairs of fine bins
 * merge (exact: each new bin is the union of two old ones). At the end the output range is the smallest
 * multiple of 32 fine bins per side that holds every nonzero fine bin (so range <= max |e| + R / 16 and
 * each output bin is a whole number of fine bins: the counts are exact, no interpolation).
 * Binning rule: fine bin i (0 .. 2F-1) holds e in [-R + i R/F, -R + (i + 1) R/F), e = R goes into the last bin.
 */
export class ErrorHistogramAccumulator {
  /** Fine bin counts (ErrorAccumulator.addRows updates them in WebAssembly with add's rule: no call per value). */
  readonly fine = new Float64Array(2 * FINE_BINS_PER_SIDE);
  /** Half-width R of the fine range, a power of two; 0 until the first nonzero error. */
  halfRange = 0;
  zeros = 0;

  /** Adds one error value (finite); the same rule as ErrorAccumulator.addRows applies per value (wasm/ggmlQuants.as accumulateError). */
  add(e: number): void {
    if (e === 0) {
      this.zeros += 1;
      this.fine[FINE_BINS_PER_SIDE]! += 1;
      return;
    }
    if (Math.abs(e) > this.halfRange) this.grow(Math.abs(e));
    // (e + R) F / R = F + e (F / R); F / R is a power of two, so e (F / R) is exact.
    const index = Math.floor(FINE_BINS_PER_SIDE + e * (FINE_BINS_PER_SIDE / this.halfRange));
    this.fine[index >= 2 * FINE_BINS_PER_SIDE ? 2 * FINE_BINS_PER_SIDE - 1 : index]! += 1;
  }

  /** Widens the range until it holds |e| = a (a > 0). */
  grow(a: number): void {
    if (this.halfRange === 0) {
      // First nonzero error: the smallest power of two >= |e| (zeros seen so far sit in the centre bin whatever R is).
      this.halfRange = 2 ** Math.ceil(Math.log2(a));
      while (this.halfRange < a) this.halfRange *= 2;
      return;
    }
    while (this.halfRange < a) {
      // Double R: new fine bin j = F/2 + floor(i / 2) for old bin i.
      const merged = new Float64Array(this.fine.length);
      for (let i = 0; i < this.fine.length; i++) merged[FINE_BINS_PER_SIDE / 2 + (i >> 1)]! += this.fine[i]!;
      this.fine.set(merged);
      this.halfRange *= 2;
    }
  }

  result(): ErrorHistogram {
    const counts = new Array<number>(ERROR_HISTOGRAM_BINS).fill(0);
    const half = ERROR_HISTOGRAM_BINS / 2;
    if (this.halfRange === 0) {
      counts[half] = this.zeros;
      return { range: 0, counts, zeros: this.zeros };
    }
    // Fine bins used on the wider side, counted from the centre.
    let extent = 1;
    for (let i = 0; i < this.fine.length; i++) {
      if (this.fine[i] === 0) continue;
      extent = Math.max(extent, i < FINE_BINS_PER_SIDE ? FINE_BINS_PER_SIDE - i : i - FINE_BINS_PER_SIDE + 1);
    }
    const finePerBin = Math.ceil(extent / half);
    const first = FINE_BINS_PER_SIDE - half * finePerBin;
    for (let i = 0; i < this.fine.length; i++) {
      const count = this.fine[i]!;
      if (count !== 0) counts[Math.floor((i - first) / finePerBin)]! += count;
    }
    return { range: (this.halfRange * half * finePerBin) / FINE_BINS_PER_SIDE, counts, zeros: this.zeros };
  }
}

// Slots of ErrorAccumulationState.state (the f64 layout wasm/ggmlQuants.as accumulateError reads and writes).
const STATE_SSE = 0;
const STATE_SSX = 1;
const STATE_SSY = 2;
const STATE_SXY = 3;
const STATE_MAX_ABS = 4;
const STATE_HALF_RANGE = 5;
const STATE_ZEROS = 6;
const ACCUMULATION_STATE_SLOTS = 7;

export interface ErrorMetrics {
  count: number;
  mse: number;
  relRmse: number | null;
  /** null when infinite (mse 0: exact) or undefined (all-zero source, nonzero error). */
  sqnrDb: number | null;
  maxAbsError: number;
  cosine: number;
  errorMap: ErrorMap;
  errorHistogram: ErrorHistogram;
}

export class ErrorAccumulator {
  private rowsSeen = 0;
  readonly rowBands: number;
  readonly colBands: number;
  private readonly histogram = new ErrorHistogramAccumulator();
  /** What the WebAssembly accumulation updates in place (its `state` holds the running f64 sums). */
  private readonly running: ErrorAccumulationState;

  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly tensorName = 'tensor',
  ) {
    if (!Number.isSafeInteger(rows) || rows <= 0 || !Number.isSafeInteger(cols) || cols <= 0) {
      throw new InvalidArgumentError(`${tensorName}: error metrics need a positive shape, got ${rows} x ${cols}`);
    }
    this.rowBands = Math.min(MAX_ERROR_MAP_BANDS, rows);
    this.colBands = Math.min(MAX_ERROR_MAP_BANDS, cols);
    const colBandOf = new Uint8Array(cols);
    for (let c = 0; c < cols; c++) colBandOf[c] = Math.floor((c * this.colBands) / cols);
    this.running = {
      rows,
      cols,
      rowBands: this.rowBands,
      colBands: this.colBands,
      colBandOf,
      cellError: new Float64Array(this.rowBands * this.colBands),
      cellCount: new Float64Array(this.rowBands * this.colBands),
      fine: this.histogram.fine,
      state: new Float64Array(ACCUMULATION_STATE_SLOTS),
    };
  }

  /**
   * Rows [rowsSeen, rowsSeen + original.length / cols) of both tensors. Per value, in f64 and in order
   * (wasm/ggmlQuants.as accumulateError, the f64 steps of a JS loop): d = x - y; sums of d^2, x^2, y^2,
   * x y; max |d|; d^2 into its block cell; e = -d into the histogram (ErrorHistogramAccumulator.add's rule).
   */
  addRows(original: Float32Array, reconstructed: Float32Array): void {
    if (original.length !== reconstructed.length || original.length % this.cols !== 0) {
      throw new InvalidArgumentError(`${this.tensorName}: row block sizes differ or are not whole rows (${original.length}, ${reconstructed.length}, ${this.cols} columns)`);
    }
    this.accumulate(original, reconstructed);
  }

  /**
   * addRows with the reconstruction given as ggml `type` bytes of the same rows (what a GGUF export wrote):
   * the block types are dequantized in WebAssembly memory beside the original values, chunk by chunk (no f32
   * reconstruction is materialized); the numbers are those of dequantizeGgml then addRows.
   */
  addQuantizedRows(type: GgmlTypeName, original: Float32Array, bytes: Uint8Array): void {
    if (original.length % this.cols !== 0) throw new InvalidArgumentError(`${this.tensorName}: a row block of ${original.length} values is not whole rows of ${this.cols}`);
    if (!isWasmQuantType(type)) {
      const reconstructed = new Float32Array(original.length);
      dequantizeGgml(type, bytes, reconstructed);
      this.accumulate(original, reconstructed);
      return;
    }
    if (bytes.byteLength !== ggmlByteSize(type, original.length)) {
      throw new InvalidArgumentError(`${this.tensorName}: ${original.length} values in ${type} are ${ggmlByteSize(type, original.length)} bytes, got ${bytes.byteLength}`);
    }
    this.accumulate(original, { type, bytes });
  }

  /** Per value, in f64 and in order: the steps documented on addRows. */
  private accumulate(original: Float32Array, reconstructed: Float32Array | { type: WasmQuantType; bytes: Uint8Array }): void {
    const blockRows = original.length / this.cols;
    if (this.rowsSeen + blockRows > this.rows) throw new InvalidArgumentError(`${this.tensorName}: more rows than the ${this.rows} announced`);
    if (blockRows === 0) return;
    const state = this.running.state;
    state[STATE_HALF_RANGE] = this.histogram.halfRange;
    state[STATE_ZEROS] = this.histogram.zeros;
    const wasm = localWasmQuantizer();
    const bad =
      reconstructed instanceof Float32Array
        ? wasm.accumulateError(this.running, this.rowsSeen, original, reconstructed)
        : wasm.accumulateQuantizedError(this.running, this.rowsSeen, original, reconstructed.type, reconstructed.bytes);
    this.histogram.halfRange = state[STATE_HALF_RANGE]!;
    this.histogram.zeros = state[STATE_ZEROS]!;
    if (bad >= 0) {
      let value: number;
      if (reconstructed instanceof Float32Array) value = reconstructed[bad]!;
      else {
        const decoded = new Float32Array(original.length);
        dequantizeGgml(reconstructed.type, reconstructed.bytes, decoded);
        value = decoded[bad]!;
      }
      throw new NumericError(`${this.tensorName}: non-finite value at flat index ${this.rowsSeen * this.cols + bad} (source ${original[bad]}, quantized ${value})`);
    }
    this.rowsSeen += blockRows;
  }

  result(): ErrorMetrics {
    if (this.rowsSeen !== this.rows) throw new InvalidArgumentError(`${this.tensorName}: saw ${this.rowsSeen} of ${this.rows} rows`);
    const count = this.rows * this.cols;
    const state = this.running.state;
    const sse = state[STATE_SSE]!;
    const sumSquaredOriginal = state[STATE_SSX]!;
    const sumSquaredReconstructed = state[STATE_SSY]!;
    const denominator = Math.sqrt(sumSquaredOriginal * sumSquaredReconstructed);
    let cosine: number;
    if (denominator > 0) cosine = state[STATE_SXY]! / denominator;
    else cosine = sumSquaredOriginal === 0 && sumSquaredReconstructed === 0 ? 1 : 0;
    const { cellError, cellCount } = this.running;
    const values: number[] = new Array<number>(cellError.length);
    for (let i = 0; i < values.length; i++) values[i] = cellCount[i]! > 0 ? cellError[i]! / cellCount[i]! : 0;
    return {
      count,
      mse: sse / count,
      relRmse: sumSquaredOriginal > 0 ? Math.sqrt(sse / sumSquaredOriginal) : sse === 0 ? 0 : null,
      sqnrDb: sse === 0 || sumSquaredOriginal === 0 ? null : 10 * Math.log10(sumSquaredOriginal / sse),
      maxAbsError: state[STATE_MAX_ABS]!,
      cosine,
      errorMap: { rowBands: this.rowBands, colBands: this.colBands, values },
      errorHistogram: this.histogram.result(),
    };
  }
}

/** One-shot metrics of a whole [rows, cols] tensor. */
export function computeErrorMetrics(original: Float32Array, reconstructed: Float32Array, rows: number, cols: number, tensorName?: string): ErrorMetrics {
  const acc = new ErrorAccumulator(rows, cols, tensorName);
  acc.addRows(original, reconstructed);
  return acc.result();
}
