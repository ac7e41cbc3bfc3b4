/**
 * One entry point for every checkpoint layout: a `.safetensors` file, a `model.safetensors.index.json`,
 * a Hugging Face folder (config.json + one or many shards), or a `.gguf` file. Only headers are read here;
 * tensor bytes are read on demand, by rows, through the open ByteSources.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { FormatError, InvalidArgumentError, IoError, UnsupportedError } from '../errors';
import { FileByteSource, readBytes, type ByteSource } from '../io/byteSource';
import { dequantizeGgml, isGgmlCodecType } from '../quant/ggml';
import type { Checkpoint, CheckpointFormat, MetadataValue, SourceMap, TensorEntry } from './checkpoint';
import { decodeSafetensorsToF32, safetensorsDtype } from './dtypes';
import { f16ToF32Table } from '../numeric/half';
import { readGgufHeader, ggufShape, type GgufArray, type GgufHeader, type GgufValue } from './gguf/reader';
import { GGUF_MAGIC } from './gguf/ggmlTypes';
import { readHfConfig } from './hfConfig';
import { readSafetensorsHeader, type SafetensorsHeader } from './safetensors/header';
import { readShardIndex, SHARD_INDEX_NAME } from './safetensors/sharded';

/** Most f32 values one readRowsF32 call returns (1 GiB of f32); larger tensors are read by row ranges. */
export const MAX_DECODE_ELEMENTS = 256 * 1024 * 1024;
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Most stored bytes one readRawRows call returns. */
export const MAX_RAW_READ_BYTES = 1024 * 1024 * 1024;

/** How rows of one tensor map to bytes, and how bytes become f32. */
interface TensorLayout {
  entry: TensorEntry;
  rows: number;
  /** Bytes per row; NaN for sub-byte dtypes whose rows do not fill whole bytes. */
  rowBytes: number;
  elementsPerRow: number;
  decode: (bytes: Uint8Array, dst: Float32Array) => void;
}

function rowsOf(shape: readonly number[]): number {
  return shape.length <= 1 ? 1 : (shape[0] ?? 1);
}

function elements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

class OpenedCheckpoint implements Checkpoint {
  private readonly layouts = new Map<string, TensorLayout>();
  constructor(
    readonly format: CheckpointFormat,
    readonly path: string,
    readonly files: string[],
    readonly metadata: Record<string, MetadataValue>,
    readonly config: Record<string, unknown> | null,
    readonly tensors: TensorEntry[],
    layouts: TensorLayout[],
    private readonly sources: SourceMap,
    readonly gguf?: GgufHeader,
  ) {
    for (const l of layouts) this.layouts.set(l.entry.name, l);
  }

  private rowRange(name: string, rowStart?: number, rowCount?: number): { layout: TensorLayout; start: number; count: number } {
    const layout = this.layouts.get(name);
    if (layout === undefined) throw new InvalidArgumentError(`${this.path}: no tensor named '${name}'`);
    const start = rowStart ?? 0;
    const count = rowCount ?? layout.rows - start;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0 || start + count > layout.rows) {
      throw new InvalidArgumentError(`${this.path}: tensor '${name}' has ${layout.rows} rows; rows [${start}, ${start + count}) are out of range`);
    }
    return { layout, start, count };
  }

  async readRawRows(name: string, rowStart?: number, rowCount?: number): Promise<Uint8Array> {
    const { layout, start, count } = this.rowRange(name, rowStart, rowCount);
    const { entry } = layout;
    const source = this.sources.get(entry.file);
    if (source === undefined) throw new IoError(`${entry.file}: closed or not open`);
    const nbytes = start === 0 && count === layout.rows ? entry.nbytes : count * layout.rowBytes;
    if (nbytes > MAX_RAW_READ_BYTES) {
      throw new InvalidArgumentError(`${entry.file}: tensor '${name}': ${nbytes} bytes is more than ${MAX_RAW_READ_BYTES} at once; read fewer rows`);
    }
    if (start === 0 && count === layout.rows) return readBytes(source, entry.offset, entry.nbytes);
    if (!Number.isSafeInteger(layout.rowBytes)) {
      throw new UnsupportedError(`${entry.file}: tensor '${name}': rows of ${entry.dtype} do not fill whole bytes; read the whole tensor`);
    }
    return readBytes(source, entry.offset + start * layout.rowBytes, count * layout.rowBytes);
  }

  async readRowsF32(name: string, rowStart?: number, rowCount?: number): Promise<Float32Array> {
    const { layout, count } = this.rowRange(name, rowStart, rowCount);
    const n = count * layout.elementsPerRow;
    if (n > MAX_DECODE_ELEMENTS) {
      throw new InvalidArgumentError(`${this.path}: tensor '${name}': ${n} values is more than ${MAX_DECODE_ELEMENTS} at once; read fewer rows`);
    }
    // Refuse undecodable types before reading any bytes.
    layout.decode(new Uint8Array(0), new Float32Array(0));
    const raw = await this.readRawRows(name, rowStart, rowCount);
    // F32 stored little-endian is already what we return: view the fresh read buffer, no copy.
    if (layout.entry.dtype === 'F32' && LITTLE_ENDIAN_HOST && raw.byteOffset % 4 === 0 && raw.byteLength === n * 4) {
      return new Float32Array(raw.buffer, raw.byteOffset, n);
    }
    const out = new Float32Array(n);
    layout.decode(raw, out);
    return out;
  }

  /** Checkpoint.readRowsF32Into: F32 stored little-endian is read straight into `target`, other dtypes decoded from a raw read. */
  async readRowsF32Into(name: string, rowStart: number, rowCount: number, target: Float32Array): Promise<void> {
    const { layout, count } = this.rowRange(name, rowStart, rowCount);
    const n = count * layout.elementsPerRow;
    if (target.length !== n) throw new InvalidArgumentError(`${this.path}: tensor '${name}': ${count} rows are ${n} values; the target holds ${target.length}`);
    // Refuse undecodable types before reading any bytes.
    layout.decode(new Uint8Array(0), new Float32Array(0));
    const { entry } = layout;
    if (entry.dtype === 'F32' && LITTLE_ENDIAN_HOST && Number.isSafeInteger(layout.rowBytes)) {
      const source = this.sources.get(entry.file);
      if (source === undefined) throw new IoError(`${entry.file}: closed or not open`);
      await source.read(entry.offset + rowStart * layout.rowBytes, new Uint8Array(target.buffer, target.byteOffset, n * 4));
      return;
    }
    if ((entry.dtype === 'BF16' || entry.dtype === 'F16') && LITTLE_ENDIAN_HOST && Number.isSafeInteger(layout.rowBytes)) {
      // The 2-byte values are read into the upper half of `target` and widened in place, front to back: no
      // read buffer per call (a fresh one cost page faults on every window of a BF16 export).
      const source = this.sources.get(entry.file);
      if (source === undefined) throw new IoError(`${entry.file}: closed or not open`);
      await source.read(entry.offset + rowStart * layout.rowBytes, new Uint8Array(target.buffer, target.byteOffset + n * 2, n * 2));
      widen16InPlace(entry.dtype, target);
      return;
    }
    layout.decode(await this.readRawRows(name, rowStart, rowCount), target);
  }

  /** Checkpoint.readRowsBf16Into: BF16 rows as stored into the upper half of `target`, left for the caller to widen. */
  async readRowsBf16Into(name: string, rowStart: number, rowCount: number, target: Float32Array): Promise<boolean> {
    const { layout, count } = this.rowRange(name, rowStart, rowCount);
    const { entry } = layout;
    if (entry.dtype !== 'BF16' || !LITTLE_ENDIAN_HOST || !Number.isSafeInteger(layout.rowBytes)) return false;
    const n = count * layout.elementsPerRow;
    if (target.length !== n) throw new InvalidArgumentError(`${this.path}: tensor '${name}': ${count} rows are ${n} values; the target holds ${target.length}`);
    const source = this.sources.get(entry.file);
    if (source === undefined) throw new IoError(`${entry.file}: closed or not open`);
    await source.read(entry.offset + rowStart * layout.rowBytes, new Uint8Array(target.buffer, target.byteOffset + n * 2, n * 2));
    return true;
  }

  async close(): Promise<void> {
    const sources = [...this.sources.values()];
    this.sources.clear();
    await Promise.all(sources.map((s) => s.close()));
  }
}

/**
 * `target`'s upper half holds target.length little-endian BF16 / F16 values; widens them to f32 over the whole
 * of `target`. Safe front to back: value i is read from bytes [2n + 2i, 2n + 2i + 2) before f32 i is written
 * to [4i, 4i + 4), and 4i + 4 <= 2n + 2j for every later j > i (as i < n), so no unread value is overwritten.
 */
function widen16InPlace(dtype: 'BF16' | 'F16', target: Float32Array): void {
  const n = target.length;
  const halves = new Uint16Array(target.buffer, target.byteOffset + n * 2, n);
  if (dtype === 'BF16') {
    // bf16 is the top half of an f32: widening is exact (u16 << 16).
    const out = new Uint32Array(target.buffer, target.byteOffset, n);
    if (n % 2 === 0) {
      // Two values per 32-bit load (a third faster): word k is written to [8k, 8k + 8) after it is read from
      // [2n + 4k, 2n + 4k + 4), and 8k + 8 <= 2n + 4j for every later word j > k (as k < n / 2).
      const words = new Uint32Array(target.buffer, target.byteOffset + n * 2, n / 2);
      for (let k = 0; k < n / 2; k++) {
        const word = words[k]!;
        out[2 * k] = word << 16;
        out[2 * k + 1] = word & 0xffff0000;
      }
      return;
    }
    for (let i = 0; i < n; i++) out[i] = halves[i]! << 16;
    return;
  }
  const table = f16ToF32Table();
  for (let i = 0; i < n; i++) target[i] = table[halves[i]!]!;
}

function safetensorsLayouts(header: SafetensorsHeader): TensorLayout[] {
  return header.tensors.map((t) => {
    const bits = safetensorsDtype(t.dtype)?.bits ?? 8;
    const rows = rowsOf(t.shape);
    const total = elements(t.shape);
    const elementsPerRow = rows === 0 ? 0 : total / rows;
    const entry: TensorEntry = { name: t.name, dtype: t.dtype, shape: t.shape, nbytes: t.end - t.begin, file: header.file, offset: header.dataStart + t.begin };
    const info = safetensorsDtype(t.dtype);
    const decode = (bytes: Uint8Array, dst: Float32Array): void => {
      if (info === undefined || !info.decodable) {
        throw new UnsupportedError(`${header.file}: tensor '${t.name}': safetensors dtype ${t.dtype} is not decodable yet`);
      }
      decodeSafetensorsToF32(t.dtype, bytes, dst);
    };
    return { entry, rows, rowBytes: (elementsPerRow * bits) / 8, elementsPerRow, decode };
  });
}

function ggufMetadataValue(v: GgufValue): MetadataValue {
  if (v.type !== 'ARRAY') return v.value;
  return ggufArrayValues(v);
}

function ggufArrayValues(a: GgufArray): MetadataValue[] {
  if (a.elementType === 'ARRAY') return a.values.map(ggufArrayValues);
  return a.values;
}

function ggufLayouts(header: GgufHeader): TensorLayout[] {
  return header.tensors.map((t) => {
    const shape = ggufShape(t);
    const rows = rowsOf(shape);
    const elementsPerRow = rows === 0 ? 0 : t.elements / rows;
    const entry: TensorEntry = { name: t.name, dtype: t.type.name, shape, nbytes: t.nbytes, file: header.file, offset: header.dataStart + t.offset };
    const typeName = t.type.name;
    const decode = (bytes: Uint8Array, dst: Float32Array): void => {
      if (!isGgmlCodecType(typeName)) throw new UnsupportedError(`${header.file}: tensor '${t.name}': ggml type ${typeName} is not decodable yet`);
      if (dst.length > 0) dequantizeGgml(typeName, bytes, dst);
    };
    return { entry, rows, rowBytes: rows === 0 ? 0 : t.nbytes / rows, elementsPerRow, decode };
  });
}

async function openSource(path: string): Promise<FileByteSource> {
  return FileByteSource.open(path);
}

async function closeAll(sources: Iterable<ByteSource>): Promise<void> {
  await Promise.all([...sources].map((s) => s.close().catch(() => undefined)));
}

async function readConfigBeside(folder: string): Promise<Record<string, unknown> | null> {
  const path = join(folder, 'config.json');
  try {
    if (!(await stat(path)).isFile()) return null;
  } catch {
    return null;
  }
  const source = await openSource(path);
  try {
    return await readHfConfig(source);
  } finally {
    await source.close();
  }
}

async function openGguf(path: string): Promise<Checkpoint> {
  const source = await openSource(path);
  try {
    const header = await readGgufHeader(source);
    const metadata: Record<string, MetadataValue> = {};
    for (const [k, v] of header.kv) metadata[k] = ggufMetadataValue(v);
    const layouts = ggufLayouts(header);
    const sources: SourceMap = new Map([[path, source]]);
    return new OpenedCheckpoint('gguf', path, [path], metadata, null, layouts.map((l) => l.entry), layouts, sources, header);
  } catch (e) {
    await source.close();
    throw e;
  }
}

/** Opens safetensors shards (one or many) and checks that no tensor name appears twice. */
async function openSafetensorsFiles(
  path: string,
  files: string[],
  config: Record<string, unknown> | null,
  weightMap?: { index: string; map: Map<string, string> },
): Promise<Checkpoint> {
  const sources: SourceMap = new Map();
  try {
    const headers: SafetensorsHeader[] = [];
    for (const file of files) {
      const source = await openSource(file);
      sources.set(file, source);
      headers.push(await readSafetensorsHeader(source));
    }
    const layouts: TensorLayout[] = [];
    const seen = new Map<string, string>();
    for (const h of headers) {
      for (const l of safetensorsLayouts(h)) {
        const previous = seen.get(l.entry.name);
        if (previous !== undefined) throw new FormatError(h.file, `tensor also stored in ${previous}`, `tensor '${l.entry.name}'`);
        seen.set(l.entry.name, h.file);
        if (weightMap !== undefined) {
          const listed = weightMap.map.get(l.entry.name);
          if (listed === undefined) throw new FormatError(weightMap.index, `tensor '${l.entry.name}' of shard ${basename(h.file)} is missing from weight_map`, 'weight_map');
          if (listed !== basename(h.file)) throw new FormatError(weightMap.index, `weight_map says ${listed} but the tensor is in ${basename(h.file)}`, `tensor '${l.entry.name}'`);
        }
        layouts.push(l);
      }
    }
    if (weightMap !== undefined) {
      for (const [tensor, shard] of weightMap.map) {
        if (!seen.has(tensor)) throw new FormatError(weightMap.index, `tensor is not in its shard ${shard}`, `weight_map['${tensor}']`);
      }
    }
    const metadata: Record<string, MetadataValue> = {};
    for (const h of headers) for (const [k, v] of Object.entries(h.metadata ?? {})) metadata[k] = v;
    return new OpenedCheckpoint('safetensors', path, files, metadata, config, layouts.map((l) => l.entry), layouts, sources);
  } catch (e) {
    await closeAll(sources.values());
    throw e;
  }
}

async function openShardIndex(indexPath: string, givenPath: string): Promise<Checkpoint> {
  const folder = dirname(indexPath);
  const source = await openSource(indexPath);
  let index;
  try {
    index = await readShardIndex(source);
  } finally {
    await source.close();
  }
  const files: string[] = [];
  for (const shard of index.shards) {
    const file = join(folder, shard);
    let isFile = false;
    try {
      isFile = (await stat(file)).isFile();
    } catch {
      isFile = false;
    }
    if (!isFile) throw new FormatError(indexPath, `shard ${shard} does not exist next to the index`, 'weight_map');
    files.push(file);
  }
  if (files.length === 0) throw new FormatError(indexPath, 'weight_map lists no tensors', 'weight_map');
  const config = await readConfigBeside(folder);
  return openSafetensorsFiles(givenPath, files, config, { index: indexPath, map: index.weightMap });
}

async function openFolder(folder: string): Promise<Checkpoint> {
  const names = (await readdir(folder)).sort();
  if (names.includes(SHARD_INDEX_NAME)) return openShardIndex(join(folder, SHARD_INDEX_NAME), folder);
  const config = await readConfigBeside(folder);
  if (names.includes('model.safetensors')) return openSafetensorsFiles(folder, [join(folder, 'model.safetensors')], config);
  const shards = names.filter((n) => n.endsWith('.safetensors'));
  if (shards.length > 0) return openSafetensorsFiles(folder, shards.map((n) => join(folder, n)), config);
  const ggufs = names.filter((n) => n.endsWith('.gguf'));
  if (ggufs.length === 1 && ggufs[0] !== undefined) return openGguf(join(folder, ggufs[0]));
  throw new UnsupportedError(`${folder}: no model.safetensors, ${SHARD_INDEX_NAME}, *.safetensors or single *.gguf in this folder`);
}

async function startsWithGgufMagic(path: string): Promise<boolean> {
  const source = await openSource(path);
  try {
    if (source.size < 4) return false;
    const head = await readBytes(source, 0, 4);
    return new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) === GGUF_MAGIC;
  } finally {
    await source.close();
  }
}

/**
 * Opens a checkpoint and reads its headers. Throws FormatError / UnsupportedError / IoError naming the
 * file and the defect. The caller must `close()` the result.
 */
export async function openCheckpoint(path: string): Promise<Checkpoint> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw new IoError(`${path}: cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
  if (info.isDirectory()) return openFolder(path);
  const ext = extname(path).toLowerCase();
  if (ext === '.gguf') return openGguf(path);
  if (ext === '.json') {
    if (basename(path).endsWith('.index.json')) return openShardIndex(path, path);
    throw new UnsupportedError(`${path}: a JSON file is a checkpoint only as a *.safetensors.index.json`);
  }
  if (await startsWithGgufMagic(path)) return openGguf(path);
  return openSafetensorsFiles(path, [path], await readConfigBeside(dirname(path)));
}
