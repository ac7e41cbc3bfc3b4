/**
 * What the calibrated methods need to know about the input of one linear layer, gathered in one pass
 * over the calibration tokens (memory bounded by one layer: per-channel vectors, an optional
 * cols x cols Gram/Hessian, and an optional bounded sample of token rows).
 *
 * - AWQ: mean |x| per channel, and the Gram matrix for the output-error objective.
 * - SmoothQuant / LLM.int8(): max |x| per channel, and how many tokens reach the outlier threshold.
 * - GPTQ: the Hessian (2/n * sum x x^T).
 * - llama.cpp imatrix: sum x^2 per channel and the token count.
 */
import { InvalidArgumentError } from '../errors';
import { HessianAccumulator } from './gptq';

/**
 * A Gram accumulator that runs elsewhere (GPTQ's Hessian on the GPU: gpu/gptq.ts GpuHessianAccumulator), the same
 * contract as HessianAccumulator but asynchronous. The caller owns it (and frees its device buffers).
 */
export interface AsyncGramAccumulator {
  readonly columns: number;
  addRows(x: Float32Array, rowCount: number): Promise<void>;
  hessian(): Promise<Float64Array>;
}

export interface InputStatsOptions {
  /**
   * Accumulate the full cols x cols x x^T (GPTQ, AWQ): true for the CPU HessianAccumulator, or an
   * asynchronous accumulator (then `addRows` returns its promise and `finish()` must be awaited before `hessian()`).
   */
  gram?: boolean | AsyncGramAccumulator;
  /** Keep up to this many token rows (for activation-quantization error estimates). */
  sampleRows?: number;
  /** |x| at or above this counts as an outlier (LLM.int8() uses 6.0). */
  outlierThreshold?: number;
}

export class InputStatsAccumulator {
  readonly columns: number;
  tokens = 0;
  readonly sumAbs: Float64Array;
  readonly sumSquares: Float64Array;
  readonly maxAbs: Float32Array;
  /** Per channel: tokens with |x| >= outlierThreshold. */
  readonly outlierTokenCounts: Uint32Array;
  readonly outlierThreshold: number;
  /** The CPU Gram accumulator (options.gram === true). */
  readonly gram: HessianAccumulator | null;
  /** The asynchronous one (options.gram given as an accumulator). */
  readonly asyncGram: AsyncGramAccumulator | null;
  private finishedHessian: Float64Array | null = null;
  private readonly sampleCapacity: number;
  private readonly sample: Float32Array;
  sampleCount = 0;

  constructor(columns: number, options: InputStatsOptions = {}) {
    if (!Number.isInteger(columns) || columns <= 0) throw new InvalidArgumentError(`input statistics: invalid column count ${columns}`);
    this.columns = columns;
    this.sumAbs = new Float64Array(columns);
    this.sumSquares = new Float64Array(columns);
    this.maxAbs = new Float32Array(columns);
    this.outlierTokenCounts = new Uint32Array(columns);
    this.outlierThreshold = options.outlierThreshold ?? 6;
    this.gram = options.gram === true ? new HessianAccumulator(columns) : null;
    this.asyncGram = typeof options.gram === 'object' ? options.gram : null;
    if (this.asyncGram !== null && this.asyncGram.columns !== columns) {
      throw new InvalidArgumentError(`input statistics: a Gram accumulator of ${this.asyncGram.columns} columns for ${columns}`);
    }
    this.sampleCapacity = Math.max(0, Math.floor(options.sampleRows ?? 0));
    this.sample = new Float32Array(this.sampleCapacity * columns);
  }

  /**
   * Adds `rowCount` token rows of a row-major (rowCount x columns) input. With an asynchronous Gram accumulator
   * it returns that accumulator's promise: `x` must stay unchanged until it settles.
   */
  addRows(x: Float32Array, rowCount: number): Promise<void> | undefined {
    const n = this.columns;
    if (x.length < rowCount * n) throw new InvalidArgumentError(`input statistics: ${x.length} values do not hold ${rowCount} rows of ${n}`);
    const threshold = this.outlierThreshold;
    for (let t = 0; t < rowCount; t++) {
      const base = t * n;
      for (let c = 0; c < n; c++) {
        const v = x[base + c]!;
        const a = Math.abs(v);
        this.sumAbs[c]! += a;
        this.sumSquares[c]! += v * v;
        if (a > this.maxAbs[c]!) this.maxAbs[c] = a;
        if (a >= threshold) this.outlierTokenCounts[c]!++;
      }
    }
    const take = Math.min(rowCount, this.sampleCapacity - this.sampleCount);
    if (take > 0) {
      this.sample.set(x.subarray(0, take * n), this.sampleCount * n);
      this.sampleCount += take;
    }
    this.gram?.addRows(x, rowCount);
    this.tokens += rowCount;
    return this.asyncGram?.addRows(x, rowCount);
  }

  /** Completes an asynchronous Gram accumulation (reads the Hessian back); nothing to do for the CPU one. */
  async finish(): Promise<void> {
    if (this.asyncGram !== null && this.finishedHessian === null) this.finishedHessian = await this.asyncGram.hessian();
  }

  /** H = 2/n * sum x x^T of the gathered rows (after `finish()` when the Gram ran asynchronously); null without a Gram. */
  hessian(): Float64Array | null {
    if (this.gram !== null) return this.gram.hessian();
    if (this.asyncGram === null) return null;
    if (this.finishedHessian === null) throw new InvalidArgumentError('input statistics: the asynchronous Gram accumulation was not finished');
    return this.finishedHessian;
  }

  meanAbs(): Float64Array {
    const out = new Float64Array(this.columns);
    if (this.tokens > 0) for (let c = 0; c < this.columns; c++) out[c] = this.sumAbs[c]! / this.tokens;
    return out;
  }

  /** The kept token rows (sampleCount x columns). */
  sampledRows(): Float32Array {
    return this.sample.subarray(0, this.sampleCount * this.columns);
  }
}
