/**
 * llama.cpp's importance matrix (tools/imatrix/imatrix.cpp, common/imatrix-loader.cpp).
 *
 * What it is: for every linear weight (GGUF tensor name, e.g. `blk.0.attn_q.weight`), the sum over
 * calibration tokens of x_j^2 for each input column j, and the number of tokens. llama-quantize
 * divides the sums by the count and hands the result to the quantizers as `quant_weights`.
 *
 * Files:
 * - GGUF (the default of this llama.cpp version): KV `general.type` = "imatrix", `imatrix.datasets`
 *   (string array), `imatrix.chunk_count` (u32), `imatrix.chunk_size` (u32); per entry two F32 tensors
 *   `<name>.in_sum2` (ne = [n_per_row, n_mat]) with the raw sums and `<name>.counts` (ne = [1, n_mat]);
 *   entries sorted by name.
 * - legacy `.dat`: i32 n_entries; per entry i32 name length, name bytes, i32 ncall, i32 nval,
 *   f32 values[nval] = (sum / count) * ncall; then optional i32 chunk count, i32 length, dataset name.
 *
 * Quantizing with it: the `_impl` paths of ggml-quants.c (quantize_row_<type>_impl) for Q4_0, Q4_1, Q5_0,
 * Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, ported to WebAssembly (quant/ggml/wasm/ggmlQuants.as: f32 steps in
 * C's order, no FMA, so llama-quantize's bytes). Q8_0 ignores the importance matrix (as ggml does).
 * quantizeRowsWithImatrix is the entry point; the GGUF exporter calls it per window of rows.
 */
import { FormatError, InvalidArgumentError, UnsupportedError } from '../errors';
import type { ByteSource } from '../io/byteSource';
import { readBytes, withFileSource } from '../io/byteSource';
import { createHash } from 'node:crypto';
import { encodeGgufHeader } from '../formats/gguf/encodeHeader';
import { readGgufHeader } from '../formats/gguf/reader';
import { GGUF_MAGIC, ggmlTypeByName } from '../formats/gguf/ggmlTypes';
import { isGgmlCodecType, quantizeGgml } from '../quant/ggml/index';
import { fround } from '../quant/ggml/rounding';
import { isImatrixQuantType, localWasmQuantizer } from '../quant/ggml/wasm/ggmlWasm';
import type { ForwardHooks, LinearRole, LlamaModel } from '../model/forward';

export interface ImatrixEntry {
  /** Raw sums of x^2 per input column (n_per_row * n_mat values; n_mat = 1 for dense layers). */
  sums: Float32Array;
  /** Tokens per matrix (n_mat values). */
  counts: number[];
}

export interface Imatrix {
  entries: Map<string, ImatrixEntry>;
  datasets: string[];
  chunkCount: number;
  chunkSize: number;
  /** Read from a legacy .dat file (sums already divided by the count and multiplied by ncall). */
  isLegacy: boolean;
}

/** The `quant_weights` llama-quantize derives from an entry (common_imatrix -> sums / count). */
export function importanceWeights(imatrix: Imatrix, name: string): Float32Array | null {
  const e = imatrix.entries.get(name);
  if (e === undefined) return null;
  const out = new Float32Array(e.sums.length);
  if (imatrix.isLegacy) {
    const ncall = e.counts[0] ?? 0;
    for (let i = 0; i < out.length; i++) out[i] = ncall > 0 ? fround(e.sums[i]! / ncall) : e.sums[i]!;
    return out;
  }
  const nMat = e.counts.length;
  const ne0 = e.sums.length / nMat;
  for (let m = 0; m < nMat; m++) {
    const count = fround(e.counts[m]!);
    for (let i = 0; i < ne0; i++) out[m * ne0 + i] = count > 0 ? fround(e.sums[m * ne0 + i]! / count) : 1;
  }
  return out;
}

// ---------------------------------------------------------------- files

/** An imatrix file read for quantizing: its entries and the sha256 of its bytes (for the quant card). */
export interface LoadedImatrix {
  path: string;
  imatrix: Imatrix;
  sha256: string;
}

/** Reads an imatrix file (GGUF or legacy .dat) and hashes it; FormatError / IoError name the file. */
export async function loadImatrixFile(path: string): Promise<LoadedImatrix> {
  return withFileSource(path, async (source) => {
    const imatrix = await readImatrix(source, path);
    const hash = createHash('sha256');
    const window = new Uint8Array(Math.min(source.size, 4 * 1024 * 1024));
    for (let at = 0; at < source.size; at += window.length) {
      const n = Math.min(window.length, source.size - at);
      hash.update(await readBytes(source, at, n));
    }
    return { path, imatrix, sha256: hash.digest('hex') };
  });
}

const LEGACY_MAX_ENTRIES = 1_000_000;
const LEGACY_MAX_NAME = 4096;
const LEGACY_MAX_VALUES = 64 * 1024 * 1024;

/** Reads an imatrix file: GGUF when it starts with the GGUF magic, else the legacy format. */
export async function readImatrix(source: ByteSource, file: string): Promise<Imatrix> {
  const magic = await readBytes(source, 0, Math.min(4, source.size));
  if (magic.length === 4 && new DataView(magic.buffer, magic.byteOffset, 4).getUint32(0, true) === GGUF_MAGIC) return readImatrixGguf(source, file);
  return readImatrixLegacy(source, file);
}

async function readImatrixGguf(source: ByteSource, file: string): Promise<Imatrix> {
  const header = await readGgufHeader(source);
  const kv = header.kv;
  const datasets: string[] = [];
  const ds = kv.get('imatrix.datasets');
  if (ds !== undefined && ds.type === 'ARRAY' && ds.elementType === 'STRING') for (const v of ds.values) datasets.push(String(v));
  const u32 = (key: string): number | null => {
    const v = kv.get(key);
    return v !== undefined && v.type === 'UINT32' && typeof v.value === 'number' ? v.value : null;
  };
  const chunkCount = u32('imatrix.chunk_count');
  const chunkSize = u32('imatrix.chunk_size');
  if (ds === undefined || chunkCount === null || chunkSize === null) {
    throw new FormatError(file, 'imatrix metadata (imatrix.datasets, imatrix.chunk_count, imatrix.chunk_size) is missing; llama-quantize refuses such a file');
  }
  const sums = new Map<string, Float32Array>();
  const counts = new Map<string, Float32Array>();
  for (const t of header.tensors) {
    const isSum = t.name.endsWith('.in_sum2');
    const isCount = t.name.endsWith('.counts');
    if (!isSum && !isCount) continue;
    if (t.type.name !== 'F32') throw new FormatError(file, `sums and counts must be F32, got ${t.type.name}`, t.name);
    const bytes = await readBytes(source, header.dataStart + t.offset, t.nbytes);
    const values = new Float32Array(t.elements);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i < values.length; i++) values[i] = view.getFloat32(i * 4, true);
    if (isSum) sums.set(t.name.slice(0, -'.in_sum2'.length), values);
    else counts.set(t.name.slice(0, -'.counts'.length), values);
  }
  if (sums.size === 0) throw new FormatError(file, 'no imatrix entries');
  const entries = new Map<string, ImatrixEntry>();
  for (const name of [...new Set([...sums.keys(), ...counts.keys()])].sort()) {
    const s = sums.get(name);
    const c = counts.get(name);
    if (s === undefined || c === undefined) throw new FormatError(file, 'mismatched sums and counts', name);
    if (c.length === 0 || s.length % c.length !== 0) throw new FormatError(file, `${s.length} sums cannot be split over ${c.length} counts`, name);
    entries.set(name, { sums: s, counts: Array.from(c, (v) => Math.round(v)) });
  }
  return { entries, datasets, chunkCount, chunkSize, isLegacy: false };
}

async function readImatrixLegacy(source: ByteSource, file: string): Promise<Imatrix> {
  let offset = 0;
  const need = (n: number, what: string): void => {
    if (offset + n > source.size) throw new FormatError(file, `truncated: ${what} needs ${n} bytes at offset ${offset}, the file has ${source.size}`);
  };
  const i32 = async (what: string): Promise<number> => {
    need(4, what);
    const b = await readBytes(source, offset, 4);
    offset += 4;
    return new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
  };
  const nEntries = await i32('entry count');
  if (nEntries < 1 || nEntries > LEGACY_MAX_ENTRIES) throw new FormatError(file, `not an imatrix file (entry count ${nEntries})`, 'offset 0');
  const entries = new Map<string, ImatrixEntry>();
  for (let e = 0; e < nEntries; e++) {
    const len = await i32('name length');
    if (len < 1 || len > LEGACY_MAX_NAME) throw new FormatError(file, `entry ${e}: name length ${len} is out of range`, `offset ${offset - 4}`);
    need(len, 'name');
    const name = new TextDecoder().decode(await readBytes(source, offset, len));
    offset += len;
    const ncall = await i32('ncall');
    const nval = await i32('value count');
    if (nval < 1 || nval > LEGACY_MAX_VALUES) throw new FormatError(file, `entry '${name}': value count ${nval} is out of range`, `offset ${offset - 4}`);
    need(nval * 4, 'values');
    const b = await readBytes(source, offset, nval * 4);
    offset += nval * 4;
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const sums = new Float32Array(nval);
    for (let i = 0; i < nval; i++) sums[i] = view.getFloat32(i * 4, true);
    entries.set(name, { sums, counts: [ncall] });
  }
  let chunkCount = 0;
  const datasets: string[] = [];
  if (offset + 4 <= source.size) {
    chunkCount = await i32('chunk count');
    if (offset + 4 <= source.size) {
      const len = await i32('dataset length');
      if (len > 0 && len <= LEGACY_MAX_NAME && offset + len <= source.size) datasets.push(new TextDecoder().decode(await readBytes(source, offset, len)));
    }
  }
  return { entries, datasets, chunkCount, chunkSize: 0, isLegacy: true };
}

/** The GGUF imatrix file as llama-imatrix writes it (gguf_write_to_file: KV order, sorted entries, 32-byte alignment). */
export function encodeImatrixGguf(imatrix: Imatrix): Uint8Array {
  if (imatrix.isLegacy) throw new InvalidArgumentError('a legacy imatrix holds normalised values, not raw sums; it cannot be written as GGUF');
  const names = [...imatrix.entries.keys()].sort();
  const tensors: { name: string; ne: number[]; typeId: number; offset: number; data: Float32Array }[] = [];
  let offset = 0;
  const pad = (n: number): number => Math.ceil(n / 32) * 32;
  for (const name of names) {
    const e = imatrix.entries.get(name)!;
    const nMat = e.counts.length;
    if (nMat === 0 || e.sums.length === 0) continue;
    tensors.push({ name: `${name}.in_sum2`, ne: [e.sums.length / nMat, nMat], typeId: 0, offset, data: e.sums });
    offset += pad(e.sums.length * 4);
    tensors.push({ name: `${name}.counts`, ne: [1, nMat], typeId: 0, offset, data: Float32Array.from(e.counts) });
    offset += pad(nMat * 4);
  }
  const header = encodeGgufHeader({
    kv: [
      ['general.type', { type: 'STRING', value: 'imatrix' }],
      ['imatrix.datasets', { type: 'ARRAY', elementType: 'STRING', values: imatrix.datasets }],
      ['imatrix.chunk_count', { type: 'UINT32', value: imatrix.chunkCount }],
      ['imatrix.chunk_size', { type: 'UINT32', value: imatrix.chunkSize }],
    ],
    // n_dims as ggml_n_dims counts them: trailing dimensions of 1 are not written.
    tensors: tensors.map((t) => ({ name: t.name, ne: t.ne[1] === 1 ? [t.ne[0]!] : t.ne, typeId: t.typeId, offset: t.offset })),
  });
  const out = new Uint8Array(header.dataStart + offset);
  out.set(header.bytes);
  const view = new DataView(out.buffer);
  for (const t of tensors) for (let i = 0; i < t.data.length; i++) view.setFloat32(header.dataStart + t.offset + i * 4, t.data[i]!, true);
  return out;
}

/** The legacy .dat layout (save_imatrix_legacy): values = (sum / count) * ncall, ncall = ceil(max count / chunk size). */
export function encodeImatrixLegacy(imatrix: Imatrix): Uint8Array {
  if (imatrix.isLegacy) throw new InvalidArgumentError('this imatrix is already legacy; write it as read');
  if (imatrix.chunkSize <= 0) throw new InvalidArgumentError('imatrix chunk size must be positive for the legacy format');
  const names = [...imatrix.entries.keys()].filter((n) => imatrix.entries.get(n)!.counts.some((c) => c > 0)).sort();
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const i32 = (v: number): Uint8Array => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, v, true);
    return b;
  };
  parts.push(i32(names.length));
  for (const name of names) {
    const e = imatrix.entries.get(name)!;
    const nameBytes = enc.encode(name);
    parts.push(i32(nameBytes.length), nameBytes);
    const ncall = Math.floor((Math.max(...e.counts) + (imatrix.chunkSize - 1)) / imatrix.chunkSize);
    parts.push(i32(ncall), i32(e.sums.length));
    const values = new Uint8Array(e.sums.length * 4);
    const view = new DataView(values.buffer);
    const perMat = e.sums.length / e.counts.length;
    for (let i = 0; i < e.sums.length; i++) {
      let count = fround(e.counts[Math.floor(i / perMat)]!);
      let value = e.sums[i]!;
      if (count === 0) {
        value = 1;
        count = 1;
      }
      view.setFloat32(i * 4, fround(fround(value / count) * ncall), true);
    }
    parts.push(values);
  }
  const dataset = enc.encode(imatrix.datasets[imatrix.datasets.length - 1] ?? '');
  parts.push(i32(imatrix.chunkCount), i32(dataset.length), dataset);
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

// ---------------------------------------------------------------- computing it

const GGUF_LINEAR_NAME: Record<LinearRole, string> = {
  q: 'attn_q',
  k: 'attn_k',
  v: 'attn_v',
  o: 'attn_output',
  gate: 'ffn_gate',
  up: 'ffn_up',
  down: 'ffn_down',
};
const ROLES_OF_SITE: Record<string, LinearRole[]> = { attn_in: ['q', 'k', 'v'], attn_out: ['o'], mlp_in: ['gate', 'up'], mlp_act: ['down'] };

/**
 * Runs the calibration windows through the model and sums x^2 per input column for every linear
 * layer (GGUF names; the output head is left out, as llama-imatrix does by default). Each window is
 * one chunk: chunk_count = windows, chunk_size = window length.
 */
export async function computeImatrix(
  model: LlamaModel,
  windows: readonly Int32Array[],
  dataset: string,
  options: { signal?: AbortSignal; onChunk?: (done: number, total: number) => void } = {},
): Promise<Imatrix> {
  const sitesums = new Map<string, { sums: Float64Array; tokens: number }>();
  const hooks: ForwardHooks = {
    onActivation(site, x, rows, width) {
      if (ROLES_OF_SITE[site.kind] === undefined) return;
      const key = `${site.layer}.${site.kind}`;
      let acc = sitesums.get(key);
      if (acc === undefined) {
        acc = { sums: new Float64Array(width), tokens: 0 };
        sitesums.set(key, acc);
      }
      for (let t = 0; t < rows; t++) {
        for (let c = 0; c < width; c++) {
          const v = x[t * width + c]!;
          acc.sums[c]! += v * v;
        }
      }
      acc.tokens += rows;
    },
  };
  // One chunk per run, so progress can be reported between chunks (the sums do not depend on it).
  for (let w = 0; w < windows.length; w++) {
    await model.run([windows[w]!], () => undefined, { hooks, skipLogits: true, signal: options.signal });
    options.onChunk?.(w + 1, windows.length);
  }
  const entries = new Map<string, ImatrixEntry>();
  for (const [key, acc] of sitesums) {
    const [layer, kind] = key.split('.') as [string, string];
    for (const role of ROLES_OF_SITE[kind]!) entries.set(`blk.${layer}.${GGUF_LINEAR_NAME[role]}.weight`, { sums: Float32Array.from(acc.sums), counts: [acc.tokens] });
  }
  for (let l = 0; l < model.config.numLayers; l++) {
    for (const role of Object.keys(GGUF_LINEAR_NAME) as LinearRole[]) {
      const name = `blk.${l}.${GGUF_LINEAR_NAME[role]}.weight`;
      if (!entries.has(name)) throw new InvalidArgumentError(`imatrix: the calibration pass did not reach ${name}`);
    }
  }
  return { entries, datasets: [dataset], chunkCount: windows.length, chunkSize: windows[0]?.length ?? 0, isLegacy: false };
}

// ---------------------------------------------------------------- quantizing with it

/**
 * The types quantized with importance weights (the `_impl` paths of ggml-quants.c, ported to
 * WebAssembly in quant/ggml/wasm/ggmlQuants.as), and Q8_0, which ggml quantizes without them.
 */
export const IMATRIX_TYPES = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type ImatrixType = (typeof IMATRIX_TYPES)[number];

export function isImatrixType(type: string): type is ImatrixType {
  return (IMATRIX_TYPES as readonly string[]).includes(type);
}

/**
 * quantize_<type>(src, dst, nrow, n_per_row, quant_weights): rows of `cols` values with the importance
 * weights of their columns (`weights.length === cols`); without weights (or for Q8_0, and the float
 * types) this is the `_ref` path. Bytes equal llama-quantize's for the same weights and imatrix.
 * Rounding per type is written at the port (ggmlQuants.as, "Importance-matrix paths"): nearest_int
 * ties to even, f16 scales round-to-nearest-even; sigma2 = sum x^2 / n_per_row (Q4_0..Q5_1) or
 * (2 ·) sum x^2 / 256 per super-block (Q2_K; Q3_K..Q5_K), weights qw_j · sqrt(sigma2 + x_j^2); Q6_K
 * weights its scale search with qw_j alone.
 */
export function quantizeRowsWithImatrix(type: string, src: Float32Array, rows: number, cols: number, weights: Float32Array | null, dst: Uint8Array): void {
  const info = ggmlTypeByName(type);
  if (info === undefined || !isGgmlCodecType(type)) throw new UnsupportedError(`quantizing to ${type} is not supported`);
  if (weights !== null && !isImatrixType(type) && !FLOAT_TYPES.has(type)) {
    throw new UnsupportedError(`quantizing ${type} with an importance matrix is not supported (supported: ${IMATRIX_TYPES.join(', ')})`);
  }
  if (cols % info.blockSize !== 0) throw new InvalidArgumentError(`${type}: row length ${cols} is not a multiple of ${info.blockSize}`);
  if (src.length !== rows * cols) throw new InvalidArgumentError(`${type}: ${src.length} values are not ${rows} rows of ${cols}`);
  const rowBytes = (cols / info.blockSize) * info.typeSize;
  if (dst.length < rows * rowBytes) throw new InvalidArgumentError(`${type}: output needs ${rows * rowBytes} bytes, has ${dst.length}`);
  if (weights === null || !isImatrixQuantType(type)) {
    quantizeGgml(type, src, dst.subarray(0, rows * rowBytes));
    return;
  }
  if (weights.length !== cols) throw new InvalidArgumentError(`${type}: ${weights.length} importance weights for rows of ${cols}`);
  localWasmQuantizer().quantizeImatrix(type, src, rows, cols, weights, dst);
}

const FLOAT_TYPES = new Set(['F32', 'F16', 'BF16']);
