import { open, stat, type FileHandle } from 'node:fs/promises';
import { FormatError, IoError } from '../errors';

/**
 * Lazy, random-access bytes. Models are never read whole: parsers read their headers through this,
 * and tensor data is read in bounded windows. Offsets are plain numbers: JS numbers are exact up to
 * 2^53 bytes (8 PiB), far beyond any checkpoint, so files over 4 GiB are fine.
 */
export interface ByteSource {
  /** A name for messages: usually the file path. */
  readonly name: string;
  readonly size: number;
  /**
   * Fills `target` with bytes starting at `offset`. Throws a FormatError naming the source when the
   * range runs past the end (a truncated file), never returns short.
   */
  read(offset: number, target: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** The largest window read in one call; callers that need more loop. */
export const MAX_READ_WINDOW = 64 * 1024 * 1024;

export function checkRange(source: { name: string; size: number }, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0 || offset + length > source.size) {
    throw new FormatError(source.name, `read of ${length} bytes at offset ${offset} runs past the end of the file (${source.size} bytes)`);
  }
}

export class FileByteSource implements ByteSource {
  private constructor(
    readonly name: string,
    readonly size: number,
    private readonly handle: FileHandle,
  ) {}

  /** Opens read-only: a source is never written. */
  static async open(path: string): Promise<FileByteSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw new IoError(`${path}: cannot open for reading (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
    }
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new IoError(`${path}: not a regular file`);
      return new FileByteSource(path, info.size, handle);
    } catch (e) {
      await handle.close();
      throw e;
    }
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this, offset, target.byteLength);
    let done = 0;
    while (done < target.byteLength) {
      const want = Math.min(target.byteLength - done, MAX_READ_WINDOW);
      const { bytesRead } = await this.handle.read(target, done, want, offset + done);
      if (bytesRead === 0) {
        throw new FormatError(this.name, `file ended at ${offset + done} while reading ${target.byteLength} bytes at offset ${offset} (was it truncated while open?)`);
      }
      done += bytesRead;
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/** Bytes already in memory (tests, fuzzing, small generated files). */
export class MemoryByteSource implements ByteSource {
  readonly size: number;
  constructor(
    private readonly bytes: Uint8Array,
    readonly name = '<memory>',
  ) {
    this.size = bytes.byteLength;
  }
  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this, offset, target.byteLength);
    target.set(this.bytes.subarray(offset, offset + target.byteLength));
  }
  async close(): Promise<void> {}
}

/** Reads `length` bytes at `offset` into a fresh buffer. Use only for bounded sizes (headers, one window). */
export async function readBytes(source: ByteSource, offset: number, length: number): Promise<Uint8Array> {
  checkRange(source, offset, length);
  const out = new Uint8Array(length);
  await source.read(offset, out);
  return out;
}

export async function fileSize(path: string): Promise<number> {
  return (await stat(path)).size;
}

/** Opens a file source, runs `fn`, and always closes it. */
export async function withFileSource<T>(path: string, fn: (source: ByteSource) => Promise<T>): Promise<T> {
  const source = await FileByteSource.open(path);
  try {
    return await fn(source);
  } finally {
    await source.close();
  }
}
