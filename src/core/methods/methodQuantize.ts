/**
 * `quantlens quantize --method <m> --calib <text>`: a calibrated method (GPTQ, AWQ, SmoothQuant) run over
 * the whole model, then written by the quantize pipeline's research writers:
 * - GPTQ: GPTQ's own codes, scales and zeros go into the GPTQ layout (no re-quantization); the card's
 *   errors are measured against the original weights.
 * - AWQ / SmoothQuant: the rescaled (and, for AWQ, clipped) float weights and norms are read through
 *   checkpointWithMethodWeights and quantized by the target's writer with its own rounding rule; the
 *   card's errors are then relative to the rescaled weights (the float model is unchanged by the
 *   rescaling, so the error is what the quantizer adds).
 * GGUF targets (the llama.cpp-exact exporter reads the same method checkpoint):
 * - AWQ / SmoothQuant: the rewritten f32 weights are quantized by the target's ggml types with llama.cpp's
 *   rounding (any quantized preset; SmoothQuant also F16 / BF16 / F32). AWQ's search uses the grid
 *   (ggufSearchGrid) of the type the export plan gives most of the linear weights.
 * - GPTQ: error compensation into each linear's planned ggml type (gptq.ts, gptqGgml.ts: Q4_0 ... Q8_0 and the
 *   K types, so any quantized type or preset with llama-quantize's per-tensor choice and fallbacks); those
 *   blocks are written as they are. Float targets are refused (nothing to compensate).
 * - LLM.int8() (`--to int8` only): the calibration fixes each site's 16-bit input dimensions (max |x| >=
 *   threshold, plus --keep-fraction); the writer stores bitsandbytes' Linear8bitLt (CB + SCB) with those
 *   columns in f16 beside it (pipeline.ts llmInt8Outputs); what our reader dequantizes equals the weights
 *   `compare --methods llm-int8` evaluates, bit for bit.
 */
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { FormatError, InvalidArgumentError, UnsupportedError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { LINEAR_ROLES, LlamaModel, linearModuleName } from '../model/forward';
import { isIntBits } from '../quant/intN';
import { isGgufTarget, runQuantize, type QuantizeProgress, type QuantizeRequest, type QuantizeResult } from '../quant/pipeline';
import type { GptqCodes } from '../quant/gptqLayout';
import type { RecipeValue } from '../quant/quantCard';
import { findResearchScheme, resolveResearchRecipe, type ResearchRecipe } from '../quant/researchSchemes';
import { ggufExporter } from '../convert/ggufExporter';
import { planGgufExport } from '../convert/exportGguf';
import { loadTokenizer, readTextFile, textWindows } from './compare';
import { GPTQ_GGML_TYPES, isGptqGgmlType, type GptqGgmlType } from './gptqGgml';
import { checkpointWithMethodWeights } from './methodCheckpoint';
import { disposeMethodRun, formatSiteReports, gptqResultToIntN, quantizeWithMethod, type GptqLayerRunner, type MethodRun, type MethodSettings } from './quantizeWithMethod';
import { temporaryPathFor } from '../io/atomicWrite';
import { SITE_ROLES, type CalibrationSite } from './calibrate';
import { keptDimsOf, planFromKeptDims, type LlmInt8Plan } from './llmInt8';

export const EXPORT_METHODS = ['gptq', 'awq', 'smoothquant', 'llm-int8'] as const;
export type ExportMethod = (typeof EXPORT_METHODS)[number];

export function isExportMethod(s: string): s is ExportMethod {
  return (EXPORT_METHODS as readonly string[]).includes(s);
}

/** The calibration half of a method quantize request (the target half is the plain QuantizeRequest). */
export interface MethodQuantizeSpec {
  method: ExportMethod;
  /** Calibration text file. */
  calib: string;
  /** Windows of `ctx` tokens taken from the calibration text (default 16). */
  calibWindows?: number;
  /** Tokens per calibration window (default 256). */
  ctx?: number;
  /** Must agree with the target's bits when given. */
  bits?: number;
  actOrder?: boolean;
  percDamp?: number;
  alpha?: number;
  threshold?: number;
  keepFraction?: number;
}

export interface MethodQuantizeOptions {
  signal?: AbortSignal;
  /** Calibration: layers done of layers. */
  onCalibration?(layersDone: number, layers: number): void;
  /** Writing: the pipeline's progress. */
  onProgress?(p: QuantizeProgress): void;
  onWarning?(message: string): void;
  /** GPTQ: where each linear is quantized (jobs/gptqDevice.ts) and, for the quant card's recipe, where it ran. */
  gptqLayer?: GptqLayerRunner;
  deviceUsed?: () => string;
  /**
   * Keep every calibrated layer in memory and return them in `run.layers` (tests that compare the written file with
   * the calibrated weights); otherwise AWQ / SmoothQuant spill them to a temporary file and GPTQ / LLM.int8() drop them.
   */
  keepLayersInMemory?: boolean;
}

/**
 * The grid a GGUF target's linear weights land on, as the method's search sees it: bits, block
 * (ggml's sub-block of 32, 16 for Q2_K / Q3_K / Q6_K) and whether it is symmetric (no min / offset).
 * null for float targets.
 */
export function ggufSearchGrid(target: string): { bits: number; groupSize: number; sym: boolean } | null {
  const t = target.toUpperCase();
  if (t === 'F32' || t === 'F16' || t === 'BF16') return null;
  const m = /^Q(\d)_(0|1|K)/.exec(t);
  if (m === null) return null;
  const bits = Number(m[1]);
  const kind = m[2]!;
  const groupSize = kind === 'K' && (bits === 2 || bits === 3 || bits === 6) ? 16 : 32;
  const sym = kind === '0' || (kind === 'K' && (bits === 3 || bits === 6));
  return { bits, groupSize, sym };
}

/** What a checked method request writes: a research recipe, or a GGUF target with the method's grid. */
export type MethodTarget =
  | { kind: 'research'; recipe: ResearchRecipe }
  | { kind: 'gguf'; target: string; bits: number; groupSize: number; sym: boolean; gptqBlocks?: true };

function checkGgufMethodRequest(request: QuantizeRequest, spec: MethodQuantizeSpec): MethodTarget {
  const { method } = spec;
  const target = request.target.toUpperCase();
  const grid = ggufSearchGrid(target);
  if (method === 'gptq' && grid === null) {
    throw new UnsupportedError(`--method gptq --to ${target}: a float type has no grid for GPTQ to compensate into; give a quantized type or preset (Q4_0, Q4_K_M, Q8_0, ...)`);
  }
  if (method === 'awq' && grid === null) throw new InvalidArgumentError(`--method awq --to ${target}: AWQ needs a quantized target (Q4_0, Q4_K_M, ...), not a float type`);
  if (spec.bits !== undefined && spec.bits !== (grid?.bits ?? 16)) throw new InvalidArgumentError(`--bits ${spec.bits} disagrees with --to ${target} (${grid?.bits ?? 16} bits)`);
  if (spec.actOrder === true) {
    throw new InvalidArgumentError(method === 'gptq' ? '--method gptq --act-order: a ggml block is 32 consecutive columns (256 for K types), act-order would scatter them; drop --act-order' : '--act-order applies to --method gptq');
  }
  checkCommonOptions(spec);
  const { bits, groupSize, sym } = grid ?? { bits: 16, groupSize: 0, sym: true };
  return method === 'gptq' ? { kind: 'gguf', target, bits, groupSize, sym, gptqBlocks: true } : { kind: 'gguf', target, bits, groupSize, sym };
}

function checkCommonOptions(spec: MethodQuantizeSpec): void {
  const { method } = spec;
  if (spec.percDamp !== undefined && method !== 'gptq') throw new InvalidArgumentError('--damp applies to --method gptq');
  if (spec.alpha !== undefined && method !== 'smoothquant') throw new InvalidArgumentError('--alpha applies to --method smoothquant');
  if ((spec.threshold !== undefined || spec.keepFraction !== undefined) && method !== 'llm-int8') throw new InvalidArgumentError('--threshold and --keep-fraction apply to --method llm-int8');
  if (spec.calibWindows !== undefined && !(Number.isInteger(spec.calibWindows) && spec.calibWindows > 0)) throw new InvalidArgumentError(`--calib-windows ${spec.calibWindows}: give a positive integer`);
  if (spec.ctx !== undefined && !(Number.isInteger(spec.ctx) && spec.ctx > 0)) throw new InvalidArgumentError(`calibration window of ${spec.ctx} tokens`);
}

/**
 * Checks a method request against its target before anything is read; returns what it writes.
 * Throws InvalidArgumentError / UnsupportedError with one line saying what to change.
 */
export function checkMethodRequest(request: QuantizeRequest, spec: MethodQuantizeSpec): MethodTarget {
  const { method } = spec;
  if (!isExportMethod(method)) throw new InvalidArgumentError(`unknown --method '${String(method)}'; give one of ${EXPORT_METHODS.join(', ')}`);
  if (method === 'llm-int8') return checkLlmInt8Request(request, spec);
  if (isGgufTarget(request.target)) return checkGgufMethodRequest(request, spec);
  const scheme = findResearchScheme(request.target);
  if (scheme === undefined) throw new InvalidArgumentError(`unknown target '${request.target}' for --method ${method}`);
  const recipe = resolveResearchRecipe(scheme, request);
  if (spec.bits !== undefined && spec.bits !== recipe.bits) throw new InvalidArgumentError(`--bits ${spec.bits} disagrees with --to ${recipe.target} (${recipe.bits} bits)`);
  if ((method === 'gptq' || method === 'awq') && recipe.kind !== 'gptq') {
    throw new InvalidArgumentError(`--method ${method} writes group-wise integers: give a GPTQ-layout target (int4-g128, int4-g64, int3-g128, int8-g128, ...), not ${recipe.target}`);
  }
  if (spec.actOrder === true && method !== 'gptq') throw new InvalidArgumentError('--act-order applies to --method gptq');
  checkCommonOptions(spec);
  return { kind: 'research', recipe };
}

/**
 * LLM.int8(): vector-wise INT8 per output row is the only target (bitsandbytes' Linear8bitLt); the threshold
 * must be > 0 and the extra kept fraction in [0, 1) (1 would keep every column in 16 bit).
 */
function checkLlmInt8Request(request: QuantizeRequest, spec: MethodQuantizeSpec): MethodTarget {
  const scheme = isGgufTarget(request.target) ? undefined : findResearchScheme(request.target);
  if (scheme?.name !== 'int8' || request.scale === 'tensor') {
    throw new InvalidArgumentError(`--method llm-int8 writes vector-wise INT8 with 16-bit outlier columns (bitsandbytes Linear8bitLt): give --to int8, not ${request.target}${request.scale === 'tensor' ? ' --scale tensor' : ''}`);
  }
  if (request.includeEmbeddings === true) throw new InvalidArgumentError('--method llm-int8 calibrates the linear layers only: drop --include-embeddings');
  if (spec.bits !== undefined && spec.bits !== 8) throw new InvalidArgumentError(`--bits ${spec.bits} disagrees with --method llm-int8 (8 bits)`);
  if (spec.threshold !== undefined && !(Number.isFinite(spec.threshold) && spec.threshold > 0)) throw new InvalidArgumentError(`--threshold ${spec.threshold}: give a number > 0 (max |x| from which an input dimension stays 16-bit; default 6)`);
  if (spec.keepFraction !== undefined && !(spec.keepFraction >= 0 && spec.keepFraction < 1)) throw new InvalidArgumentError(`--keep-fraction ${spec.keepFraction}: give a fraction in [0, 1) of the non-outlier dimensions to keep in 16 bit`);
  if (spec.actOrder === true) throw new InvalidArgumentError('--act-order applies to --method gptq');
  checkCommonOptions(spec);
  return { kind: 'research', recipe: resolveResearchRecipe(scheme, request) };
}

/** LLM.int8(): each linear weight's 16-bit input dims (its site's plan), by the checkpoint's tensor names. */
function llmInt8KeptDimsByTensor(model: LlamaModel, run: MethodRun): Map<string, Int32Array> {
  const kept = new Map<string, Int32Array>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const site of Object.keys(SITE_ROLES) as CalibrationSite[]) {
      const plan = run.llmInt8Plans.get(`${l}.${site}`);
      if (plan === undefined) throw new InvalidArgumentError(`LLM.int8(): no calibration plan for layer ${l} ${site}`);
      for (const role of SITE_ROLES[site]) kept.set(model.linearTensorName(l, role), keptDimsOf(plan));
    }
  }
  return kept;
}

/**
 * The per-site plans a written LLM.int8() file records: the kept dims of each site's linears
 * (`<p>.weight_outlier_idx`; none written = no kept dim), which must agree within a site. `ckpt` is the
 * file as stored (not its dequantized view); `model` names the tensors.
 */
export async function llmInt8PlansFromCheckpoint(ckpt: Checkpoint, model: LlamaModel): Promise<Map<string, LlmInt8Plan>> {
  const byName = new Map(ckpt.tensors.map((t) => [t.name, t]));
  const plans = new Map<string, LlmInt8Plan>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const site of Object.keys(SITE_ROLES) as CalibrationSite[]) {
      let siteDims: Int32Array | undefined;
      let cols = 0;
      for (const role of SITE_ROLES[site]) {
        const name = model.linearTensorName(l, role);
        const prefix = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : name;
        const weight = byName.get(name);
        if (weight === undefined || weight.dtype !== 'I8' || !byName.has(`${prefix}.SCB`)) throw new FormatError(ckpt.path, `${name} is not stored in the LLM.int8() layout (I8 weight + SCB)`, name);
        cols = weight.shape[1] ?? 0;
        const idxName = `${prefix}.weight_outlier_idx`;
        const idx = byName.get(idxName);
        if (idx !== undefined && (idx.dtype !== 'I32' || idx.shape.length !== 1)) throw new FormatError(ckpt.path, `${idxName} is ${idx.dtype} [${idx.shape.join(', ')}], expected I32 [k]`, idxName);
        const dims = idx === undefined ? new Int32Array(0) : new Int32Array((await ckpt.readRawRows(idxName)).slice().buffer);
        if (siteDims !== undefined && (siteDims.length !== dims.length || siteDims.some((d, i) => d !== dims[i]))) {
          throw new FormatError(ckpt.path, `${name} keeps other 16-bit dims than the other linears of layer ${l} ${site}`, name);
        }
        siteDims = dims;
      }
      plans.set(`${l}.${site}`, planFromKeptDims(cols, siteDims ?? new Int32Array(0)));
    }
  }
  return plans;
}

/** The card's per-weight LLM.int8() record: kept dims, and bytes of the 16-bit part (f16 columns + indices) and of the int8 part (CB + SCB). */
function llmInt8RecipeExtra(model: LlamaModel, kept: ReadonlyMap<string, Int32Array>): Record<string, RecipeValue> {
  const extra: Record<string, RecipeValue> = {};
  const shapes = new Map(model.checkpoint.tensors.map((t) => [t.name, t.shape]));
  for (const [name, dims] of kept) {
    const [rows = 0, cols = 0] = shapes.get(name) ?? [];
    const prefix = name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : name;
    extra[`llmInt8.${prefix}.keptDims`] = Array.from(dims).join(',');
    extra[`llmInt8.${prefix}.bytes16`] = dims.length * (rows * 2 + 4);
    extra[`llmInt8.${prefix}.bytesInt8`] = rows * cols + rows * 4;
  }
  return extra;
}

function methodSettings(spec: MethodQuantizeSpec, target: MethodTarget): MethodSettings {
  let settings: MethodSettings;
  if (target.kind === 'research') {
    const { recipe } = target;
    const groupSize = recipe.groupSize === null || recipe.groupSize === -1 ? 0 : recipe.groupSize;
    settings = { bits: recipe.bits, groupSize, sym: recipe.symmetric };
  } else {
    // GPTQ's per-linear block types come from the export plan (gptqLinearTypes, once the checkpoint is open).
    settings = { bits: target.bits, groupSize: target.groupSize, sym: target.sym };
  }
  if (spec.method === 'gptq' && spec.percDamp !== undefined) settings.percDamp = spec.percDamp;
  if (spec.method === 'gptq' && spec.actOrder === true) settings.actOrder = true;
  if (spec.method === 'llm-int8') {
    settings = { bits: 8, groupSize: 0, threshold: spec.threshold ?? 6, keepFraction: spec.keepFraction ?? 0 };
  }
  if (spec.method === 'awq') settings.awqForExport = true;
  if (spec.method === 'smoothquant') {
    // Fold only: the target's writer quantizes the smoothed weights.
    settings.smoothOnly = true;
    settings.alpha = spec.alpha ?? 0.5;
  }
  return settings;
}

/** GPTQ's ggml blocks, keyed by the checkpoint's tensor names (rows in the checkpoint's order), each in its planned type. */
function gptqBlocksByTensor(model: LlamaModel, run: MethodRun, types: ReadonlyMap<string, GptqGgmlType>): Map<string, { type: string; bytes: Uint8Array }> {
  const blocks = new Map<string, { type: string; bytes: Uint8Array }>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const role of LINEAR_ROLES) {
      const name = linearModuleName(l, role);
      const type = types.get(name);
      const result = run.gptqResults.get(name);
      if (type === undefined || result === undefined || result.ggmlBytes.byteLength === 0) throw new InvalidArgumentError(`GPTQ produced no ${type ?? 'ggml'} blocks for ${name}`);
      blocks.set(model.linearTensorName(l, role), { type, bytes: result.ggmlBytes });
    }
  }
  return blocks;
}

/**
 * GPTQ into GGUF: the type the export plan gives each linear weight (llama-quantize's per-tensor choice, with
 * its fallbacks for row lengths a K block does not divide), by HF module name. Refused before calibrating,
 * naming the tensor, when a linear would get a type GPTQ has no blocks for (a float fallback).
 */
async function gptqLinearTypes(checkpoint: Checkpoint, model: LlamaModel, target: string): Promise<Map<string, GptqGgmlType>> {
  const plan = await planGgufExport(checkpoint, { target });
  const bySource = new Map(plan.tensors.map((t) => [t.sourceName, t]));
  const types = new Map<string, GptqGgmlType>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const role of LINEAR_ROLES) {
      const name = model.linearTensorName(l, role);
      const planned = bySource.get(name);
      if (planned === undefined) throw new InvalidArgumentError(`${checkpoint.path}: the GGUF export does not write ${name}`);
      if (!isGptqGgmlType(planned.type)) {
        throw new UnsupportedError(
          `--method gptq --to ${target}: ${planned.name} would be ${planned.type}${planned.fallback !== undefined ? ` (${planned.fallback})` : ''}, which GPTQ has no blocks for (it writes ${GPTQ_GGML_TYPES.join(', ')})`,
        );
      }
      types.set(linearModuleName(l, role), planned.type);
    }
  }
  return types;
}

/**
 * AWQ into GGUF: the ggml type that holds most of the linear weights in the export plan (llama.cpp may
 * raise some tensors, e.g. Q6_K in Q4_K_M, or fall back for row lengths its K blocks do not divide, e.g.
 * Q5_0 for 64 columns), whose grid the scale and clip searches then use.
 */
async function dominantLinearType(checkpoint: Checkpoint, model: LlamaModel, target: string): Promise<string> {
  const plan = await planGgufExport(checkpoint, { target });
  const linear = new Set<string>();
  for (let l = 0; l < model.config.numLayers; l++) for (const role of LINEAR_ROLES) linear.add(model.linearTensorName(l, role));
  const weightByType = new Map<string, number>();
  for (const t of plan.tensors) {
    if (!linear.has(t.sourceName)) continue;
    weightByType.set(t.type, (weightByType.get(t.type) ?? 0) + t.shape.reduce((a, b) => a * b, 1));
  }
  let best = target;
  let most = -1;
  for (const [type, count] of weightByType) if (count > most) [best, most] = [type, count];
  return best;
}

/** GPTQ's codes (with g_idx under act-order) as the pipeline's GptqCodes, keyed by the checkpoint's tensor names. */
function gptqCodesByTensor(model: LlamaModel, run: MethodRun, target: MethodTarget): Map<string, GptqCodes> {
  if (target.kind !== 'research') throw new InvalidArgumentError('GPTQ layout codes for a GGUF target');
  const { recipe } = target;
  const bits = recipe.bits;
  if (!isIntBits(bits)) throw new InvalidArgumentError(`GPTQ layout at ${bits} bits`);
  const codes = new Map<string, GptqCodes>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const role of LINEAR_ROLES) {
      const name = linearModuleName(l, role);
      const result = run.gptqResults.get(name);
      if (result === undefined) throw new InvalidArgumentError(`GPTQ produced no result for ${name}`);
      codes.set(model.linearTensorName(l, role), gptqResultToIntN(result, bits, recipe.groupSize ?? -1, recipe.symmetric, name));
    }
  }
  return codes;
}

function recipeExtra(spec: MethodQuantizeSpec, settings: MethodSettings, windows: number, ctx: number): Record<string, RecipeValue> {
  const extra: Record<string, RecipeValue> = { method: spec.method, calibration: spec.calib, calibrationWindows: windows, calibrationContext: ctx };
  if (spec.method === 'gptq') {
    extra.percDamp = settings.percDamp ?? 0.01;
    extra.actOrder = settings.actOrder === true;
    // The ggml types GPTQ wrote blocks in (the card lists each tensor's).
    if (settings.ggmlTypes !== undefined) extra.gptqBlocks = [...new Set(settings.ggmlTypes.values())].join(', ');
  }
  if (spec.method === 'awq') {
    extra.searchBits = settings.bits;
    extra.searchGroup = settings.groupSize;
  }
  if (spec.method === 'smoothquant') extra.alpha = settings.alpha ?? 0.5;
  if (spec.method === 'llm-int8') {
    extra.threshold = settings.threshold ?? 6;
    extra.keepFraction = settings.keepFraction ?? 0;
  }
  return extra;
}

/** Calibrates, then writes the target. Nothing is left behind on error or cancel (the pipeline's atomic writes). */
export async function runMethodQuantize(request: QuantizeRequest, spec: MethodQuantizeSpec, options: MethodQuantizeOptions = {}): Promise<{ result: QuantizeResult; run: MethodRun }> {
  // The writers get the plain request (runQuantize refuses one that still names a method).
  const { method: _method, ...plain } = request;
  request = plain;
  const target = checkMethodRequest(request, spec);
  const settings = methodSettings(spec, target);
  let searchType: string | undefined;
  const windows = spec.calibWindows ?? 16;
  const ctx = spec.ctx ?? 256;
  const checkpoint: Checkpoint = await openCheckpoint(request.input);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    if (target.kind === 'gguf' && target.gptqBlocks === true) settings.ggmlTypes = await gptqLinearTypes(checkpoint, model, target.target);
    if (target.kind === 'gguf' && spec.method === 'awq') {
      const type = await dominantLinearType(checkpoint, model, target.target);
      const grid = ggufSearchGrid(type);
      if (grid !== null) {
        settings.bits = grid.bits;
        settings.groupSize = grid.groupSize;
        settings.sym = grid.sym;
      }
      searchType = type;
    }
    const tokenizer = await loadTokenizer(checkpoint);
    const calibration = textWindows(tokenizer.encode(await readTextFile(spec.calib, 'calibration')), ctx, windows, 'calibration');
    // AWQ / SmoothQuant: each calibrated layer goes to a spill file beside the output as it finishes and the writer
    // reads it back by row range (memory bounded by one layer). GPTQ and LLM.int8() write from their own results.
    const keepsLayers = spec.method === 'awq' || spec.method === 'smoothquant';
    const run = await quantizeWithMethod(model, calibration, spec.method, settings, {
      signal: options.signal,
      keepGptqResults: spec.method === 'gptq',
      onProgress: options.onCalibration,
      gptqLayer: options.gptqLayer,
      layers: options.keepLayersInMemory === true ? 'memory' : keepsLayers ? { spillPath: await calibrationSpillPath(request.output) } : 'discard',
    });
    try {
      return { result: await writeMethodRun(request, spec, options, { model, checkpoint, target, settings, windows, ctx, searchType }, run), run };
    } finally {
      await disposeMethodRun(run);
    }
  } finally {
    await checkpoint.close();
  }
}

/**
 * Where a method run spills its calibrated layers: a hidden temporary name beside the output (the disk that will hold
 * the output; atomicWrite's naming, so a crash leaves only a `.tmp` there), or the OS temp folder when the output's
 * folder does not exist yet.
 */
export async function calibrationSpillPath(output: string): Promise<string> {
  const beside = temporaryPathFor(`${resolve(output)}.calibration`);
  try {
    if ((await stat(dirname(beside))).isDirectory()) return beside;
  } catch {
    // no such folder: the OS temp folder below
  }
  return join(tmpdir(), basename(beside));
}

interface MethodWriteContext {
  model: LlamaModel;
  checkpoint: Checkpoint;
  target: MethodTarget;
  settings: MethodSettings;
  windows: number;
  ctx: number;
  searchType: string | undefined;
}

async function writeMethodRun(request: QuantizeRequest, spec: MethodQuantizeSpec, options: MethodQuantizeOptions, w: MethodWriteContext, run: MethodRun): Promise<QuantizeResult> {
  const { model, checkpoint, target, settings, windows, ctx, searchType } = w;
  for (const warning of run.warnings) options.onWarning?.(warning);
  const common = {
    signal: options.signal,
    onProgress: options.onProgress,
    onWarning: options.onWarning,
    recipeExtra: { ...recipeExtra(spec, settings, windows, ctx), ...(searchType === undefined ? {} : { searchType }) },
    ...(target.kind === 'gguf' ? { ggufExporter } : {}),
    ...(options.deviceUsed === undefined ? {} : { deviceUsed: options.deviceUsed }),
  };
  // GPTQ changes only the linear weights: the writer reads the originals (so the card measures the
  // error against them) and stores GPTQ's codes / blocks. AWQ / SmoothQuant also rescale the norms.
  let result: QuantizeResult;
  if (spec.method === 'llm-int8') {
    // The writer decomposes the original weights with each site's plan (the same rule compare applied in memory).
    const keptDims = llmInt8KeptDimsByTensor(model, run);
    const llmInt8 = { keptDims, threshold: settings.threshold ?? 6 };
    result = await runQuantize(request, { ...common, recipeExtra: { ...common.recipeExtra, ...llmInt8RecipeExtra(model, keptDims) }, checkpoint, llmInt8 });
  } else if (spec.method !== 'gptq') result = await runQuantize(request, { ...common, checkpoint: checkpointWithMethodWeights(checkpoint, model, run) });
  else if (target.kind === 'gguf' && settings.ggmlTypes !== undefined) result = await runQuantize(request, { ...common, checkpoint, ggmlBlocks: gptqBlocksByTensor(model, run, settings.ggmlTypes) });
  else result = await runQuantize(request, { ...common, checkpoint, gptqCodes: gptqCodesByTensor(model, run, target), gptqActOrder: settings.actOrder === true });
  result.methodReport = { lines: formatSiteReports(run), warnings: run.warnings, seconds: run.seconds };
  return result;
}
