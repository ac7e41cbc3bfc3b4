/**
 * Calibration capture: one forward pass over calibration text, collecting for every activation site
 * (the input of each linear layer, the residual stream after each block, the input of lm_head)
 * per-channel absmax, mean |x|, the count of token rows with |x| >= threshold, and a log2-binned
 * histogram of |x|. Streaming: each window's activations are folded in and dropped.
 *
 * The hook API (ForwardHooks.onActivation in forward.ts) is the extension point for calibrated
 * methods: a GPTQ Hessian collector or an AWQ activation sampler is another ForwardHooks object,
 * combined with this one through `combineHooks`.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, IoError } from '../errors';
import type { ActivationSiteStats, MagnitudeHistogram } from '../../protocol/analysis';
import { median, standoutChannels } from '../analysis/emergentFeatures';
import type { ActivationSite, ForwardHooks, LayerWeights, LlamaModel } from './forward';
import type { BpeTokenizer } from './tokenizer';

export const DEFAULT_OUTLIER_THRESHOLD = 6.0;

/** Histogram of |x|: 4 bins per octave from 2^-10 to 2^10. */
export const HISTOGRAM_MIN_LOG2 = -10;
export const HISTOGRAM_MAX_LOG2 = 10;
export const HISTOGRAM_BINS_PER_OCTAVE = 4;

export function histogramEdges(): number[] {
  const edges: number[] = [];
  for (let i = HISTOGRAM_MIN_LOG2 * HISTOGRAM_BINS_PER_OCTAVE; i <= HISTOGRAM_MAX_LOG2 * HISTOGRAM_BINS_PER_OCTAVE; i++) edges.push(2 ** (i / HISTOGRAM_BINS_PER_OCTAVE));
  return edges;
}

/** Running statistics of one site. */
export class SiteAccumulator {
  readonly absmax: Float32Array;
  readonly sumAbs: Float64Array;
  readonly countAtLeast: Uint32Array;
  readonly histogram: Float64Array;
  belowFirst = 0;
  aboveLast = 0;
  tokens = 0;

  constructor(
    readonly site: ActivationSite,
    readonly channels: number,
    readonly threshold: number,
  ) {
    this.absmax = new Float32Array(channels);
    this.sumAbs = new Float64Array(channels);
    this.countAtLeast = new Uint32Array(channels);
    this.histogram = new Float64Array((HISTOGRAM_MAX_LOG2 - HISTOGRAM_MIN_LOG2) * HISTOGRAM_BINS_PER_OCTAVE);
  }

  add(x: Float32Array, rows: number): void {
    const width = this.channels;
    const bins = this.histogram.length;
    const lowest = 2 ** HISTOGRAM_MIN_LOG2;
    const highest = 2 ** HISTOGRAM_MAX_LOG2;
    for (let t = 0; t < rows; t++) {
      const base = t * width;
      for (let j = 0; j < width; j++) {
        const a = Math.abs(x[base + j]!);
        if (a > this.absmax[j]!) this.absmax[j] = a;
        this.sumAbs[j] = this.sumAbs[j]! + a;
        if (a >= this.threshold) this.countAtLeast[j] = this.countAtLeast[j]! + 1;
        if (a < lowest) this.belowFirst++;
        else if (a >= highest) this.aboveLast++;
        else {
          const bin = Math.min(bins - 1, Math.floor((Math.log2(a) - HISTOGRAM_MIN_LOG2) * HISTOGRAM_BINS_PER_OCTAVE));
          this.histogram[bin] = this.histogram[bin]! + 1;
        }
      }
    }
    this.tokens += rows;
  }

  summary(): ActivationSiteStats {
    const outlierDims: number[] = [];
    for (let j = 0; j < this.channels; j++) if (this.countAtLeast[j]! > 0) outlierDims.push(j);
    const histogram: MagnitudeHistogram = { edges: histogramEdges(), counts: Array.from(this.histogram), belowFirst: this.belowFirst, aboveLast: this.aboveLast };
    return {
      id: this.site.id,
      kind: this.site.kind,
      layer: this.site.layer,
      consumers: this.site.consumers,
      channels: this.channels,
      tokens: this.tokens,
      absmax: Array.from(this.absmax),
      meanAbs: Array.from(this.sumAbs, (s) => (this.tokens > 0 ? s / this.tokens : 0)),
      countAtLeastThreshold: Array.from(this.countAtLeast),
      outlierDims,
      standoutDims: standoutChannels(this.absmax),
      medianAbsmax: median(this.absmax),
      histogram,
    };
  }
}

/** A ForwardHooks that folds every site's activations into a SiteAccumulator. */
export class ActivationStatsCollector implements ForwardHooks {
  readonly sites = new Map<string, SiteAccumulator>();
  constructor(readonly threshold = DEFAULT_OUTLIER_THRESHOLD) {}

  onActivation(site: ActivationSite, x: Float32Array, rows: number, width: number): void {
    let acc = this.sites.get(site.id);
    if (acc === undefined) {
      acc = new SiteAccumulator(site, width, this.threshold);
      this.sites.set(site.id, acc);
    }
    acc.add(x, rows);
  }

  summaries(): ActivationSiteStats[] {
    return [...this.sites.values()].map((s) => s.summary());
  }
}

/** Runs several hook objects in order on every event. */
export function combineHooks(...all: ForwardHooks[]): ForwardHooks {
  return {
    onActivation(site, x, rows, width, window) {
      for (const h of all) h.onActivation?.(site, x, rows, width, window);
    },
    onLayerWeights(layer: number, weights: LayerWeights) {
      for (const h of all) h.onLayerWeights?.(layer, weights);
    },
  };
}

/**
 * Reads a calibration / evaluation text file: refuses an empty file and one that is not UTF-8
 * (a binary or a Latin-1 file would tokenize into garbage without any error).
 */
export async function readTextFile(path: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new IoError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
  if (bytes.length === 0) throw new InvalidArgumentError(`${path}: the text file is empty`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidArgumentError(`${path}: the text file is not valid UTF-8`);
  }
  if (text.trim().length === 0) throw new InvalidArgumentError(`${path}: the text file holds only whitespace`);
  return text;
}

export interface CalibrationOptions {
  /** Tokens to use (rounded down to whole windows, at least one window). */
  tokens: number;
  /** Window length; capped at the model's max_position_embeddings. */
  ctx: number;
  threshold?: number;
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
  /** Extra hooks (Hessian collectors, ...) run in the same pass. */
  hooks?: ForwardHooks;
}

export interface CalibrationResult {
  sites: ActivationSiteStats[];
  windows: number;
  windowTokens: number;
  tokens: number;
  threshold: number;
  seconds: number;
}

/** Tokenizes `text`, cuts windows and runs one pass without the output head. */
export async function runCalibration(model: LlamaModel, tokenizer: BpeTokenizer, text: string, options: CalibrationOptions): Promise<CalibrationResult> {
  const started = performance.now();
  const threshold = options.threshold ?? DEFAULT_OUTLIER_THRESHOLD;
  if (!(threshold > 0)) throw new InvalidArgumentError(`--threshold must be a positive number, got ${threshold}`);
  if (!Number.isSafeInteger(options.tokens) || options.tokens < 2) throw new InvalidArgumentError(`--tokens must be an integer >= 2, got ${options.tokens}`);
  if (options.ctx > model.config.maxPositionEmbeddings) {
    throw new InvalidArgumentError(`context of ${options.ctx} tokens is longer than the model's max_position_embeddings (${model.config.maxPositionEmbeddings})`);
  }
  const ids = tokenizer.encode(text);
  const ctx = Math.min(options.ctx, options.tokens, ids.length);
  if (ctx < 2) throw new InvalidArgumentError(`the calibration text has ${ids.length} token(s); at least 2 are needed`);
  const windows = Math.max(1, Math.min(Math.floor(options.tokens / ctx), Math.floor(ids.length / ctx)));
  const batches: Int32Array[] = [];
  for (let w = 0; w < windows; w++) batches.push(Int32Array.from(ids.slice(w * ctx, (w + 1) * ctx)));
  const collector = new ActivationStatsCollector(threshold);
  const hooks = options.hooks === undefined ? collector : combineHooks(collector, options.hooks);
  await model.run(batches, () => undefined, { hooks, skipLogits: true, signal: options.signal, onProgress: options.onProgress });
  return {
    sites: collector.summaries(),
    windows,
    windowTokens: ctx,
    tokens: windows * ctx,
    threshold,
    seconds: (performance.now() - started) / 1000,
  };
}
