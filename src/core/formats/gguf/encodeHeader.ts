/**
 * Serialises a GGUF header (magic, version, KV pairs, tensor infos, padding to the data section) exactly
 * as given, without validation: tests and benchmarks use it to build real-looking files, including
 * deliberately broken ones. It also reports where every u64 field landed, so a fuzzer can aim at them.
 */
import { GGUF_MAGIC } from './ggmlTypes';
import { GGUF_VALUE_TYPE_NAMES, type GgufArray, type GgufScalar, type GgufValue, type GgufValueTypeName } from './reader';

export interface EncodedTensorInfo {
  /** A string, or raw bytes for names that are not what a writer would produce. */
  name: string | Uint8Array;
  /** ggml dims, innermost first; n_dims is their count unless `nDims` overrides it. */
  ne: ReadonlyArray<number | bigint>;
  nDims?: number;
  typeId: number;
  offset: number | bigint;
}

export interface EncodeGgufOptions {
  version?: number;
  /** Counts written in the header; default the real counts. */
  tensorCount?: number | bigint;
  kvCount?: number | bigint;
  kv: Iterable<[string, GgufValue]>;
  tensors: readonly EncodedTensorInfo[];
  /** Pads the header to this alignment (default 32; the file's own general.alignment is not consulted). */
  alignment?: number;
}

export interface EncodedGgufHeader {
  bytes: Uint8Array;
  /** Offsets of every u64 field (counts, string lengths, array lengths, dims, tensor offsets). */
  u64Fields: number[];
  /** Offset of the data section (header length after padding). */
  dataStart: number;
}

const encoder = new TextEncoder();

class ByteWriter {
  private buffer = new Uint8Array(1 << 16);
  private view = new DataView(this.buffer.buffer);
  length = 0;
  readonly u64Fields: number[] = [];

  private reserve(n: number): number {
    if (this.length + n > this.buffer.byteLength) {
      const next = new Uint8Array(Math.max(this.buffer.byteLength * 2, this.length + n));
      next.set(this.buffer.subarray(0, this.length));
      this.buffer = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  // reserve() runs before this.view is read: growing the buffer replaces the view.
  u8(v: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, v);
  }
  i8(v: number): void {
    const at = this.reserve(1);
    this.view.setInt8(at, v);
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, v, true);
  }
  i16(v: number): void {
    const at = this.reserve(2);
    this.view.setInt16(at, v, true);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, v, true);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.view.setFloat64(at, v, true);
  }
  u64(v: number | bigint): void {
    const at = this.reserve(8);
    this.u64Fields.push(at);
    this.view.setBigUint64(at, BigInt.asUintN(64, BigInt(v)), true);
  }
  i64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, v, true);
  }
  raw(bytes: Uint8Array): void {
    const at = this.reserve(bytes.byteLength);
    this.buffer.set(bytes, at);
  }
  string(s: string | Uint8Array): void {
    const bytes = typeof s === 'string' ? encoder.encode(s) : s;
    this.u64(bytes.byteLength);
    this.raw(bytes);
  }
  finish(): Uint8Array {
    return this.buffer.slice(0, this.length);
  }
}

function typeId(name: GgufValueTypeName): number {
  return GGUF_VALUE_TYPE_NAMES.indexOf(name);
}

function writeScalar(w: ByteWriter, type: Exclude<GgufValueTypeName, 'ARRAY'>, v: GgufScalar): void {
  switch (type) {
    case 'UINT8':
      return w.u8(Number(v));
    case 'INT8':
      return w.i8(Number(v));
    case 'UINT16':
      return w.u16(Number(v));
    case 'INT16':
      return w.i16(Number(v));
    case 'UINT32':
      return w.u32(Number(v));
    case 'INT32':
      return w.i32(Number(v));
    case 'FLOAT32':
      return w.f32(Number(v));
    case 'BOOL':
      return w.u8(v === true ? 1 : 0);
    case 'STRING':
      return w.string(String(v));
    case 'UINT64':
      return w.u64(typeof v === 'bigint' ? v : BigInt(Number(v)));
    case 'INT64':
      return w.i64(typeof v === 'bigint' ? v : BigInt(Number(v)));
    case 'FLOAT64':
      return w.f64(Number(v));
  }
}

function writeArray(w: ByteWriter, a: GgufArray): void {
  w.u32(typeId(a.elementType));
  w.u64(a.values.length);
  if (a.elementType === 'ARRAY') for (const inner of a.values) writeArray(w, inner);
  else for (const v of a.values) writeScalar(w, a.elementType, v);
}

export function encodeGgufHeader(options: EncodeGgufOptions): EncodedGgufHeader {
  const w = new ByteWriter();
  const kv = [...options.kv];
  w.u32(GGUF_MAGIC);
  w.u32(options.version ?? 3);
  w.u64(options.tensorCount ?? options.tensors.length);
  w.u64(options.kvCount ?? kv.length);
  for (const [key, value] of kv) {
    w.string(key);
    w.u32(typeId(value.type));
    if (value.type === 'ARRAY') writeArray(w, value);
    else writeScalar(w, value.type, value.value);
  }
  for (const t of options.tensors) {
    w.string(t.name);
    w.u32(t.nDims ?? t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(t.typeId);
    w.u64(t.offset);
  }
  const alignment = options.alignment ?? 32;
  const dataStart = Math.ceil(w.length / alignment) * alignment;
  w.raw(new Uint8Array(dataStart - w.length));
  return { bytes: w.finish(), u64Fields: w.u64Fields, dataStart };
}

/** The encoder's input that reproduces a parsed header (same KV order, same tensor infos). */
export function encodeOptionsFromHeader(header: {
  version: number;
  kv: Map<string, GgufValue>;
  tensors: ReadonlyArray<{ name: string; ne: number[]; type: { id: number }; offset: number }>;
  alignment: number;
}): EncodeGgufOptions {
  return {
    version: header.version,
    kv: [...header.kv],
    tensors: header.tensors.map((t) => ({ name: t.name, ne: [...t.ne], typeId: t.type.id, offset: t.offset })),
    alignment: header.alignment,
  };
}
