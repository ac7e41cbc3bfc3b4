/**
 * The quant card: `<output>.quant.json`, written next to every quantized output. It says where the
 * output came from (source path and sha256 of each source file), how it was made (recipe, tool
 * version) and what was lost, tensor by tensor (error metrics of what a loader reconstructs,
 * against the source values, and a downsampled block-error map for heatmaps).
 * `parseQuantCard` validates anything read back from disk before it is used.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { FormatError, IoError } from '../errors';
import { ERROR_HISTOGRAM_BINS, MAX_ERROR_MAP_BANDS, type ErrorHistogram, type ErrorMap, type ErrorMetrics } from '../analysis/errorMetrics';

export const QUANT_CARD_SCHEMA = 'quantlens.quant-card/1';

export interface QuantCardSourceFile {
  path: string;
  bytes: number;
  sha256: string;
}

export interface QuantCardTensor {
  name: string;
  shape: number[];
  /** Source dtype of the tensor. */
  sourceType: string;
  /** What was written: a research scheme (`gptq-int4-g128`, `int8`, `nf4`, `fp8-e4m3`), a ggml type, or the copied dtype. */
  type: string;
  quantized: boolean;
  /** Output bytes of everything written for this tensor (scales, zeros, indices included) x 8 / element count. */
  bitsPerWeight: number;
  /** Metrics are null for tensors copied unchanged. */
  mse: number | null;
  relRmse: number | null;
  /** null: infinite (exact) or undefined, or a copied tensor. */
  sqnrDb: number | null;
  maxAbsError: number | null;
  cosine: number | null;
  /** Block MSE map, values rounded to 4 significant digits. */
  errorMap: ErrorMap | null;
  /**
   * Histogram of the element-wise error (dequantized - original) over [-range, range] (errorMetrics.ts).
   * null for copied tensors; absent in cards written before it existed.
   */
  errorHistogram?: ErrorHistogram | null;
}

export type RecipeValue = string | number | boolean | null;

export interface QuantCard {
  schema: typeof QUANT_CARD_SCHEMA;
  tool: { name: 'quantlens'; version: string };
  createdAt: string;
  source: { path: string; format: string; files: QuantCardSourceFile[] };
  output: { path: string; format: 'safetensors' | 'gguf'; bytes: number };
  recipe: Record<string, RecipeValue>;
  totals: {
    parameters: number;
    quantizedParameters: number;
    sourceBytes: number;
    outputBytes: number;
    /** outputBytes x 8 / parameters (headers and metadata included). */
    bitsPerWeight: number;
    /** Mean over quantized tensors with a finite SQNR; null when there is none. */
    meanSqnrDb: number | null;
  };
  tensors: QuantCardTensor[];
}

export function quantCardPath(outputPath: string): string {
  return `${outputPath}.quant.json`;
}

/** The card entry of a quantized tensor from its metrics. */
export function quantizedTensorEntry(
  base: { name: string; shape: number[]; sourceType: string; type: string; bitsPerWeight: number },
  metrics: ErrorMetrics,
): QuantCardTensor {
  return {
    ...base,
    quantized: true,
    mse: metrics.mse,
    relRmse: metrics.relRmse,
    sqnrDb: metrics.sqnrDb,
    maxAbsError: metrics.maxAbsError,
    cosine: metrics.cosine,
    // 4 significant digits are plenty for a heatmap and keep the card small (up to 4096 cells per tensor).
    errorMap: { ...metrics.errorMap, values: metrics.errorMap.values.map((v) => Number(v.toPrecision(4))) },
    errorHistogram: metrics.errorHistogram,
  };
}

/** What a run reports as soon as a quantized tensor is done (the heatmap fills in from these while it runs). */
export type QuantizedTensorResult = Pick<QuantCardTensor, 'name' | 'type' | 'sqnrDb' | 'relRmse' | 'maxAbsError' | 'bitsPerWeight'>;

export function quantizedTensorResult(t: QuantCardTensor): QuantizedTensorResult {
  return { name: t.name, type: t.type, sqnrDb: t.sqnrDb, relRmse: t.relRmse, maxAbsError: t.maxAbsError, bitsPerWeight: t.bitsPerWeight };
}

/** A tensor written without loss (copied, or widened to F32): `type` defaults to the source type. */
export function copiedTensorEntry(base: { name: string; shape: number[]; sourceType: string; bitsPerWeight: number; type?: string }): QuantCardTensor {
  return { ...base, type: base.type ?? base.sourceType, quantized: false, mse: null, relRmse: null, sqnrDb: null, maxAbsError: null, cosine: null, errorMap: null, errorHistogram: null };
}

export function meanSqnr(tensors: readonly QuantCardTensor[]): number | null {
  let sum = 0;
  let n = 0;
  for (const t of tensors) {
    if (t.quantized && t.sqnrDb !== null) {
      sum += t.sqnrDb;
      n += 1;
    }
  }
  return n === 0 ? null : sum / n;
}

/** sha256 of a file, streamed in 1 MiB chunks (never the whole file in memory). */
export async function sha256File(path: string, signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  try {
    const stream = createReadStream(path, { highWaterMark: 1024 * 1024, signal });
    for await (const chunk of stream) hash.update(chunk as Buffer);
  } catch (e) {
    throw new IoError(`${path}: cannot hash (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
  return hash.digest('hex');
}

// ---- validation -------------------------------------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class CardReader {
  constructor(private readonly file: string) {}
  fail(where: string, defect: string): never {
    throw new FormatError(this.file, defect, where);
  }
  obj(v: unknown, where: string): Obj {
    if (!isObj(v)) this.fail(where, 'expected an object');
    return v;
  }
  str(o: Obj, key: string, where: string): string {
    const v = o[key];
    if (typeof v !== 'string') this.fail(`${where}.${key}`, 'expected a string');
    return v;
  }
  num(o: Obj, key: string, where: string): number {
    const v = o[key];
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`${where}.${key}`, 'expected a finite number');
    return v;
  }
  count(o: Obj, key: string, where: string): number {
    const v = this.num(o, key, where);
    if (!Number.isSafeInteger(v) || v < 0) this.fail(`${where}.${key}`, 'expected a non-negative integer');
    return v;
  }
  numOrNull(o: Obj, key: string, where: string): number | null {
    if (o[key] === null) return null;
    return this.num(o, key, where);
  }
  bool(o: Obj, key: string, where: string): boolean {
    const v = o[key];
    if (typeof v !== 'boolean') this.fail(`${where}.${key}`, 'expected true or false');
    return v;
  }
  arr(o: Obj, key: string, where: string): unknown[] {
    const v = o[key];
    if (!Array.isArray(v)) this.fail(`${where}.${key}`, 'expected an array');
    return v;
  }
  errorMap(v: unknown, where: string): ErrorMap | null {
    if (v === null) return null;
    const o = this.obj(v, where);
    const rowBands = this.count(o, 'rowBands', where);
    const colBands = this.count(o, 'colBands', where);
    if (rowBands < 1 || rowBands > MAX_ERROR_MAP_BANDS || colBands < 1 || colBands > MAX_ERROR_MAP_BANDS) this.fail(where, `bands must be 1..${MAX_ERROR_MAP_BANDS}`);
    const values = this.arr(o, 'values', where);
    if (values.length !== rowBands * colBands) this.fail(`${where}.values`, `expected ${rowBands * colBands} values, got ${values.length}`);
    const out: number[] = [];
    for (const [i, x] of values.entries()) {
      if (typeof x !== 'number' || !Number.isFinite(x) || x < 0) this.fail(`${where}.values[${i}]`, 'expected a non-negative number');
      out.push(x);
    }
    return { rowBands, colBands, values: out };
  }
  /** `elements`: the tensor's element count; the counts must add up to it. */
  errorHistogram(v: unknown, where: string, elements: number): ErrorHistogram | null {
    if (v === null) return null;
    const o = this.obj(v, where);
    const range = this.num(o, 'range', where);
    if (range < 0) this.fail(`${where}.range`, 'expected a non-negative number');
    const zeros = this.count(o, 'zeros', where);
    const counts = this.arr(o, 'counts', where);
    if (counts.length !== ERROR_HISTOGRAM_BINS) this.fail(`${where}.counts`, `expected ${ERROR_HISTOGRAM_BINS} counts, got ${counts.length}`);
    const out: number[] = [];
    for (const [i, x] of counts.entries()) {
      if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) this.fail(`${where}.counts[${i}]`, 'expected a non-negative integer');
      out.push(x);
    }
    const total = out.reduce((a, b) => a + b, 0);
    if (total !== elements) this.fail(`${where}.counts`, `expected counts adding up to the ${elements} elements of the tensor, got ${total}`);
    if (zeros > (out[ERROR_HISTOGRAM_BINS / 2] ?? 0)) this.fail(`${where}.zeros`, 'expected at most the count of the bin that holds 0');
    return { range, counts: out, zeros };
  }
}

/** Validates a parsed `.quant.json`. Throws FormatError naming the file and the first defect. */
export function parseQuantCard(value: unknown, file = '<quant card>'): QuantCard {
  const r: CardReader = new CardReader(file); // explicit type: lets `never`-returning r.fail() narrow
  const root = r.obj(value, 'card');
  if (root.schema !== QUANT_CARD_SCHEMA) r.fail('schema', `expected "${QUANT_CARD_SCHEMA}", got ${JSON.stringify(root.schema)}`);
  const tool = r.obj(root.tool, 'tool');
  if (tool.name !== 'quantlens') r.fail('tool.name', 'expected "quantlens"');
  const source = r.obj(root.source, 'source');
  const files = r.arr(source, 'files', 'source').map((f, i) => {
    const o = r.obj(f, `source.files[${i}]`);
    const sha256 = r.str(o, 'sha256', `source.files[${i}]`);
    if (!/^[0-9a-f]{64}$/.test(sha256)) r.fail(`source.files[${i}].sha256`, 'expected 64 lowercase hex digits');
    return { path: r.str(o, 'path', `source.files[${i}]`), bytes: r.count(o, 'bytes', `source.files[${i}]`), sha256 };
  });
  const output = r.obj(root.output, 'output');
  const outputFormat = output.format;
  if (outputFormat !== 'safetensors' && outputFormat !== 'gguf') r.fail('output.format', 'expected "safetensors" or "gguf"');
  const recipeObj = r.obj(root.recipe, 'recipe');
  const recipe: Record<string, RecipeValue> = {};
  for (const [k, v] of Object.entries(recipeObj)) {
    if (v !== null && typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') r.fail(`recipe.${k}`, 'expected a string, number, boolean or null');
    recipe[k] = v;
  }
  const totals = r.obj(root.totals, 'totals');
  const tensors = r.arr(root, 'tensors', 'card').map((t, i): QuantCardTensor => {
    const where = `tensors[${i}]`;
    const o = r.obj(t, where);
    const shape = r.arr(o, 'shape', where).map((d, j) => {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) r.fail(`${where}.shape[${j}]`, 'expected a non-negative integer');
      return d;
    });
    return {
      name: r.str(o, 'name', where),
      shape,
      sourceType: r.str(o, 'sourceType', where),
      type: r.str(o, 'type', where),
      quantized: r.bool(o, 'quantized', where),
      bitsPerWeight: r.num(o, 'bitsPerWeight', where),
      mse: r.numOrNull(o, 'mse', where),
      relRmse: r.numOrNull(o, 'relRmse', where),
      sqnrDb: r.numOrNull(o, 'sqnrDb', where),
      maxAbsError: r.numOrNull(o, 'maxAbsError', where),
      cosine: r.numOrNull(o, 'cosine', where),
      errorMap: r.errorMap(o.errorMap, `${where}.errorMap`),
      // Older cards have no histogram: leave the key out rather than fail.
      ...(o.errorHistogram === undefined ? {} : { errorHistogram: r.errorHistogram(o.errorHistogram, `${where}.errorHistogram`, shape.reduce((a, b) => a * b, 1)) }),
    };
  });
  return {
    schema: QUANT_CARD_SCHEMA,
    tool: { name: 'quantlens', version: r.str(tool, 'version', 'tool') },
    createdAt: r.str(root, 'createdAt', 'card'),
    source: { path: r.str(source, 'path', 'source'), format: r.str(source, 'format', 'source'), files },
    output: { path: r.str(output, 'path', 'output'), format: outputFormat, bytes: r.count(output, 'bytes', 'output') },
    recipe,
    totals: {
      parameters: r.count(totals, 'parameters', 'totals'),
      quantizedParameters: r.count(totals, 'quantizedParameters', 'totals'),
      sourceBytes: r.count(totals, 'sourceBytes', 'totals'),
      outputBytes: r.count(totals, 'outputBytes', 'totals'),
      bitsPerWeight: r.num(totals, 'bitsPerWeight', 'totals'),
      meanSqnrDb: r.numOrNull(totals, 'meanSqnrDb', 'totals'),
    },
    tensors,
  };
}
