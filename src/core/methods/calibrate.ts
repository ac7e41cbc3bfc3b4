/**
 * The calibration pass the methods share: the model runs layer at a time over the calibration
 * windows, and inside each layer site by site (q/k/v input, o input, gate/up input, down input).
 * At each site the statistics of its input are handed to the method, which rewrites that site's
 * linear weights (and the norm or linear that feeds it) before the next site's input is computed
 * from them. So every layer is calibrated on the outputs of the already-quantized layers before it,
 * and within a layer o sees quantized q/k/v, down sees quantized gate/up (GPTQ's "true sequential").
 *
 * Memory: one layer's weights, the hidden states of the calibration windows, one site's
 * statistics (its Hessian/Gram when the method needs one) and the site's inputs of all windows.
 * A finished layer leaves memory through a LayerSink: kept (LayersInMemory, small models and tests),
 * spilled to a temporary file read back by row range (LayerSpillFile, what the writers and compare use),
 * or dropped (discardLayers: GPTQ and LLM.int8() write from their own results).
 * The math is the forward pass's own kernels (the SIMD matmul and attention), so that the calibration
 * inputs are bit for bit what the evaluation computes; only the order of the steps is ours.
 */
import { open, rm, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';
import { CancelledError, InvalidArgumentError, IoError, UnsupportedError } from '../errors';
import type { LlamaModel, LayerWeights, LinearRole } from '../model/forward';
import { addQkvBiases, LINEAR_ROLES, linearModuleName } from '../model/forward';
import { addInPlace, applyRope, rmsNorm, ropeTables } from '../model/kernels';
import { attentionByMatmul, attentionScratch, matmul, swigluF32 } from '../model/wasmMatmul';
import type { LlamaConfig } from '../model/llamaConfig';
import { InputStatsAccumulator, type AsyncGramAccumulator, type InputStatsOptions } from './inputStats';

export type CalibrationSite = 'attn_in' | 'attn_out' | 'mlp_in' | 'mlp_act';
export const CALIBRATION_SITES: readonly CalibrationSite[] = ['attn_in', 'attn_out', 'mlp_in', 'mlp_act'];

/** The linear layers that read each site. */
export const SITE_ROLES: Record<CalibrationSite, readonly LinearRole[]> = {
  attn_in: ['q', 'k', 'v'],
  attn_out: ['o'],
  mlp_in: ['gate', 'up'],
  mlp_act: ['down'],
};

export interface SiteContext {
  layer: number;
  site: CalibrationSite;
  config: LlamaConfig;
  /** Statistics of the site's input over all calibration tokens. */
  stats: InputStatsAccumulator;
  /** The layer's weights: the method rewrites them in place. */
  weights: LayerWeights;
  signal: AbortSignal | undefined;
}

export type SiteOutcome = void | 'inputs-changed';

export interface LayerwiseMethod {
  /** What to gather at a site (Gram matrix, sampled rows, outlier threshold). */
  statsOptions(site: CalibrationSite): InputStatsOptions;
  /**
   * Called once per layer and site, in order; rewrites the weights in place. Returns 'inputs-changed'
   * when it also rewrote what produces the site's input (AWQ folding into v or up), so that the
   * kept inputs are recomputed before they are multiplied by the new weights. May be asynchronous (GPTQ on
   * the GPU): the driver waits for it before the next site.
   */
  processSite(ctx: SiteContext): SiteOutcome | Promise<SiteOutcome>;
}

/** Input width of each linear role. */
export function inputWidth(config: LlamaConfig, role: LinearRole): number {
  if (role === 'o') return config.numHeads * config.headDim;
  if (role === 'down') return config.intermediateSize;
  return config.hiddenSize;
}

export function outputWidth(config: LlamaConfig, role: LinearRole): number {
  if (role === 'q') return config.numHeads * config.headDim;
  if (role === 'k' || role === 'v') return config.numKvHeads * config.headDim;
  if (role === 'gate' || role === 'up') return config.intermediateSize;
  return config.hiddenSize;
}

/**
 * Runs one site's statistics pass with the Gram accumulator it supplies: `true` for the CPU HessianAccumulator, or
 * an asynchronous one (GPTQ's Hessian on a job's GPU, jobs/gptqDevice.ts). It may run `pass` again with another
 * accumulator (a GPU failure under `auto` reruns the site's pass on the CPU); `pass` starts from scratch each time.
 */
export type GramProvider = <T>(columns: number, pass: (gram: true | AsyncGramAccumulator) => Promise<T>) => Promise<T>;

export interface CalibrationRunOptions {
  signal?: AbortSignal;
  /** Where sites that want a Gram matrix accumulate it (default: the CPU HessianAccumulator). */
  gram?: GramProvider;
  /** Where each finished layer goes (LayersInMemory, LayerSpillFile); default dropped. */
  sink?: LayerSink;
  onProgress?(layersDone: number, layers: number): void;
  /** Minimum tokens a site's statistics must cover (e.g. GPTQ's Hessian needs its width). */
  minimumTokens?(site: CalibrationSite, width: number): number;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new CancelledError('calibration cancelled');
}

/**
 * Runs the method over every layer and hands each layer's rewritten weights (f32) to `options.sink` (default: dropped) as soon as the
 * layer is done, so that calibration holds one layer's weights at a time (the sink decides whether the
 * result stays in memory, goes to a spill file or is dropped). Nothing is written to the output: the caller
 * writes the result atomically, or evaluates it.
 */
export async function runLayerwiseCalibration(model: LlamaModel, windows: readonly Int32Array[], method: LayerwiseMethod, options: CalibrationRunOptions = {}): Promise<void> {
  const sink = options.sink ?? discardLayers;
  const c = model.config;
  const rows = windows[0]?.length ?? 0;
  if (rows === 0 || windows.length === 0) throw new InvalidArgumentError('calibration: no calibration tokens');
  if (windows.some((w) => w.length !== rows)) throw new InvalidArgumentError('calibration: all windows must have the same length');
  const signal = options.signal;
  const H = c.hiddenSize;
  const qWidth = c.numHeads * c.headDim;
  const kvWidth = c.numKvHeads * c.headDim;
  const I = c.intermediateSize;
  const n = windows.length;
  throwIfAborted(signal);

  const hidden = new Float32Array(n * rows * H);
  for (let w = 0; w < n; w++) await model.embed(windows[w]!, hidden.subarray(w * rows * H, (w + 1) * rows * H));
  const tables = ropeTables(rows, c.headDim, c.ropeTheta);
  const normed = new Float32Array(rows * H);
  const q = new Float32Array(rows * qWidth);
  const k = new Float32Array(rows * kvWidth);
  const v = new Float32Array(rows * kvWidth);
  const projected = new Float32Array(rows * H);
  const up = new Float32Array(rows * I);
  const attention = attentionScratch(rows, c.headDim);
  // Site inputs of every window, kept between gathering the statistics and using the rewritten weights.
  const contexts = new Float32Array(n * rows * qWidth);
  const acts = new Float32Array(n * rows * I);

  const gather = async (l: number, site: CalibrationSite, width: number, fill: (w: number) => Float32Array): Promise<InputStatsAccumulator> => {
    const statsOptions = method.statsOptions(site);
    const pass = async (gram: boolean | AsyncGramAccumulator | undefined): Promise<InputStatsAccumulator> => {
      const stats = new InputStatsAccumulator(width, { ...statsOptions, gram });
      for (let w = 0; w < n; w++) {
        throwIfAborted(signal);
        // An asynchronous Gram reads the scratch row buffer until its promise settles: wait before the next fill.
        const pending = stats.addRows(fill(w), rows);
        if (pending !== undefined) await pending;
      }
      await stats.finish();
      return stats;
    };
    const stats = statsOptions.gram === true && options.gram !== undefined ? await options.gram(width, pass) : await pass(statsOptions.gram);
    const need = options.minimumTokens?.(site, width) ?? 1;
    if (stats.tokens < need) {
      const names = SITE_ROLES[site].map((r) => linearModuleName(l, r)).join(', ');
      throw new InvalidArgumentError(`calibration covers ${stats.tokens} tokens at ${names}; this method needs at least ${need} (give a longer --calib text or more windows)`);
    }
    return stats;
  };

  for (let l = 0; l < c.numLayers; l++) {
    throwIfAborted(signal);
    const weights = await model.readLayer(l);
    const L = weights.linear;
    const hiddenOf = (w: number): Float32Array => hidden.subarray(w * rows * H, (w + 1) * rows * H);
    const process = async (site: CalibrationSite, stats: InputStatsAccumulator, recompute: (w: number) => Float32Array): Promise<void> => {
      throwIfAborted(signal);
      const outcome = await method.processSite({ layer: l, site, config: c, stats, weights, signal });
      if (outcome === 'inputs-changed') {
        for (let w = 0; w < n; w++) {
          throwIfAborted(signal);
          recompute(w);
        }
      }
    };

    // q/k/v input: the attention norm of the hidden states.
    const attnIn = (w: number): Float32Array => {
      rmsNorm(hiddenOf(w), weights.attnNorm, normed, rows, H, c.rmsNormEps);
      return normed;
    };
    await process('attn_in', await gather(l, 'attn_in', H, attnIn), attnIn);
    // o input: attention with the rewritten q/k/v (and norm).
    const attnOut = (w: number): Float32Array => {
      rmsNorm(hiddenOf(w), weights.attnNorm, normed, rows, H, c.rmsNormEps);
      matmul(normed, L.q, q, rows, H, qWidth);
      matmul(normed, L.k, k, rows, H, kvWidth);
      matmul(normed, L.v, v, rows, H, kvWidth);
      addQkvBiases(weights, q, k, v, rows);
      applyRope(q, rows, c.numHeads, c.headDim, tables, c.ropeLayout);
      applyRope(k, rows, c.numKvHeads, c.headDim, tables, c.ropeLayout);
      const context = contexts.subarray(w * rows * qWidth, (w + 1) * rows * qWidth);
      attentionByMatmul(q, k, v, context, rows, c.numHeads, c.numKvHeads, c.headDim, attention);
      return context;
    };
    await process('attn_out', await gather(l, 'attn_out', qWidth, attnOut), attnOut);
    // Residual with the rewritten o.
    for (let w = 0; w < n; w++) {
      throwIfAborted(signal);
      matmul(contexts.subarray(w * rows * qWidth, (w + 1) * rows * qWidth), L.o, projected, rows, qWidth, H);
      addInPlace(hiddenOf(w), projected, rows * H);
    }
    // gate/up input: the MLP norm.
    const mlpIn = (w: number): Float32Array => {
      rmsNorm(hiddenOf(w), weights.ffnNorm, normed, rows, H, c.rmsNormEps);
      return normed;
    };
    await process('mlp_in', await gather(l, 'mlp_in', H, mlpIn), mlpIn);
    // down input: SwiGLU with the rewritten gate/up.
    const mlpAct = (w: number): Float32Array => {
      rmsNorm(hiddenOf(w), weights.ffnNorm, normed, rows, H, c.rmsNormEps);
      const act = acts.subarray(w * rows * I, (w + 1) * rows * I);
      matmul(normed, L.gate, act, rows, H, I);
      matmul(normed, L.up, up, rows, H, I);
      swigluF32(act, up, rows * I);
      return act;
    };
    await process('mlp_act', await gather(l, 'mlp_act', I, mlpAct), mlpAct);
    for (let w = 0; w < n; w++) {
      throwIfAborted(signal);
      matmul(acts.subarray(w * rows * I, (w + 1) * rows * I), L.down, projected, rows, I, H);
      addInPlace(hiddenOf(w), projected, rows * H);
    }
    await sink.put(l, weights);
    options.onProgress?.(l + 1, c.numLayers);
  }
}

/** The tensors of a layer that a method rewrites (biases are never rewritten). */
export type LayerTensor = 'attnNorm' | 'ffnNorm' | LinearRole;
export const LAYER_TENSORS: readonly LayerTensor[] = ['attnNorm', 'ffnNorm', ...LINEAR_ROLES];

/** Where runLayerwiseCalibration puts each finished layer. */
export interface LayerSink {
  put(layer: number, weights: LayerWeights): Promise<void>;
}

/** A calibration's rewritten layers, read back by row range (the method checkpoint's view, compare's evaluation). */
export interface CalibratedLayers {
  readonly numLayers: number;
  /** Rows [rowStart, rowStart + rowCount) of a rewritten tensor of `layer` (a norm is one row); a fresh array. */
  readRows(layer: number, tensor: LayerTensor, rowStart?: number, rowCount?: number): Promise<Float32Array>;
}

/** Rows x columns of each rewritten tensor (norms: one row of hidden). */
export function layerTensorShape(config: LlamaConfig, tensor: LayerTensor): { rows: number; cols: number } {
  if (tensor === 'attnNorm' || tensor === 'ffnNorm') return { rows: 1, cols: config.hiddenSize };
  return { rows: outputWidth(config, tensor), cols: inputWidth(config, tensor) };
}

function tensorOf(weights: LayerWeights, tensor: LayerTensor): Float32Array {
  return tensor === 'attnNorm' ? weights.attnNorm : tensor === 'ffnNorm' ? weights.ffnNorm : weights.linear[tensor];
}

function rowRange(config: LlamaConfig, layer: number, tensor: LayerTensor, rowStart: number, rowCount: number | undefined): { cols: number; start: number; count: number } {
  if (!(Number.isInteger(layer) && layer >= 0 && layer < config.numLayers)) throw new InvalidArgumentError(`calibrated layers: no layer ${layer} (the model has ${config.numLayers})`);
  const { rows, cols } = layerTensorShape(config, tensor);
  const count = rowCount ?? rows - rowStart;
  if (!(Number.isInteger(rowStart) && Number.isInteger(count)) || rowStart < 0 || count < 0 || rowStart + count > rows) {
    throw new InvalidArgumentError(`layer ${layer} ${tensor}: rows [${rowStart}, ${rowStart + count}) are outside [0, ${rows})`);
  }
  return { cols, start: rowStart, count };
}

/** Keeps every layer in memory: the whole model's rewritten f32 linears (small models, tests). */
export class LayersInMemory implements LayerSink, CalibratedLayers {
  readonly layers: LayerWeights[] = [];
  constructor(private readonly config: LlamaConfig) {}
  get numLayers(): number {
    return this.config.numLayers;
  }
  async put(layer: number, weights: LayerWeights): Promise<void> {
    this.layers[layer] = weights;
  }
  async readRows(layer: number, tensor: LayerTensor, rowStart = 0, rowCount?: number): Promise<Float32Array> {
    const { cols, start, count } = rowRange(this.config, layer, tensor, rowStart, rowCount);
    const weights = this.layers[layer];
    if (weights === undefined) throw new InvalidArgumentError(`calibrated layers: layer ${layer} was not calibrated`);
    return tensorOf(weights, tensor).slice(start * cols, (start + count) * cols);
  }
}

/** Drops each layer (the method keeps what its writer needs elsewhere: GPTQ's codes, LLM.int8()'s plans). */
export const discardLayers: LayerSink = { put: async () => undefined };

/**
 * The rewritten layers in a temporary file, written as each layer finishes and read back by row range, so that
 * neither calibration nor the writer holds more than a layer of them. Layout: layer after layer, each the
 * LAYER_TENSORS in order, raw f32 (the host's byte order, little-endian; checked). `dispose()` closes and deletes
 * the file; the owner calls it in `finally` (success, error and cancel alike). The path should be a temporary
 * name (atomicWrite's temporaryPathFor) so that a crash leaves only a hidden `.tmp` beside the output.
 */
export class LayerSpillFile implements LayerSink, CalibratedLayers {
  private readonly offsets = new Map<LayerTensor, number>();
  private readonly layerBytes: number;
  private readonly written: boolean[];
  private disposed = false;

  private constructor(
    readonly path: string,
    private readonly config: LlamaConfig,
    private readonly handle: FileHandle,
  ) {
    let offset = 0;
    for (const t of LAYER_TENSORS) {
      this.offsets.set(t, offset);
      const { rows, cols } = layerTensorShape(config, t);
      offset += rows * cols * 4;
    }
    this.layerBytes = offset;
    this.written = new Array<boolean>(config.numLayers).fill(false);
  }

  /** Creates the file (exclusively: an existing file is an error, never overwritten). */
  static async create(path: string, config: LlamaConfig): Promise<LayerSpillFile> {
    if (endianness() !== 'LE') throw new UnsupportedError('calibration spill file: a big-endian host');
    let handle: FileHandle;
    try {
      handle = await open(path, 'wx+', 0o600);
    } catch (e) {
      throw new IoError(`${path}: cannot create the calibration spill file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
    }
    return new LayerSpillFile(path, config, handle);
  }

  get numLayers(): number {
    return this.config.numLayers;
  }

  /** Bytes the file holds once every layer is written. */
  get totalBytes(): number {
    return this.layerBytes * this.config.numLayers;
  }

  async put(layer: number, weights: LayerWeights): Promise<void> {
    if (this.disposed) throw new InvalidArgumentError(`${this.path}: the calibration spill file is closed`);
    rowRange(this.config, layer, 'attnNorm', 0, undefined);
    for (const t of LAYER_TENSORS) {
      const values = tensorOf(weights, t);
      const { rows, cols } = layerTensorShape(this.config, t);
      if (values.length !== rows * cols) throw new InvalidArgumentError(`layer ${layer} ${t}: ${values.length} values, expected ${rows} x ${cols}`);
      await this.writeAt(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), layer * this.layerBytes + this.offsets.get(t)!);
    }
    this.written[layer] = true;
  }

  async readRows(layer: number, tensor: LayerTensor, rowStart = 0, rowCount?: number): Promise<Float32Array> {
    if (this.disposed) throw new InvalidArgumentError(`${this.path}: the calibration spill file is closed`);
    const { cols, start, count } = rowRange(this.config, layer, tensor, rowStart, rowCount);
    if (this.written[layer] !== true) throw new InvalidArgumentError(`calibrated layers: layer ${layer} was not calibrated`);
    const out = new Float32Array(count * cols);
    const bytes = new Uint8Array(out.buffer);
    const position = layer * this.layerBytes + this.offsets.get(tensor)! + start * cols * 4;
    let done = 0;
    try {
      while (done < bytes.byteLength) {
        const { bytesRead } = await this.handle.read(bytes, done, bytes.byteLength - done, position + done);
        if (bytesRead === 0) throw new IoError(`${this.path}: the calibration spill file ends at ${position + done}, expected ${position + bytes.byteLength} bytes`);
        done += bytesRead;
      }
    } catch (e) {
      if (e instanceof IoError) throw e;
      throw new IoError(`${this.path}: cannot read the calibration spill file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
    }
    return out;
  }

  /** Closes and deletes the file; safe to call more than once. */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    try {
      await this.handle.close();
    } finally {
      await rm(this.path, { force: true });
    }
  }

  private async writeAt(bytes: Uint8Array, position: number): Promise<void> {
    let done = 0;
    try {
      while (done < bytes.byteLength) {
        const { bytesWritten } = await this.handle.write(bytes, done, bytes.byteLength - done, position + done);
        if (bytesWritten === 0) throw new IoError(`${this.path}: a write to the calibration spill file made no progress`);
        done += bytesWritten;
      }
    } catch (e) {
      if (e instanceof IoError) throw e;
      throw new IoError(`${this.path}: cannot write the calibration spill file (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
    }
  }
}
