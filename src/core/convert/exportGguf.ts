/**
 * Checkpoint -> GGUF, with llama-quantize's per-tensor type choice and byte-identical quantization.
 *
 *   exportGguf(
 *     checkpoint: Checkpoint,                 // from openCheckpoint(): an HF LLaMA/Mistral folder (or its .safetensors) or a .gguf
 *     options: ExportGgufOptions,             // { target: 'Q4_K_M' | 'Q8_0' | 'Q4_K' (pure) | ..., outputPath: '.../x.gguf', pure?, modelName?,
 *                                             //   onWarning?, onTensorRows? (source values + written bytes for the quant card,
 *                                             //   window by window, no whole-tensor copies) }
 *     progress?: (step, total, tensorName) => void,
 *     signal?: AbortSignal,                   // cancels between windows; nothing is left at outputPath
 *   ): Promise<ExportGgufResult>              // the per-tensor plan that was written, file type, bytes
 *
 * What it does, as `convert_hf_to_gguf.py --outtype f32` followed by `llama-quantize <target>` would:
 * HF names -> GGUF names, Q/K rows permuted back to interleaved pairs, the metadata and tokenizer KVs
 * (general.quantization_version and general.file_type last, as llama-quantize leaves them), tensors in
 * llama.cpp's order (by layer, then name), each quantized with the `_ref` quantizers. A GGUF input keeps its
 * KVs and is dequantized first when its tensors change type (a warning says it is requantizing).
 *
 * Streaming: windows of rows (at most `maxWindowElements` values each) go through a WindowQuantizer:
 * at most three are held at once (one read, one quantized, one written), so reading window w + 1 and
 * writing w - 1 overlap quantizing w, across tensor boundaries too. Values are staged in WebAssembly
 * memory (read straight into it when the checkpoint has readRowsF32Into) and bytes written from there.
 * The output goes to a temporary file in the output folder, flushed as it grows, fsynced and renamed at
 * the end. The source is only ever opened for reading. NaN / Inf in a tensor is refused with the tensor
 * name and the value index (in the source's row order).
 */
import { basename, dirname, extname, join } from 'node:path';
import { stat } from 'node:fs/promises';
import { CancelledError, FormatError, InvalidArgumentError, NumericError, UnsupportedError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import { readJsonObject } from '../formats/hfConfig';
import { readGgufHeader, type GgufValue } from '../formats/gguf/reader';
import { ggmlTypeByName, type GgmlTypeName } from '../formats/gguf/ggmlTypes';
import { GgufStreamWriter, gguf, layoutGguf, type GgufTensorToWrite } from '../formats/gguf/writer';
import { assertNotSamePath, openAtomicFile, type WriteFaultHook } from '../io/atomicWrite';
import { withFileSource } from '../io/byteSource';
import { availableParallelism } from 'node:os';
import { findNonFinite, isGgmlCodecType, quantizeGgml } from '../quant/ggml/index';
import type { QuantizePool } from '../quant/ggml/quantPool';
import { WindowQuantizer, type QuantizedWindow, type StagedWindow } from '../quant/ggml/windowQuantizer';
import { isImatrixQuantType, isWasmQuantType, type WasmQuantType } from '../quant/ggml/wasm/ggmlWasm';
import { compareLlamaTensorNames, planGgufTypes, type PresetModel, type TensorTypeChoice } from '../quant/ggufPresets';
import { readSentencePieceModel, SentencePieceTokenizer } from '../model/sentencepiece';
import type { GgufTensorRows } from '../quant/pipeline';
import { importanceWeights, isImatrixType, quantizeRowsWithImatrix, type Imatrix } from '../methods/imatrix';
import { gpt2TokenizerKvs, sentencePieceTokenizerKvs, type GgufTokenizer, llamaModelKvs, mapLlamaTensorName, permuteQkRows, readLlamaHparams, titleFromFolderName, type LlamaHparams } from './hfLlama';

export interface ExportGgufOptions {
  /** A llama-quantize preset (Q4_K_M, Q8_0, F16, ...) or a plain K type (Q3_K, Q4_K, Q5_K = --pure). */
  target: string;
  outputPath: string;
  /** llama-quantize --pure: the preset's default type on every quantizable tensor. */
  pure?: boolean;
  /** general.name for HF input (default: from the folder name, as convert_hf_to_gguf does). */
  modelName?: string;
  onWarning?: (message: string) => void;
  /**
   * Each written tensor's source values and bytes, block by block in row order (streamed tensors: one call per
   * window part, with views of the WebAssembly memory the window was quantized in; others: one call with the
   * whole tensor). Nothing is kept for it, so a streaming consumer (the quant card's ErrorAccumulator) costs no
   * copy of the model.
   */
  onTensorRows?: (rows: GgufTensorRows) => void;
  /** Most values read, quantized and written in one step (default 4 M). */
  maxWindowElements?: number;
  /** Test seam: called before every write; throwing simulates a failing disk. */
  onBeforeWrite?: WriteFaultHook;
  /**
   * Threads that quantize (worker_threads; reading and writing stay on this thread, in order). Default: the
   * hardware concurrency, as llama-quantize, used only when the export quantizes at least
   * POOL_MIN_ELEMENTS values (small models are faster inline). An explicit value > 1 always uses workers;
   * 1 quantizes inline. The bytes are the same either way.
   */
  threads?: number;
  /**
   * Quantizes one window of whole rows (row-major `values`, `rows` x `cols`) to a non-float `type` in place
   * of the thread pool / inline path: the quantize job passes the GPU here. Must resolve with exactly the
   * bytes quantizeGgml gives (rows x rowBytes), or with null to let the usual CPU path do this window. A
   * type it resolved null for is not offered again in this export: its later windows stream through the
   * CPU's window quantizer (as the quantize job's device, once on the CPU, stays there).
   */
  quantizeWindow?: (type: GgmlTypeName, values: Float32Array, rows: number, cols: number, label: string) => Promise<Uint8Array | null>;
  /**
   * Blocks computed elsewhere (GPTQ error compensation into ggml blocks), keyed by the SOURCE tensor name,
   * rows in the source's row order: written instead of quantizing that tensor. Q/K rows are permuted like
   * the values would be (whole rows of blocks: exact, since a block never spans rows). The tensor's planned
   * type must be `type` (refused otherwise, before anything is written). The card's `original` stays the
   * source values.
   */
  precomputed?: ReadonlyMap<string, PrecomputedGgmlTensor>;
  /**
   * llama-quantize --imatrix: every tensor with an entry (by GGUF name) is quantized by the `_impl` path
   * with importanceWeights(imatrix, name); tensors without one by the `_ref` path; the quantize.imatrix.*
   * KVs are written after general.file_type; Q4_0 / Q5_0 presets put the first n_layer/8 ffn_down in
   * Q4_1 / Q5_1. Weighted tensors stream through the window quantizer like the others (on the pool's
   * workers with threads); quantizeWindow is never offered them (it runs the `_ref` paths only).
   */
  imatrix?: ExportImatrix;
}

export interface ExportImatrix {
  imatrix: Imatrix;
  /** The imatrix file as the user named it: recorded in quantize.imatrix.file (llama-quantize keeps 127 bytes) and named in errors. */
  file: string;
}

/** One tensor's ggml blocks, rows one after another. */
export interface PrecomputedGgmlTensor {
  type: string;
  bytes: Uint8Array;
}

export interface ExportGgufTensorResult extends TensorTypeChoice {
  shape: number[];
  sourceType: string;
  bytes: number;
}

export interface ExportGgufResult {
  outputPath: string;
  target: string;
  fileType: number;
  tensors: ExportGgufTensorResult[];
  bytes: number;
}

const MAX_TOKENIZER_BYTES = 256 * 1024 * 1024;
/** Small enough that reading, quantizing and writing overlap well within a tensor, large enough for big sequential I/O. */
const DEFAULT_WINDOW_ELEMENTS = 4 * 1024 * 1024;
const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);
/** Below this many values to quantize, starting worker threads costs more than it saves. */
const POOL_MIN_ELEMENTS = 16 * 1024 * 1024;

/** One tensor to write: where its values come from and what it becomes. */
interface ExportItem {
  name: string;
  source: TensorEntry;
  shape: number[];
  sourceType: GgmlTypeName;
  permuteHeads?: number;
}

interface ExportPlan {
  kv: Array<[string, GgufValue]>;
  items: ExportItem[];
  choices: Map<string, TensorTypeChoice>;
  fileType: number;
  target: string;
}

function rowsAndCols(shape: readonly number[]): { rows: number; cols: number } {
  if (shape.length <= 1) return { rows: 1, cols: shape[0] ?? 1 };
  let cols = 1;
  for (let i = 1; i < shape.length; i++) cols *= shape[i]!;
  return { rows: shape[0]!, cols };
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function folderOf(checkpoint: Checkpoint): string {
  return extname(checkpoint.path) === '' ? checkpoint.path : dirname(checkpoint.path);
}

async function readOptionalJson(path: string): Promise<Record<string, unknown> | null> {
  try {
    await stat(path);
  } catch {
    return null;
  }
  return withFileSource(path, (s) => readJsonObject(s, MAX_TOKENIZER_BYTES));
}

/**
 * The tokenizer KVs for an HF folder, chosen as convert_hf_to_gguf's set_vocab does: tokenizer.model
 * (SentencePiece) first, else tokenizer.json (byte-level BPE).
 */
async function tokenizerKvsFromFolder(folder: string, config: Record<string, unknown> | null, hp: LlamaHparams): Promise<GgufTokenizer> {
  const tokenizerConfig = await readOptionalJson(join(folder, 'tokenizer_config.json'));
  const tokenizerPath = join(folder, 'tokenizer.json');
  const tokenizerJson = await readOptionalJson(tokenizerPath);
  const spmPath = join(folder, 'tokenizer.model');
  if (await fileExists(spmPath)) {
    const spm = await readSentencePieceModel(spmPath);
    // Refuses (UnsupportedError) a model whose ids our own reader of the export could not reproduce.
    new SentencePieceTokenizer(spm);
    const addedTokens = await readOptionalJson(join(folder, 'added_tokens.json'));
    return sentencePieceTokenizerKvs(spm, { tokenizerConfig, tokenizerJson, addedTokens, config }, hp, spmPath);
  }
  if (tokenizerJson === null) {
    throw new UnsupportedError(`${folder}: no tokenizer.model or tokenizer.json; GGUF export needs the tokenizer`);
  }
  return gpt2TokenizerKvs(tokenizerJson, tokenizerConfig, hp, tokenizerPath, config);
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

async function planFromHf(checkpoint: Checkpoint, options: ExportGgufOptions): Promise<ExportPlan> {
  const folder = folderOf(checkpoint);
  const hp: LlamaHparams = readLlamaHparams(checkpoint.config, checkpoint.path);
  const items: ExportItem[] = [];
  for (const t of checkpoint.tensors) {
    const mapped = mapLlamaTensorName(t.name, hp, checkpoint.path);
    if (mapped === null) continue;
    items.push({ name: mapped.name, source: t, shape: [...t.shape], sourceType: 'F32', permuteHeads: mapped.permuteHeads });
  }
  items.sort((a, b) => compareLlamaTensorNames(a.name, b.name));
  const tokenizer = await tokenizerKvsFromFolder(folder, checkpoint.config, hp);
  const model: PresetModel = { blockCount: hp.blockCount, headCount: hp.headCount, headCountKv: hp.headCountKv };
  const plan = planGgufTypes(options.target, items.map((i) => ({ name: i.name, shape: i.shape, sourceType: i.sourceType })), model, { pure: options.pure });
  const parameters = items.reduce((s, i) => s + elementCount(i.shape), 0);
  const name = options.modelName ?? titleFromFolderName(basename(folder));
  const modelKv = llamaModelKvs(hp, name, parameters, plan.fileType, plan.quantizationVersion);
  const kv = [...modelKv, ...tokenizer.kv];
  return finishPlan(kv, items, plan.tensors, plan.fileType, plan.quantizationVersion, plan.target);
}

/** llama-quantize re-sets these two after copying the input's KVs, which moves them to the end. */
function finishPlan(kv: Array<[string, GgufValue]>, items: ExportItem[], choices: TensorTypeChoice[], fileType: number, quantizationVersion: number, target: string): ExportPlan {
  const kept = kv.filter(([k]) => k !== 'general.quantization_version' && k !== 'general.file_type' && !k.startsWith('split.'));
  kept.push(['general.quantization_version', gguf.u32(quantizationVersion)]);
  kept.push(['general.file_type', gguf.u32(fileType)]);
  const byName = new Map(choices.map((c) => [c.name, c]));
  return { kv: kept, items, choices: byName, fileType, target };
}

function kvNumber(kv: Map<string, GgufValue>, key: string, file: string): number {
  const v = kv.get(key);
  if (v === undefined || v.type === 'ARRAY' || typeof v.value !== 'number') throw new UnsupportedError(`${file}: GGUF input lacks the numeric key ${key} that the type choice needs`);
  return v.value;
}

async function planFromGguf(checkpoint: Checkpoint, options: ExportGgufOptions): Promise<ExportPlan> {
  const file = checkpoint.files[0];
  if (file === undefined) throw new InvalidArgumentError(`${checkpoint.path}: no file`);
  // the header openCheckpoint read (its tokenizer arrays are most of it), else read again
  const header = checkpoint.gguf ?? (await withFileSource(file, (s) => readGgufHeader(s)));
  const archValue = header.kv.get('general.architecture');
  const arch = archValue !== undefined && archValue.type === 'STRING' ? String(archValue.value) : 'llama';
  const items: ExportItem[] = [];
  for (const t of checkpoint.tensors) {
    const type = ggmlTypeByName(t.dtype);
    if (type === undefined) throw new UnsupportedError(`${file}: tensor ${t.name} has type ${t.dtype}, unknown here`);
    items.push({ name: t.name, source: t, shape: [...t.shape], sourceType: type.name });
  }
  items.sort((a, b) => compareLlamaTensorNames(a.name, b.name));
  const headCount = kvNumber(header.kv, `${arch}.attention.head_count`, file);
  const model: PresetModel = {
    blockCount: kvNumber(header.kv, `${arch}.block_count`, file),
    headCount,
    headCountKv: header.kv.has(`${arch}.attention.head_count_kv`) ? kvNumber(header.kv, `${arch}.attention.head_count_kv`, file) : headCount,
  };
  const plan = planGgufTypes(options.target, items.map((i) => ({ name: i.name, shape: i.shape, sourceType: i.sourceType })), model, { pure: options.pure });
  const requantized = plan.tensors.filter((c, idx) => {
    const src = items[idx]!.sourceType;
    return c.type !== src && !FLOAT_TYPES.has(src);
  });
  if (requantized.length > 0) {
    options.onWarning?.(
      `${file}: requantizing ${requantized.length} already-quantized tensor(s) (e.g. ${requantized[0]!.name}): they are dequantized to f32 first, as llama-quantize --allow-requantize does, so the errors of both quantizations add up`,
    );
  }
  return finishPlan([...header.kv.entries()], items, plan.tensors, plan.fileType, plan.quantizationVersion, plan.target);
}

function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted === true) throw new CancelledError(`${what} was cancelled`);
}

export interface GgufExportPlan {
  target: string;
  fileType: number;
  /** Size of the GGUF that exportGguf would write, header included. */
  fileBytes: number;
  /** Per tensor, in the order it would be written; `sourceName` is the checkpoint's name for it. */
  tensors: Array<TensorTypeChoice & { sourceName: string; shape: number[]; sourceType: string; bytes: number }>;
}

/**
 * The plan exportGguf would follow (for --dry-run): per-tensor types, fallbacks and sizes, and the file
 * size, computed from headers only; nothing is written and no tensor data is read.
 */
export async function planGgufExport(checkpoint: Checkpoint, options: Pick<ExportGgufOptions, 'target' | 'pure' | 'modelName' | 'onWarning' | 'imatrix'>): Promise<GgufExportPlan> {
  const full: ExportGgufOptions = { ...options, outputPath: 'plan.gguf' };
  const plan = checkpoint.format === 'gguf' ? await planFromGguf(checkpoint, full) : await planFromHf(checkpoint, full);
  if (options.imatrix !== undefined) applyImatrixToPlan(plan, options.imatrix, options.pure === true);
  const toWrite: GgufTensorToWrite[] = plan.items.map((i) => ({ name: i.name, shape: i.shape, type: plan.choices.get(i.name)!.type }));
  const layout = layoutGguf({ kv: plan.kv, tensors: toWrite }, checkpoint.path);
  return {
    target: plan.target,
    fileType: plan.fileType,
    fileBytes: layout.fileSize,
    tensors: plan.items.map((item, i) => ({ ...plan.choices.get(item.name)!, sourceName: item.source.name, shape: item.shape, sourceType: item.source.dtype, bytes: layout.tensors[i]!.nbytes })),
  };
}

export async function exportGguf(
  checkpoint: Checkpoint,
  options: ExportGgufOptions,
  progress?: (step: number, total: number, tensor: string) => void,
  signal?: AbortSignal,
): Promise<ExportGgufResult> {
  if (extname(options.outputPath).toLowerCase() !== '.gguf') throw new InvalidArgumentError(`GGUF output must end in .gguf: ${options.outputPath}`);
  await assertNotSamePath(checkpoint.files, options.outputPath);
  // The workers start now, so that their start-up overlaps reading the plan and laying out the header.
  let quantizer = earlyWindowQuantizer(checkpoint, options);
  try {
    const plan = checkpoint.format === 'gguf' ? await planFromGguf(checkpoint, options) : await planFromHf(checkpoint, options);
    if (options.imatrix !== undefined) applyImatrixToPlan(plan, options.imatrix, options.pure === true);
    for (const c of plan.choices.values()) if (c.fallback !== undefined) options.onWarning?.(`${c.name}: ${c.fallback}`);
    const weightsByTensor = options.imatrix !== undefined ? imatrixWeightsFor(plan, options.imatrix, options.onWarning) : undefined;

    const toWrite: GgufTensorToWrite[] = plan.items.map((i) => ({ name: i.name, shape: i.shape, type: plan.choices.get(i.name)!.type }));
    for (const t of toWrite) {
      if (!isGgmlCodecType(t.type)) throw new UnsupportedError(`${t.name}: type ${t.type} cannot be written by this version`);
    }
    checkPrecomputed(plan, options.precomputed, checkpoint.path);
    const layout = layoutGguf({ kv: plan.kv, tensors: toWrite }, options.outputPath);
    const maxWindow = Math.max(1, options.maxWindowElements ?? DEFAULT_WINDOW_ELEMENTS);
    const file = await openAtomicFile(options.outputPath, { signal, onBeforeWrite: options.onBeforeWrite });
    const results: ExportGgufTensorResult[] = [];
    const quantizedElements = plan.items.reduce((sum, item) => {
      const type = plan.choices.get(item.name)!.type;
      return FLOAT_TYPES.has(type) || type === item.sourceType ? sum : sum + elementCount(item.shape);
    }, 0);
    const threads = options.threads ?? (quantizedElements >= POOL_MIN_ELEMENTS ? availableParallelism() : 1);
    if (quantizer !== null && quantizer.threads !== threads) {
      await quantizer.close();
      quantizer = null;
    }
    quantizer ??= WindowQuantizer.create(threads);
    try {
      const writer = new GgufStreamWriter(file, layout);
      await writer.writeHeader();
      let step = 0;
      const context: StreamContext = {
        checkpoint,
        writer,
        quantizer,
        readInto: readIntoOf(checkpoint),
        readBf16Into: readBf16IntoOf(checkpoint),
        options,
        signal,
        maxWindow,
        scratch: new Float32Array(0),
        permuted: new Float32Array(0),
        offered: new Float32Array(0),
        declinedTypes: new Set(),
      };
      for (let i = 0; i < plan.items.length; ) {
        throwIfAborted(signal, `writing ${options.outputPath}`);
        // a run of tensors that stream through the window quantizer: reading, quantizing and writing overlap, across tensors too
        const run: StreamedRun = [];
        for (let j = i; j < plan.items.length; j++) {
          const item = plan.items[j]!;
          const type = plan.choices.get(item.name)!.type;
          if (!isStreamable(checkpoint, item, type, options)) break;
          // llama-quantize uses the weights only where the type has an importance-matrix path (not Q8_0)
          const weights = weightsByTensor?.get(item.name);
          run.push({ item, type, importance: weights !== undefined && isImatrixQuantType(type) ? weights : null });
        }
        if (run.length > 0) {
          await streamTensors(context, run, (name) => progress?.(step++, plan.items.length, name));
          for (const { item, type } of run) {
            const { rows, cols } = rowsAndCols(item.shape);
            results.push({ ...plan.choices.get(item.name)!, shape: item.shape, sourceType: item.source.dtype, bytes: rows * ggmlRowBytesOf(type, cols) });
          }
          i += run.length;
          continue;
        }
        const item = plan.items[i]!;
        progress?.(step++, plan.items.length, item.name);
        const choice = plan.choices.get(item.name)!;
        const bytes = await writeTensor(checkpoint, item, choice.type, writer, maxWindow, options, signal, quantizer.pool, weightsByTensor?.get(item.name) ?? null);
        results.push({ ...choice, shape: item.shape, sourceType: item.source.dtype, bytes });
        i++;
      }
      progress?.(step, plan.items.length, '');
      await writer.finish();
      await file.commit();
    } catch (e) {
      await file.abort();
      throw e;
    }
    return { outputPath: options.outputPath, target: plan.target, fileType: plan.fileType, tensors: results, bytes: layout.fileSize };
  } finally {
    await quantizer?.close();
  }
}

/**
 * The window quantizer's workers, started before the plan when the export will likely want them: `threads`
 * > 1 given, or by default when the checkpoint holds at least POOL_MIN_ELEMENTS values and the target is not
 * a float type (exportGguf replaces it when the plan's count of values to quantize says otherwise). Null:
 * decided after the plan.
 */
function earlyWindowQuantizer(checkpoint: Checkpoint, options: ExportGgufOptions): WindowQuantizer | null {
  if (options.threads !== undefined) return options.threads > 1 ? WindowQuantizer.create(options.threads) : null;
  if (FLOAT_TYPES.has(options.target.toUpperCase())) return null;
  const values = checkpoint.tensors.reduce((sum, t) => sum + elementCount(t.shape), 0);
  return values >= POOL_MIN_ELEMENTS ? WindowQuantizer.create(availableParallelism()) : null;
}

/** llama-quantize keeps 127 bytes of a string KV override (strncpy into char[128]). */
function kvOverrideString(value: string): string {
  const bytes = new TextEncoder().encode(value);
  return bytes.length <= 127 ? value : new TextDecoder().decode(bytes.subarray(0, 127));
}

/**
 * What an imatrix changes in llama-quantize's plan (llama-quant.cpp): the quantize.imatrix.* KVs after
 * general.file_type (file, first dataset, entry count, chunk count when known; numbers as u32), and for
 * the Q4_0 / Q5_0 presets (not --pure) the first n_layer/8 ffn_down tensors in Q4_1 / Q5_1 ("guard
 * against craziness in the first few ffn_down layers").
 */
function applyImatrixToPlan(plan: ExportPlan, im: ExportImatrix, pure: boolean): void {
  for (const [name, entry] of im.imatrix.entries) {
    for (let i = 0; i < entry.sums.length; i++) {
      if (!Number.isFinite(entry.sums[i]!)) throw new FormatError(im.file, `non-finite value ${String(entry.sums[i])} at index ${i}; llama-quantize refuses such an imatrix`, name);
    }
  }
  plan.kv.push(['quantize.imatrix.file', gguf.str(kvOverrideString(im.file))]);
  const dataset = im.imatrix.datasets[0];
  if (dataset !== undefined) plan.kv.push(['quantize.imatrix.dataset', gguf.str(kvOverrideString(dataset))]);
  plan.kv.push(['quantize.imatrix.entries_count', gguf.u32(im.imatrix.entries.size)]);
  if (im.imatrix.chunkCount > 0) plan.kv.push(['quantize.imatrix.chunks_count', gguf.u32(im.imatrix.chunkCount)]);
  if (pure || (plan.target !== 'Q4_0' && plan.target !== 'Q5_0')) return;
  const ffnDown = plan.items.filter((i) => /\.ffn_down\.weight$/.test(i.name)).sort((a, b) => compareLlamaTensorNames(a.name, b.name));
  const guarded = Math.trunc(ffnDown.length / 8);
  for (let i = 0; i < guarded; i++) {
    const choice = plan.choices.get(ffnDown[i]!.name);
    if (choice !== undefined && choice.type === plan.target) plan.choices.set(choice.name, { ...choice, type: plan.target === 'Q4_0' ? 'Q4_1' : 'Q5_1' });
  }
}

/**
 * Each tensor's importance weights (GGUF name -> one row's weights), as llama-quantize looks them up: an
 * entry must have exactly one value per column, except token_embd's, which is ignored with a warning.
 */
function imatrixWeightsFor(plan: ExportPlan, im: ExportImatrix, onWarning: ((m: string) => void) | undefined): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const item of plan.items) {
    const type = plan.choices.get(item.name)!.type;
    if (FLOAT_TYPES.has(type) || type === item.sourceType) continue;
    const weights = importanceWeights(im.imatrix, item.name);
    if (weights === null) continue;
    const { cols } = rowsAndCols(item.shape);
    if (weights.length !== cols) {
      if (item.name === 'token_embd.weight') {
        onWarning?.(`${im.file}: the entry for token_embd.weight has ${weights.length} values, the tensor's rows ${cols}: quantized without it (as llama-quantize does)`);
        continue;
      }
      throw new FormatError(im.file, `the entry has ${weights.length} values, but ${item.name} [${item.shape.join(', ')}] has rows of ${cols}`, item.name);
    }
    out.set(item.name, weights);
  }
  return out;
}

/** Every precomputed tensor exists, gets the type its bytes are in, and has exactly one tensor's worth of bytes. */
function checkPrecomputed(plan: ExportPlan, precomputed: ReadonlyMap<string, PrecomputedGgmlTensor> | undefined, path: string): void {
  if (precomputed === undefined) return;
  for (const [sourceName, blocks] of precomputed) {
    const item = plan.items.find((i) => i.source.name === sourceName);
    if (item === undefined) throw new InvalidArgumentError(`${path}: precomputed blocks for '${sourceName}', a tensor the GGUF export does not write`);
    const chosen = plan.choices.get(item.name)!.type;
    if (chosen !== blocks.type) {
      throw new UnsupportedError(`${item.name}: target ${plan.target} puts it in ${chosen}, but its precomputed blocks are ${blocks.type}`);
    }
    const info = ggmlTypeByName(chosen)!;
    const { rows, cols } = rowsAndCols(item.shape);
    const expected = rows * (cols / info.blockSize) * info.typeSize;
    if (cols % info.blockSize !== 0 || blocks.bytes.byteLength !== expected) {
      throw new InvalidArgumentError(`${item.name}: ${blocks.bytes.byteLength} precomputed bytes, ${chosen} [${item.shape.join(', ')}] needs ${expected}`);
    }
  }
}

/** Whether the caller wants each written tensor reported (so unchanged GGUF tensors are read, not copied). */
function wantsReports(options: ExportGgufOptions): boolean {
  return options.onTensorRows !== undefined;
}

/** A whole tensor to onTensorRows, as one block. */
function reportTensor(options: ExportGgufOptions, report: Omit<GgufTensorRows, 'rowStart' | 'last'>): void {
  options.onTensorRows?.({ ...report, rowStart: 0, last: true });
}

/** permuteQkRows over rows of bytes (rows of ggml blocks): the same row mapping. */
function permuteQkByteRows(src: Uint8Array, rows: number, rowBytes: number, headRows: number): Uint8Array {
  const dst = new Uint8Array(src.length);
  const half = headRows / 2;
  for (let r = 0; r < rows; r++) {
    const head = Math.floor(r / headRows);
    const within = r - head * headRows;
    const from = head * headRows + (within & 1) * half + (within >> 1);
    dst.set(src.subarray(from * rowBytes, (from + 1) * rowBytes), r * rowBytes);
  }
  return dst;
}

/** Writes a tensor's precomputed blocks (Q/K rows permuted); reads the source values only for the card. */
async function writePrecomputed(
  checkpoint: Checkpoint,
  item: ExportItem,
  type: GgmlTypeName,
  blocks: Uint8Array,
  writer: GgufStreamWriter,
  options: ExportGgufOptions,
): Promise<number> {
  const { rows, cols } = rowsAndCols(item.shape);
  const headRows = item.permuteHeads !== undefined ? rows / item.permuteHeads : 1;
  if (item.permuteHeads !== undefined && (!Number.isInteger(headRows) || headRows % 2 !== 0)) {
    throw new UnsupportedError(`${item.source.name}: ${rows} rows do not split into ${item.permuteHeads} heads of an even size`);
  }
  const rowBytes = blocks.byteLength / rows;
  const bytes = item.permuteHeads !== undefined ? permuteQkByteRows(blocks, rows, rowBytes, headRows) : blocks;
  await writer.writeTensorData(item.name, bytes);
  if (wantsReports(options)) {
    let original = await checkpoint.readRowsF32(item.source.name);
    if (item.permuteHeads !== undefined) {
      const permuted = new Float32Array(original.length);
      permuteQkRows(original, permuted, rows, cols, headRows);
      original = permuted;
    }
    reportTensor(options, { name: item.name, shape: item.shape, sourceType: item.source.dtype, type, original, quantized: bytes, bytes: bytes.byteLength });
  }
  return bytes.byteLength;
}

async function writeTensor(
  checkpoint: Checkpoint,
  item: ExportItem,
  type: GgmlTypeName,
  writer: GgufStreamWriter,
  maxWindow: number,
  options: ExportGgufOptions,
  signal: AbortSignal | undefined,
  pool: QuantizePool | null,
  importance: Float32Array | null,
): Promise<number> {
  const { rows, cols } = rowsAndCols(item.shape);
  const total = rows * cols;
  const info = ggmlTypeByName(type)!;
  const rowBytes = (cols / info.blockSize) * info.typeSize;
  const blocks = options.precomputed?.get(item.source.name);
  if (blocks !== undefined) return writePrecomputed(checkpoint, item, type, blocks.bytes, writer, options);

  // Unchanged GGUF tensors are copied byte for byte, as llama-quantize does.
  if (checkpoint.format === 'gguf' && item.source.dtype === type && !wantsReports(options)) {
    const windowRows = Math.max(1, Math.floor(maxWindow / cols));
    for (let r = 0; r < rows; r += windowRows) {
      throwIfAborted(signal, `writing ${options.outputPath}`);
      const n = Math.min(windowRows, rows - r);
      await writer.writeTensorData(item.name, await checkpoint.readRawRows(item.source.name, r, n));
    }
    return rows * rowBytes;
  }

  const headRows = item.permuteHeads !== undefined ? rows / item.permuteHeads : 1;
  if (item.permuteHeads !== undefined && (!Number.isInteger(headRows) || headRows % 2 !== 0)) {
    throw new UnsupportedError(`${item.source.name}: ${rows} rows do not split into ${item.permuteHeads} heads of an even size`);
  }
  let windowRows = Math.max(1, Math.floor(maxWindow / cols));
  if (headRows > 1) windowRows = Math.max(headRows, windowRows - (windowRows % headRows));
  const keep = wantsReports(options);
  const original = keep ? new Float32Array(total) : undefined;
  // The written bytes, for the quant card (it dequantizes them itself, chunk by chunk).
  const written = keep ? new Uint8Array(rows * rowBytes) : undefined;
  let permuted: Float32Array | undefined;
  let out: Uint8Array | undefined;
  // With workers, window w is quantized while window w + 1 is read; bytes are written in row order.
  // Importance weights take the `_impl` path on this thread (the pool and the GPU run `_ref` only).
  const weighted = importance !== null && isImatrixType(type) && type !== 'Q8_0';
  const usePool = pool !== null && !FLOAT_TYPES.has(type) && !weighted;
  let pending: { bytes: Promise<Uint8Array>; row: number; n: number } | null = null;
  const flush = async (): Promise<void> => {
    if (pending === null) return;
    const done = pending;
    pending = null;
    const chunk = await done.bytes;
    await writer.writeTensorData(item.name, chunk);
    if (written !== undefined) written.set(chunk, done.row * rowBytes);
  };
  for (let r = 0; r < rows; r += windowRows) {
    throwIfAborted(signal, `writing ${options.outputPath}`);
    const n = Math.min(windowRows, rows - r);
    let values = await checkpoint.readRowsF32(item.source.name, r, n);
    const bad = findNonFinite(values);
    if (bad >= 0) {
      throw new NumericError(`${checkpoint.path}: tensor ${item.source.name} has ${String(values[bad])} at index ${r * cols + bad} (row ${r + Math.floor(bad / cols)}, column ${bad % cols}); refusing to write it`);
    }
    if (item.permuteHeads !== undefined) {
      if (permuted === undefined || permuted.length < values.length) permuted = new Float32Array(values.length);
      const view = permuted.subarray(0, values.length);
      permuteQkRows(values, view, n, cols, headRows);
      values = view;
    }
    if (options.quantizeWindow !== undefined && !FLOAT_TYPES.has(type) && !weighted) {
      const windowBytes = await options.quantizeWindow(type, values, n, cols, `${item.name} rows ${r}..${r + n - 1}`);
      if (windowBytes !== null) {
        if (windowBytes.byteLength !== n * rowBytes) throw new InvalidArgumentError(`${item.name}: a window quantizer gave ${windowBytes.byteLength} bytes for ${n} rows of ${rowBytes}`);
        await flush();
        await writer.writeTensorData(item.name, windowBytes);
        if (original !== undefined && written !== undefined) {
          original.set(values, r * cols);
          written.set(windowBytes, r * rowBytes);
        }
        continue;
      }
    }
    if (usePool) {
      // quantizeRows copies `values` before it returns, so the read buffers may be reused at once
      const next = { bytes: pool.quantizeRows(type, values, n, cols, rowBytes), row: r, n };
      // a rejected window is awaited by flush (or below when an earlier step throws first)
      next.bytes.catch(() => {});
      if (original !== undefined) original.set(values, r * cols);
      await flush();
      pending = next;
      continue;
    }
    const need = n * rowBytes;
    if (out === undefined || out.length < need) out = new Uint8Array(need);
    const chunk = out.subarray(0, need);
    if (weighted) quantizeRowsWithImatrix(type, values, n, cols, importance, chunk);
    else quantizeGgml(type, values, chunk);
    await writer.writeTensorData(item.name, chunk);
    if (original !== undefined && written !== undefined) {
      original.set(values, r * cols);
      written.set(chunk, r * rowBytes);
    }
  }
  await flush();
  if (original !== undefined && written !== undefined) {
    reportTensor(options, { name: item.name, shape: item.shape, sourceType: item.source.dtype, type, original, quantized: written, bytes: rows * rowBytes });
  }
  return rows * rowBytes;
}

function ggmlRowBytesOf(type: GgmlTypeName, cols: number): number {
  const info = ggmlTypeByName(type)!;
  return (cols / info.blockSize) * info.typeSize;
}

/** What the streamed export needs besides the tensors. */
interface StreamContext {
  checkpoint: Checkpoint;
  writer: GgufStreamWriter;
  quantizer: WindowQuantizer;
  readInto: ReadRowsInto | null;
  /** The checkpoint's readRowsBf16Into (BF16 rows left unwidened for the quantizer), or null. */
  readBf16Into: ReadRowsBf16Into | null;
  options: ExportGgufOptions;
  signal: AbortSignal | undefined;
  maxWindow: number;
  /** Reused (one window is filled at a time): rows before and after the Q/K permutation. */
  scratch: Float32Array;
  permuted: Float32Array;
  /** Reused: a window split over workers, made contiguous for options.quantizeWindow. */
  offered: Float32Array;
  /**
   * Types options.quantizeWindow resolved null for: the CPU quantizes every later window of them without
   * asking (the quantize job's device never goes back to the GPU once it answered CPU).
   */
  declinedTypes: Set<GgmlTypeName>;
}

/**
 * Whether a tensor goes through the window quantizer: a WebAssembly block type from values read here.
 * Precomputed blocks, byte-for-byte copies and float targets keep writeTensor's loop. With
 * options.quantizeWindow (the GPU), each streamed window is offered to it first (see offerWindow).
 */
function isStreamable(checkpoint: Checkpoint, item: ExportItem, type: GgmlTypeName, options: ExportGgufOptions): type is GgmlTypeName & WasmQuantType {
  if (!isWasmQuantType(type)) return false;
  if (options.precomputed?.has(item.source.name) === true) return false;
  if (checkpoint.format === 'gguf' && item.source.dtype === type && !wantsReports(options)) return false;
  const { cols } = rowsAndCols(item.shape);
  return cols % ggmlTypeByName(type)!.blockSize === 0;
}

/** Checkpoint.readRowsF32 into a given buffer (see readIntoOf). */
type ReadRowsInto = (name: string, rowStart: number, rowCount: number, target: Float32Array) => Promise<void>;
/** Checkpoint.readRowsBf16Into (see readBf16IntoOf): true when the rows were staged as BF16. */
type ReadRowsBf16Into = (name: string, rowStart: number, rowCount: number, target: Float32Array) => Promise<boolean>;

/**
 * The checkpoint's readRowsF32Into when it has one (Checkpoint says which do), bound to it, so rows go from
 * the file into WebAssembly memory; null means readRowsF32 and a copy.
 */
function readIntoOf(checkpoint: Checkpoint): ReadRowsInto | null {
  const into = checkpoint.readRowsF32Into;
  return into === undefined ? null : (name, rowStart, rowCount, target) => into.call(checkpoint, name, rowStart, rowCount, target);
}

/**
 * The checkpoint's readRowsBf16Into, bound to it: BF16 rows go from the file into WebAssembly memory as
 * stored and are widened on the worker that quantizes them (not on this thread, where widening 537 M values
 * took 0.67 s that the workers waited for). Null when the checkpoint has none.
 */
function readBf16IntoOf(checkpoint: Checkpoint): ReadRowsBf16Into | null {
  const into = checkpoint.readRowsBf16Into;
  return into === undefined ? null : (name, rowStart, rowCount, target) => into.call(checkpoint, name, rowStart, rowCount, target);
}

/** The row of a Q/K window (starting on a head boundary) that permuteQkRows put at `row`. */
function permutedFromRow(row: number, headRows: number): number {
  const head = Math.floor(row / headRows);
  const within = row - head * headRows;
  return head * headRows + (within & 1) * (headRows / 2) + (within >> 1);
}

interface StreamedTensor {
  item: ExportItem;
  type: GgmlTypeName & WasmQuantType;
  rows: number;
  cols: number;
  rowBytes: number;
  headRows: number;
  /** llama-quantize --imatrix: one row's importance weights (quantized by that path, never offered to quantizeWindow). */
  importance: Float32Array | null;
}

/** Tensors streamed one after another, with their types and importance weights (null: the `_ref` path). */
type StreamedRun = Array<{ item: ExportItem; type: GgmlTypeName & WasmQuantType; importance: Float32Array | null }>;

interface WindowTask {
  tensor: StreamedTensor;
  row: number;
  rows: number;
}

function grow(buffer: Float32Array, length: number): Float32Array {
  return buffer.length >= length ? buffer : new Float32Array(length);
}

/**
 * Reads rows [task.row, task.row + task.rows) of the tensor into the window's parts (Q/K rows permuted).
 * Resolves true when the parts hold the rows as BF16 in their upper halves (window.quantize(true) widens
 * them): only when no quantizeWindow hook will be offered the values (it needs f32), i.e. there is none, it
 * declined the type (for good: a window filled before a decline is f32, which quantize takes too) or the
 * tensor has importance weights.
 */
async function fillWindow(context: StreamContext, task: WindowTask, window: StagedWindow): Promise<boolean> {
  const { tensor } = task;
  const { item, cols } = tensor;
  const name = item.source.name;
  const count = task.rows * cols;
  const permute = item.permuteHeads !== undefined;
  const readBf16Into = context.readBf16Into;
  const offered = context.options.quantizeWindow !== undefined && tensor.importance === null && !context.declinedTypes.has(tensor.type);
  if (readBf16Into !== null && item.source.dtype === 'BF16' && !offered) {
    if (!permute) {
      // one read per part (concurrent); all or none of them stage (the same tensor), none reads when refused
      const staged = await Promise.all(window.parts.map((p) => readBf16Into(name, task.row + p.row, p.rows, p.values)));
      if (staged.every((b) => b)) return true;
      if (staged.some((b) => b)) throw new InvalidArgumentError(`${context.checkpoint.path}: tensor ${name}: some rows were read as BF16 and some not`);
    } else {
      // Q/K: the window's rows as stored, then each part's rows (2-byte values) in permuteQkRows' order
      context.scratch = grow(context.scratch, count);
      const room = context.scratch.subarray(0, count);
      if (await readBf16Into(name, task.row, task.rows, room)) {
        const stored = new Uint16Array(room.buffer, room.byteOffset + count * 2, count);
        for (const p of window.parts) {
          const upper = new Uint16Array(p.values.buffer, p.values.byteOffset + p.values.length * 2, p.values.length);
          for (let r = 0; r < p.rows; r++) {
            const from = permutedFromRow(p.row + r, tensor.headRows);
            upper.set(stored.subarray(from * cols, (from + 1) * cols), r * cols);
          }
        }
        return true;
      }
    }
  }
  const readInto = context.readInto;
  if (readInto !== null && !permute) {
    // rows go from the file into WebAssembly memory, one read per part (concurrent)
    await Promise.all(window.parts.map((p) => readInto(name, task.row + p.row, p.rows, p.values)));
    return false;
  }
  let values: Float32Array;
  if (readInto !== null) {
    context.scratch = grow(context.scratch, count);
    values = context.scratch.subarray(0, count);
    await readInto(name, task.row, task.rows, values);
  } else {
    values = await context.checkpoint.readRowsF32(name, task.row, task.rows);
  }
  if (permute) {
    const only = window.parts.length === 1 ? window.parts[0]! : null;
    if (only !== null) {
      permuteQkRows(values, only.values, task.rows, cols, tensor.headRows);
      return false;
    }
    context.permuted = grow(context.permuted, count);
    const permuted = context.permuted.subarray(0, count);
    permuteQkRows(values, permuted, task.rows, cols, tensor.headRows);
    values = permuted;
  }
  for (const p of window.parts) p.values.set(values.subarray(p.row * cols, (p.row + p.rows) * cols));
  return false;
}

/**
 * Offers a staged window to options.quantizeWindow (the GPU) unless it declined this type before: its bytes
 * (one chunk, checked for length), a non-finite value found first (as the CPU path would refuse it), or null
 * when there is no quantizeWindow or it leaves the window to the CPU. The window is copied into one ordinary
 * buffer for the offer (only while the hook has not declined the type).
 */
async function offerWindow(context: StreamContext, task: WindowTask, window: StagedWindow): Promise<QuantizedWindow | null> {
  const quantizeWindow = context.options.quantizeWindow;
  const { type, cols, item, rowBytes } = task.tensor;
  // the hook (the GPU) runs the `_ref` quantizers only: importance-weighted windows stay on the CPU
  if (quantizeWindow === undefined || context.declinedTypes.has(type) || task.tensor.importance !== null) return null;
  const count = task.rows * cols;
  // Always a copy in ordinary memory: the staged parts are views of shared WebAssembly memory, which the
  // WebGPU binding (Dawn) crashes on when uploading from it (SIGSEGV in test/gpu/quantizeJob).
  context.offered = grow(context.offered, count);
  const values = context.offered.subarray(0, count);
  for (const p of window.parts) values.set(p.values, p.row * cols);
  const bad = findNonFinite(values);
  if (bad >= 0) return { bytes: [], nonFinite: bad };
  const bytes = await quantizeWindow(type, values, task.rows, cols, `${item.name} rows ${task.row}..${task.row + task.rows - 1}`);
  if (bytes === null) {
    context.declinedTypes.add(type);
    return null;
  }
  if (bytes.byteLength !== task.rows * rowBytes) throw new InvalidArgumentError(`${item.name}: a window quantizer gave ${bytes.byteLength} bytes for ${task.rows} rows of ${rowBytes}`);
  return { bytes: window.parts.map((p) => bytes.subarray(p.row * rowBytes, (p.row + p.rows) * rowBytes)), nonFinite: -1 };
}

/**
 * Writes a run of tensors through the window quantizer, in order: window w + 1 is read (into its own
 * staged memory) while w is quantized and w - 1 written, across tensor boundaries too. The bytes are
 * written from WebAssembly memory; a window's memory is reused once its bytes are written.
 */
async function streamTensors(context: StreamContext, run: StreamedRun, started: (name: string) => void): Promise<void> {
  const { checkpoint, writer, quantizer, options, signal } = context;
  const tasks: WindowTask[] = [];
  for (const { item, type, importance } of run) {
    const { rows, cols } = rowsAndCols(item.shape);
    const headRows = item.permuteHeads !== undefined ? rows / item.permuteHeads : 1;
    if (item.permuteHeads !== undefined && (!Number.isInteger(headRows) || headRows % 2 !== 0)) {
      throw new UnsupportedError(`${item.source.name}: ${rows} rows do not split into ${item.permuteHeads} heads of an even size`);
    }
    let windowRows = Math.max(1, Math.floor(context.maxWindow / cols));
    if (headRows > 1) windowRows = Math.max(headRows, windowRows - (windowRows % headRows));
    const tensor: StreamedTensor = { item, type, rows, cols, rowBytes: ggmlRowBytesOf(type, cols), headRows, importance };
    for (let r = 0; r < rows; r += windowRows) tasks.push({ tensor, row: r, rows: Math.min(windowRows, rows - r) });
  }

  /** A staged window and whether its parts hold BF16 (see fillWindow). */
  const stageAndFill = async (task: WindowTask): Promise<{ window: StagedWindow; bf16: boolean }> => {
    const window = await quantizer.stage(task.tensor.type, task.rows, task.tensor.cols, task.tensor.importance);
    try {
      return { window, bf16: await fillWindow(context, task, window) };
    } catch (e) {
      window.release();
      throw e;
    }
  };

  let writes: Promise<void> = Promise.resolve();
  let writeFailed = false;
  let next: Promise<{ window: StagedWindow; bf16: boolean }> | null = tasks.length > 0 ? stageAndFill(tasks[0]!) : null;
  try {
    for (let k = 0; k < tasks.length; k++) {
      const task = tasks[k]!;
      const { tensor } = task;
      const { item, cols, rowBytes } = tensor;
      const filled = next!;
      next = null;
      const { window, bf16 } = await filled;
      if (signal?.aborted === true || writeFailed) {
        window.release();
        await writes; // a failed write throws its own error here
        throwIfAborted(signal, `writing ${options.outputPath}`);
      }
      // read the next window while this one is quantized
      next = k + 1 < tasks.length ? stageAndFill(tasks[k + 1]!) : null;
      next?.catch(() => undefined); // awaited in the next step or in `finally`
      if (task.row === 0) {
        started(item.name);
      }
      let quantized: QuantizedWindow;
      try {
        // a window staged as BF16 was filled only when no hook wants it (fillWindow)
        quantized = (bf16 ? null : await offerWindow(context, task, window)) ?? (await window.quantize(bf16));
      } catch (e) {
        window.release();
        throw e;
      }
      if (quantized.nonFinite >= 0) {
        const bad = quantized.nonFinite;
        const part = window.parts.find((p) => bad < (p.row + p.rows) * cols) ?? window.parts[0]!;
        const value = part.values[bad - part.row * cols];
        window.release();
        const localRow = Math.floor(bad / cols);
        const row = task.row + (item.permuteHeads !== undefined ? permutedFromRow(localRow, tensor.headRows) : localRow);
        const column = bad % cols;
        throw new NumericError(`${checkpoint.path}: tensor ${item.source.name} has ${String(value)} at index ${row * cols + column} (row ${row}, column ${column}); refusing to write it`);
      }
      const last = task.row + task.rows >= tensor.rows;
      if (options.onTensorRows !== undefined) {
        try {
          for (const [p, part] of window.parts.entries()) {
            options.onTensorRows({
              name: item.name,
              shape: item.shape,
              sourceType: item.source.dtype,
              type: tensor.type,
              rowStart: task.row + part.row,
              original: part.values,
              quantized: quantized.bytes[p]!,
              bytes: tensor.rows * rowBytes,
              last: last && p === window.parts.length - 1,
            });
          }
        } catch (e) {
          window.release();
          throw e;
        }
      }
      const bytes = quantized.bytes;
      writes = writes
        .then(async () => {
          for (const chunk of bytes) await writer.writeTensorData(item.name, chunk);
        })
        .finally(() => window.release());
      writes.catch(() => {
        writeFailed = true;
      });
    }
    await writes;
  } finally {
    // on an error: let the read in flight and the queued writes settle before the caller closes the files
    if (next !== null) await next.then((w) => w.window.release(), () => undefined);
    await writes.catch(() => undefined);
  }
}
