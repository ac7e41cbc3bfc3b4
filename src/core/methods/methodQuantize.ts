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
 * - GPTQ: error compensation into Q4_0 or Q8_0 blocks (gptq.ts); those blocks are written as they are. The
 *   target must put every linear weight in that one type (Q4_0, Q8_0); K types are refused, naming the tensor.
 * LLM.int8() (no output layout for its 16-bit outlier columns yet) is refused.
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { LINEAR_ROLES, LlamaModel, linearModuleName } from '../model/forward';
import { isIntBits, type IntNQuantized } from '../quant/intN';
import { isGgufTarget, runQuantize, type QuantizeProgress, type QuantizeRequest, type QuantizeResult } from '../quant/pipeline';
import type { RecipeValue } from '../quant/quantCard';
import { findResearchScheme, resolveResearchRecipe, type ResearchRecipe } from '../quant/researchSchemes';
import { ggufExporter } from '../convert/ggufExporter';
import { planGgufExport } from '../convert/exportGguf';
import { loadTokenizer, readTextFile, textWindows } from './compare';
import { checkpointWithMethodWeights } from './methodCheckpoint';
import { formatSiteReports, gptqResultToIntN, quantizeWithMethod, type MethodRun, type MethodSettings } from './quantizeWithMethod';

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
  | { kind: 'gguf'; target: string; bits: number; groupSize: number; sym: boolean; gptqType?: 'Q4_0' | 'Q8_0' };

function checkGgufMethodRequest(request: QuantizeRequest, spec: MethodQuantizeSpec): MethodTarget {
  const { method } = spec;
  const target = request.target.toUpperCase();
  const grid = ggufSearchGrid(target);
  if (method === 'gptq' && target !== 'Q4_0' && target !== 'Q8_0') {
    throw new UnsupportedError(`--method gptq --to ${target}: GPTQ error compensation writes Q4_0 or Q8_0 blocks only (K types are not done); give --to Q4_0 or --to Q8_0`);
  }
  if (method === 'awq' && grid === null) throw new InvalidArgumentError(`--method awq --to ${target}: AWQ needs a quantized target (Q4_0, Q4_K_M, ...), not a float type`);
  if (spec.bits !== undefined && spec.bits !== (grid?.bits ?? 16)) throw new InvalidArgumentError(`--bits ${spec.bits} disagrees with --to ${target} (${grid?.bits ?? 16} bits)`);
  if (spec.actOrder === true) {
    throw new InvalidArgumentError(method === 'gptq' ? '--method gptq --act-order: a ggml block is 32 consecutive columns, act-order would scatter them; drop --act-order' : '--act-order applies to --method gptq');
  }
  checkCommonOptions(spec);
  const { bits, groupSize, sym } = grid ?? { bits: 16, groupSize: 0, sym: true };
  return method === 'gptq' ? { kind: 'gguf', target, bits, groupSize, sym, gptqType: target as 'Q4_0' | 'Q8_0' } : { kind: 'gguf', target, bits, groupSize, sym };
}

function checkCommonOptions(spec: MethodQuantizeSpec): void {
  const { method } = spec;
  if (spec.percDamp !== undefined && method !== 'gptq') throw new InvalidArgumentError('--damp applies to --method gptq');
  if (spec.alpha !== undefined && method !== 'smoothquant') throw new InvalidArgumentError('--alpha applies to --method smoothquant');
  // llm-int8 was refused above: its options have nothing to apply to.
  if (spec.threshold !== undefined || spec.keepFraction !== undefined) throw new InvalidArgumentError('--threshold and --keep-fraction apply to --method llm-int8');
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
  if (method === 'llm-int8') {
    throw new UnsupportedError('--method llm-int8: no output layout keeps its 16-bit outlier columns yet; measure it with `quantlens compare --methods llm-int8`, or write plain vector-wise INT8 with --to int8 (no --method)');
  }
  if (isGgufTarget(request.target)) return checkGgufMethodRequest(request, spec);
  const scheme = findResearchScheme(request.target);
  if (scheme === undefined) throw new InvalidArgumentError(`unknown target '${request.target}' for --method ${method}`);
  const recipe = resolveResearchRecipe(scheme, request);
  if (spec.bits !== undefined && spec.bits !== recipe.bits) throw new InvalidArgumentError(`--bits ${spec.bits} disagrees with --to ${recipe.target} (${recipe.bits} bits)`);
  if ((method === 'gptq' || method === 'awq') && recipe.kind !== 'gptq') {
    throw new InvalidArgumentError(`--method ${method} writes group-wise integers: give a GPTQ-layout target (int4-g128, int4-g64, int3-g128, int8-g128, ...), not ${recipe.target}`);
  }
  if (spec.actOrder === true && method !== 'gptq') throw new InvalidArgumentError('--act-order applies to --method gptq');
  if (spec.actOrder === true) throw new UnsupportedError('--method gptq --act-order: the GPTQ layout writer does not store g_idx yet; drop --act-order');
  checkCommonOptions(spec);
  return { kind: 'research', recipe };
}

function methodSettings(spec: MethodQuantizeSpec, target: MethodTarget): MethodSettings {
  let settings: MethodSettings;
  if (target.kind === 'research') {
    const { recipe } = target;
    const groupSize = recipe.groupSize === null || recipe.groupSize === -1 ? 0 : recipe.groupSize;
    settings = { bits: recipe.bits, groupSize, sym: recipe.symmetric };
  } else {
    settings = { bits: target.bits, groupSize: target.groupSize, sym: target.sym };
    if (target.gptqType !== undefined) settings.ggmlTarget = target.gptqType;
  }
  if (spec.method === 'gptq' && spec.percDamp !== undefined) settings.percDamp = spec.percDamp;
  if (spec.method === 'awq') settings.awqForExport = true;
  if (spec.method === 'smoothquant') {
    // Fold only: the target's writer quantizes the smoothed weights.
    settings.smoothOnly = true;
    settings.alpha = spec.alpha ?? 0.5;
  }
  return settings;
}

/** GPTQ's ggml blocks, keyed by the checkpoint's tensor names (rows in the checkpoint's order). */
function gptqBlocksByTensor(model: LlamaModel, run: MethodRun, type: 'Q4_0' | 'Q8_0'): Map<string, { type: string; bytes: Uint8Array }> {
  const blocks = new Map<string, { type: string; bytes: Uint8Array }>();
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const role of LINEAR_ROLES) {
      const name = linearModuleName(l, role);
      const result = run.gptqResults.get(name);
      if (result === undefined || result.ggmlBytes.byteLength === 0) throw new InvalidArgumentError(`GPTQ produced no ${type} blocks for ${name}`);
      blocks.set(model.linearTensorName(l, role), { type, bytes: result.ggmlBytes });
    }
  }
  return blocks;
}

/**
 * GPTQ into GGUF: every linear weight must be planned in GPTQ's block type (a fallback for an odd row
 * length, or a preset that raises some tensors, would not be); refused before calibrating, naming the tensor.
 */
async function checkGgufLinearTypes(checkpoint: Checkpoint, model: LlamaModel, target: string, type: string): Promise<void> {
  const plan = await planGgufExport(checkpoint, { target });
  const bySource = new Map(plan.tensors.map((t) => [t.sourceName, t]));
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const role of LINEAR_ROLES) {
      const name = model.linearTensorName(l, role);
      const planned = bySource.get(name);
      if (planned === undefined) throw new InvalidArgumentError(`${checkpoint.path}: the GGUF export does not write ${name}`);
      if (planned.type !== type) {
        throw new UnsupportedError(`--method gptq --to ${target}: ${planned.name} would be ${planned.type}${planned.fallback !== undefined ? ` (${planned.fallback})` : ''}, and GPTQ writes ${type} blocks only`);
      }
    }
  }
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

/** GPTQ's codes as the pipeline's IntNQuantized, keyed by the checkpoint's tensor names. */
function gptqCodesByTensor(model: LlamaModel, run: MethodRun, target: MethodTarget): Map<string, IntNQuantized> {
  if (target.kind !== 'research') throw new InvalidArgumentError('GPTQ layout codes for a GGUF target');
  const { recipe } = target;
  const bits = recipe.bits;
  if (!isIntBits(bits)) throw new InvalidArgumentError(`GPTQ layout at ${bits} bits`);
  const codes = new Map<string, IntNQuantized>();
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
    extra.actOrder = false;
    if (settings.ggmlTarget !== undefined) extra.gptqBlocks = settings.ggmlTarget;
  }
  if (spec.method === 'awq') {
    extra.searchBits = settings.bits;
    extra.searchGroup = settings.groupSize;
  }
  if (spec.method === 'smoothquant') extra.alpha = settings.alpha ?? 0.5;
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
    if (target.kind === 'gguf' && target.gptqType !== undefined) await checkGgufLinearTypes(checkpoint, model, target.target, target.gptqType);
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
    const run = await quantizeWithMethod(model, calibration, spec.method, settings, {
      signal: options.signal,
      keepGptqResults: spec.method === 'gptq',
      onProgress: options.onCalibration,
    });
    for (const w of run.warnings) options.onWarning?.(w);
    const common = {
      signal: options.signal,
      onProgress: options.onProgress,
      onWarning: options.onWarning,
      recipeExtra: { ...recipeExtra(spec, settings, windows, ctx), ...(searchType === undefined ? {} : { searchType }) },
      ...(target.kind === 'gguf' ? { ggufExporter } : {}),
    };
    // GPTQ changes only the linear weights: the writer reads the originals (so the card measures the
    // error against them) and stores GPTQ's codes / blocks. AWQ / SmoothQuant also rescale the norms.
    let result: QuantizeResult;
    if (spec.method !== 'gptq') result = await runQuantize(request, { ...common, checkpoint: checkpointWithMethodWeights(checkpoint, model, run) });
    else if (target.kind === 'gguf' && target.gptqType !== undefined) result = await runQuantize(request, { ...common, checkpoint, ggmlBlocks: gptqBlocksByTensor(model, run, target.gptqType) });
    else result = await runQuantize(request, { ...common, checkpoint, gptqCodes: gptqCodesByTensor(model, run, target) });
    result.methodReport = { lines: formatSiteReports(run), warnings: run.warnings, seconds: run.seconds };
    return { result, run };
  } finally {
    await checkpoint.close();
  }
}
