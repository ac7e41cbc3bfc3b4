/**
 * Weight statistics, CPU reference. The GPU path (core/gpu/stats.ts) computes the same quantities
 * and is tested against this module.
 *
 * Moments are kept as (count, mean, M2, M3, M4) with M_k = sum (x - mean)^k, in f64, and merged with
 * the pairwise formulas of Chan et al. / Pébay (2008), so rows, chunks and tensors can be streamed
 * and combined without the cancellation of naive power sums. Non-finite values (NaN, +-Inf) are
 * counted separately and excluded from every moment, range and histogram.
 *
 * A "channel" is a row of the row-major tensor (an output channel of a weight [out, in]); a
 * "column" is an input dimension (where LLM.int8()-style outlier features live). A 1-D tensor is one row.
 *
 * Histogram binning is defined in f32 so the GPU gives the same counts:
 *   fixed bins:  bin = min(bins - 1, floor(f32(f32(x - lo) * scale))), lo = f32(min), scale = f32(bins / (max - min))
 *   outliers:    |f32(x - mean)| > f32(sigma * std), or |x| > an absolute threshold
 *   log bins:    from the f32 bit pattern of |x|: (exponent - (topExponent - octaves + 1)) * 4 + top two
 *                mantissa bits, i.e. quarter-octave bins; values below the range (and zeros) go to `underflow`.
 */
import { CancelledError, InvalidArgumentError } from '../errors';

export interface Moments {
  /** Finite values seen. */
  count: number;
  mean: number;
  /** Central sums: M2 = sum (x - mean)^2, M3, M4 likewise. */
  m2: number;
  m3: number;
  m4: number;
  min: number;
  max: number;
  absMax: number;
  nanCount: number;
  infCount: number;
}

export function emptyMoments(): Moments {
  return { count: 0, mean: 0, m2: 0, m3: 0, m4: 0, min: Infinity, max: -Infinity, absMax: 0, nanCount: 0, infCount: 0 };
}

/** float64 slots per row in a RowMoments table (and the WebAssembly kernels' output): the Moments fields in this order. */
export const MOMENT_SLOTS = 10;
const COUNT = 0;
const MEAN = 1;
const M2 = 2;
const M3 = 3;
const M4 = 4;
const MIN = 5;
const MAX = 6;
const ABS_MAX = 7;
const NAN_COUNT = 8;
const INF_COUNT = 9;

/**
 * Merges the moments at src[s..s + MOMENT_SLOTS) into acc[a..a + MOMENT_SLOTS), two disjoint sets' moments
 * combined (Pébay 2008, eq. 2.1-2.3); the one formula behind mergeMoments and RowMoments.total.
 */
function mergeSlots(acc: Float64Array, a: number, src: Float64Array, s: number): void {
  acc[a + NAN_COUNT]! += src[s + NAN_COUNT]!;
  acc[a + INF_COUNT]! += src[s + INF_COUNT]!;
  const nb = src[s + COUNT]!;
  if (nb === 0) return;
  const na = acc[a + COUNT]!;
  if (na === 0) {
    for (let k = COUNT; k <= ABS_MAX; k++) acc[a + k] = src[s + k]!;
    return;
  }
  const am2 = acc[a + M2]!;
  const am3 = acc[a + M3]!;
  const bm2 = src[s + M2]!;
  const bm3 = src[s + M3]!;
  const n = na + nb;
  const delta = src[s + MEAN]! - acc[a + MEAN]!;
  const dn = delta / n;
  acc[a + COUNT] = n;
  acc[a + MEAN]! += nb * dn;
  acc[a + M2] = am2 + bm2 + delta * dn * na * nb;
  acc[a + M3] = am3 + bm3 + delta * dn * dn * na * nb * (na - nb) + 3 * dn * (na * bm2 - nb * am2);
  acc[a + M4] = acc[a + M4]! + src[s + M4]! + delta * dn * dn * dn * na * nb * (na * na - na * nb + nb * nb) + 6 * dn * dn * (na * na * bm2 + nb * nb * am2) + 4 * dn * (na * bm3 - nb * am3);
  acc[a + MIN] = Math.min(acc[a + MIN]!, src[s + MIN]!);
  acc[a + MAX] = Math.max(acc[a + MAX]!, src[s + MAX]!);
  acc[a + ABS_MAX] = Math.max(acc[a + ABS_MAX]!, src[s + ABS_MAX]!);
}

function momentsToSlots(m: Moments, out: Float64Array, at: number): void {
  out[at + COUNT] = m.count;
  out[at + MEAN] = m.mean;
  out[at + M2] = m.m2;
  out[at + M3] = m.m3;
  out[at + M4] = m.m4;
  out[at + MIN] = m.min;
  out[at + MAX] = m.max;
  out[at + ABS_MAX] = m.absMax;
  out[at + NAN_COUNT] = m.nanCount;
  out[at + INF_COUNT] = m.infCount;
}

function slotsToMoments(d: Float64Array, at: number): Moments {
  return { count: d[at + COUNT]!, mean: d[at + MEAN]!, m2: d[at + M2]!, m3: d[at + M3]!, m4: d[at + M4]!, min: d[at + MIN]!, max: d[at + MAX]!, absMax: d[at + ABS_MAX]!, nanCount: d[at + NAN_COUNT]!, infCount: d[at + INF_COUNT]! };
}

/** Combines two disjoint sets' moments (Pébay 2008, eq. 2.1-2.3). Neither input is changed. */
export function mergeMoments(a: Moments, b: Moments): Moments {
  const slots = new Float64Array(2 * MOMENT_SLOTS);
  momentsToSlots(a, slots, 0);
  momentsToSlots(b, slots, MOMENT_SLOTS);
  mergeSlots(slots, 0, slots, MOMENT_SLOTS);
  return slotsToMoments(slots, 0);
}

/**
 * Per-row moments of a tensor, MOMENT_SLOTS float64 per row in `data` (count, mean, m2, m3, m4, min, max, absMax,
 * nanCount, infCount): one typed array instead of an object per row (a 1 GiB checkpoint has ~10^5 to 10^6 rows).
 */
export class RowMoments {
  readonly data: Float64Array;
  /** total()'s result until a row changes. */
  private merged: Moments | null = null;

  /** `rows` empty rows (emptyMoments: zeros but min = +Inf, max = -Inf). */
  constructor(readonly rows: number) {
    this.data = new Float64Array(rows * MOMENT_SLOTS);
    for (let o = 0; o < this.data.length; o += MOMENT_SLOTS) {
      this.data[o + MIN] = Infinity;
      this.data[o + MAX] = -Infinity;
    }
  }

  get(row: number): Moments {
    return slotsToMoments(this.data, row * MOMENT_SLOTS);
  }

  set(row: number, m: Moments): void {
    momentsToSlots(m, this.data, row * MOMENT_SLOTS);
    this.merged = null;
  }

  /** Rows of `block` (in the same layout) as rows rowStart.. of this table. */
  setRows(rowStart: number, block: Float64Array): void {
    this.data.set(block, rowStart * MOMENT_SLOTS);
    this.merged = null;
  }

  /** The whole tensor's moments: every row merged in row order. */
  total(): Moments {
    if (this.merged === null) {
      const acc = new Float64Array(MOMENT_SLOTS);
      momentsToSlots(emptyMoments(), acc, 0);
      for (let r = 0; r < this.rows; r++) mergeSlots(acc, 0, this.data, r * MOMENT_SLOTS);
      this.merged = slotsToMoments(acc, 0);
    }
    return { ...this.merged };
  }
}

/** Moments of values[start, end) by two passes in f64 (mean first, then central sums). */
export function momentsOf(values: Float32Array, start = 0, end = values.length): Moments {
  const m = emptyMoments();
  let sum = 0;
  for (let i = start; i < end; i++) {
    const x = values[i]!;
    if (Number.isFinite(x)) {
      sum += x;
      m.count++;
      if (x < m.min) m.min = x;
      if (x > m.max) m.max = x;
      const ax = Math.abs(x);
      if (ax > m.absMax) m.absMax = ax;
    } else if (Number.isNaN(x)) m.nanCount++;
    else m.infCount++;
  }
  if (m.count === 0) return m;
  m.mean = sum / m.count;
  for (let i = start; i < end; i++) {
    const x = values[i]!;
    if (!Number.isFinite(x)) continue;
    const d = x - m.mean;
    const d2 = d * d;
    m.m2 += d2;
    m.m3 += d2 * d;
    m.m4 += d2 * d2;
  }
  return m;
}

export interface MomentSummary {
  count: number;
  nanCount: number;
  infCount: number;
  min: number;
  max: number;
  absMax: number;
  mean: number;
  /** Population variance M2 / n. */
  variance: number;
  /** Excess kurtosis n*M4/M2^2 - 3 (0 for a normal distribution, large for heavy tails); 0 when variance is 0. */
  kurtosis: number;
}

const varianceOf = (count: number, m2: number): number => (count === 0 ? 0 : m2 / count);
const kurtosisOf = (count: number, m2: number, m4: number): number => (m2 > 0 ? (count * m4) / (m2 * m2) - 3 : 0);

export function summarizeMoments(m: Moments): MomentSummary {
  const empty = m.count === 0;
  return {
    count: m.count,
    nanCount: m.nanCount,
    infCount: m.infCount,
    min: empty ? 0 : m.min,
    max: empty ? 0 : m.max,
    absMax: m.absMax,
    mean: m.mean,
    variance: varianceOf(m.count, m.m2),
    kurtosis: kurtosisOf(m.count, m.m2, m.m4),
  };
}

// ---- histograms ----

/** Log-scale histogram: this many sub-bins per octave (top two mantissa bits). */
export const LOG_BINS_PER_OCTAVE = 4;

export interface FixedHistogramSpec {
  bins: number;
  /** f32 lower edge (= tensor min). */
  lo: number;
  /** f32 bins per unit. */
  scale: number;
}

export function fixedHistogramSpec(bins: number, min: number, max: number): FixedHistogramSpec {
  const lo = Math.fround(min);
  const span = max - min;
  return { bins, lo, scale: span > 0 ? Math.fround(bins / span) : 0 };
}

/** The bin of a finite f32 value (the rule GPU and CPU share). */
export function fixedBinOf(x: number, spec: FixedHistogramSpec): number {
  const t = Math.floor(Math.fround(Math.fround(x - spec.lo) * spec.scale));
  return Math.max(0, Math.min(spec.bins - 1, t));
}

export interface LogHistogramSpec {
  /** Number of octaves covered, ending with the octave of absMax. */
  octaves: number;
  /** Biased f32 exponent of absMax (the top octave). */
  topExponent: number;
}

export function logHistogramSpec(octaves: number, absMax: number): LogHistogramSpec {
  return { octaves, topExponent: f32Exponent(absMax) };
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

function f32Bits(x: number): number {
  f32Scratch[0] = x;
  return u32Scratch[0]!;
}

/** Biased exponent field of an f32 (0 for zero and subnormals). */
export function f32Exponent(x: number): number {
  return (f32Bits(x) >>> 23) & 0xff;
}

/** Log bin of a finite value, or -1 for underflow (zero, subnormal, or below the covered octaves). */
export function logBinOf(x: number, spec: LogHistogramSpec): number {
  const bits = f32Bits(x) & 0x7fffffff;
  const exponent = bits >>> 23;
  const first = spec.topExponent - spec.octaves + 1;
  if (exponent === 0 || exponent < first) return -1;
  const bin = (exponent - first) * LOG_BINS_PER_OCTAVE + ((bits >>> 21) & 3);
  return Math.min(bin, spec.octaves * LOG_BINS_PER_OCTAVE - 1);
}

/** Lower edge (|x|) of a log bin, for labels. */
export function logBinLowerEdge(bin: number, spec: LogHistogramSpec): number {
  const first = spec.topExponent - spec.octaves + 1;
  const exponent = first + Math.floor(bin / LOG_BINS_PER_OCTAVE);
  const quarter = bin % LOG_BINS_PER_OCTAVE;
  return Math.pow(2, exponent - 127) * (1 + quarter / LOG_BINS_PER_OCTAVE);
}

// ---- the whole-tensor computation ----

export interface WeightStatsOptions {
  /** Fixed-width bins over [min, max]. */
  histogramBins: number;
  /** Octaves covered by the log-scale histogram (4 bins each). */
  logOctaves: number;
  /** A value is an outlier when |x - mean| > outlierSigma * std of its tensor (or > outlierAbsThreshold when set). */
  outlierSigma: number;
  outlierAbsThreshold?: number;
  /** With outlierAbsThreshold: the value outliers are measured from (default 0). */
  outlierCenter?: number;
  /** How many of the most outlier-heavy rows / columns to list. */
  topChannels: number;
}

export const DEFAULT_WEIGHT_STATS_OPTIONS: WeightStatsOptions = {
  histogramBins: 64,
  logOctaves: 24,
  outlierSigma: 6,
  topChannels: 16,
};

export interface ChannelCount {
  index: number;
  count: number;
}

export interface TensorStats extends MomentSummary {
  name: string;
  shape: number[];
  rows: number;
  rowLength: number;
  /** Per row (output channel). */
  rowAbsMax: Float32Array;
  rowMin: Float32Array;
  rowMax: Float32Array;
  rowMean: Float32Array;
  rowVariance: Float32Array;
  rowKurtosis: Float32Array;
  rowOutlierCounts: Uint32Array;
  columnOutlierCounts: Uint32Array;
  outlierThreshold: number;
  /** Outliers are |x - outlierCenter| > outlierThreshold. */
  outlierCenter: number;
  outlierCount: number;
  histogram: { lo: number; hi: number; counts: Uint32Array };
  logHistogram: { octaves: number; topExponent: number; underflow: number; counts: Uint32Array };
}

export function validateStatsOptions(o: WeightStatsOptions): void {
  if (!Number.isInteger(o.histogramBins) || o.histogramBins < 1 || o.histogramBins > 256) throw new InvalidArgumentError(`histogram bins must be an integer in 1..256, got ${o.histogramBins}`);
  if (!Number.isInteger(o.logOctaves) || o.logOctaves < 1 || o.logOctaves > 64) throw new InvalidArgumentError(`log histogram octaves must be an integer in 1..64, got ${o.logOctaves}`);
  if (!(o.outlierSigma > 0)) throw new InvalidArgumentError(`outlier sigma must be positive, got ${o.outlierSigma}`);
  if (o.outlierAbsThreshold !== undefined && !(o.outlierAbsThreshold >= 0)) throw new InvalidArgumentError(`outlier threshold must be >= 0, got ${o.outlierAbsThreshold}`);
}

/** Row count and row length of a row-major shape (a scalar or 1-D tensor is one row). */
export function rowsOf(shape: readonly number[]): { rows: number; rowLength: number } {
  if (shape.length <= 1) return { rows: 1, rowLength: shape[0] ?? 1 };
  const rows = shape[0]!;
  return { rows, rowLength: shape.slice(1).reduce((a, b) => a * b, 1) };
}

/** The threshold an outlier must exceed, from the tensor's moments. f32 so both paths compare alike. */
export function outlierThresholdOf(summary: MomentSummary, o: WeightStatsOptions): number {
  return Math.fround(o.outlierAbsThreshold ?? o.outlierSigma * Math.sqrt(summary.variance));
}

/** Per-row moments: the first pass of both paths. */
export function rowMomentsCpu(values: Float32Array, rows: number, rowLength: number): RowMoments {
  const out = new RowMoments(rows);
  for (let r = 0; r < rows; r++) out.set(r, momentsOf(values, r * rowLength, (r + 1) * rowLength));
  return out;
}

/** Per-row moments to the tensor's per-row arrays (summarizeMoments of each row, as f32) and whole-tensor moments. */
export function assembleFromRowMoments(rowMoments: RowMoments): { total: Moments; rowArrays: Pick<TensorStats, 'rowAbsMax' | 'rowMin' | 'rowMax' | 'rowMean' | 'rowVariance' | 'rowKurtosis'> } {
  const n = rowMoments.rows;
  const rowArrays = {
    rowAbsMax: new Float32Array(n),
    rowMin: new Float32Array(n),
    rowMax: new Float32Array(n),
    rowMean: new Float32Array(n),
    rowVariance: new Float32Array(n),
    rowKurtosis: new Float32Array(n),
  };
  const d = rowMoments.data;
  for (let r = 0; r < n; r++) {
    const o = r * MOMENT_SLOTS;
    const count = d[o + COUNT]!;
    rowArrays.rowAbsMax[r] = d[o + ABS_MAX]!;
    rowArrays.rowMin[r] = count === 0 ? 0 : d[o + MIN]!;
    rowArrays.rowMax[r] = count === 0 ? 0 : d[o + MAX]!;
    rowArrays.rowMean[r] = d[o + MEAN]!;
    rowArrays.rowVariance[r] = varianceOf(count, d[o + M2]!);
    rowArrays.rowKurtosis[r] = kurtosisOf(count, d[o + M2]!, d[o + M4]!);
  }
  return { total: rowMoments.total(), rowArrays };
}

/** What pass 2 (histograms and outliers) needs from pass 1 (the tensor's moments). */
export interface SecondPassSpec {
  fixed: FixedHistogramSpec;
  log: LogHistogramSpec;
  /** f32 threshold: |f32(x - center)| > threshold is an outlier. */
  threshold: number;
  /** f32 tensor mean (0 with an absolute threshold): outliers are measured from it. */
  center: number;
}

export function secondPassSpecOf(summary: MomentSummary, options: WeightStatsOptions): SecondPassSpec {
  return {
    fixed: fixedHistogramSpec(options.histogramBins, summary.min, summary.max),
    log: logHistogramSpec(options.logOctaves, summary.absMax),
    threshold: outlierThresholdOf(summary, options),
    center: options.outlierAbsThreshold === undefined ? Math.fround(summary.mean) : Math.fround(options.outlierCenter ?? 0),
  };
}

/** Pass 2 counters; `log` has one more slot at the end for underflow. */
export interface SecondPassCounts {
  fixed: Uint32Array;
  log: Uint32Array;
  rowOutliers: Uint32Array;
  columnOutliers: Uint32Array;
}

export function emptySecondPassCounts(spec: SecondPassSpec, rows: number, rowLength: number): SecondPassCounts {
  return {
    fixed: new Uint32Array(spec.fixed.bins),
    log: new Uint32Array(spec.log.octaves * LOG_BINS_PER_OCTAVE + 1),
    rowOutliers: new Uint32Array(rows),
    columnOutliers: new Uint32Array(rowLength),
  };
}

/** Adds whole rows `values` (starting at row `rowStart`) to the pass 2 counters. */
export function countSecondPassCpu(values: Float32Array, rowStart: number, rowLength: number, spec: SecondPassSpec, counts: SecondPassCounts): void {
  const underflowSlot = counts.log.length - 1;
  const rows = rowLength === 0 ? 0 : values.length / rowLength;
  for (let r = 0; r < rows; r++) {
    const base = r * rowLength;
    for (let c = 0; c < rowLength; c++) {
      const x = values[base + c]!;
      if (!Number.isFinite(x)) continue;
      counts.fixed[fixedBinOf(x, spec.fixed)]!++;
      const lb = logBinOf(x, spec.log);
      counts.log[lb < 0 ? underflowSlot : lb]!++;
      if (Math.abs(Math.fround(x - spec.center)) > spec.threshold) {
        counts.rowOutliers[rowStart + r]!++;
        counts.columnOutliers[c]!++;
      }
    }
  }
}

/** Assembles a TensorStats from the per-row moments (pass 1) and the pass 2 counters. */
export function statsFromPasses(name: string, shape: readonly number[], rowMoments: RowMoments, spec: SecondPassSpec, counts: SecondPassCounts): TensorStats {
  const { rows, rowLength } = rowsOf(shape);
  const { total, rowArrays } = assembleFromRowMoments(rowMoments);
  const summary = summarizeMoments(total);
  let outlierCount = 0;
  for (const c of counts.rowOutliers) outlierCount += c;
  const logBins = counts.log.length - 1;
  return finishTensorStats(name, shape, rows, rowLength, summary, rowArrays, {
    threshold: spec.threshold,
    center: spec.center,
    outlierCount,
    rowOutlierCounts: counts.rowOutliers,
    columnOutlierCounts: counts.columnOutliers,
    histogram: { lo: summary.min, hi: summary.max, counts: counts.fixed },
    logHistogram: { octaves: spec.log.octaves, topExponent: spec.log.topExponent, underflow: counts.log[logBins]!, counts: counts.log.slice(0, logBins) },
  });
}

export function checkShape(name: string, shape: readonly number[], valueCount: number): { rows: number; rowLength: number } {
  const { rows, rowLength } = rowsOf(shape);
  if (rows * rowLength !== valueCount) throw new InvalidArgumentError(`${name}: shape [${shape.join(', ')}] needs ${rows * rowLength} values, got ${valueCount}`);
  return { rows, rowLength };
}

/** Statistics of one tensor held in memory as f32: the CPU reference (the job streams the same two passes by row windows). */
export function computeTensorStats(name: string, shape: readonly number[], values: Float32Array, options: WeightStatsOptions = DEFAULT_WEIGHT_STATS_OPTIONS): TensorStats {
  validateStatsOptions(options);
  const { rows, rowLength } = checkShape(name, shape, values.length);
  const rowMoments = rowMomentsCpu(values, rows, rowLength);
  const spec = secondPassSpecOf(summarizeMoments(rowMoments.total()), options);
  const counts = emptySecondPassCounts(spec, rows, rowLength);
  countSecondPassCpu(values, 0, rowLength, spec, counts);
  return statsFromPasses(name, shape, rowMoments, spec, counts);
}

function finishTensorStats(
  name: string,
  shape: readonly number[],
  rows: number,
  rowLength: number,
  summary: MomentSummary,
  rowArrays: Pick<TensorStats, 'rowAbsMax' | 'rowMin' | 'rowMax' | 'rowMean' | 'rowVariance' | 'rowKurtosis'>,
  second: {
    threshold: number;
    center: number;
    outlierCount: number;
    rowOutlierCounts: Uint32Array;
    columnOutlierCounts: Uint32Array;
    histogram: TensorStats['histogram'];
    logHistogram: TensorStats['logHistogram'];
  },
): TensorStats {
  return {
    name,
    shape: [...shape],
    rows,
    rowLength,
    ...summary,
    ...rowArrays,
    rowOutlierCounts: second.rowOutlierCounts,
    columnOutlierCounts: second.columnOutlierCounts,
    outlierThreshold: second.threshold,
    outlierCenter: second.center,
    outlierCount: second.outlierCount,
    histogram: second.histogram,
    logHistogram: second.logHistogram,
  };
}

/** The `top` largest counts (ties by index), zero counts left out. */
export function topCounts(counts: Uint32Array, top: number): ChannelCount[] {
  // The best so far, in order (count down, index up); a count enters only above the last kept one, so one pass
  // over counts (rows of a tensor with outliers everywhere: tens of thousands) with few insertions.
  const best: ChannelCount[] = [];
  if (top <= 0) return best;
  for (let index = 0; index < counts.length; index++) {
    const count = counts[index]!;
    if (count === 0 || (best.length === top && count <= best[top - 1]!.count)) continue;
    let at = best.length;
    while (at > 0 && best[at - 1]!.count < count) at--;
    best.splice(at, 0, { index, count });
    if (best.length > top) best.pop();
  }
  return best;
}

/**
 * The CPU path over a tensor too large to hold twice: pass 1 and pass 2 stream windows of whole rows
 * from `readRows` (a tensor that fits one window is read once). Same results as computeTensorStats.
 */
export async function tensorStatsStreamed(
  name: string,
  shape: readonly number[],
  readRows: (rowStart: number, rowCount: number) => Promise<Float32Array>,
  options: WeightStatsOptions,
  run: { signal?: AbortSignal; maxWindowElements?: number } = {},
): Promise<TensorStats> {
  validateStatsOptions(options);
  const elementCount = shape.reduce((a, b) => a * b, 1);
  const { rows, rowLength } = checkShape(name, shape, elementCount);
  const perWindow = Math.max(1, Math.floor((run.maxWindowElements ?? 16 * 1024 * 1024) / Math.max(1, rowLength)));
  const windows: { start: number; count: number }[] = [];
  if (elementCount > 0) for (let r = 0; r < rows; r += perWindow) windows.push({ start: r, count: Math.min(perWindow, rows - r) });
  const checkCancel = () => {
    if (run.signal?.aborted === true) throw new CancelledError();
  };
  const rowMoments = new RowMoments(rows);
  let resident: Float32Array | null = null;
  for (const w of windows) {
    checkCancel();
    const values = await readRows(w.start, w.count);
    checkShape(name, [w.count, rowLength], values.length);
    rowMoments.setRows(w.start, rowMomentsCpu(values, w.count, rowLength).data);
    if (windows.length === 1) resident = values;
  }
  const spec = secondPassSpecOf(summarizeMoments(rowMoments.total()), options);
  const counts = emptySecondPassCounts(spec, rows, rowLength);
  for (const w of windows) {
    checkCancel();
    const values = resident ?? (await readRows(w.start, w.count));
    countSecondPassCpu(values, w.start, rowLength, spec, counts);
  }
  return statsFromPasses(name, shape, rowMoments, spec, counts);
}
