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
 * The math is the forward pass's own kernels (the SIMD matmul and attention), so that the calibration
 * inputs are bit for bit what the evaluation computes; only the order of the steps is ours.
 */
import { CancelledError, InvalidArgumentError } from '../errors';
import type { LlamaModel, LayerWeights, LinearRole } from '../model/forward';
import { addQkvBiases, linearModuleName } from '../model/forward';
import { addInPlace, applyRope, rmsNorm, ropeTables } from '../model/kernels';
import { attentionByMatmul, attentionScratch, matmul, swigluF32 } from '../model/wasmMatmul';
import type { LlamaConfig } from '../model/llamaConfig';
import { InputStatsAccumulator, type InputStatsOptions } from './inputStats';

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

export interface CalibrationRunOptions {
  signal?: AbortSignal;
  onProgress?(layersDone: number, layers: number): void;
  /** Minimum tokens a site's statistics must cover (e.g. GPTQ's Hessian needs its width). */
  minimumTokens?(site: CalibrationSite, width: number): number;
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new CancelledError('calibration cancelled');
}

/**
 * Runs the method over every layer and returns each layer's rewritten weights (f32, in memory;
 * nothing is written: the caller writes the result atomically, or evaluates it).
 */
export async function runLayerwiseCalibration(model: LlamaModel, windows: readonly Int32Array[], method: LayerwiseMethod, options: CalibrationRunOptions = {}): Promise<LayerWeights[]> {
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
  const result: LayerWeights[] = [];

  const gather = (l: number, site: CalibrationSite, width: number, fill: (w: number) => Float32Array): InputStatsAccumulator => {
    const stats = new InputStatsAccumulator(width, method.statsOptions(site));
    for (let w = 0; w < n; w++) {
      throwIfAborted(signal);
      stats.addRows(fill(w), rows);
    }
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
    await process('attn_in', gather(l, 'attn_in', H, attnIn), attnIn);
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
    await process('attn_out', gather(l, 'attn_out', qWidth, attnOut), attnOut);
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
    await process('mlp_in', gather(l, 'mlp_in', H, mlpIn), mlpIn);
    // down input: SwiGLU with the rewritten gate/up.
    const mlpAct = (w: number): Float32Array => {
      rmsNorm(hiddenOf(w), weights.ffnNorm, normed, rows, H, c.rmsNormEps);
      const act = acts.subarray(w * rows * I, (w + 1) * rows * I);
      matmul(normed, L.gate, act, rows, H, I);
      matmul(normed, L.up, up, rows, H, I);
      swigluF32(act, up, rows * I);
      return act;
    };
    await process('mlp_act', gather(l, 'mlp_act', I, mlpAct), mlpAct);
    for (let w = 0; w < n; w++) {
      throwIfAborted(signal);
      matmul(acts.subarray(w * rows * I, (w + 1) * rows * I), L.down, projected, rows, I, H);
      addInPlace(hiddenOf(w), projected, rows * H);
    }
    result.push(weights);
    options.onProgress?.(l + 1, c.numLayers);
  }
  return result;
}
