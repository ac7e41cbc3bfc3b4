/**
 * `quantlens quantize --method <m> --calib <text>`: a calibrated method (GPTQ, AWQ, SmoothQuant) run over
 * the whole model, then written by the quantize pipeline's research writers:
 * - GPTQ: GPTQ's own codes, scales and zeros go into the GPTQ layout (no re-quantization); the card's
 *   errors are measured against the original weights.
 * - AWQ / SmoothQuant: the rescaled (and, for AWQ, clipped) float weights and norms are read through
 *   checkpointWithMethodWeights and quantized by the target's writer with its own rounding rule; the
 *   card's errors are then relative to the rescaled weights (the float model is unchanged by the
 *   rescaling, so the error is what the quantizer adds).
 * GGUF targets and LLM.int8() (no output layout for its 16-bit outlier columns yet) are refused.
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { LINEAR_ROLES, LlamaModel, linearModuleName } from '../model/forward';
import { isIntBits, type IntNQuantized } from '../quant/intN';
import { isGgufTarget, runQuantize, type QuantizeProgress, type QuantizeRequest, type QuantizeResult } from '../quant/pipeline';
import type { RecipeValue } from '../quant/quantCard';
import { findResearchScheme, resolveResearchRecipe, type ResearchRecipe } from '../quant/researchSchemes';
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
 * Checks a method request against its target before anything is read; returns the target's recipe.
 * Throws InvalidArgumentError / UnsupportedError with one line saying what to change.
 */
export function checkMethodRequest(request: QuantizeRequest, spec: MethodQuantizeSpec): ResearchRecipe {
  const { method } = spec;
  if (!isExportMethod(method)) throw new InvalidArgumentError(`unknown --method '${String(method)}'; give one of ${EXPORT_METHODS.join(', ')}`);
  if (method === 'llm-int8') {
    throw new UnsupportedError('--method llm-int8: no output layout keeps its 16-bit outlier columns yet; measure it with `quantlens compare --methods llm-int8`, or write plain vector-wise INT8 with --to int8 (no --method)');
  }
  if (isGgufTarget(request.target)) {
    throw new UnsupportedError(
      `--method ${method} --to ${request.target}: GGUF output of calibrated methods is not wired yet (the GGUF exporter reads the input path, not rewritten weights); use a research target (int4-g128, int8, ...) or compare it with \`quantlens compare\``,
    );
  }
  const scheme = findResearchScheme(request.target);
  if (scheme === undefined) throw new InvalidArgumentError(`unknown target '${request.target}' for --method ${method}`);
  const recipe = resolveResearchRecipe(scheme, request);
  if (spec.bits !== undefined && spec.bits !== recipe.bits) throw new InvalidArgumentError(`--bits ${spec.bits} disagrees with --to ${recipe.target} (${recipe.bits} bits)`);
  if ((method === 'gptq' || method === 'awq') && recipe.kind !== 'gptq') {
    throw new InvalidArgumentError(`--method ${method} writes group-wise integers: give a GPTQ-layout target (int4-g128, int4-g64, int3-g128, int8-g128, ...), not ${recipe.target}`);
  }
  if (spec.actOrder === true && method !== 'gptq') throw new InvalidArgumentError('--act-order applies to --method gptq');
  if (spec.actOrder === true) throw new UnsupportedError('--method gptq --act-order: the GPTQ layout writer does not store g_idx yet; drop --act-order');
  if (spec.percDamp !== undefined && method !== 'gptq') throw new InvalidArgumentError('--damp applies to --method gptq');
  if (spec.alpha !== undefined && method !== 'smoothquant') throw new InvalidArgumentError('--alpha applies to --method smoothquant');
  // llm-int8 was refused above: its options have nothing to apply to.
  if (spec.threshold !== undefined || spec.keepFraction !== undefined) throw new InvalidArgumentError('--threshold and --keep-fraction apply to --method llm-int8');
  if (spec.calibWindows !== undefined && !(Number.isInteger(spec.calibWindows) && spec.calibWindows > 0)) throw new InvalidArgumentError(`--calib-windows ${spec.calibWindows}: give a positive integer`);
  if (spec.ctx !== undefined && !(Number.isInteger(spec.ctx) && spec.ctx > 0)) throw new InvalidArgumentError(`calibration window of ${spec.ctx} tokens`);
  return recipe;
}

function methodSettings(spec: MethodQuantizeSpec, recipe: ResearchRecipe): MethodSettings {
  const groupSize = recipe.groupSize === null || recipe.groupSize === -1 ? 0 : recipe.groupSize;
  const settings: MethodSettings = { bits: recipe.bits, groupSize, sym: recipe.symmetric };
  if (spec.method === 'gptq' && spec.percDamp !== undefined) settings.percDamp = spec.percDamp;
  if (spec.method === 'awq') settings.awqForExport = true;
  if (spec.method === 'smoothquant') {
    // Fold only: the target's writer quantizes the smoothed weights.
    settings.smoothOnly = true;
    settings.alpha = spec.alpha ?? 0.5;
  }
  return settings;
}

/** GPTQ's codes as the pipeline's IntNQuantized, keyed by the checkpoint's tensor names. */
function gptqCodesByTensor(model: LlamaModel, run: MethodRun, recipe: ResearchRecipe): Map<string, IntNQuantized> {
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
  }
  if (spec.method === 'smoothquant') extra.alpha = settings.alpha ?? 0.5;
  return extra;
}

/** Calibrates, then writes the target. Nothing is left behind on error or cancel (the pipeline's atomic writes). */
export async function runMethodQuantize(request: QuantizeRequest, spec: MethodQuantizeSpec, options: MethodQuantizeOptions = {}): Promise<{ result: QuantizeResult; run: MethodRun }> {
  // The writers get the plain request (runQuantize refuses one that still names a method).
  const { method: _method, ...plain } = request;
  request = plain;
  const recipe = checkMethodRequest(request, spec);
  const settings = methodSettings(spec, recipe);
  const windows = spec.calibWindows ?? 16;
  const ctx = spec.ctx ?? 256;
  const checkpoint: Checkpoint = await openCheckpoint(request.input);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint);
    const calibration = textWindows(tokenizer.encode(await readTextFile(spec.calib, 'calibration')), ctx, windows, 'calibration');
    const run = await quantizeWithMethod(model, calibration, spec.method, settings, {
      signal: options.signal,
      keepGptqResults: spec.method === 'gptq',
      onProgress: options.onCalibration,
    });
    for (const w of run.warnings) options.onWarning?.(w);
    const common = { signal: options.signal, onProgress: options.onProgress, onWarning: options.onWarning, recipeExtra: recipeExtra(spec, settings, windows, ctx) };
    // GPTQ changes only the linear weights: the writer reads the originals (so the card measures the
    // error against them) and stores GPTQ's codes. AWQ / SmoothQuant also rescale the norms.
    const result =
      spec.method === 'gptq'
        ? await runQuantize(request, { ...common, checkpoint, gptqCodes: gptqCodesByTensor(model, run, recipe) })
        : await runQuantize(request, { ...common, checkpoint: checkpointWithMethodWeights(checkpoint, model, run) });
    result.methodReport = { lines: formatSiteReports(run), warnings: run.warnings, seconds: run.seconds };
    return { result, run };
  } finally {
    await checkpoint.close();
  }
}
