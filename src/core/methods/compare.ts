/**
 * The method comparison: one model, one calibration text, one evaluation text; every method x bits
 * calibrated and evaluated by perplexity with the model runtime, against the FP16 baseline (the
 * checkpoint's own weights). `seconds` is the calibration + quantization time of a row (not its evaluation).
 * Each calibrated row spills its rewritten layers to a temporary file (OS temp folder) as they finish and is
 * evaluated through the same method checkpoint view the writers read (checkpointWithMethodWeights): memory stays
 * bounded by one layer; the file is deleted when the row is done (also on error and cancel).
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { stat } from 'node:fs/promises';
import { CancelledError, InvalidArgumentError, IoError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { temporaryPathFor } from '../io/atomicWrite';
import { LlamaModel } from '../model/forward';
import { loadFolderTokenizer } from '../model/loadModel';
import { makeWindows, perplexity } from '../model/perplexity';
import { tokenizerFromGgufMetadata, type BpeTokenizer } from '../model/tokenizer';
import { checkpointWithMethodWeights } from './methodCheckpoint';
import { disposeMethodRun, evaluationOptions, methodBytes, quantizeWithMethod, type GptqLayerRunner, type MethodName, type MethodSettings } from './quantizeWithMethod';

export interface CompareRow {
  method: MethodName;
  bits: number;
  /** Columns per group; -1 = one group per output row. */
  group: number;
  ppl: number;
  bytes: number;
  seconds: number;
}

export interface CompareResult {
  baseline: { ppl: number; bytes: number };
  rows: CompareRow[];
  /** Combinations that were not run, with the reason (e.g. llm-int8 at 4 bits). */
  skipped: { method: MethodName; bits: number; reason: string }[];
  calibration: { windows: number; ctx: number; tokens: number };
  evaluation: { windows: number; ctx: number; tokens: number };
}

export interface CompareOptions {
  methods: MethodName[];
  bits: number[];
  groupSize: number;
  ctx: number;
  calibWindows: number;
  evalWindows: number;
  /** Extra method settings (alpha, threshold, damp, act-order, sym). */
  extra?: Partial<MethodSettings>;
  /** GPTQ: where each linear is quantized (jobs/gptqDevice.ts); default the CPU driver. */
  gptqLayer?: GptqLayerRunner;
  /** Keep each row's calibrated layers in memory (the forward pass's onLayerWeights hook) instead of a spill file. */
  layersInMemory?: boolean;
  signal?: AbortSignal;
  onRow?(row: CompareRow): void;
  onStatus?(line: string): void;
}

/** The tokenizer of a checkpoint: tokenizer.json next to an HF folder or file, or the GGUF metadata. */
export async function loadTokenizer(checkpoint: Checkpoint): Promise<BpeTokenizer> {
  if (checkpoint.format === 'gguf') return tokenizerFromGgufMetadata(checkpoint.metadata, checkpoint.path);
  let folder = checkpoint.path;
  try {
    if (!(await stat(folder)).isDirectory()) folder = dirname(folder);
  } catch (e) {
    throw new IoError(`${checkpoint.path}: cannot stat`, e);
  }
  const cfg = checkpoint.config;
  const id = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
  const tokenizer = await loadFolderTokenizer(folder, { bosTokenId: id(cfg?.bos_token_id), eosTokenId: id(cfg?.eos_token_id) });
  if (tokenizer === null) throw new IoError(`${folder}: no tokenizer.model or tokenizer.json (needed to tokenize the calibration and evaluation text)`);
  return tokenizer;
}

export async function readTextFile(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new IoError(`${path}: cannot read the ${what} text`, e);
  }
}

/** Windows of `ctx` tokens from a text, with a message that says how much text is needed. */
export function textWindows(ids: readonly number[], ctx: number, windows: number, what: string): Int32Array[] {
  if (ids.length < ctx * windows) {
    throw new InvalidArgumentError(`the ${what} text has ${ids.length} tokens; ${windows} windows of ${ctx} need ${ctx * windows}`);
  }
  return makeWindows(ids, ctx, windows);
}

export async function compareMethods(model: LlamaModel, calibIds: readonly number[], evalIds: readonly number[], options: CompareOptions): Promise<CompareResult> {
  const calibration = textWindows(calibIds, options.ctx, options.calibWindows, 'calibration');
  const evaluation = textWindows(evalIds, options.ctx, options.evalWindows, 'evaluation');
  const signal = options.signal;
  const config = model.config;
  options.onStatus?.('FP16 baseline');
  const base = await perplexity(model, evaluation, { signal });
  const baseSettings: MethodSettings = { bits: 16, groupSize: -1 };
  const result: CompareResult = {
    baseline: { ppl: base.perplexity, bytes: methodBytes(config, 'fp16', baseSettings) },
    rows: [],
    skipped: [],
    calibration: { windows: calibration.length, ctx: options.ctx, tokens: calibration.length * options.ctx },
    evaluation: { windows: evaluation.length, ctx: options.ctx, tokens: evaluation.length * options.ctx },
  };
  for (const bits of options.bits) {
    for (const method of options.methods) {
      if (signal?.aborted === true) throw new CancelledError('comparison cancelled');
      if ((method === 'llm-int8' || method === 'llm-int8-zeroed') && bits !== 8) {
        result.skipped.push({ method, bits, reason: 'LLM.int8() is an 8-bit method' });
        continue;
      }
      const eightBitPerRow = bits === 8 && (method === 'rtn' || method === 'rtn-a8' || method === 'smoothquant' || method === 'llm-int8' || method === 'llm-int8-zeroed');
      const settings: MethodSettings = { ...options.extra, bits, groupSize: eightBitPerRow ? -1 : options.groupSize };
      options.onStatus?.(`${method} W${bits}: calibrating`);
      const run = await quantizeWithMethod(model, calibration, method, settings, {
        signal,
        gptqLayer: options.gptqLayer,
        layers: options.layersInMemory === true ? 'memory' : { spillPath: temporaryPathFor(join(tmpdir(), 'quantlens-compare-calibration')) },
      });
      let ppl: Awaited<ReturnType<typeof perplexity>>;
      try {
        for (const w of run.warnings) options.onStatus?.(`warning: ${w}`);
        options.onStatus?.(`${method} W${bits}: evaluating`);
        // Spilled layers: the model over the method's checkpoint view reads them back layer by layer.
        const evaluated = run.spill === null ? model : LlamaModel.fromCheckpoint(checkpointWithMethodWeights(model.checkpoint, model, run));
        ppl = await perplexity(evaluated, evaluation, { ...evaluationOptions(run), signal });
      } finally {
        await disposeMethodRun(run);
      }
      const row: CompareRow = {
        method,
        bits,
        group: settings.groupSize > 0 ? settings.groupSize : -1,
        ppl: ppl.perplexity,
        bytes: methodBytes(config, method, settings, run.llmInt8Plans),
        seconds: run.seconds,
      };
      result.rows.push(row);
      options.onRow?.(row);
    }
  }
  return result;
}

/** The comparison as a plain-text table (what the CLI prints without --json). */
export function formatCompareTable(r: CompareResult): string {
  const header = ['method', 'bits', 'group', 'ppl', 'vs FP16', 'size MB', 'seconds'];
  const lines: string[][] = [header, ['fp16', '16', '-', r.baseline.ppl.toFixed(3), '', (r.baseline.bytes / 1e6).toFixed(2), '-']];
  for (const row of r.rows) {
    lines.push([
      row.method,
      String(row.bits),
      row.group > 0 ? String(row.group) : 'row',
      row.ppl.toFixed(3),
      `${row.ppl >= r.baseline.ppl ? '+' : ''}${(((row.ppl - r.baseline.ppl) / r.baseline.ppl) * 100).toFixed(2)}%`,
      (row.bytes / 1e6).toFixed(2),
      row.seconds.toFixed(1),
    ]);
  }
  const widths = header.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  const out = lines.map((l) => l.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  '));
  for (const s of r.skipped) out.push(`(skipped ${s.method} W${s.bits}: ${s.reason})`);
  out.push(
    `calibration: ${r.calibration.windows} x ${r.calibration.ctx} tokens; evaluation: ${r.evaluation.windows} x ${r.evaluation.ctx} tokens`,
  );
  return out.join('\n');
}
