/**
 * Atomic output files: every writer puts its bytes in a temporary file in the destination folder,
 * fsyncs it, then renames it over the destination. A crash, an error or a cancellation therefore
 * never leaves a half-written file at the output path, and the temporary file is removed on failure.
 */
import { randomBytes } from 'node:crypto';
import { chmod, copyFile, open, realpath, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { CancelledError, InvalidArgumentError, IoError } from '../errors';

/** Test seam: called before every write with the file offset; throwing simulates a disk error. */
export type WriteFaultHook = (offset: number, length: number) => void;

export interface AtomicWriteOptions {
  signal?: AbortSignal;
  onBeforeWrite?: WriteFaultHook;
}

export interface AtomicFile {
  readonly finalPath: string;
  readonly tempPath: string;
  /** Bytes written so far (the offset of the next write). */
  readonly position: number;
  /** Appends `bytes` at the current position. */
  write(bytes: Uint8Array): Promise<void>;
  /** fsync + close + rename onto `finalPath`. */
  commit(): Promise<void>;
  /** Closes and deletes the temporary file; safe to call more than once and after a failed commit. */
  abort(): Promise<void>;
}

function errnoCode(e: unknown): string {
  return (e as NodeJS.ErrnoException).code ?? String(e);
}

/** A temp name in the destination folder, hidden, unique per process and call. */
export function temporaryPathFor(finalPath: string): string {
  return join(dirname(finalPath), `.${basename(finalPath)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
}

/**
 * A large output is flushed to disk while it is written: after every SYNC_EVERY_BYTES a datasync starts
 * in the background (one at a time), so the final fsync waits for the last stretch only, not for the
 * whole file (the disk works while the writer computes).
 */
const SYNC_EVERY_BYTES = 64 * 1024 * 1024;

class AtomicFileImpl implements AtomicFile {
  position = 0;
  private closed = false;
  private settled = false;
  private syncedUpTo = 0;
  private syncing: Promise<void> | null = null;
  private syncError: unknown = null;
  constructor(
    readonly finalPath: string,
    readonly tempPath: string,
    private readonly handle: FileHandle,
    private readonly options: AtomicWriteOptions,
  ) {}

  async write(bytes: Uint8Array): Promise<void> {
    if (this.settled) throw new IoError(`${this.finalPath}: write after the file was committed or aborted`);
    if (this.options.signal?.aborted) throw new CancelledError(`writing ${this.finalPath} was cancelled`);
    this.options.onBeforeWrite?.(this.position, bytes.byteLength);
    let done = 0;
    try {
      while (done < bytes.byteLength) {
        const { bytesWritten } = await this.handle.write(bytes, done, bytes.byteLength - done, this.position + done);
        if (bytesWritten === 0) throw new IoError(`${this.tempPath}: the write made no progress`);
        done += bytesWritten;
      }
    } catch (e) {
      if (e instanceof IoError) throw e;
      throw new IoError(`${this.finalPath}: cannot write ${bytes.byteLength} bytes at offset ${this.position} (${errnoCode(e)})`, e);
    }
    this.position += bytes.byteLength;
    if (this.syncing === null && this.position - this.syncedUpTo >= SYNC_EVERY_BYTES) {
      const upTo = this.position;
      this.syncing = this.handle.datasync().then(
        () => {
          this.syncedUpTo = upTo;
          this.syncing = null;
        },
        (e: unknown) => {
          this.syncError = e;
          this.syncing = null;
        },
      );
    }
    if (this.syncError !== null) throw new IoError(`${this.finalPath}: cannot flush the written bytes to disk (${errnoCode(this.syncError)})`, this.syncError);
  }

  async commit(): Promise<void> {
    if (this.settled) throw new IoError(`${this.finalPath}: already committed or aborted`);
    if (this.options.signal?.aborted) throw new CancelledError(`writing ${this.finalPath} was cancelled`);
    try {
      await this.syncing;
      if (this.syncError !== null) throw this.syncError;
      await this.handle.sync();
      this.closed = true;
      await this.handle.close();
      await rename(this.tempPath, this.finalPath);
    } catch (e) {
      throw new IoError(`${this.finalPath}: cannot finish the output file (${errnoCode(e)})`, e);
    }
    this.settled = true;
  }

  async abort(): Promise<void> {
    this.settled = true;
    await this.syncing;
    if (!this.closed) {
      this.closed = true;
      await this.handle.close().catch(() => undefined);
    }
    await rm(this.tempPath, { force: true }).catch(() => undefined);
  }
}

/** Creates the temporary file next to `finalPath`. The destination folder must exist. */
export async function openAtomicFile(finalPath: string, options: AtomicWriteOptions = {}): Promise<AtomicFile> {
  if (options.signal?.aborted) throw new CancelledError(`writing ${finalPath} was cancelled`);
  const tempPath = temporaryPathFor(finalPath);
  let handle: FileHandle;
  try {
    handle = await open(tempPath, 'wx');
  } catch (e) {
    throw new IoError(`${finalPath}: cannot create a temporary file in ${dirname(finalPath)} (${errnoCode(e)})`, e);
  }
  return new AtomicFileImpl(finalPath, tempPath, handle, options);
}

/** Runs `fill` on a fresh atomic file; commits when it resolves, aborts (deleting the temp file) when it throws. */
export async function withAtomicFile<T>(finalPath: string, fill: (file: AtomicFile) => Promise<T>, options: AtomicWriteOptions = {}): Promise<T> {
  const file = await openAtomicFile(finalPath, options);
  try {
    const result = await fill(file);
    await file.commit();
    return result;
  } catch (e) {
    await file.abort();
    throw e;
  }
}

/** Writes small bytes (JSON sidecars) atomically. */
export async function writeFileAtomic(finalPath: string, bytes: Uint8Array | string, options: AtomicWriteOptions = {}): Promise<void> {
  const data = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
  await withAtomicFile(finalPath, (file) => file.write(data), options);
}

async function canonicalPath(path: string): Promise<string> {
  const absolute = resolve(path);
  try {
    return await realpath(absolute);
  } catch {
    // The output usually does not exist yet: canonicalise its folder instead.
    try {
      return join(await realpath(dirname(absolute)), basename(absolute));
    } catch {
      return absolute;
    }
  }
}

/**
 * Refuses an output path that is one of the inputs (the same path, a link to it, or a folder input
 * holding it), before anything is opened for writing: a quantizer must never overwrite its source.
 */
export async function assertNotSamePath(inputs: string | readonly string[], output: string): Promise<void> {
  const outputPath = await canonicalPath(output);
  let outputInode: { dev: number; ino: number } | null = null;
  try {
    const s = await stat(outputPath);
    outputInode = { dev: s.dev, ino: s.ino };
  } catch {
    outputInode = null;
  }
  for (const input of typeof inputs === 'string' ? [inputs] : inputs) {
    const inputPath = await canonicalPath(input);
    if (inputPath === outputPath) {
      throw new InvalidArgumentError(`output ${output} is the input ${input}: refusing to overwrite the source`);
    }
    if (outputInode !== null) {
      try {
        const s = await stat(inputPath);
        if (s.dev === outputInode.dev && s.ino === outputInode.ino) {
          throw new InvalidArgumentError(`output ${output} is the same file as the input ${input}: refusing to overwrite the source`);
        }
      } catch (e) {
        if (e instanceof InvalidArgumentError) throw e;
      }
    }
  }
}

/** Copies a small file (tokenizer, config) atomically: copy to a temp name beside the target, then rename. */
export async function copyFileAtomic(from: string, to: string): Promise<void> {
  const tempPath = temporaryPathFor(to);
  try {
    await copyFile(from, tempPath);
    await chmod(tempPath, 0o644); // the source may be read-only (a shared model folder); the copy is ours
    await rename(tempPath, to);
  } catch (e) {
    await rm(tempPath, { force: true }).catch(() => undefined);
    throw new IoError(`${to}: cannot copy from ${from} (${errnoCode(e)})`, e);
  }
}
