/**
 * The format-independent view of a checkpoint that everything above formats/ uses:
 * inspect, quantize, stats, the model runtime and the extension's inspector.
 * Readers (safetensors/, gguf/) produce it; nothing here touches tensor bytes until asked.
 */
import type { ByteSource } from '../io/byteSource';
import type { GgufHeader } from './gguf/reader';

export type CheckpointFormat = 'safetensors' | 'gguf';

/** One tensor as stored. `shape` is row-major (outermost first) for both formats. */
export interface TensorEntry {
  name: string;
  /** safetensors dtype name (`BF16`, `F32`, ...) or ggml type name (`Q4_K`, `F16`, ...). */
  dtype: string;
  shape: number[];
  nbytes: number;
  /** Path of the file that holds the data (one shard of a sharded checkpoint). */
  file: string;
  /** Absolute byte offset of the tensor's first byte within `file`. */
  offset: number;
}

/** A scalar or structured metadata value (GGUF KV values, safetensors `__metadata__` strings). */
export type MetadataValue = string | number | bigint | boolean | MetadataValue[];

export interface Checkpoint {
  format: CheckpointFormat;
  /** The path the user gave (file or folder). */
  path: string;
  files: string[];
  metadata: Record<string, MetadataValue>;
  /** Parsed HF config.json when present next to the weights. */
  config: Record<string, unknown> | null;
  tensors: TensorEntry[];
  /**
   * GGUF only: the raw header (every KV pair with its GGUF value type, full arrays such as
   * tokenizer.ggml.tokens / merges, tensor infos with ne and ggml type, alignment, data offset).
   */
  gguf?: GgufHeader;
  /**
   * Decodes rows [rowStart, rowStart + rowCount) of a tensor to f32 (rows = the outermost dimension;
   * a 1-D tensor is one row). Reads only the bytes needed, through a ByteSource.
   * Throws UnsupportedError for a dtype that cannot be decoded.
   */
  readRowsF32(name: string, rowStart?: number, rowCount?: number): Promise<Float32Array>;
  /**
   * readRowsF32 into `target` (exactly the rows' values; F32 files are read straight into it). Only a checkpoint
   * whose values are its files' has it; wrappers that change values (methodCheckpoint's AWQ / SmoothQuant
   * rewrites) leave it undefined, and callers then use readRowsF32.
   */
  readRowsF32Into?(name: string, rowStart: number, rowCount: number, target: Float32Array): Promise<void>;
  /**
   * For a tensor stored as BF16 (on a little-endian host): reads rows [rowStart, rowStart + rowCount) as stored
   * into the UPPER half of `target` (target.length is the rows' value count; the BF16 values fill bytes
   * [2n, 4n) of target's view) and leaves widening them in place to the caller (exact: f32 bits = u16 << 16;
   * the quantize workers do it in WebAssembly, next to quantizing). Resolves false, having read nothing, for
   * any other dtype (then use readRowsF32Into). Like readRowsF32Into, only where the values are the files'.
   */
  readRowsBf16Into?(name: string, rowStart: number, rowCount: number, target: Float32Array): Promise<boolean>;
  /** Raw stored bytes of rows of a tensor (for copying through unchanged). */
  readRawRows(name: string, rowStart?: number, rowCount?: number): Promise<Uint8Array>;
  /** Releases the open files. */
  close(): Promise<void>;
}

/** The byte sources a checkpoint keeps open, by file path. */
export type SourceMap = Map<string, ByteSource>;
