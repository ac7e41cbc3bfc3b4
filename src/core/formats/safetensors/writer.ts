/**
 * Streaming safetensors writer. The header (tensor names, dtypes, shapes, offsets, `__metadata__`)
 * is laid out up front from the tensor specs; data then follows tensor by tensor, in spec order,
 * possibly in several chunks per tensor, so no more than one tensor is ever held in memory.
 *
 * Layout: u64 LE header length N; N bytes of JSON padded with spaces to a multiple of 8 (so the
 * data buffer starts 8-aligned); the data, each tensor at `data_offsets: [begin, end)` relative to
 * the data start, contiguous, in spec order (no holes, no overlap: what the reference reader wants).
 */
import { InvalidArgumentError, IoError } from '../../errors';
import type { AtomicFile } from '../../io/atomicWrite';

export const SAFETENSORS_DTYPE_BYTES = {
  BOOL: 1,
  U8: 1,
  I8: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
  I16: 2,
  U16: 2,
  F16: 2,
  BF16: 2,
  I32: 4,
  U32: 4,
  F32: 4,
  I64: 8,
  U64: 8,
  F64: 8,
} as const;

export type SafetensorsWriteDtype = keyof typeof SAFETENSORS_DTYPE_BYTES;

export interface SafetensorsTensorSpec {
  name: string;
  dtype: SafetensorsWriteDtype;
  shape: number[];
}

export interface SafetensorsLayout {
  /** The 8-byte length plus the padded JSON: the first bytes of the file. */
  header: Uint8Array;
  /** Byte range of each tensor within the data buffer, in spec order. */
  ranges: { name: string; begin: number; end: number }[];
  dataBytes: number;
  totalBytes: number;
}

export function tensorByteLength(spec: SafetensorsTensorSpec): number {
  let count = 1;
  for (const d of spec.shape) {
    if (!Number.isSafeInteger(d) || d < 0) throw new InvalidArgumentError(`tensor ${spec.name}: bad dimension ${d}`);
    count *= d;
  }
  const bytes = count * SAFETENSORS_DTYPE_BYTES[spec.dtype];
  if (!Number.isSafeInteger(bytes)) throw new InvalidArgumentError(`tensor ${spec.name}: size overflows`);
  return bytes;
}

/** Builds the header for `specs` (names unique, not `__metadata__`) and `metadata` (string values). */
export function layoutSafetensors(specs: readonly SafetensorsTensorSpec[], metadata: Record<string, string> = {}): SafetensorsLayout {
  const json: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) json.__metadata__ = metadata;
  const ranges: SafetensorsLayout['ranges'] = [];
  const seen = new Set<string>();
  let offset = 0;
  for (const spec of specs) {
    if (spec.name === '__metadata__' || spec.name.length === 0) throw new InvalidArgumentError(`invalid tensor name '${spec.name}'`);
    if (seen.has(spec.name)) throw new InvalidArgumentError(`tensor ${spec.name} appears twice`);
    seen.add(spec.name);
    const bytes = tensorByteLength(spec);
    json[spec.name] = { dtype: spec.dtype, shape: spec.shape, data_offsets: [offset, offset + bytes] };
    ranges.push({ name: spec.name, begin: offset, end: offset + bytes });
    offset += bytes;
  }
  const text = new TextEncoder().encode(JSON.stringify(json));
  const padded = Math.ceil(text.byteLength / 8) * 8;
  const header = new Uint8Array(8 + padded);
  new DataView(header.buffer).setBigUint64(0, BigInt(padded), true);
  header.fill(0x20, 8);
  header.set(text, 8);
  return { header, ranges, dataBytes: offset, totalBytes: header.byteLength + offset };
}

/**
 * Writes a safetensors file into an AtomicFile: `writeTensor` each tensor in spec order (several
 * calls per tensor are fine), then `finish()` checks that every byte promised in the header came.
 */
export class SafetensorsStreamWriter {
  private index = 0;
  private writtenInTensor = 0;
  private constructor(
    private readonly file: AtomicFile,
    readonly layout: SafetensorsLayout,
  ) {}

  static async create(file: AtomicFile, specs: readonly SafetensorsTensorSpec[], metadata: Record<string, string> = {}): Promise<SafetensorsStreamWriter> {
    const layout = layoutSafetensors(specs, metadata);
    if (file.position !== 0) throw new InvalidArgumentError(`${file.finalPath}: safetensors must start at offset 0`);
    await file.write(layout.header);
    const writer = new SafetensorsStreamWriter(file, layout);
    writer.skipEmptyTensors();
    return writer;
  }

  private skipEmptyTensors(): void {
    while (this.index < this.layout.ranges.length && this.layout.ranges[this.index]!.end === this.layout.ranges[this.index]!.begin) this.index += 1;
  }

  /** Appends bytes of tensor `name`, which must be the current tensor in spec order. */
  async writeTensor(name: string, bytes: Uint8Array): Promise<void> {
    if (bytes.byteLength === 0 && this.layout.ranges.some((r) => r.name === name && r.begin === r.end)) return;
    const range = this.layout.ranges[this.index];
    if (range === undefined || range.name !== name) {
      throw new InvalidArgumentError(`${this.file.finalPath}: tensor ${name} written out of order (expected ${range?.name ?? 'no more tensors'})`);
    }
    const expected = range.end - range.begin;
    if (this.writtenInTensor + bytes.byteLength > expected) {
      throw new InvalidArgumentError(`${this.file.finalPath}: tensor ${name} got ${this.writtenInTensor + bytes.byteLength} bytes, its header says ${expected}`);
    }
    await this.file.write(bytes);
    this.writtenInTensor += bytes.byteLength;
    if (this.writtenInTensor === expected) {
      this.index += 1;
      this.writtenInTensor = 0;
      // Zero-byte tensors that follow are complete as soon as they are reached.
      this.skipEmptyTensors();
    }
  }

  /** Throws if some tensor is missing or short. Does not commit the file. */
  finish(): void {
    this.skipEmptyTensors();
    if (this.index !== this.layout.ranges.length) {
      throw new IoError(`${this.file.finalPath}: tensor ${this.layout.ranges[this.index]!.name} was not written completely`);
    }
    if (this.file.position !== this.layout.totalBytes) {
      throw new IoError(`${this.file.finalPath}: wrote ${this.file.position} bytes, the layout needs ${this.layout.totalBytes}`);
    }
  }
}

/** The bytes of a typed array, as a Uint8Array view (little-endian hosts: the safetensors byte order). */
export function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}
