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
 * Quantizing with it: the `_impl` paths of ggml-quants.c for Q4_0, Q4_1, Q5_0, Q5_1 (quantize_row_*_impl):
 * per row sigma2 = sum x^2 / n; per 32-block weight_j = qw_j * sqrt(sigma2 + x_j^2); Q4_0/Q5_0 pick the
 * scale with make_qx_quants(nmax 8 / 16, rmse_type 1, weights), Q4_1/Q5_1 scale and min with
 * make_qkx3_quants(nmax 15 / 31, rmin -0.9, rdelta 0.05, 36 steps). Every float operation is rounded to
 * f32 (Math.fround) in C's order; `nearest_int` rounds ties to even. Q8_0 ignores the importance matrix
 * (as ggml does). The K-quant `_impl` paths are not ported yet (UnsupportedError).
 */
import { FormatError, InvalidArgumentError, UnsupportedError } from '../errors';
import type { ByteSource } from '../io/byteSource';
import { readBytes } from '../io/byteSource';
import { encodeGgufHeader } from '../formats/gguf/encodeHeader';
import { readGgufHeader } from '../formats/gguf/reader';
import { GGUF_MAGIC } from '../formats/gguf/ggmlTypes';
import { f32ToF16Bits } from '../numeric/half';
import { quantizeGgml } from '../quant/ggml/index';
import { fround, GROUP_MAX_EPS, nearestInt } from '../quant/ggml/rounding';
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
export async function computeImatrix(model: LlamaModel, windows: readonly Int32Array[], dataset: string, options: { signal?: AbortSignal } = {}): Promise<Imatrix> {
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
  await model.run(windows, () => undefined, { hooks, skipLogits: true, signal: options.signal });
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

/** make_qx_quants(n, nmax, x, L, rmse_type = 1, qw) with importance weights qw. L gets l + nmax. */
function makeQxQuantsWeighted(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, qw: Float32Array): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, 0, n);
    return 0;
  }
  let iscale = fround(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    let l = nearestInt(fround(iscale * xi));
    l = Math.max(-nmax, Math.min(nmax - 1, l));
    L[i] = l + nmax;
    const w = qw[i]!;
    sumlx = fround(sumlx + fround(fround(w * xi) * l));
    suml2 = fround(suml2 + fround(fround(w * l) * l));
  }
  let scale = suml2 !== 0 ? fround(sumlx / suml2) : 0;
  let best = fround(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fround(-fround(nmax + fround(fround(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      let l = nearestInt(fround(iscale * xi));
      l = Math.max(-nmax, Math.min(nmax - 1, l));
      const w = qw[i]!;
      sumlx = fround(sumlx + fround(fround(w * xi) * l));
      suml2 = fround(suml2 + fround(fround(w * l) * l));
    }
    if (suml2 > 0 && fround(sumlx * sumlx) > fround(best * suml2)) {
      for (let i = 0; i < n; i++) {
        const l = nearestInt(fround(iscale * x[xo + i]!));
        L[i] = nmax + Math.max(-nmax, Math.min(nmax - 1, l));
      }
      scale = fround(sumlx / suml2);
      best = fround(scale * sumlx);
    }
  }
  return scale;
}

export const qkx3Out = { theMin: 0 };

/** make_qkx3_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad = false). */
export function makeQkx3Quants(n: number, nmax: number, x: Float32Array, xo: number, weights: Float32Array, L: Uint8Array, Laux: Uint8Array, rmin: number, rdelta: number, nstep: number): number {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = weights[0]!;
  let sumX = fround(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = fround(sumW + w);
    sumX = fround(sumX + fround(w * xi));
  }
  if (min > 0) min = 0;
  if (max <= min) {
    L.fill(0, 0, n);
    qkx3Out.theMin = -min;
    return 0;
  }
  let iscale = fround(nmax / fround(max - min));
  let scale = fround(1 / iscale);
  let bestMad = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const l = nearestInt(fround(iscale * fround(xi - min)));
    L[i] = Math.max(0, Math.min(nmax, l));
    let diff = fround(fround(fround(scale * L[i]!) + min) - xi);
    diff = fround(diff * diff);
    bestMad = fround(bestMad + fround(weights[i]! * diff));
  }
  for (let is = 0; is <= nstep; is++) {
    // C reads `min` here after it may have been replaced by a better this_min (so does the range).
    iscale = fround(fround(fround(rmin + fround(rdelta * is)) + nmax) / fround(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const l = Math.max(0, Math.min(nmax, nearestInt(fround(iscale * fround(xi - min)))));
      Laux[i] = l;
      const w = weights[i]!;
      const wl = fround(w * l);
      sumL = fround(sumL + wl);
      sumL2 = fround(sumL2 + fround(wl * l));
      sumXL = fround(sumXL + fround(wl * xi));
    }
    const D = fround(fround(sumW * sumL2) - fround(sumL * sumL));
    if (D > 0) {
      let thisScale = fround(fround(fround(sumW * sumXL) - fround(sumX * sumL)) / D);
      let thisMin = fround(fround(fround(sumL2 * sumX) - fround(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fround(sumXL / sumL2);
      }
      let mad = 0;
      for (let i = 0; i < n; i++) {
        let diff = fround(fround(fround(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = fround(diff * diff);
        mad = fround(mad + fround(weights[i]! * diff));
      }
      if (mad < bestMad) {
        for (let i = 0; i < n; i++) L[i] = Laux[i]!;
        bestMad = mad;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  qkx3Out.theMin = -min;
  return scale;
}

export const IMATRIX_TYPES = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0'] as const;
export type ImatrixType = (typeof IMATRIX_TYPES)[number];

const BLOCK_BYTES: Record<ImatrixType, number> = { Q4_0: 18, Q4_1: 20, Q5_0: 22, Q5_1: 24, Q8_0: 34 };

function writeF16(dst: Uint8Array, o: number, v: number): void {
  const h = f32ToF16Bits(v);
  dst[o] = h & 0xff;
  dst[o + 1] = h >>> 8;
}

/**
 * quantize_<type>(src, dst, nrow, n_per_row, quant_weights): rows of `cols` values with the importance
 * weights of their columns (`weights.length === cols`); without weights this is the `_ref` path.
 * Bytes equal llama-quantize's for the same weights and imatrix.
 */
export function quantizeRowsWithImatrix(type: string, src: Float32Array, rows: number, cols: number, weights: Float32Array | null, dst: Uint8Array): void {
  if (!(IMATRIX_TYPES as readonly string[]).includes(type)) {
    throw new UnsupportedError(`quantizing ${type} with an importance matrix is not supported yet (supported: ${IMATRIX_TYPES.join(', ')})`);
  }
  const t = type as ImatrixType;
  if (cols % 32 !== 0) throw new InvalidArgumentError(`${type}: row length ${cols} is not a multiple of 32`);
  if (src.length !== rows * cols) throw new InvalidArgumentError(`${type}: ${src.length} values are not ${rows} rows of ${cols}`);
  const rowBytes = (cols / 32) * BLOCK_BYTES[t];
  if (dst.length < rows * rowBytes) throw new InvalidArgumentError(`${type}: output needs ${rows * rowBytes} bytes, has ${dst.length}`);
  if (weights === null || t === 'Q8_0') {
    quantizeGgml(t, src, dst.subarray(0, rows * rowBytes));
    return;
  }
  if (weights.length !== cols) throw new InvalidArgumentError(`${type}: ${weights.length} importance weights for rows of ${cols}`);
  const blockWeights = new Float32Array(32);
  const Li = new Int8Array(32);
  const Lu = new Uint8Array(32);
  const Laux = new Uint8Array(32);
  for (let r = 0; r < rows; r++) {
    const xo = r * cols;
    let sumX2 = 0;
    for (let j = 0; j < cols; j++) sumX2 = fround(sumX2 + fround(src[xo + j]! * src[xo + j]!));
    const sigma2 = fround(sumX2 / cols);
    for (let ib = 0; ib < cols / 32; ib++) {
      const bo = xo + ib * 32;
      for (let j = 0; j < 32; j++) {
        const x = src[bo + j]!;
        blockWeights[j] = fround(weights[ib * 32 + j]! * fround(Math.sqrt(fround(sigma2 + fround(x * x)))));
      }
      const o = r * rowBytes + ib * BLOCK_BYTES[t];
      if (t === 'Q4_0' || t === 'Q5_0') {
        const d = makeQxQuantsWeighted(32, t === 'Q4_0' ? 8 : 16, src, bo, Li, blockWeights);
        writeF16(dst, o, d);
        if (t === 'Q4_0') {
          for (let j = 0; j < 16; j++) dst[o + 2 + j] = (Li[j]! | (Li[j + 16]! << 4)) & 0xff;
        } else {
          let qh = 0;
          for (let j = 0; j < 16; j++) {
            const a = Li[j]!;
            const b = Li[j + 16]!;
            dst[o + 6 + j] = (a & 0x0f) | ((b & 0x0f) << 4);
            qh |= ((a & 0x10) >>> 4) << j;
            qh |= ((b & 0x10) >>> 4) << (j + 16);
          }
          new DataView(dst.buffer, dst.byteOffset + o + 2, 4).setUint32(0, qh >>> 0, true);
        }
      } else {
        const d = makeQkx3Quants(32, t === 'Q4_1' ? 15 : 31, src, bo, blockWeights, Lu, Laux, fround(-0.9), fround(0.05), 36);
        writeF16(dst, o, d);
        writeF16(dst, o + 2, -qkx3Out.theMin);
        if (t === 'Q4_1') {
          for (let j = 0; j < 16; j++) dst[o + 4 + j] = Lu[j]! | (Lu[j + 16]! << 4);
        } else {
          let qh = 0;
          for (let j = 0; j < 16; j++) {
            const a = Lu[j]!;
            const b = Lu[j + 16]!;
            dst[o + 8 + j] = (a & 0x0f) | ((b & 0x0f) << 4);
            qh |= ((a & 0x10) >>> 4) << j;
            qh |= ((b & 0x10) >>> 4) << (j + 16);
          }
          new DataView(dst.buffer, dst.byteOffset + o + 4, 4).setUint32(0, qh >>> 0, true);
        }
      }
    }
  }
}
