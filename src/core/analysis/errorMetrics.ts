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
  /** Fine bin counts (ErrorAccumulator.addRows updates them inline: the hot loop cannot afford a call per value). */
  readonly fine = new Float64Array(2 * FINE_BINS_PER_SIDE);
  /** Half-width R of the fine range, a power of two; 0 until the first nonzero error. */
  halfRange = 0;
  zeros = 0;

  /** Adds one error value (finite); the same rule as the inlined loop in ErrorAccumulator.addRows. */
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
  private readonly histogram = new ErrorHistogramAccumulator();

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
    // The error histogram, inlined (ErrorHistogramAccumulator.add's rule): e = y - x = -d goes to fine bin
    // floor(F + e F / R) = floor(F - d F / R), clamped to the last bin at e = R.
    const histogram = this.histogram;
    const fine = histogram.fine;
    const lastFine = fine.length - 1;
    let halfRange = histogram.halfRange;
    let scale = halfRange > 0 ? FINE_BINS_PER_SIDE / halfRange : 0;
    let zeros = 0;
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
        if (d === 0) {
          zeros += 1;
          fine[FINE_BINS_PER_SIDE]! += 1;
        } else {
          if (a > halfRange) {
            histogram.grow(a);
            halfRange = histogram.halfRange;
            scale = FINE_BINS_PER_SIDE / halfRange;
          }
          // 0 <= F - d F / R <= 2F, so truncation (| 0) is the floor.
          const index = (FINE_BINS_PER_SIDE - d * scale) | 0;
          fine[index > lastFine ? lastFine : index]! += 1;
        }
      }
    }
    histogram.zeros += zeros;
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
