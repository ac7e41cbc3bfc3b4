/**
 * GGUF v2/v3 header reader: KV metadata (every value type, nested arrays included), tensor infos,
 * alignment and the data section, validated as strictly as llama.cpp's gguf.cpp (plus a few named
 * limits of our own so that a hostile header can never make us allocate much beyond the file's size).
 * Only the header is read; tensor data stays on disk until asked for.
 */
import { FormatError, UnsupportedError } from '../../errors';
import type { ByteSource } from '../../io/byteSource';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, ggmlTypeById, type GgmlTypeInfo } from './ggmlTypes';

/** Longest string (key or value) we accept. llama.cpp allows 1 GiB; a chat template is a few kB. */
export const MAX_GGUF_STRING_BYTES = 256 * 1024 * 1024;
/** Most elements in one array. Vocabularies are ~10^5; this bounds memory for a lying count. */
export const MAX_GGUF_ARRAY_LENGTH = 16 * 1024 * 1024;
/** Arrays of arrays deeper than this are refused (llama.cpp refuses any nesting). */
export const MAX_GGUF_ARRAY_NESTING = 8;
export const MAX_GGUF_TENSORS = 1_000_000;
export const MAX_GGUF_KV = 1_000_000;
/** GGML_MAX_DIMS. */
export const MAX_GGUF_DIMS = 4;
/** GGML_MAX_NAME: tensor names must be shorter than this many bytes. */
export const GGML_MAX_NAME = 64;
/** Bytes the header cursor reads at a time. */
const HEADER_WINDOW_BYTES = 1024 * 1024;
/** Smallest possible encodings, used to refuse counts that the rest of the file cannot hold. */
const MIN_KV_BYTES = 8 + 1 + 4 + 1;
const MIN_TENSOR_INFO_BYTES = 8 + 4 + 4 + 8;
/** Largest tensor info: name (< 64 bytes), n_dims, 4 dims, type, offset. */
const MAX_TENSOR_INFO_BYTES = 8 + GGML_MAX_NAME + 4 + 8 * MAX_GGUF_DIMS + 4 + 8;

export const GGUF_VALUE_TYPE_NAMES = [
  'UINT8',
  'INT8',
  'UINT16',
  'INT16',
  'UINT32',
  'INT32',
  'FLOAT32',
  'BOOL',
  'STRING',
  'ARRAY',
  'UINT64',
  'INT64',
  'FLOAT64',
] as const;
export type GgufValueTypeName = (typeof GGUF_VALUE_TYPE_NAMES)[number];
export type GgufScalarTypeName = Exclude<GgufValueTypeName, 'ARRAY'>;
/** 64-bit integers stay bigint: they may not fit a JS number. */
export type GgufScalar = number | bigint | boolean | string;

export type GgufArray =
  | { type: 'ARRAY'; elementType: GgufScalarTypeName; values: GgufScalar[] }
  | { type: 'ARRAY'; elementType: 'ARRAY'; values: GgufArray[] };
export type GgufValue = { type: GgufScalarTypeName; value: GgufScalar } | GgufArray;

export interface GgufTensorInfo {
  name: string;
  /** ggml dims, ne[0] innermost (the reverse of the row-major shape); length n_dims. */
  ne: number[];
  type: GgmlTypeInfo;
  /** Offset relative to the data section, as stored. */
  offset: number;
  elements: number;
  nbytes: number;
}

export interface GgufHeader {
  file: string;
  fileSize: number;
  version: number;
  /** Every KV pair in file order. */
  kv: Map<string, GgufValue>;
  alignment: number;
  /** Absolute offset of the data section (aligned). */
  dataStart: number;
  tensors: GgufTensorInfo[];
}

const FIXED_SIZE: Partial<Record<GgufValueTypeName, number>> = {
  UINT8: 1,
  INT8: 1,
  UINT16: 2,
  INT16: 2,
  UINT32: 4,
  INT32: 4,
  FLOAT32: 4,
  BOOL: 1,
  UINT64: 8,
  INT64: 8,
  FLOAT64: 8,
};

const textDecoder = new TextDecoder('utf-8');

/**
 * A forward cursor over a ByteSource with a growing window. Callers `await fill(n)` before
 * synchronous reads of up to n bytes; fill never allocates past the end of the file.
 */
class HeaderCursor {
  private buffer = new Uint8Array(0);
  private view = new DataView(this.buffer.buffer);
  /** File offset of buffer[0]. */
  private bufferStart = 0;
  /** Current file offset. */
  pos = 0;

  constructor(private readonly source: ByteSource) {}

  get remaining(): number {
    return this.source.size - this.pos;
  }

  has(n: number): boolean {
    return this.pos + n <= this.bufferStart + this.buffer.byteLength;
  }

  /** Makes [pos, pos + n) readable, or as much of it as the file holds (sync reads past it then fail as truncation). */
  async fill(n: number): Promise<void> {
    if (this.has(n)) return;
    const length = Math.min(Math.max(n, HEADER_WINDOW_BYTES), this.remaining);
    const next = new Uint8Array(length);
    await this.source.read(this.pos, next);
    this.buffer = next;
    this.view = new DataView(next.buffer);
    this.bufferStart = this.pos;
  }

  private take(n: number, what: string): number {
    if (!this.has(n)) {
      throw new FormatError(this.source.name, `file ends before ${what} (${n} bytes needed, ${this.remaining} left)`, `offset ${this.pos}`);
    }
    const at = this.pos - this.bufferStart;
    this.pos += n;
    return at;
  }

  u8(what: string): number {
    return this.view.getUint8(this.take(1, what));
  }
  i8(what: string): number {
    return this.view.getInt8(this.take(1, what));
  }
  u16(what: string): number {
    return this.view.getUint16(this.take(2, what), true);
  }
  i16(what: string): number {
    return this.view.getInt16(this.take(2, what), true);
  }
  u32(what: string): number {
    return this.view.getUint32(this.take(4, what), true);
  }
  i32(what: string): number {
    return this.view.getInt32(this.take(4, what), true);
  }
  f32(what: string): number {
    return this.view.getFloat32(this.take(4, what), true);
  }
  f64(what: string): number {
    return this.view.getFloat64(this.take(8, what), true);
  }
  u64(what: string): bigint {
    return this.view.getBigUint64(this.take(8, what), true);
  }
  /** A u64 as a number when below 2^53, else -1 (read it again with `u64At` for the message). No BigInt on the hot path. */
  u64Safe(what: string): number {
    const at = this.take(8, what);
    const lo = this.view.getUint32(at, true);
    const hi = this.view.getUint32(at + 4, true);
    return hi < 0x200000 ? hi * 0x100000000 + lo : -1;
  }
  /** The u64 at a file offset already read (for error messages). */
  u64At(fileOffset: number): bigint {
    return this.view.getBigUint64(fileOffset - this.bufferStart, true);
  }
  i64(what: string): bigint {
    return this.view.getBigInt64(this.take(8, what), true);
  }
  bytes(n: number, what: string): Uint8Array {
    const at = this.take(n, what);
    return this.buffer.subarray(at, at + n);
  }
  /** UTF-8 text of n bytes (invalid sequences become U+FFFD, as llama.cpp keeps raw bytes we cannot show otherwise). */
  text(n: number, what: string): string {
    const at = this.take(n, what);
    return textDecoder.decode(this.buffer.subarray(at, at + n));
  }
}

/** Reads the GGUF header and validates it; throws FormatError / UnsupportedError naming the file and the defect. */
export async function readGgufHeader(source: ByteSource): Promise<GgufHeader> {
  return new GgufHeaderParser(source).parse();
}

class GgufHeaderParser {
  private readonly c: HeaderCursor;
  private readonly file: string;
  constructor(private readonly source: ByteSource) {
    this.c = new HeaderCursor(source);
    this.file = source.name;
  }

  private fail(defect: string, where?: string): never {
    throw new FormatError(this.file, defect, where ?? `offset ${this.c.pos}`);
  }

  /** A u64 count or length checked into a safe number no larger than `limit`. */
  private checkedCount(value: bigint, limit: number, what: string, at: number): number {
    if (value > BigInt(limit)) this.fail(`${what} ${value} is above the limit of ${limit}`, `offset ${at}`);
    return Number(value);
  }

  async parse(): Promise<GgufHeader> {
    const c = this.c;
    await c.fill(24);
    if (this.source.size < 4) this.fail(`file has ${this.source.size} bytes, too small for the GGUF magic`, 'offset 0');
    const magic = c.u32('the magic');
    if (magic !== GGUF_MAGIC) {
      const shown = [0, 8, 16, 24].map((s) => String.fromCharCode((magic >>> s) & 0xff)).join('');
      this.fail(`bad magic ${JSON.stringify(shown)} (expected "GGUF")`, 'offset 0');
    }
    const version = c.u32('the version');
    if (version === 1) throw new UnsupportedError(`${this.file}: GGUF version 1 is no longer supported (only v2 and v3 are)`);
    if ((version & 0xffff) === 0 && version !== 0) {
      this.fail(`GGUF version ${version} is implausible: the file may have the other byte order`, 'offset 4');
    }
    if (version === 0) this.fail('bad GGUF version 0', 'offset 4');
    if (version > 3) throw new UnsupportedError(`${this.file}: GGUF version ${version} is newer than the supported v2 and v3`);

    let at = c.pos;
    const tensorCount = this.checkedCount(c.u64('the tensor count'), MAX_GGUF_TENSORS, 'tensor count', at);
    at = c.pos;
    const kvCount = this.checkedCount(c.u64('the KV count'), MAX_GGUF_KV, 'KV count', at);
    if (kvCount * MIN_KV_BYTES + tensorCount * MIN_TENSOR_INFO_BYTES > c.remaining) {
      this.fail(`${kvCount} KV pairs and ${tensorCount} tensor infos cannot fit in the ${c.remaining} bytes left`, `offset ${at}`);
    }

    const kv = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const keyAt = c.pos;
      const key = await this.readString(`key of KV pair ${i}`);
      if (key.length === 0) this.fail(`key of KV pair ${i} is empty`, `offset ${keyAt}`);
      if (kv.has(key)) this.fail(`duplicate key '${key}'`, `offset ${keyAt}`);
      await c.fill(4);
      const typeAt = c.pos;
      const typeName = this.valueType(c.u32(`type of '${key}'`), typeAt, `key '${key}'`);
      kv.set(key, await this.readValue(typeName, key, 0));
    }

    let alignment = GGUF_DEFAULT_ALIGNMENT;
    const alignmentValue = kv.get('general.alignment');
    if (alignmentValue !== undefined) {
      if (alignmentValue.type !== 'UINT32') this.fail(`general.alignment must be UINT32 but is ${alignmentValue.type}`, "key 'general.alignment'");
      alignment = alignmentValue.value as number;
      if (alignment === 0 || (alignment & (alignment - 1)) !== 0) this.fail(`general.alignment ${alignment} is not a power of two`, "key 'general.alignment'");
    }

    const tensors: GgufTensorInfo[] = [];
    const names = new Set<string>();
    for (let i = 0; i < tensorCount; i++) {
      if (!c.has(MAX_TENSOR_INFO_BYTES)) await c.fill(MAX_TENSOR_INFO_BYTES);
      tensors.push(this.readTensorInfo(i, names));
    }

    // The data section starts at the next multiple of the alignment (llama.cpp pads only when there are tensors).
    const dataStart = tensorCount > 0 ? Math.ceil(c.pos / alignment) * alignment : c.pos;
    if (dataStart > this.source.size) this.fail(`the data section would start at ${dataStart}, past the end of the file (${this.source.size} bytes)`, 'data section');
    let expectedOffset = 0;
    for (const t of tensors) {
      if (t.offset !== expectedOffset) {
        this.fail(`offset ${t.offset} is not the expected ${expectedOffset} (tensors must follow each other, each padded to the alignment of ${alignment})`, `tensor '${t.name}'`);
      }
      if (dataStart + t.offset + t.nbytes > this.source.size) {
        this.fail(`data [${dataStart + t.offset}, ${dataStart + t.offset + t.nbytes}) runs past the end of the file (${this.source.size} bytes)`, `tensor '${t.name}'`);
      }
      expectedOffset += Math.ceil(t.nbytes / alignment) * alignment;
    }
    return { file: this.file, fileSize: this.source.size, version, kv, alignment, dataStart, tensors };
  }

  private valueType(id: number, at: number, where: string): GgufValueTypeName {
    const name = GGUF_VALUE_TYPE_NAMES[id];
    if (name === undefined) this.fail(`invalid GGUF value type ${id}`, `${where} at offset ${at}`);
    return name;
  }

  private async readString(what: string): Promise<string> {
    const c = this.c;
    if (!c.has(8)) await c.fill(8);
    const at = c.pos;
    const length = c.u64(`length of ${what}`);
    if (length > BigInt(MAX_GGUF_STRING_BYTES)) this.fail(`${what}: string length ${length} is above the limit of ${MAX_GGUF_STRING_BYTES}`, `offset ${at}`);
    if (length > BigInt(c.remaining)) this.fail(`${what}: string length ${length} exceeds the ${c.remaining} bytes left in the file`, `offset ${at}`);
    const n = Number(length);
    if (!c.has(n)) await c.fill(n);
    return c.text(n, what);
  }

  private async readValue(type: GgufValueTypeName, key: string, depth: number): Promise<GgufValue> {
    const c = this.c;
    if (type === 'ARRAY') return this.readArray(key, depth);
    if (type === 'STRING') return { type, value: await this.readString(`value of '${key}'`) };
    await c.fill(8);
    return { type, value: this.readFixedScalar(type) };
  }

  private readFixedScalar(type: Exclude<GgufScalarTypeName, 'STRING'>): GgufScalar {
    const c = this.c;
    const what = 'a value';
    switch (type) {
      case 'UINT8':
        return c.u8(what);
      case 'INT8':
        return c.i8(what);
      case 'UINT16':
        return c.u16(what);
      case 'INT16':
        return c.i16(what);
      case 'UINT32':
        return c.u32(what);
      case 'INT32':
        return c.i32(what);
      case 'FLOAT32':
        return c.f32(what);
      case 'BOOL':
        // llama.cpp reads an int8 and treats any non-zero as true.
        return c.i8(what) !== 0;
      case 'UINT64':
        return c.u64(what);
      case 'INT64':
        return c.i64(what);
      case 'FLOAT64':
        return c.f64(what);
    }
  }

  private async readArray(key: string, depth: number): Promise<GgufArray> {
    const c = this.c;
    if (depth >= MAX_GGUF_ARRAY_NESTING) this.fail(`arrays nested deeper than ${MAX_GGUF_ARRAY_NESTING}`, `key '${key}' at offset ${c.pos}`);
    await c.fill(12);
    const typeAt = c.pos;
    const elementType = this.valueType(c.u32(`element type of '${key}'`), typeAt, `key '${key}'`);
    const countAt = c.pos;
    const count = this.checkedCount(c.u64(`length of '${key}'`), MAX_GGUF_ARRAY_LENGTH, `array length of '${key}'`, countAt);
    // Every element takes at least one byte (8 for strings, 12 for arrays): a count the file cannot hold is refused before allocating.
    const minElementBytes = elementType === 'STRING' ? 8 : elementType === 'ARRAY' ? 12 : (FIXED_SIZE[elementType] ?? 1);
    if (count * minElementBytes > c.remaining) {
      this.fail(`array length ${count} of ${elementType} needs at least ${count * minElementBytes} bytes but ${c.remaining} are left`, `key '${key}' at offset ${countAt}`);
    }
    if (elementType === 'ARRAY') {
      const values: GgufArray[] = [];
      for (let i = 0; i < count; i++) values.push(await this.readArray(key, depth + 1));
      return { type: 'ARRAY', elementType, values };
    }
    const values: GgufScalar[] = new Array<GgufScalar>(count);
    if (elementType === 'STRING') {
      for (let i = 0; i < count; i++) {
        if (!c.has(8)) await c.fill(8);
        const at = c.pos;
        const n = c.u64Safe('an array string length');
        if (n < 0 || n > MAX_GGUF_STRING_BYTES || n > c.remaining) {
          this.fail(`string length ${c.u64At(at)} of element ${i} exceeds the ${c.remaining} bytes left`, `key '${key}' at offset ${at}`);
        }
        if (!c.has(n)) await c.fill(n);
        values[i] = c.text(n, 'an array string');
      }
      return { type: 'ARRAY', elementType, values };
    }
    const size = FIXED_SIZE[elementType] ?? 1;
    await c.fill(count * size);
    for (let i = 0; i < count; i++) values[i] = this.readFixedScalar(elementType);
    return { type: 'ARRAY', elementType, values };
  }

  private readTensorInfo(index: number, names: Set<string>): GgufTensorInfo {
    const c = this.c;
    const infoAt = c.pos;
    // Static `what` strings and number-valued u64 reads: this runs once per tensor (10^5 in big files).
    const nameLength = c.u64Safe('a tensor name length');
    if (nameLength < 0 || nameLength >= GGML_MAX_NAME) {
      this.fail(`name of tensor ${index} is ${c.u64At(infoAt)} bytes long; names must be shorter than ${GGML_MAX_NAME}`, `offset ${infoAt}`);
    }
    const name = c.text(nameLength, 'a tensor name');
    if (names.has(name)) this.fail(`duplicate tensor name`, `tensor '${name}'`);
    names.add(name);
    const nDims = c.u32('a tensor n_dims');
    if (nDims > MAX_GGUF_DIMS) this.fail(`n_dims ${nDims} is more than ${MAX_GGUF_DIMS}`, `tensor '${name}'`);
    const ne: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const at = c.pos;
      const value = c.u64Safe('a tensor dimension');
      if (value < 0) this.fail(`ne[${d}] = ${c.u64At(at)} is not a valid dimension`, `tensor '${name}'`);
      ne.push(value);
      elements *= value;
    }
    if (!Number.isSafeInteger(elements)) this.fail(`dimensions [${ne.join(', ')}] overflow the element count`, `tensor '${name}'`);
    const typeId = c.u32('a tensor type');
    const type = ggmlTypeById(typeId);
    if (type === undefined) this.fail(`unknown ggml type id ${typeId}`, `tensor '${name}'`);
    const ne0 = ne[0] ?? 1;
    if (ne0 % type.blockSize !== 0) this.fail(`ne[0] = ${ne0} is not a multiple of the ${type.name} block size ${type.blockSize}`, `tensor '${name}'`);
    const nbytes = (elements / type.blockSize) * type.typeSize;
    if (!Number.isSafeInteger(nbytes)) this.fail(`size in bytes overflows`, `tensor '${name}'`);
    const offsetAt = c.pos;
    const offset = c.u64Safe('a tensor offset');
    if (offset < 0) this.fail(`offset ${c.u64At(offsetAt)} is past any file`, `tensor '${name}'`);
    return { name, ne, type, offset, elements, nbytes };
  }
}

/** Row-major shape (outermost first) of a tensor: the reverse of ne. */
export function ggufShape(info: GgufTensorInfo): number[] {
  return [...info.ne].reverse();
}

/**
 * Typed access to KV values (for the model runtime: tokenizer arrays, hyperparameters). Each returns
 * undefined when the key is absent and throws a FormatError naming the key when its type is wrong.
 */
function wrongType(header: GgufHeader, key: string, expected: string, value: GgufValue): never {
  const actual = value.type === 'ARRAY' ? `ARRAY of ${value.elementType}` : value.type;
  throw new FormatError(header.file, `expected ${expected}, found ${actual}`, `key '${key}'`);
}

export function ggufString(header: GgufHeader, key: string): string | undefined {
  const v = header.kv.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'STRING' || typeof v.value !== 'string') return wrongType(header, key, 'STRING', v);
  return v.value;
}

/** Any integer or float scalar as a number; 64-bit integers must be safe integers. */
export function ggufNumber(header: GgufHeader, key: string): number | undefined {
  const v = header.kv.get(key);
  if (v === undefined) return undefined;
  if (v.type === 'ARRAY' || v.type === 'STRING' || v.type === 'BOOL') return wrongType(header, key, 'a number', v);
  if (typeof v.value === 'bigint') {
    if (v.value > BigInt(Number.MAX_SAFE_INTEGER) || v.value < BigInt(Number.MIN_SAFE_INTEGER)) {
      throw new FormatError(header.file, `${v.value} is not a safe integer`, `key '${key}'`);
    }
    return Number(v.value);
  }
  return v.value as number;
}

export function ggufStringArray(header: GgufHeader, key: string): string[] | undefined {
  const v = header.kv.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'ARRAY' || v.elementType !== 'STRING') return wrongType(header, key, 'ARRAY of STRING', v);
  return v.values as string[];
}

/** An array of integers or floats as numbers (64-bit elements must be safe integers). */
export function ggufNumberArray(header: GgufHeader, key: string): number[] | undefined {
  const v = header.kv.get(key);
  if (v === undefined) return undefined;
  if (v.type !== 'ARRAY' || v.elementType === 'ARRAY' || v.elementType === 'STRING' || v.elementType === 'BOOL') {
    return wrongType(header, key, 'ARRAY of numbers', v);
  }
  return v.values.map((x) => {
    if (typeof x === 'bigint') {
      if (x > BigInt(Number.MAX_SAFE_INTEGER) || x < BigInt(Number.MIN_SAFE_INTEGER)) throw new FormatError(header.file, `element ${x} is not a safe integer`, `key '${key}'`);
      return Number(x);
    }
    return x as number;
  });
}
