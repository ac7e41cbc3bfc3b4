/**
 * Streaming GGUF v3 writer.
 *
 *   const layout = layoutGguf({ kv, tensors });           // validates, computes offsets and the header bytes
 *   const writer = new GgufStreamWriter(sink, layout);     // sink: anything with write(bytes) (an AtomicFile)
 *   await writer.writeHeader();
 *   for (const t of layout.tensors) { await writer.writeTensorData(t.name, chunk); ... }  // in order, any chunking
 *   await writer.finish();                                  // checks every tensor was complete
 *
 * The file is laid out as llama.cpp's gguf writer does: header (KVs in the given order, tensor infos),
 * zero padding to `general.alignment` (default 32), then each tensor's data padded with zeros to the
 * alignment, offsets the running sum of padded sizes. Memory stays bounded: only the header and the
 * caller's chunks are ever held.
 */
import { FormatError, InvalidArgumentError } from '../../errors';
import { encodeGgufHeader } from './encodeHeader';
import { GGUF_DEFAULT_ALIGNMENT, ggmlTypeByName, type GgmlTypeName } from './ggmlTypes';
import { GGML_MAX_NAME, MAX_GGUF_DIMS, type GgufValue } from './reader';

export interface GgufTensorToWrite {
  name: string;
  /** Row-major shape (outermost first); written as ne = reversed shape. */
  shape: readonly number[];
  type: GgmlTypeName;
}

export interface GgufLayoutTensor extends GgufTensorToWrite {
  /** Offset relative to the data section. */
  offset: number;
  nbytes: number;
}

export interface GgufLayout {
  header: Uint8Array;
  alignment: number;
  /** Absolute offset of the data section. */
  dataStart: number;
  tensors: GgufLayoutTensor[];
  /** Size of the complete file. */
  fileSize: number;
}

export interface GgufLayoutInput {
  kv: ReadonlyArray<readonly [string, GgufValue]>;
  tensors: readonly GgufTensorToWrite[];
}

const encoder = new TextEncoder();

function padTo(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Bytes of a tensor of `shape` in `type`; the innermost dimension must be a multiple of the block size. */
export function ggmlTensorBytes(name: string, shape: readonly number[], type: GgmlTypeName): number {
  const info = ggmlTypeByName(type);
  if (info === undefined) throw new InvalidArgumentError(`${name}: unknown ggml type ${type}`);
  const ne0 = shape.length === 0 ? 1 : shape[shape.length - 1]!;
  if (ne0 % info.blockSize !== 0) {
    throw new InvalidArgumentError(`${name}: row length ${ne0} is not a multiple of ${info.blockSize}, the block size of ${type}`);
  }
  let rows = 1;
  for (let i = 0; i < shape.length - 1; i++) rows *= shape[i]!;
  return rows * (ne0 / info.blockSize) * info.typeSize;
}

/** Validates the KVs and tensors and computes the file layout. */
export function layoutGguf(input: GgufLayoutInput, fileForMessages = '<gguf output>'): GgufLayout {
  const keys = new Set<string>();
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  for (const [key, value] of input.kv) {
    if (key.length === 0) throw new FormatError(fileForMessages, 'empty metadata key');
    if (keys.has(key)) throw new FormatError(fileForMessages, `duplicate metadata key`, key);
    keys.add(key);
    if (key === 'general.alignment') {
      if (value.type !== 'UINT32' || typeof value.value !== 'number' || value.value <= 0 || (value.value & (value.value - 1)) !== 0) {
        throw new FormatError(fileForMessages, 'general.alignment must be a UINT32 power of two', key);
      }
      alignment = value.value;
    }
  }
  const names = new Set<string>();
  const tensors: GgufLayoutTensor[] = [];
  let offset = 0;
  for (const t of input.tensors) {
    if (names.has(t.name)) throw new FormatError(fileForMessages, 'duplicate tensor name', t.name);
    names.add(t.name);
    if (encoder.encode(t.name).byteLength >= GGML_MAX_NAME) throw new FormatError(fileForMessages, `tensor name is ${GGML_MAX_NAME} bytes or longer`, t.name);
    if (t.shape.length === 0 || t.shape.length > MAX_GGUF_DIMS) throw new FormatError(fileForMessages, `a tensor has 1 to ${MAX_GGUF_DIMS} dimensions, not ${t.shape.length}`, t.name);
    if (t.shape.some((d) => !Number.isSafeInteger(d) || d <= 0)) throw new FormatError(fileForMessages, `bad shape [${t.shape.join(', ')}]`, t.name);
    const nbytes = ggmlTensorBytes(t.name, t.shape, t.type);
    tensors.push({ ...t, offset, nbytes });
    offset += padTo(nbytes, alignment);
  }
  const encoded = encodeGgufHeader({
    kv: input.kv.map(([k, v]) => [k, v] as [string, GgufValue]),
    tensors: tensors.map((t) => ({ name: t.name, ne: [...t.shape].reverse(), typeId: ggmlTypeByName(t.type)!.id, offset: t.offset })),
    alignment,
  });
  return { header: encoded.bytes, alignment, dataStart: encoded.dataStart, tensors, fileSize: encoded.dataStart + offset };
}

export interface ByteSink {
  write(bytes: Uint8Array): Promise<void>;
}

/** Writes a laid-out GGUF to a sink, tensor data strictly in layout order. */
export class GgufStreamWriter {
  private next = 0;
  private writtenInTensor = 0;
  private headerWritten = false;
  private readonly padding: Uint8Array;

  constructor(
    private readonly sink: ByteSink,
    readonly layout: GgufLayout,
  ) {
    this.padding = new Uint8Array(layout.alignment);
  }

  async writeHeader(): Promise<void> {
    if (this.headerWritten) throw new InvalidArgumentError('the GGUF header was already written');
    await this.sink.write(this.layout.header);
    this.headerWritten = true;
  }

  /** Appends a chunk of the named tensor's bytes; the tensor must be the next one in layout order. */
  async writeTensorData(name: string, chunk: Uint8Array): Promise<void> {
    if (!this.headerWritten) throw new InvalidArgumentError('write the GGUF header before tensor data');
    const t = this.layout.tensors[this.next];
    if (t === undefined) throw new InvalidArgumentError(`${name}: every tensor of the layout is already written`);
    if (t.name !== name) throw new InvalidArgumentError(`${name}: tensors must be written in layout order; expected ${t.name}`);
    if (this.writtenInTensor + chunk.byteLength > t.nbytes) {
      throw new InvalidArgumentError(`${name}: ${this.writtenInTensor + chunk.byteLength} bytes given, the tensor has ${t.nbytes}`);
    }
    await this.sink.write(chunk);
    this.writtenInTensor += chunk.byteLength;
    if (this.writtenInTensor === t.nbytes) {
      const pad = padTo(t.nbytes, this.layout.alignment) - t.nbytes;
      if (pad > 0) await this.sink.write(this.padding.subarray(0, pad));
      this.next++;
      this.writtenInTensor = 0;
    }
  }

  /** Throws unless every tensor was written completely. */
  async finish(): Promise<void> {
    if (!this.headerWritten) throw new InvalidArgumentError('the GGUF header was never written');
    if (this.next !== this.layout.tensors.length) {
      const t = this.layout.tensors[this.next]!;
      throw new InvalidArgumentError(`${t.name}: only ${this.writtenInTensor} of ${t.nbytes} bytes were written`);
    }
  }
}

/** A u32 / string / f32 ... metadata value, for building KV lists tersely. */
export const gguf = {
  u32: (value: number): GgufValue => ({ type: 'UINT32', value }),
  i32: (value: number): GgufValue => ({ type: 'INT32', value }),
  f32: (value: number): GgufValue => ({ type: 'FLOAT32', value }),
  bool: (value: boolean): GgufValue => ({ type: 'BOOL', value }),
  str: (value: string): GgufValue => ({ type: 'STRING', value }),
  strings: (values: string[]): GgufValue => ({ type: 'ARRAY', elementType: 'STRING', values }),
  i32s: (values: number[]): GgufValue => ({ type: 'ARRAY', elementType: 'INT32', values }),
  f32s: (values: number[]): GgufValue => ({ type: 'ARRAY', elementType: 'FLOAT32', values }),
};
