/** Resources a test opens and must always release: a temporary folder, an open checkpoint, the CLI's output. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Checkpoint } from '../../src/core/formats/checkpoint';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';

/** Runs `fn` in a fresh temporary folder and removes it afterwards, whatever happens. */
export async function withTempDir<T>(fn: (dir: string) => Promise<T>, prefix = 'quantlens-test-'): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Opens a checkpoint for `fn` and always closes it. */
export async function withCheckpoint<T>(path: string, fn: (c: Checkpoint) => Promise<T>): Promise<T> {
  const c = await openCheckpoint(path);
  try {
    return await fn(c);
  } finally {
    await c.close();
  }
}

/** A CliIo that records what the command prints (not a TTY). */
export function captureIo(): { out: string[]; err: string[]; io: { out: (s: string) => void; err: (s: string) => void; isTTY: boolean } } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: false } };
}
