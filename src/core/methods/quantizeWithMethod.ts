/**
 * One entry point per calibrated method over a whole LLaMA model: calibrate layer at a time
 * (calibrate.ts), return the rewritten weights, what each layer reported, and how to evaluate the
 * result with the model runtime (weights swapped in through the forward pass's onLayerWeights hook,
 * activation quantization through its quant setting or, for LLM.int8(), through onActivation).
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import type { IntBits } from '../quant/intN';
import type { GptqCodes } from '../quant/gptqLayout';
import { fakeQuantizeWeight, type QuantSetting } from '../model/fakeQuant';
import type { ForwardOptions, LayerWeights, LinearRole, LlamaModel } from '../model/forward';
import { linearModuleName } from '../model/forward';
import type { LlamaConfig } from '../model/llamaConfig';
import {
  applyClipInPlace,
  awqFakeQuantize,
  awqSearchClip,
  awqSearchScales,
  divideRowsInPlace,
  scaleColumnsInPlace,
  scaleGram,
  type AwqLinear,
} from './awq';
import {
  discardLayers,
  inputWidth,
  LayerSpillFile,
  LayersInMemory,
  outputWidth,
  runLayerwiseCalibration,
  SITE_ROLES,
  type CalibratedLayers,
  type CalibrationSite,
  type GramProvider,
  type LayerSink,
  type LayerwiseMethod,
  type SiteContext,
} from './calibrate';
import { gptqQuantizeLayer, minimumCalibrationTokens, type GptqLayerResult, type GptqOptions, type GptqTarget } from './gptq';
import type { GptqGgmlType } from './gptqGgml';
import { fakeQuantizeRowsLlmInt8, llmInt8LayerReport, planLlmInt8, type LlmInt8LayerReport, type LlmInt8Plan, type LlmInt8Variant } from './llmInt8';
import { fakeQuantizeRowsAbsmaxInt8, foldSmoothing, smoothQuantScales } from './smoothquant';

export const METHOD_NAMES = ['rtn', 'rtn-a8', 'awq', 'gptq', 'smoothquant', 'llm-int8', 'llm-int8-zeroed'] as const;
export type MethodName = (typeof METHOD_NAMES)[number];

export function isMethodName(s: string): s is MethodName {
  return (METHOD_NAMES as readonly string[]).includes(s);
}

export interface MethodSettings {
  bits: number;
  /** Input columns per group; <= 0: one group per row. */
  groupSize: number;
  /** GPTQ */
  sym?: boolean;
  actOrder?: boolean;
  percDamp?: number;
  /** GPTQ error compensation into ggml blocks of this type instead of the int grid. */
  ggmlTarget?: GptqGgmlType;
  /** GPTQ into ggml blocks, per linear (HF module name, e.g. model.layers.0.mlp.down_proj): the type the GGUF export plan gives it (mixed presets); overrides ggmlTarget. */
  ggmlTypes?: ReadonlyMap<string, GptqGgmlType>;
  /** SmoothQuant migration strength. */
  alpha?: number;
  /** LLM.int8() */
  threshold?: number;
  keepFraction?: number;
  llmInt8Variant?: LlmInt8Variant;
  /** SmoothQuant: fold only, no weight quantization (to check float equivalence). */
  smoothOnly?: boolean;
  /**
   * AWQ: leave the scaled and clipped float weights (and the rescaled norms) instead of fake-quantizing
   * them, for a writer that quantizes with its own rule (GPTQ layout, GGUF). Later sites then see float
   * inputs, as in AutoAWQ, where the block's outputs come from the unquantized block.
   */
  awqForExport?: boolean;
}

/** What one layer's site reported (shown by the CLI, kept in --json). */
export interface SiteReport {
  layer: number;
  site: CalibrationSite;
  tokens: number;
  /** GPTQ: damping fraction used per linear and how often it was raised. */
  gptq?: { name: string; dampFraction: number; dampIncreases: number; deadColumns: number; loss: number }[];
  /** AWQ: chosen ratio (null when the scales could not be folded: GQA v -> o). */
  awqRatio?: number | null;
  /** SmoothQuant: range of the factors. */
  smoothScale?: { min: number; max: number };
  llmInt8?: LlmInt8LayerReport[];
}

export interface MethodRun {
  method: MethodName;
  settings: MethodSettings;
  /**
   * Rewritten weights of every layer, in memory (MethodRunOptions.layers 'memory', the default); null when the
   * method needs no calibration (RTN) or the layers were spilled or dropped.
   */
  layers: LayerWeights[] | null;
  /**
   * The rewritten layers by row range, wherever they are (in memory or the spill file); null for RTN and when
   * dropped. A spilled run owns its file: the caller ends it with disposeMethodRun (in `finally`).
   */
  calibrated: CalibratedLayers | null;
  /** The spill file behind `calibrated`, when MethodRunOptions.layers asked for one. */
  spill: LayerSpillFile | null;
  reports: SiteReport[];
  /** GPTQ: the per-linear results (codes, scales, zeros, g_idx or ggml bytes; `dequantized` only with layers in memory) by HF module name. */
  gptqResults: Map<string, GptqLayerResult>;
  /** LLM.int8(): the 16-bit dimensions per layer and site. */
  llmInt8Plans: Map<string, LlmInt8Plan>;
  /** Things the user should know (e.g. too little calibration for GPTQ to generalise). */
  warnings: string[];
  seconds: number;
}

/**
 * Calibration tokens per Hessian column below which GPTQ was measured to overfit: on micro-llama W3 g64
 * (64 / 192 input columns) GPTQ lost to round-to-nearest with 256 and 1024 calibration tokens
 * (ppl 54.2 and 47.8 vs 46.7) and beat it with 8192 (46.3); on tiny-llama W3 g128 (down_proj 1024 columns,
 * 64 evaluation windows, reference GPTQ) 1024 and 2048 tokens lost (113.1, 88.1 vs RTN 81.9), 8192 won (76.2)
 * and 32768 won more (74.9). 32 per column keeps a margin over both.
 */
export const GPTQ_TOKENS_PER_COLUMN = 32;

export interface MethodRunOptions {
  signal?: AbortSignal;
  onProgress?(layersDone: number, layers: number): void;
  /**
   * Keep GPTQ's codes/scales for a layout writer (costs one byte per weight). Their `dequantized` is kept only with
   * `layers: 'memory'` (otherwise an empty array: the f32 copy of every weight is what bounded memory avoids).
   */
  keepGptqResults?: boolean;
  /**
   * Where GPTQ quantizes each linear (jobs/gptqDevice.ts: WebGPU with a CPU fallback); default the CPU driver. Its
   * `hessian` provider, when it has one, also accumulates GPTQ's Hessians during the calibration pass.
   */
  gptqLayer?: GptqLayerRunner;
  /**
   * What happens to each calibrated layer: 'memory' keeps them all (`layers`; the whole model's linears in f32),
   * `{ spillPath }` writes them to that temporary file as each layer finishes (`calibrated` / `spill`; memory
   * bounded by one layer; the caller disposes it), 'discard' drops them (writers that need only GPTQ's
   * results or LLM.int8()'s plans). Default 'memory'.
   */
  layers?: 'memory' | 'discard' | { spillPath: string };
}

/**
 * One linear layer's GPTQ, wherever it runs: the same arguments and result as gptqQuantizeLayer. `hessian`, when
 * present, is where the calibration pass accumulates the Hessians GPTQ runs on (the same device).
 */
export interface GptqLayerRunner {
  (weight: Float32Array, rows: number, cols: number, hessian: Float64Array, options: GptqOptions): Promise<GptqLayerResult>;
  hessian?: GramProvider;
}

const gptqOnCpu: GptqLayerRunner = async (weight, rows, cols, hessian, options) => gptqQuantizeLayer(weight, rows, cols, hessian, options);

function siteLinears(ctx: SiteContext): { role: LinearRole; weight: Float32Array; rows: number; cols: number; name: string }[] {
  return SITE_ROLES[ctx.site].map((role) => {
    const cols = inputWidth(ctx.config, role);
    return { role, weight: ctx.weights.linear[role], rows: outputWidth(ctx.config, role), cols, name: linearModuleName(ctx.layer, role) };
  });
}

function checkGroup(config: LlamaConfig, settings: MethodSettings): void {
  if (settings.groupSize <= 0) return;
  for (const role of ['q', 'o', 'down'] as const) {
    const cols = inputWidth(config, role);
    if (cols % settings.groupSize !== 0) throw new InvalidArgumentError(`group size ${settings.groupSize} does not divide the ${cols} input columns of ${role} layers`);
  }
}

function gptqMethod(
  settings: MethodSettings,
  reports: SiteReport[],
  results: Map<string, GptqLayerResult>,
  keep: 'all' | 'without-dequantized' | 'none',
  warnings: string[],
  runLayer: GptqLayerRunner,
): LayerwiseMethod {
  const intTarget: GptqTarget = { kind: 'int', bits: settings.bits, groupSize: settings.groupSize, sym: settings.sym ?? false };
  const targetOf = (name: string): GptqTarget => {
    const type = settings.ggmlTypes?.get(name) ?? settings.ggmlTarget;
    if (settings.ggmlTypes !== undefined && !settings.ggmlTypes.has(name)) throw new InvalidArgumentError(`GPTQ into ggml blocks: no planned type for ${name}`);
    return type !== undefined ? { kind: 'ggml', type } : intTarget;
  };
  return {
    statsOptions: () => ({ gram: true }),
    async processSite(ctx) {
      const h = ctx.stats.hessian();
      if (h === null) throw new InvalidArgumentError('GPTQ: no Hessian gathered');
      const cols = ctx.stats.columns;
      if (ctx.layer === 0 && ctx.stats.tokens < GPTQ_TOKENS_PER_COLUMN * cols) {
        warnings.push(
          `GPTQ: ${ctx.stats.tokens} calibration tokens for ${cols}-column Hessians (${SITE_ROLES[ctx.site].join('/')}); below ~${GPTQ_TOKENS_PER_COLUMN * cols} GPTQ tends to fit the calibration text and can lose to round-to-nearest`,
        );
      }
      const report: NonNullable<SiteReport['gptq']> = [];
      for (const lin of siteLinears(ctx)) {
        const r = await runLayer(lin.weight, lin.rows, lin.cols, h, { target: targetOf(lin.name), percDamp: settings.percDamp, actOrder: settings.actOrder, signal: ctx.signal });
        lin.weight.set(r.dequantized);
        report.push({ name: lin.name, dampFraction: r.dampFraction, dampIncreases: r.dampIncreases, deadColumns: r.deadColumns, loss: r.loss });
        // Unless the layers stay in memory anyway, kept without its f32 copy (the whole model's weights in f32 over
        // the run): codes, scales and blocks are what the writers read.
        if (keep === 'all') results.set(lin.name, r);
        else if (keep === 'without-dequantized') results.set(lin.name, { ...r, dequantized: new Float32Array(0) });
      }
      reports.push({ layer: ctx.layer, site: ctx.site, tokens: ctx.stats.tokens, gptq: report });
    },
  };
}

function awqMethod(settings: MethodSettings, reports: SiteReport[]): LayerwiseMethod {
  const config = { bits: settings.bits, groupSize: settings.groupSize };
  return {
    statsOptions: () => ({ gram: true }),
    processSite(ctx) {
      const hessian = ctx.stats.hessian();
      if (hessian === null) throw new InvalidArgumentError('AWQ: no Gram matrix gathered');
      const cols = ctx.stats.columns;
      // G = (1/n) sum x x^T = H / 2.
      let gram: Float64Array = hessian.map((v) => v / 2);
      const linears = siteLinears(ctx);
      const w = ctx.weights;
      // Where the scales fold: the norm before q/k/v and gate/up; v before o only when v's outputs are o's inputs
      // one to one (no GQA), as AutoAWQ; up before down.
      let fold: 'attnNorm' | 'ffnNorm' | 'v' | 'up' | null = null;
      if (ctx.site === 'attn_in') fold = 'attnNorm';
      else if (ctx.site === 'mlp_in') fold = 'ffnNorm';
      else if (ctx.site === 'mlp_act') fold = 'up';
      else if (ctx.config.numKvHeads === ctx.config.numHeads) fold = 'v';
      let ratio: number | null = null;
      if (fold !== null) {
        const awqLinears: AwqLinear[] = linears.map((l) => ({ name: l.name, weight: l.weight, rows: l.rows }));
        const search = awqSearchScales(awqLinears, cols, ctx.stats.meanAbs(), gram, config, { signal: ctx.signal });
        ratio = search.ratio;
        if (search.ratio > 0) {
          for (const l of linears) scaleColumnsInPlace(l.weight, l.rows, cols, search.scales);
          if (fold === 'attnNorm') divideRowsInPlace(w.attnNorm, cols, 1, search.scales);
          else if (fold === 'ffnNorm') divideRowsInPlace(w.ffnNorm, cols, 1, search.scales);
          else divideRowsInPlace(w.linear[fold], cols, ctx.config.hiddenSize, search.scales); // v and up rows are H wide
          gram = scaleGram(gram, cols, search.scales);
        }
      }
      for (const l of linears) {
        // q and k are not clipped (the reference skips them: the q.k product makes the error hard to measure).
        if (l.role !== 'q' && l.role !== 'k') applyClipInPlace(l.weight, l.rows, cols, settings.groupSize, awqSearchClip(l.weight, l.rows, cols, gram, config, { signal: ctx.signal }));
        if (settings.awqForExport !== true) l.weight.set(awqFakeQuantize(l.weight, l.rows, cols, config));
      }
      reports.push({ layer: ctx.layer, site: ctx.site, tokens: ctx.stats.tokens, awqRatio: ratio });
      return (fold === 'v' || fold === 'up') && ratio !== null && ratio > 0 ? 'inputs-changed' : undefined;
    },
  };
}

function quantizeWeightsForActivationMethods(weight: Float32Array, rows: number, cols: number, settings: MethodSettings): void {
  if (settings.bits === 8) fakeQuantizeRowsAbsmaxInt8(weight, rows, cols);
  else fakeQuantizeWeight(weight, rows, cols, settings.bits, settings.groupSize);
}

function smoothQuantMethod(settings: MethodSettings, reports: SiteReport[]): LayerwiseMethod {
  const alpha = settings.alpha ?? 0.5;
  return {
    statsOptions: () => ({}),
    processSite(ctx) {
      const linears = siteLinears(ctx);
      const cols = ctx.stats.columns;
      let range: { min: number; max: number } | undefined;
      if (ctx.site === 'attn_in' || ctx.site === 'mlp_in') {
        const s = smoothQuantScales(
          ctx.stats.maxAbs,
          linears.map((l) => ({ weight: l.weight, rows: l.rows })),
          cols,
          alpha,
        );
        foldSmoothing(
          ctx.site === 'attn_in' ? ctx.weights.attnNorm : ctx.weights.ffnNorm,
          linears.map((l) => ({ weight: l.weight, rows: l.rows })),
          cols,
          s,
        );
        range = { min: Math.min(...s), max: Math.max(...s) };
      }
      if (settings.smoothOnly !== true) for (const l of linears) quantizeWeightsForActivationMethods(l.weight, l.rows, cols, settings);
      reports.push({ layer: ctx.layer, site: ctx.site, tokens: ctx.stats.tokens, smoothScale: range });
    },
  };
}

function llmInt8Method(settings: MethodSettings, reports: SiteReport[], plans: Map<string, LlmInt8Plan>): LayerwiseMethod {
  const threshold = settings.threshold ?? 6;
  const variant = settings.llmInt8Variant ?? 'decomposed';
  return {
    statsOptions: () => ({ sampleRows: 64, outlierThreshold: threshold }),
    processSite(ctx) {
      const plan = planLlmInt8(ctx.stats.maxAbs, threshold, settings.keepFraction ?? 0);
      plans.set(`${ctx.layer}.${ctx.site}`, plan);
      const layerReports: LlmInt8LayerReport[] = [];
      for (const l of siteLinears(ctx)) {
        layerReports.push(llmInt8LayerReport(l.name, l.weight, l.rows, l.cols, ctx.stats.sampledRows(), ctx.stats.sampleCount, plan));
        fakeQuantizeRowsLlmInt8(l.weight, l.rows, l.cols, plan, variant);
      }
      reports.push({ layer: ctx.layer, site: ctx.site, tokens: ctx.stats.tokens, llmInt8: layerReports });
    },
  };
}

/**
 * Calibrates `model` with `method` on the calibration windows. RTN methods need no calibration and return
 * immediately (their quantization happens in the evaluation settings).
 */
export async function quantizeWithMethod(
  model: LlamaModel,
  calibration: readonly Int32Array[],
  method: MethodName,
  settings: MethodSettings,
  options: MethodRunOptions = {},
): Promise<MethodRun> {
  const started = performance.now();
  if (!(Number.isInteger(settings.bits) && settings.bits >= 2 && settings.bits <= 8)) throw new InvalidArgumentError(`--bits must be 2..8, got ${settings.bits}`);
  checkGroup(model.config, settings);
  if ((method === 'llm-int8' || method === 'llm-int8-zeroed') && settings.bits !== 8) throw new InvalidArgumentError(`${method} is an 8-bit method (--bits 8)`);
  // llm-int8-zeroed: the seeds' question, what is lost when the outlier dims are dropped instead of kept in 16 bit.
  if (method === 'llm-int8-zeroed') settings = { ...settings, llmInt8Variant: 'outliers-zeroed' };
  const reports: SiteReport[] = [];
  const gptqResults = new Map<string, GptqLayerResult>();
  const llmInt8Plans = new Map<string, LlmInt8Plan>();
  const warnings: string[] = [];
  let layerwise: LayerwiseMethod | null = null;
  let minimumTokens: ((site: CalibrationSite, width: number) => number) | undefined;
  let gram: GramProvider | undefined;
  if (method === 'gptq') {
    gram = options.gptqLayer?.hessian;
    const keep = options.keepGptqResults !== true ? 'none' : (options.layers ?? 'memory') === 'memory' ? 'all' : 'without-dequantized';
    layerwise = gptqMethod(settings, reports, gptqResults, keep, warnings, options.gptqLayer ?? gptqOnCpu);
    minimumTokens = (_site, width) => minimumCalibrationTokens(width);
  } else if (method === 'awq') layerwise = awqMethod(settings, reports);
  else if (method === 'smoothquant') layerwise = smoothQuantMethod(settings, reports);
  else if (method === 'llm-int8' || method === 'llm-int8-zeroed') layerwise = llmInt8Method(settings, reports, llmInt8Plans);
  const run: MethodRun = { method, settings, layers: null, calibrated: null, spill: null, reports, gptqResults, llmInt8Plans, warnings, seconds: 0 };
  if (layerwise !== null) {
    const keep = options.layers ?? 'memory';
    let sink: LayerSink = discardLayers;
    if (keep === 'memory') {
      const inMemory = new LayersInMemory(model.config);
      run.layers = inMemory.layers;
      run.calibrated = inMemory;
      sink = inMemory;
    } else if (keep !== 'discard') {
      run.spill = await LayerSpillFile.create(keep.spillPath, model.config);
      run.calibrated = run.spill;
      sink = run.spill;
    }
    try {
      await runLayerwiseCalibration(model, calibration, layerwise, { sink, signal: options.signal, onProgress: options.onProgress, minimumTokens, gram });
    } catch (e) {
      // Error or cancel: the spill file goes with the run.
      await disposeMethodRun(run);
      throw e;
    }
  }
  run.seconds = (performance.now() - started) / 1000;
  return run;
}

/** Deletes a run's spill file (no-op without one); call it in `finally` once the run's layers are written or evaluated. */
export async function disposeMethodRun(run: MethodRun): Promise<void> {
  const spill = run.spill;
  run.spill = null;
  if (run.calibrated === spill) run.calibrated = null;
  await spill?.dispose();
}

/**
 * A GPTQ result as the quantize engineer's IntNQuantized (levels row-major, scales and zeros [rows, groups]),
 * ready for packGptq / the GPTQ layout writer; an act-order result keeps its g_idx (group of each input
 * channel = its position in the processing order // group, AutoGPTQ's desc_act convention), which the
 * layout stores and its readers index scales and zeros with. Refuses zero points of 0, which the v1
 * layout cannot store (GPTQ_MIN_ZERO).
 */
export function gptqResultToIntN(result: GptqLayerResult, bits: IntBits, groupSize: number, symmetric: boolean, name: string): GptqCodes {
  const { rows, cols } = result;
  const g = groupSize > 0 ? groupSize : cols;
  const groups = Math.ceil(cols / g);
  if (result.gIdx.length !== cols) throw new InvalidArgumentError(`${name}: GPTQ result has ${result.gIdx.length} g_idx entries for ${cols} columns`);
  let actOrder = false;
  for (let c = 0; c < cols; c++) if (result.gIdx[c] !== Math.floor(c / g)) actOrder = true;
  const scales = new Float32Array(rows * groups);
  const zeros = new Uint8Array(rows * groups);
  for (let gi = 0; gi < groups; gi++) {
    for (let r = 0; r < rows; r++) {
      const z = result.zeros[gi * rows + r]!;
      if (!symmetric && z < 1) throw new UnsupportedError(`${name}: group ${gi} of row ${r} has zero point 0, which the GPTQ v1 layout cannot store`);
      scales[r * groups + gi] = result.scales[gi * rows + r]!;
      zeros[r * groups + gi] = z;
    }
  }
  const codes: GptqCodes = { rows, cols, bits, groupSize: g, symmetric, levels: result.codes, scales, zeros };
  if (actOrder) codes.gIdx = Int32Array.from(result.gIdx);
  return codes;
}

/** Forward options that evaluate a method's result with the model runtime (perplexity, logits). */
export function evaluationOptions(run: MethodRun): ForwardOptions {
  const s = run.settings;
  let quant: QuantSetting | undefined;
  if (run.method === 'rtn') quant = { label: `W${s.bits}`, weightBits: s.bits, weightGroup: s.bits === 8 ? -1 : s.groupSize, activationBits: null, kvBits: null };
  else if (run.method === 'rtn-a8') quant = { label: `W${s.bits}A8`, weightBits: s.bits, weightGroup: s.bits === 8 ? -1 : s.groupSize, activationBits: 8, kvBits: null };
  else if (run.method === 'smoothquant' && s.smoothOnly !== true) quant = { label: `W${s.bits}A8 smoothed`, weightBits: null, weightGroup: -1, activationBits: 8, kvBits: null };
  const layers = run.layers;
  const plans = run.llmInt8Plans;
  const variant = s.llmInt8Variant ?? 'decomposed';
  return {
    quant,
    hooks: {
      onLayerWeights(l, weights) {
        const mine = layers?.[l];
        if (mine === undefined) return;
        weights.attnNorm.set(mine.attnNorm);
        weights.ffnNorm.set(mine.ffnNorm);
        for (const role of Object.keys(mine.linear) as LinearRole[]) weights.linear[role].set(mine.linear[role]);
      },
      // LLM.int8(): the runtime hands the buffer that feeds the site's linears; decomposing it in place
      // is the activation half of the method.
      onActivation:
        run.method === 'llm-int8' || run.method === 'llm-int8-zeroed'
          ? (site, x, rows, width) => {
              const plan = plans.get(`${site.layer}.${site.kind}`);
              if (plan !== undefined) fakeQuantizeRowsLlmInt8(x, rows, width, plan, variant);
            }
          : undefined,
    },
  };
}

/**
 * LLM.int8()'s activation half alone: each site's input decomposed in place with its plan (keyed
 * `${layer}.${site}`). With the weights of a written LLM.int8() file and the plans it records
 * (llmInt8PlansFromCheckpoint), this evaluates what `compare --methods llm-int8` evaluates.
 */
export function llmInt8ActivationOptions(plans: ReadonlyMap<string, LlmInt8Plan>): ForwardOptions {
  return {
    hooks: {
      onActivation(site, x, rows, width) {
        const plan = plans.get(`${site.layer}.${site.kind}`);
        if (plan !== undefined) fakeQuantizeRowsLlmInt8(x, rows, width, plan, 'decomposed');
      },
    },
  };
}

/**
 * Stored bytes of the model under a method: quantized linears in their layout (GPTQ layout for the
 * int methods: packed codes, packed zeros, f16 scales per group and row, int32 g_idx; INT8 with f16
 * per-row scales for W8A8; LLM.int8() with its 16-bit columns) and every other tensor in f16.
 */
export function methodBytes(config: LlamaConfig, method: MethodName | 'fp16', settings: MethodSettings, plans?: Map<string, LlmInt8Plan>): number {
  const H = config.hiddenSize;
  const other = config.vocabSize * H * (config.tieWordEmbeddings ? 1 : 2) + H * (2 * config.numLayers + 1);
  let total = other * 2;
  const roles: LinearRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];
  for (let l = 0; l < config.numLayers; l++) {
    for (const role of roles) {
      const rows = outputWidth(config, role);
      const cols = inputWidth(config, role);
      if (method === 'fp16') total += rows * cols * 2;
      else if (method === 'llm-int8') {
        const site = (Object.keys(SITE_ROLES) as CalibrationSite[]).find((k) => SITE_ROLES[k].includes(role))!;
        const plan = plans?.get(`${l}.${site}`);
        const kept = plan === undefined ? 0 : plan.outlierDims.length + plan.extraDims.length;
        total += rows * (kept * 2 + (cols - kept)) + rows * 4;
      } else if ((method === 'smoothquant' || method === 'rtn-a8') && settings.bits === 8) total += rows * cols + rows * 2;
      else {
        const g = settings.groupSize > 0 && settings.bits !== 8 ? settings.groupSize : cols;
        const groups = Math.ceil(cols / g);
        total += Math.ceil((rows * cols * settings.bits) / 8) + groups * rows * 2 + Math.ceil((groups * rows * settings.bits) / 8) + cols * 4;
      }
    }
  }
  return total;
}

/** One line per layer site of what the method did (for `quantlens quantize --method` output). */
export function formatSiteReports(run: MethodRun): string[] {
  const lines: string[] = [];
  for (const r of run.reports) {
    const where = `layer ${r.layer} ${r.site} (${r.tokens} tokens)`;
    if (r.gptq !== undefined) {
      for (const g of r.gptq) {
        const damp = g.dampIncreases > 0 ? `, damping raised ${g.dampIncreases}x to ${g.dampFraction} (Hessian not positive definite)` : '';
        lines.push(`${g.name}: GPTQ loss ${g.loss.toExponential(3)}${g.deadColumns > 0 ? `, ${g.deadColumns} dead columns` : ''}${damp}`);
      }
    } else if (r.awqRatio !== undefined) {
      lines.push(`${where}: AWQ ratio ${r.awqRatio === null ? 'n/a (scales cannot fold into v: GQA), clip only' : r.awqRatio.toFixed(2)}`);
    } else if (r.llmInt8 !== undefined) {
      for (const l of r.llmInt8) {
        lines.push(
          `${l.name}: ${l.outlierDims.length} outlier dims${l.extraDims > 0 ? ` + ${l.extraDims} kept` : ''} in 16 bit [${l.outlierDims.slice(0, 8).join(', ')}${l.outlierDims.length > 8 ? ', ...' : ''}]; ` +
            `bytes ${l.bytes.decomposed} (INT8 ${l.bytes.plainInt8}, FP16 ${l.bytes.fp16}); ` +
            `rel. output error: decomposed ${l.relError.decomposed.toExponential(2)}, plain INT8 ${l.relError.plainInt8.toExponential(2)}, outliers zeroed ${l.relError.outliersZeroed.toExponential(2)}, FP16 ${l.relError.fp16.toExponential(2)}`,
        );
      }
    } else if (r.smoothScale !== undefined) {
      lines.push(`${where}: SmoothQuant factors in [${r.smoothScale.min.toPrecision(3)}, ${r.smoothScale.max.toPrecision(3)}]`);
    }
  }
  return lines;
}
