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
 * Sums are f64.
 */
import { InvalidArgumentError, NumericError } from '../errors';

export const MAX_ERROR_MAP_BANDS = 64;

export interface ErrorMap {
  rowBands: number;
  colBands: number;
  /** Row-major [rowBands, colBands] MSE per block. */
  values: number[];
}

export interface ErrorMetrics {
  count: number;
  mse: number;
  relRmse: number | null;
  /** null when infinite (mse 0: exact) or undefined (all-zero source, nonzero error). */
  sqnrDb: number | null;
  maxAbsError: number;
  cosine: number;
  errorMap: ErrorMap;
}

export class ErrorAccumulator {
  private sumSquaredError = 0;
  private sumSquaredOriginal = 0;
  private sumSquaredReconstructed = 0;
  private sumProduct = 0;
  private maxAbs = 0;
  private rowsSeen = 0;
  readonly rowBands: number;
  readonly colBands: number;
  private readonly cellError: Float64Array;
  private readonly cellCount: Float64Array;
  private readonly colBandOf: Uint8Array;

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
    this.cellError = new Float64Array(this.rowBands * this.colBands);
    this.cellCount = new Float64Array(this.rowBands * this.colBands);
    this.colBandOf = new Uint8Array(cols);
    for (let c = 0; c < cols; c++) this.colBandOf[c] = Math.floor((c * this.colBands) / cols);
  }

  /** Rows [rowsSeen, rowsSeen + original.length / cols) of both tensors. */
  addRows(original: Float32Array, reconstructed: Float32Array): void {
    if (original.length !== reconstructed.length || original.length % this.cols !== 0) {
      throw new InvalidArgumentError(`${this.tensorName}: row block sizes differ or are not whole rows (${original.length}, ${reconstructed.length}, ${this.cols} columns)`);
    }
    const blockRows = original.length / this.cols;
    if (this.rowsSeen + blockRows > this.rows) throw new InvalidArgumentError(`${this.tensorName}: more rows than the ${this.rows} announced`);
    for (let r = 0; r < blockRows; r++) {
      const row = this.rowsSeen + r;
      const cellBase = Math.floor((row * this.rowBands) / this.rows) * this.colBands;
      const base = r * this.cols;
      for (let c = 0; c < this.cols; c++) {
        const x = original[base + c]!;
        const y = reconstructed[base + c]!;
        const d = x - y;
        if (!Number.isFinite(d)) throw new NumericError(`${this.tensorName}: non-finite value at flat index ${row * this.cols + c} (source ${x}, quantized ${y})`);
        const d2 = d * d;
        this.sumSquaredError += d2;
        this.sumSquaredOriginal += x * x;
        this.sumSquaredReconstructed += y * y;
        this.sumProduct += x * y;
        const a = Math.abs(d);
        if (a > this.maxAbs) this.maxAbs = a;
        const cell = cellBase + this.colBandOf[c]!;
        this.cellError[cell]! += d2;
        this.cellCount[cell]! += 1;
      }
    }
    this.rowsSeen += blockRows;
  }

  result(): ErrorMetrics {
    if (this.rowsSeen !== this.rows) throw new InvalidArgumentError(`${this.tensorName}: saw ${this.rowsSeen} of ${this.rows} rows`);
    const count = this.rows * this.cols;
    const sse = this.sumSquaredError;
    const denominator = Math.sqrt(this.sumSquaredOriginal * this.sumSquaredReconstructed);
    let cosine: number;
    if (denominator > 0) cosine = this.sumProduct / denominator;
    else cosine = this.sumSquaredOriginal === 0 && this.sumSquaredReconstructed === 0 ? 1 : 0;
    const values: number[] = new Array<number>(this.cellError.length);
    for (let i = 0; i < values.length; i++) values[i] = this.cellCount[i]! > 0 ? this.cellError[i]! / this.cellCount[i]! : 0;
    return {
      count,
      mse: sse / count,
      relRmse: this.sumSquaredOriginal > 0 ? Math.sqrt(sse / this.sumSquaredOriginal) : sse === 0 ? 0 : null,
      sqnrDb: sse === 0 || this.sumSquaredOriginal === 0 ? null : 10 * Math.log10(this.sumSquaredOriginal / sse),
      maxAbsError: this.maxAbs,
      cosine,
      errorMap: { rowBands: this.rowBands, colBands: this.colBands, values },
    };
  }
}

/** One-shot metrics of a whole [rows, cols] tensor. */
export function computeErrorMetrics(original: Float32Array, reconstructed: Float32Array, rows: number, cols: number, tensorName?: string): ErrorMetrics {
  const acc = new ErrorAccumulator(rows, cols, tensorName);
  acc.addRows(original, reconstructed);
  return acc.result();
}
