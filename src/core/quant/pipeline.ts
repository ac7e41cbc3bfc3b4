/**
 * The quantize job: checkpoint in, quantized checkpoint + quant card out.
 *
 *   input (HF folder / safetensors / GGUF) -> per-tensor plan -> for each tensor, in order:
 *   read (one tensor at a time) -> check finite -> quantize -> write -> dequantize what was written
 *   and measure -> output committed atomically (temp file in the output folder, fsync, rename) ->
 *   side files (quantize_config.json, config.json in folder mode) -> `<output>.quant.json`.
 *
 * A pure async function over core/: progress through `onProgress`, cancellation through `signal`,
 * so the CLI, a worker thread and the extension all drive it the same way. Nothing is left at an
 * output path when it fails or is cancelled, and the source is never opened for writing.
 *
 * Research targets (researchSchemes.ts) are written here as safetensors; GGUF targets are handed to
 * a GGUF exporter supplied by the caller (`options.ggufExporter`), see GgufExporter below.
 */
import { mkdir, rm, rmdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { CancelledError, FormatError, InvalidArgumentError, NumericError, UnsupportedError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { tensorRole } from '../formats/tensorRoles';
import { bytesOf, layoutSafetensors, SAFETENSORS_DTYPE_BYTES, SafetensorsStreamWriter, type SafetensorsTensorSpec, type SafetensorsWriteDtype } from '../formats/safetensors/writer';
import { assertNotSamePath, copyFileAtomic, openAtomicFile, writeFileAtomic, type WriteFaultHook } from '../io/atomicWrite';
import { ErrorAccumulator } from '../analysis/errorMetrics';
import { ggmlTypeByName, type GgmlTypeName } from '../formats/gguf/ggmlTypes';
import { TOOL_VERSION } from '../version';
import { dequantizeFp8E4M3, encodeFp8WithScale, fp8Scale, quantizeFp8E4M3 } from './fp8';
import { allocateGptq, dequantizeGptq, dequantizeRowsWithF16Scales, GPTQ_MIN_ZERO, gptqQuantizeConfig, packGptqRows, readGptqLinear, type GptqCodes } from './gptqLayout';
import { dequantizeLlmInt8, quantizeRowsLlmInt8, type LlmInt8Stored } from '../methods/llmInt8';
import { dequantizeInt8Absmax, dequantizeInt8ZeroPoint, int8AbsmaxScale, quantizeInt8Absmax, quantizeInt8WithScale, quantizeInt8ZeroPoint } from './int8';
import { allocateIntN, asymmetricParams, groupCount, INT_BITS, quantizeAsymmetricWithParams, quantizeRowsIntN, type IntBits, type IntNQuantized } from './intN';
import {
  decodeDoubleQuantAbsmax,
  doubleQuantizeAbsmax,
  DYNAMIC_CODE,
  dequantizeNf4,
  dequantizeNf4Packed,
  NF4_BLOCK_SIZE,
  NF4_CODE,
  NF4_NESTED_BLOCK_SIZE,
  quantizeNf4,
} from './nf4';
import {
  copiedTensorEntry,
  meanSqnr,
  QUANT_CARD_SCHEMA,
  quantCardPath,
  quantizedTensorEntry,
  quantizedTensorResult,
  sha256File,
  type QuantCard,
  type QuantCardTensor,
  type QuantizedTensorResult,
  type RecipeValue,
} from './quantCard';
import { GGUF_PRESET_NAMES, GGUF_PURE_TYPE_NAMES } from './ggufPresets';
import type { MethodQuantizeSpec } from '../methods/methodQuantize';
import { findResearchScheme, researchTargetNames, resolveResearchRecipe, type ResearchOptions, type ResearchRecipe } from './researchSchemes';

/** GGUF target names (llama-quantize presets and the --pure K types) the pipeline hands to the GGUF exporter. */
export const GGUF_TARGETS: readonly string[] = [...GGUF_PRESET_NAMES, ...GGUF_PURE_TYPE_NAMES];

export function isGgufTarget(target: string): boolean {
  return GGUF_TARGETS.includes(target.toUpperCase());
}

export function allTargetNames(): string[] {
  return [...researchTargetNames(), ...GGUF_TARGETS];
}

/**
 * A block of whole rows of one written GGUF tensor, as the exporter reports it (in row order, tensor by
 * tensor), so the pipeline can measure it as it streams: no copy of a tensor is kept for the card.
 */
export interface GgufTensorRows {
  name: string;
  shape: number[];
  sourceType: string;
  type: string;
  /** First row of the block (rows = the outermost dimension, in the written order). */
  rowStart: number;
  /** The block's source values (row-major); valid only during the call. */
  original: Float32Array;
  /**
   * The block's `type` bytes written, same rows as `original`: the card's metrics are computed from them
   * (dequantized in WebAssembly memory chunk by chunk, ErrorAccumulator.addQuantizedRows), with no f32
   * reconstruction. Valid only during the call.
   */
  quantized: Uint8Array;
  /** Bytes written for the whole tensor. */
  bytes: number;
  /** This block ends the tensor. */
  last: boolean;
}

/**
 * The hook a GGUF exporter provides (src/core/convert). It must write `output` atomically itself,
 * honour `signal`, and call `onTensorRows` for every tensor it writes (its blocks in row order, tensor by tensor).
 */
export type GgufExporter = (job: {
  input: string;
  output: string;
  target: string;
  signal?: AbortSignal;
  onProgress?: (step: number, total: number, tensor: string) => void;
  onWarning?: (message: string) => void;
  onTensorRows: (rows: GgufTensorRows) => void;
  /** Quantizing threads of the exporter's CPU path (its default when absent). */
  threads?: number;
  /** Quantizes a window of rows in place of the CPU path (the GPU), or resolves null to leave it to the CPU. */
  quantizeWindow?: GgufWindowQuantizer;
  /** Read the tensors from this checkpoint instead of opening `input` (a calibrated method's weights); the caller closes it. */
  checkpoint?: Checkpoint;
  /** ggml blocks written as they are (GPTQ's), by source tensor name (see exportGguf's `precomputed`). */
  precomputed?: ReadonlyMap<string, { type: string; bytes: Uint8Array }>;
}) => Promise<void>;

/**
 * Quantizes `rows` x `cols` values (row-major, whole blocks per row) to a ggml `type`; must give the bytes
 * quantizeGgml gives, or null to leave the window to the exporter's CPU path (types it does not do, or a
 * GPU that failed under `--device auto`).
 */
export type GgufWindowQuantizer = (type: string, values: Float32Array, rows: number, cols: number, label: string) => Promise<Uint8Array | null>;

type Async<F extends (...args: never[]) => unknown> = (...args: Parameters<F>) => Promise<ReturnType<F>>;

/**
 * The research quantizers the pipeline calls, as async functions: CPU_RESEARCH_CODEC by default; the
 * quantize job passes their GPU counterparts (core/gpu/researchQuant.ts, the same results bit for bit).
 */
export interface ResearchCodec {
  quantizeInt8Absmax: Async<typeof quantizeInt8Absmax>;
  quantizeInt8WithScale: Async<typeof quantizeInt8WithScale>;
  quantizeInt8ZeroPoint: Async<typeof quantizeInt8ZeroPoint>;
  quantizeAsymmetricWithParams: Async<typeof quantizeAsymmetricWithParams>;
  quantizeRowsIntN: Async<typeof quantizeRowsIntN>;
  quantizeFp8E4M3: Async<typeof quantizeFp8E4M3>;
  encodeFp8WithScale: Async<typeof encodeFp8WithScale>;
  quantizeNf4: (values: Float32Array) => Promise<ReturnType<typeof quantizeNf4>>;
}

export const CPU_RESEARCH_CODEC: ResearchCodec = {
  quantizeInt8Absmax: async (...a) => quantizeInt8Absmax(...a),
  quantizeInt8WithScale: async (...a) => quantizeInt8WithScale(...a),
  quantizeInt8ZeroPoint: async (...a) => quantizeInt8ZeroPoint(...a),
  quantizeAsymmetricWithParams: async (...a) => quantizeAsymmetricWithParams(...a),
  quantizeRowsIntN: async (...a) => quantizeRowsIntN(...a),
  quantizeFp8E4M3: async (...a) => quantizeFp8E4M3(...a),
  encodeFp8WithScale: async (...a) => encodeFp8WithScale(...a),
  quantizeNf4: async (values) => quantizeNf4(values),
};

export interface QuantizeRequest extends ResearchOptions {
  input: string;
  /** A `.safetensors` / `.gguf` file path, or a folder (created) that gets `model.safetensors` + side files. */
  output: string;
  target: string;
  /** Calibrate with a method first; such requests run through runMethodQuantize (core/methods/methodQuantize.ts). */
  method?: MethodQuantizeSpec;
}

export interface QuantizeProgress {
  step: number;
  total: number;
  tensor: string;
  action: 'quantize' | 'copy' | 'hash' | 'card';
  /** Set on a second 'quantize' report of the same step once the tensor is done: its card metrics (live heatmaps). */
  result?: QuantizedTensorResult;
}

export interface QuantizeRunOptions {
  signal?: AbortSignal;
  onProgress?: (p: QuantizeProgress) => void;
  onWarning?: (message: string) => void;
  ggufExporter?: GgufExporter;
  /** Test seam: throws to simulate a failing disk. */
  onBeforeWrite?: WriteFaultHook;
  /** Values read per window (default WINDOW_ELEMENTS); smaller bounds memory further, tests use it to force many windows. */
  windowElements?: number;
  /**
   * Research targets: read the tensors from this checkpoint instead of opening `request.input` (a
   * calibrated method's rewritten weights, see methods/methodCheckpoint.ts); the caller closes it.
   */
  checkpoint?: Checkpoint;
  /** GPTQ layout: codes already chosen (GPTQ's own, with g_idx under act-order), by tensor name, written instead of re-quantizing. */
  gptqCodes?: ReadonlyMap<string, GptqCodes>;
  /** GPTQ layout: the codes carry act-order g_idx (quantize_config.json `desc_act: true`). */
  gptqActOrder?: boolean;
  /**
   * `int8` target under `--method llm-int8`: every quantized weight is written as bitsandbytes' Linear8bitLt
   * (`weight` I8 + `SCB`) plus its kept 16-bit input columns (`weight_outlier_idx`, `weight_outlier`), see
   * methods/llmInt8.ts; keptDims by tensor name (ascending), threshold for config.json's quantization_config.
   */
  llmInt8?: { keptDims: ReadonlyMap<string, Int32Array>; threshold: number };
  /** GGUF targets: ggml blocks already chosen (GPTQ into Q4_0 / Q8_0), by source tensor name. */
  ggmlBlocks?: ReadonlyMap<string, { type: string; bytes: Uint8Array }>;
  /** Extra entries for the card's recipe (e.g. the calibrated method and its settings). */
  recipeExtra?: Record<string, RecipeValue>;
  /** GGUF targets: quantizing threads of the exporter's CPU path (its default when absent). */
  threads?: number;
  /** GGUF targets: a window quantizer that replaces the CPU path (the job passes the GPU here). */
  quantizeWindow?: GgufWindowQuantizer;
  /** Research targets: the quantizers to call (default CPU_RESEARCH_CODEC; the job passes the GPU's). */
  researchCodec?: ResearchCodec;
  /**
   * Where the tensors were quantized, for the card's `recipe.device` ('gpu', 'cpu', or 'gpu+cpu' after a
   * GPU failure under auto); read when the card is written (GGUF and research targets). Absent: the card
   * has no device entry.
   */
  deviceUsed?: () => string;
}

export interface TensorPlan {
  name: string;
  shape: number[];
  sourceDtype: string;
  sourceBytes: number;
  action: 'quantize' | 'copy';
  /** Output type label (see QuantCardTensor.type). */
  type: string;
  outputs: SafetensorsTensorSpec[];
  outputBytes: number;
  bitsPerWeight: number;
}

export interface QuantizePlan {
  input: string;
  target: string;
  recipe: ResearchRecipe;
  /** The safetensors file written. */
  outputPath: string;
  /** Folder output (side files beside the model) or a single file. */
  outputFolder: string | null;
  cardPath: string;
  tensors: TensorPlan[];
  totals: {
    parameters: number;
    quantizedParameters: number;
    sourceBytes: number;
    outputBytes: number;
    bitsPerWeight: number;
  };
}

export interface QuantizeResult {
  plan: QuantizePlan | null;
  outputPath: string;
  cardPath: string;
  card: QuantCard;
  sideFiles: string[];
  seconds: number;
  /** Requests with a method: what each calibration site reported, the method's warnings and its seconds. */
  methodReport?: { lines: string[]; warnings: string[]; seconds: number };
}

const LINEAR_ROLES = new Set(['attn_q', 'attn_k', 'attn_v', 'attn_o', 'mlp_gate', 'mlp_up', 'mlp_down']);
const FLOAT_SOURCE_DTYPES = new Set(['F32', 'F16', 'BF16', 'F64']);
/** Bytes reserved for bnb's packed quant_state JSON (padded with spaces: its length is fixed before the values are known). */
export const NF4_QUANT_STATE_BYTES = 512;

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isFloatSource(entry: TensorEntry, format: Checkpoint['format']): boolean {
  // GGUF types other than integers all decode to f32 (readRowsF32 dequantizes them).
  return FLOAT_SOURCE_DTYPES.has(entry.dtype) || (format === 'gguf' && !/^I(8|16|32|64)$/.test(entry.dtype));
}

function shouldQuantize(entry: TensorEntry, format: Checkpoint['format'], recipe: ResearchRecipe): boolean {
  if (entry.shape.length !== 2 || !isFloatSource(entry, format)) return false;
  const role = tensorRole(entry.name);
  if (LINEAR_ROLES.has(role)) return true;
  if (role === 'embedding' || role === 'output') return recipe.includeEmbeddings;
  return role === 'other' && entry.name.endsWith('weight');
}

function weightPrefix(name: string): string {
  return name.endsWith('.weight') ? name.slice(0, -'.weight'.length) : name;
}

function outputTypeLabel(recipe: ResearchRecipe, groupSize: number): string {
  switch (recipe.kind) {
    case 'gptq':
      return `gptq-int${recipe.bits}-g${groupSize}${recipe.symmetric ? '-sym' : ''}`;
    case 'int8-absmax':
      return `int8-${recipe.granularity ?? 'channel'}`;
    case 'int8-zeropoint':
      return `int8-zp-${recipe.granularity ?? 'channel'}`;
    case 'nf4':
      return recipe.doubleQuant ? 'nf4-dq' : 'nf4';
    case 'fp8':
      return `fp8-e4m3-${recipe.granularity ?? 'tensor'}`;
  }
}

/**
 * LLM.int8() layout of one weight [rows, cols] with k kept input columns: bitsandbytes' serialized
 * Linear8bitLt (`<p>.weight` I8 = CB, `<p>.SCB` F32 [rows] = row absmax) and, when k > 0, the kept
 * columns `<p>.weight_outlier_idx` I32 [k] and `<p>.weight_outlier` F16 [rows, k].
 */
function llmInt8Outputs(name: string, rows: number, cols: number, keptDims: Int32Array): SafetensorsTensorSpec[] {
  const prefix = weightPrefix(name);
  const specs: SafetensorsTensorSpec[] = [
    { name: `${prefix}.weight`, dtype: 'I8', shape: [rows, cols] },
    { name: `${prefix}.SCB`, dtype: 'F32', shape: [rows] },
  ];
  if (keptDims.length > 0) {
    specs.push({ name: `${prefix}.weight_outlier_idx`, dtype: 'I32', shape: [keptDims.length] });
    specs.push({ name: `${prefix}.weight_outlier`, dtype: 'F16', shape: [rows, keptDims.length] });
  }
  return specs;
}

/** The tensors written for one quantized weight [rows, cols]. Throws for shapes the layout cannot take. */
function quantizedOutputs(name: string, rows: number, cols: number, recipe: ResearchRecipe): SafetensorsTensorSpec[] {
  const prefix = weightPrefix(name);
  const perChannel = recipe.granularity === 'channel';
  const scaleShape = perChannel ? [rows, 1] : [1];
  switch (recipe.kind) {
    case 'gptq': {
      const bits = recipe.bits;
      const g = recipe.groupSize === -1 || recipe.groupSize === null ? cols : recipe.groupSize;
      if ((cols * bits) % 32 !== 0 || (rows * bits) % 32 !== 0) {
        throw new InvalidArgumentError(`${name}: shape [${rows}, ${cols}] cannot be packed in the GPTQ layout at ${bits} bits (input and output channels x bits must fill 32-bit words)`);
      }
      const groups = groupCount(cols, g);
      return [
        { name: `${prefix}.qweight`, dtype: 'I32', shape: [(cols * bits) / 32, rows] },
        { name: `${prefix}.qzeros`, dtype: 'I32', shape: [groups, (rows * bits) / 32] },
        { name: `${prefix}.scales`, dtype: 'F16', shape: [groups, rows] },
        { name: `${prefix}.g_idx`, dtype: 'I32', shape: [cols] },
      ];
    }
    case 'int8-absmax':
      return [
        { name: `${prefix}.weight`, dtype: 'I8', shape: [rows, cols] },
        { name: `${prefix}.weight_scale`, dtype: 'F32', shape: scaleShape },
      ];
    case 'int8-zeropoint':
      return [
        { name: `${prefix}.weight`, dtype: 'U8', shape: [rows, cols] },
        { name: `${prefix}.weight_scale`, dtype: 'F32', shape: scaleShape },
        { name: `${prefix}.weight_zero_point`, dtype: 'U8', shape: scaleShape },
      ];
    case 'nf4': {
      const n = rows * cols;
      const blocks = Math.ceil(n / NF4_BLOCK_SIZE);
      const w = `${prefix}.weight`;
      const specs: SafetensorsTensorSpec[] = [
        { name: w, dtype: 'U8', shape: [Math.ceil(n / 2), 1] },
        { name: `${w}.absmax`, dtype: recipe.doubleQuant ? 'U8' : 'F32', shape: [blocks] },
        { name: `${w}.quant_map`, dtype: 'F32', shape: [16] },
      ];
      if (recipe.doubleQuant) {
        specs.push({ name: `${w}.nested_absmax`, dtype: 'F32', shape: [Math.ceil(blocks / NF4_NESTED_BLOCK_SIZE)] });
        specs.push({ name: `${w}.nested_quant_map`, dtype: 'F32', shape: [256] });
      }
      specs.push({ name: `${w}.quant_state.bitsandbytes__nf4`, dtype: 'U8', shape: [NF4_QUANT_STATE_BYTES] });
      return specs;
    }
    case 'fp8':
      return [
        { name: `${prefix}.weight`, dtype: 'F8_E4M3', shape: [rows, cols] },
        { name: `${prefix}.weight_scale`, dtype: 'F32', shape: scaleShape },
      ];
  }
}

function specBytes(spec: SafetensorsTensorSpec): number {
  return elementCount(spec.shape) * SAFETENSORS_DTYPE_BYTES[spec.dtype];
}

function copyDtype(entry: TensorEntry): SafetensorsWriteDtype {
  return entry.dtype in SAFETENSORS_DTYPE_BYTES ? (entry.dtype as SafetensorsWriteDtype) : 'F32';
}

export function resolveOutputPaths(output: string): { outputPath: string; outputFolder: string | null; cardPath: string } {
  const ext = extname(output).toLowerCase();
  if (ext === '.safetensors' || ext === '.gguf') return { outputPath: output, outputFolder: null, cardPath: quantCardPath(output) };
  const outputPath = join(output, 'model.safetensors');
  return { outputPath, outputFolder: output, cardPath: quantCardPath(outputPath) };
}

function recipeRecord(recipe: ResearchRecipe): Record<string, RecipeValue> {
  return { ...recipe };
}

function safetensorsMetadata(recipe: ResearchRecipe): Record<string, string> {
  return { format: 'pt', 'quantlens.version': TOOL_VERSION, 'quantlens.recipe': JSON.stringify(recipe) };
}

/** Builds the per-tensor plan of a research target (no writing); `llmInt8` as in QuantizeRunOptions. */
export function planResearchQuantize(ckpt: Checkpoint, request: QuantizeRequest, llmInt8?: QuantizeRunOptions['llmInt8']): QuantizePlan {
  const scheme = findResearchScheme(request.target);
  if (scheme === undefined) throw new InvalidArgumentError(`unknown target '${request.target}'; valid targets: ${allTargetNames().join(', ')}`);
  const recipe = resolveResearchRecipe(scheme, request);
  if (llmInt8 !== undefined && (recipe.kind !== 'int8-absmax' || recipe.granularity !== 'channel')) {
    throw new InvalidArgumentError(`--method llm-int8 writes vector-wise INT8 (bitsandbytes Linear8bitLt): give --to int8, not ${recipe.target}${recipe.granularity === 'tensor' ? ' / --scale tensor' : ''}`);
  }
  const { outputPath, outputFolder, cardPath } = resolveOutputPaths(request.output);
  if (extname(outputPath).toLowerCase() === '.gguf') throw new InvalidArgumentError(`${request.target} writes safetensors; give an output ending in .safetensors or a folder, not ${request.output}`);
  const tensors: TensorPlan[] = [];
  let parameters = 0;
  let quantizedParameters = 0;
  let sourceBytes = 0;
  for (const entry of ckpt.tensors) {
    const count = elementCount(entry.shape);
    parameters += count;
    sourceBytes += entry.nbytes;
    if (shouldQuantize(entry, ckpt.format, recipe)) {
      const [rows, cols] = entry.shape as [number, number];
      const keptDims = llmInt8?.keptDims.get(entry.name);
      if (llmInt8 !== undefined && keptDims === undefined) {
        throw new InvalidArgumentError(`${ckpt.path}: ${entry.name}: --method llm-int8 has no calibrated 16-bit dimensions for this weight (only the model's linear layers are calibrated)`);
      }
      const outputs = keptDims !== undefined ? llmInt8Outputs(entry.name, rows, cols, keptDims) : quantizedOutputs(entry.name, rows, cols, recipe);
      const outputBytes = outputs.reduce((s, o) => s + specBytes(o), 0);
      const groupSize = recipe.groupSize === -1 || recipe.groupSize === null ? cols : recipe.groupSize;
      quantizedParameters += count;
      const type = keptDims !== undefined ? 'llm-int8' : outputTypeLabel(recipe, groupSize);
      tensors.push({ name: entry.name, shape: entry.shape, sourceDtype: entry.dtype, sourceBytes: entry.nbytes, action: 'quantize', type, outputs, outputBytes, bitsPerWeight: (outputBytes * 8) / count });
    } else {
      const dtype = copyDtype(entry);
      const spec: SafetensorsTensorSpec = { name: entry.name, dtype, shape: entry.shape };
      const outputBytes = specBytes(spec);
      tensors.push({ name: entry.name, shape: entry.shape, sourceDtype: entry.dtype, sourceBytes: entry.nbytes, action: 'copy', type: dtype, outputs: [spec], outputBytes, bitsPerWeight: count === 0 ? 0 : (outputBytes * 8) / count });
    }
  }
  if (llmInt8 !== undefined) {
    const planned = new Set(tensors.filter((t) => t.action === 'quantize').map((t) => t.name));
    for (const name of llmInt8.keptDims.keys()) if (!planned.has(name)) throw new InvalidArgumentError(`${ckpt.path}: --method llm-int8 calibrated ${name}, which is not a quantized weight of this checkpoint`);
  }
  const layout = layoutSafetensors(tensors.flatMap((t) => t.outputs), safetensorsMetadata(recipe));
  return {
    input: request.input,
    target: recipe.target,
    recipe,
    outputPath,
    outputFolder,
    cardPath,
    tensors,
    totals: { parameters, quantizedParameters, sourceBytes, outputBytes: layout.totalBytes, bitsPerWeight: parameters === 0 ? 0 : (layout.totalBytes * 8) / parameters },
  };
}

/** Opens the input and plans (the `--dry-run`). */
export async function planQuantize(request: QuantizeRequest): Promise<QuantizePlan> {
  if (isGgufTarget(request.target)) throw new UnsupportedError(`GGUF target ${request.target}: plan it with planGgufExport (src/core/convert/exportGguf.ts)`);
  const ckpt = await openCheckpoint(request.input);
  try {
    return planResearchQuantize(ckpt, request);
  } finally {
    await ckpt.close();
  }
}

function checkFinite(values: Float32Array, input: string, entry: TensorEntry, rowOffset = 0): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (!Number.isFinite(v)) {
      const cols = entry.shape.length >= 2 ? elementCount(entry.shape.slice(1)) : values.length;
      const flat = rowOffset * cols + i;
      throw new NumericError(`${input}: tensor ${entry.name}: ${v} at flat index ${flat} (row ${Math.floor(flat / cols)}, column ${flat % cols}); refusing to write it`);
    }
  }
}

function checkCancelled(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new CancelledError(`${what} was cancelled`);
}

function torchDtypeName(dtype: string): string {
  return dtype === 'BF16' ? 'bfloat16' : dtype === 'F16' ? 'float16' : 'float32';
}

/** f32 values per read window (16 MiB): a tensor is read, checked and quantized window by window. */
export const WINDOW_ELEMENTS = 4 * 1024 * 1024;

/**
 * Quantizes one weight window by window (rows = output channels). Outputs are kept whole (at most
 * one byte per weight) because some layouts are transposed (GPTQ qweight); source values are only
 * ever held one window at a time.
 */
interface TensorQuantizer {
  /** Per-tensor scales need a first pass over the windows. */
  readonly needsStatsPass: boolean;
  observe(window: Float32Array): void;
  /** Quantizes rows [rowStart, rowStart + rowCount); returns what a loader reconstructs, or null when that is known only after finish(). */
  quantize(window: Float32Array, rowStart: number, rowCount: number): Promise<Float32Array | null>;
  /** The bytes of each output spec, in spec order. */
  finish(): Uint8Array[];
  /** Reconstruction of rows after finish() (when quantize returned null). */
  reconstruct(rowStart: number, rowCount: number): Float32Array;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** Rows per window: about WINDOW_ELEMENTS values; NF4 windows hold whole blocks of 64. */
function windowRows(rows: number, cols: number, recipe: ResearchRecipe, windowElements: number): number {
  let n = Math.max(1, Math.floor(windowElements / cols));
  if (recipe.kind === 'nf4') {
    const unit = NF4_BLOCK_SIZE / gcd(cols, NF4_BLOCK_SIZE);
    n = Math.max(unit, n - (n % unit));
  }
  return Math.min(rows, n);
}

function notDeferred(): Float32Array {
  throw new Error('reconstruct() is only for deferred quantizers');
}

/** How one absmax-scaled format (INT8 absmax, FP8 E4M3) quantizes; absmaxQuantizer does the streaming. */
interface AbsmaxScheme<Codes extends Int8Array | Uint8Array> {
  scaleFor(absmax: number): number;
  encodeWithScale(window: Float32Array, scale: number, codes: Codes, outStart: number): Promise<void>;
  dequantizeTensorRows(codes: Codes, scales: Float32Array, rowCount: number): Float32Array;
  quantizeChannelRows(window: Float32Array, rowCount: number): Promise<{ codes: Codes; scales: Float32Array; dequantize(): Float32Array }>;
}

/**
 * One code per weight and f32 scales: per tensor, the stats pass finds the absmax and every window
 * is encoded with that one scale; per channel, each window's rows get their own scales.
 */
function absmaxQuantizer<Codes extends Int8Array | Uint8Array>(rows: number, cols: number, perTensor: boolean, codes: Codes, scheme: AbsmaxScheme<Codes>): TensorQuantizer {
  const scales = new Float32Array(perTensor ? 1 : rows);
  let absmax = 0;
  return {
    needsStatsPass: perTensor,
    observe: (window) => {
      for (let i = 0; i < window.length; i++) absmax = Math.max(absmax, Math.abs(window[i]!));
      scales[0] = scheme.scaleFor(absmax);
    },
    quantize: async (window, rowStart, rowCount) => {
      if (perTensor) {
        await scheme.encodeWithScale(window, scales[0]!, codes, rowStart * cols);
        return scheme.dequantizeTensorRows(codes.subarray(rowStart * cols, (rowStart + rowCount) * cols) as Codes, scales, rowCount);
      }
      const q = await scheme.quantizeChannelRows(window, rowCount);
      codes.set(q.codes, rowStart * cols);
      scales.set(q.scales, rowStart);
      return q.dequantize();
    },
    finish: () => [bytesOf(codes), bytesOf(scales)],
    reconstruct: notDeferred,
  };
}

/** Rows [rowStart, rowStart + rowCount) of a quantized weight (levels row-major, scales and zeros [rows, groups]). */
function intNRows(q: IntNQuantized, rowStart: number, rowCount: number): IntNQuantized {
  const groups = q.scales.length / q.rows;
  return {
    ...q,
    rows: rowCount,
    levels: q.levels.subarray(rowStart * q.cols, (rowStart + rowCount) * q.cols),
    scales: q.scales.subarray(rowStart * groups, (rowStart + rowCount) * groups),
    zeros: q.zeros.subarray(rowStart * groups, (rowStart + rowCount) * groups),
  };
}

/** LLM.int8(): CB + SCB (+ the kept f16 columns), encoded window by window (llmInt8.ts's rule). */
function llmInt8Quantizer(rows: number, cols: number, keptDims: Int32Array): TensorQuantizer {
  const k = keptDims.length;
  const stored: LlmInt8Stored = { rows, cols, codes: new Int8Array(rows * cols), absmax: new Float32Array(rows), keptDims, kept: new Uint16Array(rows * k) };
  return {
    needsStatsPass: false,
    observe: () => undefined,
    quantize: async (window, rowStart, rowCount) => {
      const s = quantizeRowsLlmInt8(window, rowCount, cols, keptDims);
      stored.codes.set(s.codes, rowStart * cols);
      stored.absmax.set(s.absmax, rowStart);
      stored.kept.set(s.kept, rowStart * k);
      return dequantizeLlmInt8(s);
    },
    finish: () => (k > 0 ? [bytesOf(stored.codes), bytesOf(stored.absmax), bytesOf(keptDims), bytesOf(stored.kept)] : [bytesOf(stored.codes), bytesOf(stored.absmax)]),
    reconstruct: notDeferred,
  };
}

function createTensorQuantizer(entry: TensorEntry, recipe: ResearchRecipe, codec: ResearchCodec, precomputed?: GptqCodes, llmInt8KeptDims?: Int32Array): TensorQuantizer {
  const [rows, cols] = entry.shape as [number, number];
  const perTensor = recipe.granularity === 'tensor';
  if (llmInt8KeptDims !== undefined) return llmInt8Quantizer(rows, cols, llmInt8KeptDims);
  switch (recipe.kind) {
    case 'gptq': {
      const target = allocateGptq(recipe.bits, rows, cols, recipe.groupSize ?? -1, entry.name, precomputed?.gIdx);
      if (precomputed !== undefined && (precomputed.rows !== rows || precomputed.cols !== cols || precomputed.bits !== recipe.bits || precomputed.groupSize !== target.groupSize)) {
        throw new InvalidArgumentError(`${entry.name}: the precomputed GPTQ codes (${precomputed.rows}x${precomputed.cols}, ${precomputed.bits} bits, group ${precomputed.groupSize}) do not match the target`);
      }
      return {
        needsStatsPass: false,
        observe: () => undefined,
        quantize: async (window, rowStart, rowCount) => {
          if (precomputed !== undefined) {
            const given: GptqCodes = { ...intNRows(precomputed, rowStart, rowCount), gIdx: precomputed.gIdx };
            packGptqRows(given, rowStart, target, entry.name);
            return dequantizeRowsWithF16Scales(given);
          }
          const q = allocateIntN(rowCount, cols, { bits: recipe.bits, groupSize: target.groupSize, symmetric: recipe.symmetric });
          await codec.quantizeRowsIntN(window, q, GPTQ_MIN_ZERO);
          packGptqRows(q, rowStart, target, entry.name);
          return dequantizeRowsWithF16Scales(q);
        },
        finish: () => [bytesOf(target.qweight), bytesOf(target.qzeros), bytesOf(target.scales), bytesOf(target.gIdx)],
        reconstruct: notDeferred,
      };
    }
    case 'int8-absmax':
      return absmaxQuantizer(rows, cols, perTensor, new Int8Array(rows * cols), {
        scaleFor: int8AbsmaxScale,
        encodeWithScale: codec.quantizeInt8WithScale,
        dequantizeTensorRows: (values, scales, rowCount) => dequantizeInt8Absmax({ rows: rowCount, cols, granularity: 'tensor', values, scales }),
        quantizeChannelRows: async (window, rowCount) => {
          const q = await codec.quantizeInt8Absmax(window, rowCount, cols, 'channel');
          return { codes: q.values, scales: q.scales, dequantize: () => dequantizeInt8Absmax(q) };
        },
      });
    case 'int8-zeropoint': {
      const values = new Uint8Array(rows * cols);
      const scales = new Float32Array(perTensor ? 1 : rows);
      const zeros = new Uint8Array(perTensor ? 1 : rows);
      let lo = 0;
      let hi = 0;
      const params = new Float64Array(2);
      return {
        needsStatsPass: perTensor,
        observe: (window) => {
          for (let i = 0; i < window.length; i++) {
            if (window[i]! < lo) lo = window[i]!;
            if (window[i]! > hi) hi = window[i]!;
          }
          asymmetricParams(lo, hi, 8, 0, params);
          scales[0] = params[0]!;
          zeros[0] = params[1]!;
        },
        quantize: async (window, rowStart, rowCount) => {
          if (perTensor) {
            await codec.quantizeAsymmetricWithParams(window, 0, window.length, scales[0]!, zeros[0]!, 8, values, rowStart * cols);
            return dequantizeInt8ZeroPoint({ rows: rowCount, cols, granularity: 'tensor', values: values.subarray(rowStart * cols, (rowStart + rowCount) * cols), scales, zeros });
          }
          const q = await codec.quantizeInt8ZeroPoint(window, rowCount, cols, 'channel');
          values.set(q.values, rowStart * cols);
          scales.set(q.scales, rowStart);
          zeros.set(q.zeros, rowStart);
          return dequantizeInt8ZeroPoint(q);
        },
        finish: () => [values, bytesOf(scales), zeros],
        reconstruct: notDeferred,
      };
    }
    case 'fp8':
      return absmaxQuantizer(rows, cols, perTensor, new Uint8Array(rows * cols), {
        scaleFor: fp8Scale,
        encodeWithScale: codec.encodeFp8WithScale,
        dequantizeTensorRows: (codes, scales, rowCount) => dequantizeFp8E4M3({ rows: rowCount, cols, granularity: 'tensor', codes, scales }),
        quantizeChannelRows: async (window, rowCount) => {
          const q = await codec.quantizeFp8E4M3(window, rowCount, cols, 'channel');
          return { codes: q.codes, scales: q.scales, dequantize: () => dequantizeFp8E4M3(q) };
        },
      });
    case 'nf4': {
      const n = rows * cols;
      const packed = new Uint8Array(Math.ceil(n / 2));
      const absmax = new Float32Array(Math.ceil(n / NF4_BLOCK_SIZE));
      let decodedAbsmax: Float32Array | null = null;
      let stateBytes: Uint8Array | null = null;
      const state: Record<string, unknown> = { quant_type: 'nf4', blocksize: NF4_BLOCK_SIZE, dtype: torchDtypeName(entry.dtype), shape: [rows, cols] };
      const encodeState = (): Uint8Array => {
        const json = new TextEncoder().encode(JSON.stringify(state));
        if (json.byteLength > NF4_QUANT_STATE_BYTES) throw new InvalidArgumentError(`${entry.name}: NF4 quant state is longer than ${NF4_QUANT_STATE_BYTES} bytes`);
        const padded = new Uint8Array(NF4_QUANT_STATE_BYTES).fill(0x20);
        padded.set(json);
        return padded;
      };
      return {
        needsStatsPass: false,
        observe: () => undefined,
        quantize: async (window, rowStart) => {
          // Windows start on a block boundary (windowRows), so bytes and blocks line up.
          const q = await codec.quantizeNf4(window);
          packed.set(q.packed, (rowStart * cols) / 2);
          absmax.set(q.absmax, (rowStart * cols) / NF4_BLOCK_SIZE);
          return recipe.doubleQuant ? null : dequantizeNf4(q);
        },
        finish: () => {
          if (!recipe.doubleQuant) {
            stateBytes = encodeState();
            return [packed, bytesOf(absmax), bytesOf(NF4_CODE), stateBytes];
          }
          const dq = doubleQuantizeAbsmax(absmax);
          decodedAbsmax = decodeDoubleQuantAbsmax(dq);
          Object.assign(state, { nested_blocksize: NF4_NESTED_BLOCK_SIZE, nested_dtype: 'float32', nested_offset: dq.offset });
          stateBytes = encodeState();
          return [packed, dq.quantizedAbsmax, bytesOf(NF4_CODE), bytesOf(dq.nestedAbsmax), bytesOf(DYNAMIC_CODE), stateBytes];
        },
        reconstruct: (rowStart, rowCount) => {
          if (decodedAbsmax === null) throw new Error('reconstruct() before finish()');
          const start = rowStart * cols;
          return dequantizeNf4Packed(packed.subarray(start / 2), decodedAbsmax.subarray(start / NF4_BLOCK_SIZE), rowCount * cols);
        },
      };
    }
  }
}

/** Reads, checks, quantizes and measures one weight window by window; returns the output chunks and the card entry. */
async function quantizeTensorStreaming(
  ckpt: Checkpoint,
  input: string,
  entry: TensorEntry,
  tensorPlan: TensorPlan,
  recipe: ResearchRecipe,
  signal: AbortSignal | undefined,
  windowElements: number,
  codec: ResearchCodec,
  precomputed?: GptqCodes,
  llmInt8KeptDims?: Int32Array,
): Promise<{ chunks: Uint8Array[]; card: QuantCardTensor }> {
  const [rows, cols] = entry.shape as [number, number];
  const step = windowRows(rows, cols, recipe, windowElements);
  const quantizer = createTensorQuantizer(entry, recipe, codec, precomputed, llmInt8KeptDims);
  const read = async (start: number): Promise<Float32Array> => {
    checkCancelled(signal, `quantizing ${input}`);
    return ckpt.readRowsF32(entry.name, start, Math.min(step, rows - start));
  };
  if (quantizer.needsStatsPass) {
    for (let start = 0; start < rows; start += step) {
      const window = await read(start);
      checkFinite(window, input, entry, start);
      quantizer.observe(window);
    }
  }
  const acc = new ErrorAccumulator(rows, cols, entry.name);
  let deferred = false;
  for (let start = 0; start < rows; start += step) {
    const window = await read(start);
    if (!quantizer.needsStatsPass) checkFinite(window, input, entry, start);
    const reconstructed = await quantizer.quantize(window, start, window.length / cols);
    if (reconstructed === null) deferred = true;
    else acc.addRows(window, reconstructed);
  }
  const chunks = quantizer.finish();
  if (deferred) {
    for (let start = 0; start < rows; start += step) {
      const window = await read(start);
      acc.addRows(window, quantizer.reconstruct(start, window.length / cols));
    }
  }
  const card = quantizedTensorEntry({ name: entry.name, shape: entry.shape, sourceType: entry.dtype, type: tensorPlan.type, bitsPerWeight: tensorPlan.bitsPerWeight }, acc.result());
  return { chunks, card };
}

/** Copies one tensor window by window, checking float values for NaN / Inf first. */
async function copyTensorStreaming(
  ckpt: Checkpoint,
  input: string,
  entry: TensorEntry,
  spec: SafetensorsTensorSpec,
  writer: SafetensorsStreamWriter,
  signal: AbortSignal | undefined,
  windowElements: number,
): Promise<void> {
  const rows = entry.shape.length <= 1 ? 1 : entry.shape[0]!;
  const rowElements = entry.shape.length <= 1 ? elementCount(entry.shape) : elementCount(entry.shape.slice(1));
  if (elementCount(entry.shape) === 0) return;
  const floatSource = isFloatSource(entry, ckpt.format);
  const step = entry.shape.length <= 1 ? 1 : Math.max(1, Math.floor(windowElements / Math.max(1, rowElements)));
  // Check every value before writing any of this tensor: nothing non-finite is ever written.
  if (floatSource) {
    for (let start = 0; start < rows; start += step) {
      checkCancelled(signal, `copying ${entry.name}`);
      checkFinite(await ckpt.readRowsF32(entry.name, start, Math.min(step, rows - start)), input, entry, start);
    }
  }
  for (let start = 0; start < rows; start += step) {
    checkCancelled(signal, `copying ${entry.name}`);
    const count = Math.min(step, rows - start);
    if (spec.dtype === entry.dtype) await writer.writeTensor(spec.name, await ckpt.readRawRows(entry.name, start, count));
    else if (floatSource) await writer.writeTensor(spec.name, bytesOf(await ckpt.readRowsF32(entry.name, start, count)));
    else throw new UnsupportedError(`${input}: tensor ${entry.name}: cannot copy dtype ${entry.dtype} into safetensors`);
  }
}

/** config.json `quantization_config` for loaders that read it (folder outputs). */
function quantizationConfig(recipe: ResearchRecipe, computeDtype: string, options: QuantizeRunOptions): Record<string, unknown> | null {
  if (options.llmInt8 !== undefined) {
    // transformers' BitsAndBytesConfig for Linear8bitLt; lm_head (and the embeddings, not linears) stay 16-bit.
    return { quant_method: 'bitsandbytes', load_in_8bit: true, load_in_4bit: false, llm_int8_threshold: options.llmInt8.threshold, llm_int8_skip_modules: ['lm_head'], llm_int8_has_fp16_weight: false };
  }
  switch (recipe.kind) {
    case 'gptq':
      return { ...gptqQuantizeConfig(recipe.bits, recipe.groupSize ?? -1, recipe.symmetric, 'model', options.gptqActOrder === true) };
    case 'nf4':
      return { quant_method: 'bitsandbytes', load_in_4bit: true, load_in_8bit: false, bnb_4bit_quant_type: 'nf4', bnb_4bit_use_double_quant: recipe.doubleQuant, bnb_4bit_compute_dtype: computeDtype };
    case 'fp8':
      return recipe.granularity === 'tensor' ? { quant_method: 'fp8', activation_scheme: 'dynamic' } : null;
    default:
      return null;
  }
}

const COPIED_FOLDER_FILES = ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json', 'tokenizer.model'];

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

async function hashSources(ckpt: Checkpoint, signal: AbortSignal | undefined, onProgress: QuantizeRunOptions['onProgress']): Promise<QuantCard['source']['files']> {
  const files: QuantCard['source']['files'] = [];
  for (const [i, path] of ckpt.files.entries()) {
    checkCancelled(signal, 'hashing the source');
    onProgress?.({ step: i + 1, total: ckpt.files.length, tensor: basename(path), action: 'hash' });
    files.push({ path, bytes: (await stat(path)).size, sha256: await sha256File(path, signal) });
  }
  return files;
}

/** Runs a research target end to end. */
async function runResearch(request: QuantizeRequest, options: QuantizeRunOptions): Promise<QuantizeResult> {
  const started = Date.now();
  const { signal, onProgress } = options;
  const windowElements = options.windowElements ?? WINDOW_ELEMENTS;
  if (!Number.isSafeInteger(windowElements) || windowElements < 1) throw new InvalidArgumentError(`window of ${windowElements} values`);
  const { outputPath, outputFolder, cardPath } = resolveOutputPaths(request.output);
  // Refuse to overwrite the source before anything is opened for writing.
  await assertNotSamePath(request.input, outputPath);
  await assertNotSamePath(request.input, cardPath);
  const ckpt = options.checkpoint ?? (await openCheckpoint(request.input));
  const written: string[] = [];
  let createdFolder: string | undefined;
  try {
    await assertNotSamePath(ckpt.files, outputPath);
    await assertNotSamePath(ckpt.files, cardPath);
    const plan = planResearchQuantize(ckpt, request, options.llmInt8);
    const { recipe } = plan;
    if (ckpt.format === 'gguf') {
      const requantized = [...new Set(plan.tensors.filter((t) => t.action === 'quantize' && !FLOAT_SOURCE_DTYPES.has(t.sourceDtype)).map((t) => t.sourceDtype))];
      options.onWarning?.(
        `${request.input} is GGUF: tensors keep their GGUF names and llama.cpp's Q/K row order` +
          (requantized.length > 0 ? `; ${requantized.join(', ')} weights are dequantized first (requantizing adds error)` : ''),
      );
    }
    createdFolder = await mkdir(outputFolder ?? dirname(outputPath), { recursive: true });
    const cardTensors: QuantCardTensor[] = [];
    const file = await openAtomicFile(outputPath, { signal, onBeforeWrite: options.onBeforeWrite });
    try {
      const writer = await SafetensorsStreamWriter.create(file, plan.tensors.flatMap((t) => t.outputs), safetensorsMetadata(recipe));
      const entries = new Map(ckpt.tensors.map((t) => [t.name, t]));
      for (const [i, tensorPlan] of plan.tensors.entries()) {
        checkCancelled(signal, `quantizing ${request.input}`);
        onProgress?.({ step: i + 1, total: plan.tensors.length, tensor: tensorPlan.name, action: tensorPlan.action });
        const entry = entries.get(tensorPlan.name)!;
        if (tensorPlan.action === 'copy') {
          await copyTensorStreaming(ckpt, request.input, entry, tensorPlan.outputs[0]!, writer, signal, windowElements);
          cardTensors.push(copiedTensorEntry({ name: entry.name, shape: entry.shape, sourceType: entry.dtype, bitsPerWeight: tensorPlan.bitsPerWeight }));
          continue;
        }
        const { chunks, card } = await quantizeTensorStreaming(ckpt, request.input, entry, tensorPlan, recipe, signal, windowElements, options.researchCodec ?? CPU_RESEARCH_CODEC, options.gptqCodes?.get(entry.name), options.llmInt8?.keptDims.get(entry.name));
        for (const [k, chunk] of chunks.entries()) await writer.writeTensor(tensorPlan.outputs[k]!.name, chunk);
        cardTensors.push(card);
        onProgress?.({ step: i + 1, total: plan.tensors.length, tensor: tensorPlan.name, action: 'quantize', result: quantizedTensorResult(card) });
      }
      writer.finish();
      const sourceFiles = await hashSources(ckpt, signal, onProgress);
      onProgress?.({ step: 1, total: 1, tensor: basename(cardPath), action: 'card' });
      await file.commit();
      written.push(outputPath);
      const sideFiles = await writeSideFiles(ckpt, plan, options);
      written.push(...sideFiles);
      const card: QuantCard = {
        schema: QUANT_CARD_SCHEMA,
        tool: { name: 'quantlens', version: TOOL_VERSION },
        createdAt: new Date().toISOString(),
        source: { path: request.input, format: ckpt.format, files: sourceFiles },
        output: { path: outputPath, format: 'safetensors', bytes: plan.totals.outputBytes },
        recipe: { ...recipeRecord(recipe), ...options.recipeExtra, ...(options.deviceUsed === undefined ? {} : { device: options.deviceUsed() }) },
        totals: { ...plan.totals, meanSqnrDb: meanSqnr(cardTensors) },
        tensors: cardTensors,
      };
      await writeFileAtomic(cardPath, JSON.stringify(card) + '\n', { signal, onBeforeWrite: options.onBeforeWrite });
      written.push(cardPath);
      return { plan, outputPath, cardPath, card, sideFiles, seconds: (Date.now() - started) / 1000 };
    } catch (e) {
      await file.abort();
      throw e;
    }
  } catch (e) {
    // Whatever was already renamed into place belongs to a failed run: remove it.
    for (const path of written) await rm(path, { force: true }).catch(() => undefined);
    // A folder this run created is removed when empty (rmdir refuses a non-empty one).
    if (createdFolder !== undefined) await rmdir(createdFolder).catch(() => undefined);
    throw e;
  } finally {
    if (options.checkpoint === undefined) await ckpt.close();
  }
}

/** quantize_config.json (GPTQ) beside the model; in folder mode also config.json (+ quantization_config) and tokenizer files. */
async function writeSideFiles(ckpt: Checkpoint, plan: QuantizePlan, options: QuantizeRunOptions): Promise<string[]> {
  const { recipe } = plan;
  const folder = dirname(plan.outputPath);
  const written: string[] = [];
  const atomic = { signal: options.signal, onBeforeWrite: options.onBeforeWrite };
  if (recipe.kind === 'gptq') {
    const path = join(folder, 'quantize_config.json');
    await assertNotSamePath(ckpt.files, path);
    const base = basename(plan.outputPath, '.safetensors');
    await writeFileAtomic(path, JSON.stringify(gptqQuantizeConfig(recipe.bits, recipe.groupSize ?? -1, recipe.symmetric, base, options.gptqActOrder === true), null, 2) + '\n', atomic);
    written.push(path);
  }
  if (plan.outputFolder === null) return written;
  const sourceFolder = (await isDirectory(ckpt.path)) ? ckpt.path : dirname(ckpt.files[0] ?? ckpt.path);
  if (ckpt.config !== null) {
    const firstFloat = ckpt.tensors.find((t) => FLOAT_SOURCE_DTYPES.has(t.dtype));
    const qc = quantizationConfig(recipe, torchDtypeName(firstFloat?.dtype ?? 'F32'), options);
    const config: Record<string, unknown> = { ...ckpt.config };
    if (qc !== null) config.quantization_config = qc;
    const path = join(plan.outputFolder, 'config.json');
    await assertNotSamePath(ckpt.files, path);
    await writeFileAtomic(path, JSON.stringify(config, null, 2) + '\n', atomic);
    written.push(path);
  }
  if (ckpt.format === 'safetensors') {
    for (const name of COPIED_FOLDER_FILES) {
      const from = join(sourceFolder, name);
      const to = join(plan.outputFolder, name);
      try {
        await stat(from);
      } catch {
        continue;
      }
      await assertNotSamePath([from, ...ckpt.files], to);
      checkCancelled(options.signal, `copying ${name}`);
      await copyFileAtomic(from, to);
      written.push(to);
    }
  }
  return written;
}

/** GGUF targets: the exporter writes the file; the pipeline measures what it reports and writes the card. */
async function runGguf(request: QuantizeRequest, options: QuantizeRunOptions): Promise<QuantizeResult> {
  const started = Date.now();
  const exporter = options.ggufExporter;
  if (exporter === undefined) throw new UnsupportedError(`GGUF target ${request.target}: no GGUF exporter is wired into this build`);
  const outputPath = extname(request.output).toLowerCase() === '.gguf' ? request.output : join(request.output, 'model.gguf');
  const cardPath = quantCardPath(outputPath);
  await assertNotSamePath(request.input, outputPath);
  const ckpt = await openCheckpoint(request.input);
  try {
    await assertNotSamePath(ckpt.files, outputPath);
    await assertNotSamePath(ckpt.files, cardPath);
    const createdFolder = await mkdir(dirname(outputPath), { recursive: true });
    const cardTensors: QuantCardTensor[] = [];
    let parameters = 0;
    let quantizedParameters = 0;
    let lastStep = { step: 0, total: 0 };
    // The tensor whose blocks are being measured (the exporter reports one tensor's blocks at a time).
    let measuring: { name: string; type: GgmlTypeName; accumulator: ErrorAccumulator } | null = null;
    try {
      await exporter({
        input: request.input,
        output: outputPath,
        target: request.target.toUpperCase(),
        signal: options.signal,
        onWarning: options.onWarning,
        onProgress: (step, total, tensor) => {
          lastStep = { step, total };
          options.onProgress?.({ step, total, tensor, action: 'quantize' });
        },
        threads: options.threads,
        quantizeWindow: options.quantizeWindow,
        checkpoint: options.checkpoint,
        precomputed: options.ggmlBlocks,
        onTensorRows: (block) => {
          const count = elementCount(block.shape);
          // Unchanged, or widened to F32 (exact): no error to measure.
          const measured = !(block.type === block.sourceType || block.type === 'F32');
          const cols = block.shape.length >= 2 ? elementCount(block.shape.slice(1)) : Math.max(1, count);
          if (measured) {
            // The card's sums run over the blocks in row order: the numbers of one pass over the whole tensor.
            if (block.rowStart === 0) {
              const writtenType = ggmlTypeByName(block.type);
              if (writtenType === undefined) throw new InvalidArgumentError(`${block.name}: the GGUF exporter reported an unknown type ${block.type}`);
              measuring = { name: block.name, type: writtenType.name, accumulator: new ErrorAccumulator(Math.max(1, count / cols), cols, block.name) };
            }
            if (measuring === null || measuring.name !== block.name) throw new InvalidArgumentError(`${block.name}: the GGUF exporter reported rows from ${block.rowStart} before the tensor's first rows`);
            measuring.accumulator.addQuantizedRows(measuring.type, block.original, block.quantized);
          }
          if (!block.last) return;
          parameters += count;
          const base = { name: block.name, shape: block.shape, sourceType: block.sourceType, bitsPerWeight: count === 0 ? 0 : (block.bytes * 8) / count };
          if (!measured) {
            cardTensors.push(copiedTensorEntry({ ...base, type: block.type }));
            return;
          }
          quantizedParameters += count;
          const finished = measuring;
          if (finished === null) throw new InvalidArgumentError(`${block.name}: the GGUF exporter ended a tensor it did not report rows of`);
          measuring = null;
          const entry = quantizedTensorEntry({ ...base, type: block.type }, finished.accumulator.result());
          cardTensors.push(entry);
          options.onProgress?.({ ...lastStep, tensor: block.name, action: 'quantize', result: quantizedTensorResult(entry) });
        },
      });
    } catch (e) {
      if (createdFolder !== undefined) await rmdir(createdFolder).catch(() => undefined);
      throw e;
    }
    try {
      const sourceFiles = await hashSources(ckpt, options.signal, options.onProgress);
      const outputBytes = (await stat(outputPath)).size;
      const sourceBytes = ckpt.tensors.reduce((s, t) => s + t.nbytes, 0);
      const card: QuantCard = {
        schema: QUANT_CARD_SCHEMA,
        tool: { name: 'quantlens', version: TOOL_VERSION },
        createdAt: new Date().toISOString(),
        source: { path: request.input, format: ckpt.format, files: sourceFiles },
        output: { path: outputPath, format: 'gguf', bytes: outputBytes },
        recipe: { target: request.target.toUpperCase(), ...options.recipeExtra, ...(options.deviceUsed === undefined ? {} : { device: options.deviceUsed() }) },
        totals: { parameters, quantizedParameters, sourceBytes, outputBytes, bitsPerWeight: parameters === 0 ? 0 : (outputBytes * 8) / parameters, meanSqnrDb: meanSqnr(cardTensors) },
        tensors: cardTensors,
      };
      await writeFileAtomic(cardPath, JSON.stringify(card) + '\n', { signal: options.signal, onBeforeWrite: options.onBeforeWrite });
      return { plan: null, outputPath, cardPath, card, sideFiles: [], seconds: (Date.now() - started) / 1000 };
    } catch (e) {
      await rm(outputPath, { force: true }).catch(() => undefined);
      if (createdFolder !== undefined) await rmdir(createdFolder).catch(() => undefined);
      throw e;
    }
  } finally {
    await ckpt.close();
  }
}

/**
 * Reads one LLM.int8() weight (`<prefix>.weight` I8 [out, in], `<prefix>.SCB` F32 [out], and optionally
 * `<prefix>.weight_outlier_idx` I32 [k] + `<prefix>.weight_outlier` F16 [out, k]), checking dtypes and shapes.
 * A plain bitsandbytes int8 file (no outlier tensors) reads with k = 0.
 */
export async function readLlmInt8Linear(ckpt: Checkpoint, prefix: string): Promise<LlmInt8Stored> {
  const byName = new Map(ckpt.tensors.map((t) => [t.name, t]));
  const entry = (suffix: string, dtype: string, dims: number): TensorEntry => {
    const t = byName.get(`${prefix}.${suffix}`);
    if (t === undefined) throw new FormatError(ckpt.path, `no tensor ${prefix}.${suffix}`, prefix);
    if (t.dtype !== dtype) throw new FormatError(ckpt.path, `${prefix}.${suffix} is ${t.dtype}, the LLM.int8() layout stores ${dtype}`, prefix);
    if (t.shape.length !== dims) throw new FormatError(ckpt.path, `${prefix}.${suffix} has shape [${t.shape.join(', ')}], expected ${dims} dimensions`, prefix);
    return t;
  };
  const copyOf = (raw: Uint8Array): ArrayBuffer => raw.slice().buffer;
  const weight = entry('weight', 'I8', 2);
  const [rows, cols] = weight.shape as [number, number];
  const scb = entry('SCB', 'F32', 1);
  if (scb.shape[0] !== rows) throw new FormatError(ckpt.path, `${prefix}.SCB has ${scb.shape[0]} values for ${rows} rows`, prefix);
  const hasIdx = byName.has(`${prefix}.weight_outlier_idx`);
  if (hasIdx !== byName.has(`${prefix}.weight_outlier`)) throw new FormatError(ckpt.path, `${prefix}: weight_outlier_idx and weight_outlier come together`, prefix);
  let keptDims = new Int32Array(0);
  let kept = new Uint16Array(0);
  if (hasIdx) {
    const idx = entry('weight_outlier_idx', 'I32', 1);
    const k = idx.shape[0]!;
    const outlier = entry('weight_outlier', 'F16', 2);
    if (outlier.shape[0] !== rows || outlier.shape[1] !== k) throw new FormatError(ckpt.path, `${prefix}.weight_outlier has shape [${outlier.shape.join(', ')}], expected [${rows}, ${k}]`, prefix);
    keptDims = new Int32Array(copyOf(await ckpt.readRawRows(idx.name)));
    kept = new Uint16Array(copyOf(await ckpt.readRawRows(outlier.name)));
  }
  const codes = new Int8Array(copyOf(await ckpt.readRawRows(weight.name)));
  const absmax = new Float32Array(copyOf(await ckpt.readRawRows(scb.name)));
  return { rows, cols, codes, absmax, keptDims, kept };
}

/**
 * Our reader for the research layouts (docs/formats-output.md): the f32 weight [out, in] that a
 * loader reconstructs for `<prefix>.weight` of a checkpoint we wrote, whatever the layout. `bits` is
 * needed for GPTQ tensors (from quantize_config.json or the `quantlens.recipe` metadata).
 */
export async function readResearchWeight(ckpt: Checkpoint, weightName: string, gptqBits?: IntBits): Promise<Float32Array> {
  const prefix = weightPrefix(weightName);
  const byName = new Map(ckpt.tensors.map((t) => [t.name, t]));
  const raw = async (name: string): Promise<Uint8Array> => ckpt.readRawRows(name);
  const need = (name: string): TensorEntry => {
    const t = byName.get(name);
    if (t === undefined) throw new FormatError(ckpt.path, `no tensor ${name}`, weightName);
    return t;
  };
  if (byName.has(`${prefix}.qweight`)) {
    let bits = gptqBits;
    if (bits === undefined) {
      const recipe = ckpt.metadata['quantlens.recipe'];
      const parsed: unknown = typeof recipe === 'string' ? JSON.parse(recipe) : null;
      const b = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>).bits : undefined;
      if (typeof b !== 'number' || !(INT_BITS as readonly number[]).includes(b)) throw new FormatError(ckpt.path, 'GPTQ tensors without a bit width: pass it (quantize_config.json bits)', weightName);
      bits = b as IntBits;
    }
    return dequantizeGptq(await readGptqLinear(ckpt, prefix, bits), ckpt.path);
  }
  const stateName = `${weightName}.quant_state.bitsandbytes__nf4`;
  if (byName.has(stateName)) {
    const state: unknown = JSON.parse(new TextDecoder().decode(await raw(stateName)));
    if (typeof state !== 'object' || state === null) throw new FormatError(ckpt.path, 'NF4 quant state is not a JSON object', stateName);
    const s = state as Record<string, unknown>;
    const shape = s.shape;
    if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isSafeInteger(d))) throw new FormatError(ckpt.path, 'NF4 quant state has no 2-D shape', stateName);
    if (s.blocksize !== NF4_BLOCK_SIZE) throw new UnsupportedError(`${ckpt.path}: ${stateName}: NF4 block size ${String(s.blocksize)} (only ${NF4_BLOCK_SIZE})`);
    const count = (shape[0] as number) * (shape[1] as number);
    const absmaxEntry = need(`${weightName}.absmax`);
    let absmax: Float32Array;
    if (absmaxEntry.dtype === 'U8') {
      const nested = await ckpt.readRowsF32(need(`${weightName}.nested_absmax`).name);
      const code = await ckpt.readRowsF32(need(`${weightName}.nested_quant_map`).name);
      const offset = s.nested_offset;
      if (typeof offset !== 'number' || s.nested_blocksize !== NF4_NESTED_BLOCK_SIZE || code.length !== 256) throw new FormatError(ckpt.path, 'NF4 double-quant state is incomplete', stateName);
      const q = await raw(absmaxEntry.name);
      absmax = Float32Array.from(q, (v, i) => Math.fround(Math.fround(code[v]! * nested[Math.floor(i / NF4_NESTED_BLOCK_SIZE)]!) + offset));
    } else {
      absmax = await ckpt.readRowsF32(absmaxEntry.name);
    }
    return dequantizeNf4Packed(await raw(need(weightName).name), absmax, count);
  }
  if (byName.has(`${prefix}.SCB`)) return dequantizeLlmInt8(await readLlmInt8Linear(ckpt, prefix), ckpt.path);
  const weight = need(weightName);
  if (weight.shape.length !== 2) throw new FormatError(ckpt.path, `expected a 2-D quantized weight, shape [${weight.shape.join(', ')}]`, weightName);
  const [rows, cols] = weight.shape as [number, number];
  const scales = await ckpt.readRowsF32(need(`${prefix}.weight_scale`).name);
  const granularity = scales.length === 1 ? 'tensor' : 'channel';
  if (granularity === 'channel' && scales.length !== rows) throw new FormatError(ckpt.path, `weight_scale has ${scales.length} values for ${rows} rows`, weightName);
  const stored = await raw(weightName);
  switch (weight.dtype) {
    case 'F8_E4M3':
      return dequantizeFp8E4M3({ rows, cols, granularity, codes: stored, scales });
    case 'I8':
      return dequantizeInt8Absmax({ rows, cols, granularity, values: new Int8Array(stored.buffer, stored.byteOffset, stored.byteLength), scales });
    case 'U8': {
      const zeros = await raw(need(`${prefix}.weight_zero_point`).name);
      if (zeros.length !== scales.length) throw new FormatError(ckpt.path, `weight_zero_point has ${zeros.length} values, weight_scale ${scales.length}`, weightName);
      return dequantizeInt8ZeroPoint({ rows, cols, granularity, values: stored, scales, zeros });
    }
    default:
      throw new UnsupportedError(`${ckpt.path}: ${weightName}: ${weight.dtype} is not one of our quantized layouts`);
  }
}

/** The quantize job. Throws InvalidArgumentError for an unknown target (the message lists the valid ones). */
export async function runQuantize(request: QuantizeRequest, options: QuantizeRunOptions = {}): Promise<QuantizeResult> {
  checkCancelled(options.signal, `quantizing ${request.input}`);
  if (request.method !== undefined) throw new InvalidArgumentError(`--method ${request.method.method}: calibrated requests run through runMethodQuantize`);
  if (isGgufTarget(request.target)) return runGguf(request, options);
  if (findResearchScheme(request.target) === undefined) {
    throw new InvalidArgumentError(`unknown target '${request.target}'; valid targets: ${allTargetNames().join(', ')}`);
  }
  return runResearch(request, options);
}
