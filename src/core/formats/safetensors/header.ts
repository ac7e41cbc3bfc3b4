/**
 * safetensors header: u64 LE length N, N bytes of UTF-8 JSON, then the data buffer.
 * Validation follows the reference reader (huggingface/safetensors `read_metadata` + `Metadata::validate`)
 * rule for rule, and every refusal is a FormatError naming the file, the defect and the tensor or offset.
 */
import { FormatError } from '../../errors';
import { readBytes, type ByteSource } from '../../io/byteSource';
import { SAFETENSORS_DTYPES, safetensorsDtype, type SafetensorsDtype } from '../dtypes';

/** The reference reader's limit on the JSON header (bytes). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Bytes before the JSON: the u64 header length. */
export const HEADER_LENGTH_BYTES = 8;
/** A shape with more dimensions than this is not a tensor anyone writes; refused before any arithmetic. */
export const MAX_SAFETENSORS_DIMS = 64;

export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range relative to the start of the data buffer (`dataStart` in the file). */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** N, the JSON length. */
  headerLength: number;
  /** Absolute file offset of the data buffer: 8 + N. */
  dataStart: number;
  /** Tensors in storage order (ascending offsets). */
  tensors: SafetensorsTensorInfo[];
  /** `__metadata__` (string to string), or null when absent. */
  metadata: Record<string, string> | null;
}

const DTYPE_BITS = new Map<string, number>(SAFETENSORS_DTYPES.map((d) => [d.name, d.bits]));
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A JSON number that is a non-negative integer exactly representable (usize in the reference reader). */
function asSize(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** The message's `where` is built only when something is wrong: parseTensorInfo runs 10^5 times in big headers. */
function tensorError(file: string, name: string, defect: string): never {
  throw new FormatError(file, defect, `tensor '${name}'`);
}

function parseTensorInfo(file: string, name: string, raw: unknown): SafetensorsTensorInfo {
  if (!isPlainObject(raw)) return tensorError(file, name, 'tensor entry is not a JSON object');
  const dtypeName = raw.dtype;
  if (typeof dtypeName !== 'string') return tensorError(file, name, 'missing or non-string "dtype"');
  const dtype = safetensorsDtype(dtypeName);
  if (dtype === undefined) return tensorError(file, name, `unknown dtype '${dtypeName}'`);
  const rawShape = raw.shape;
  if (!Array.isArray(rawShape)) return tensorError(file, name, 'missing or non-array "shape"');
  if (rawShape.length > MAX_SAFETENSORS_DIMS) {
    return tensorError(file, name, `shape has ${rawShape.length} dimensions, more than ${MAX_SAFETENSORS_DIMS}`);
  }
  for (const d of rawShape) {
    if (asSize(d) === undefined) return tensorError(file, name, `shape entry ${JSON.stringify(d)} is not a non-negative safe integer`);
  }
  // Every entry was checked above; the parsed array is fresh, so it is kept rather than copied.
  const shape = rawShape as number[];
  const offsets = raw.data_offsets;
  if (!Array.isArray(offsets) || offsets.length !== 2) return tensorError(file, name, '"data_offsets" must be [begin, end]');
  const begin = asSize(offsets[0]);
  const end = asSize(offsets[1]);
  if (begin === undefined || end === undefined) {
    return tensorError(file, name, `data_offsets ${JSON.stringify(offsets)} are not non-negative safe integers`);
  }
  return { name, dtype: dtype.name, shape, begin, end };
}

/** Elements of a shape, or undefined when the product leaves the safe-integer range (checked multiplication). */
export function checkedElementCount(shape: readonly number[]): number | undefined {
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (!Number.isSafeInteger(n)) return undefined;
  }
  return n;
}

/**
 * Parses and validates the JSON header. `jsonBytes` are the N bytes after the length field;
 * `fileSize` is the whole file's size (the data buffer must end exactly at the end of the file).
 */
export function parseSafetensorsHeader(file: string, fileSize: number, jsonBytes: Uint8Array): SafetensorsHeader {
  const headerLength = jsonBytes.byteLength;
  let text: string;
  try {
    text = utf8.decode(jsonBytes);
  } catch {
    throw new FormatError(file, 'header is not valid UTF-8', `header (bytes 8..${8 + headerLength})`);
  }
  if (!text.startsWith('{')) throw new FormatError(file, "header does not start with '{'", 'header (byte 8)');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `header is not valid JSON (${e instanceof Error ? e.message : String(e)})`, 'header');
  }
  if (!isPlainObject(parsed)) throw new FormatError(file, 'header JSON is not an object', 'header');

  let metadata: Record<string, string> | null = null;
  const tensors: SafetensorsTensorInfo[] = [];
  // for...in rather than Object.entries: a 10^5-key object is in dictionary mode and entries() costs twice as much.
  for (const key in parsed) {
    if (!Object.hasOwn(parsed, key)) continue;
    const value = parsed[key];
    if (key === '__metadata__') {
      if (value === null) continue;
      if (!isPlainObject(value)) throw new FormatError(file, '"__metadata__" must be an object of strings', 'header');
      const meta: Record<string, string> = {};
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== 'string') throw new FormatError(file, `value of "${k}" is not a string`, '__metadata__');
        meta[k] = v;
      }
      metadata = meta;
      continue;
    }
    tensors.push(parseTensorInfo(file, key, value));
  }

  // The reference reader sorts by (begin, end) and requires each range to start where the previous ended:
  // no holes, no overlaps (overlapping ranges were a denial-of-service vector).
  let sorted = true;
  for (let i = 1; i < tensors.length && sorted; i++) {
    const a = tensors[i - 1];
    const b = tensors[i];
    if (a !== undefined && b !== undefined && (a.begin > b.begin || (a.begin === b.begin && a.end > b.end))) sorted = false;
  }
  if (!sorted) tensors.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expectedBegin = 0;
  for (const t of tensors) {
    const where = t.name;
    if (t.begin !== expectedBegin || t.end < t.begin) {
      const defect =
        t.end < t.begin
          ? `data_offsets [${t.begin}, ${t.end}] end before they begin`
          : t.begin < expectedBegin
            ? `data_offsets [${t.begin}, ${t.end}] overlap the previous tensor, which ends at ${expectedBegin}`
            : `data_offsets [${t.begin}, ${t.end}] leave a hole: the previous tensor ends at ${expectedBegin}`;
      throw new FormatError(file, defect, `tensor '${where}'`);
    }
    expectedBegin = t.end;
    const elements = checkedElementCount(t.shape);
    const bits = DTYPE_BITS.get(t.dtype) ?? 0;
    const totalBits = elements === undefined ? undefined : elements * bits;
    if (totalBits === undefined || !Number.isSafeInteger(totalBits)) {
      throw new FormatError(file, `shape [${t.shape.join(', ')}] overflows the element count`, `tensor '${where}'`);
    }
    if (totalBits % 8 !== 0) {
      throw new FormatError(file, `${elements} ${t.dtype} elements do not fill whole bytes`, `tensor '${where}'`);
    }
    if (t.end - t.begin !== totalBits / 8) {
      throw new FormatError(
        file,
        `byte range [${t.begin}, ${t.end}] holds ${t.end - t.begin} bytes but ${t.dtype} [${t.shape.join(', ')}] needs ${totalBits / 8}`,
        `tensor '${where}'`,
      );
    }
  }
  const dataStart = HEADER_LENGTH_BYTES + headerLength;
  if (dataStart + expectedBegin !== fileSize) {
    throw new FormatError(
      file,
      `tensor data ends at byte ${dataStart + expectedBegin} but the file has ${fileSize} bytes` +
        (dataStart + expectedBegin > fileSize ? ' (truncated?)' : ' (trailing bytes)'),
      'data buffer',
    );
  }
  return { file, fileSize, headerLength, dataStart, tensors, metadata };
}

/** Reads only the header through a ByteSource (a few kB even for a 100 GB file). */
export async function readSafetensorsHeader(source: ByteSource): Promise<SafetensorsHeader> {
  const file = source.name;
  if (source.size < HEADER_LENGTH_BYTES) {
    throw new FormatError(file, `file has ${source.size} bytes, fewer than the 8-byte header length`, 'byte 0');
  }
  const lengthBytes = await readBytes(source, 0, HEADER_LENGTH_BYTES);
  const length = new DataView(lengthBytes.buffer, lengthBytes.byteOffset, 8).getBigUint64(0, true);
  if (length > BigInt(MAX_HEADER_BYTES)) {
    throw new FormatError(file, `header length ${length} is above the limit of ${MAX_HEADER_BYTES} bytes`, 'byte 0');
  }
  const headerLength = Number(length);
  if (HEADER_LENGTH_BYTES + headerLength > source.size) {
    throw new FormatError(file, `header length ${headerLength} runs past the end of the file (${source.size} bytes)`, 'byte 0');
  }
  const jsonBytes = await readBytes(source, HEADER_LENGTH_BYTES, headerLength);
  return parseSafetensorsHeader(file, source.size, jsonBytes);
}
