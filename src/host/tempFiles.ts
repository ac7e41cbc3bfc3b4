/**
 * Leftovers of interrupted atomic writes. The core writes each output through a hidden temp file
 * beside it, `.<name>.<pid>.<8 hex>.tmp` (core/io/atomicWrite.ts), and removes it on failure or
 * cancel. When the editor is shut down mid-job (the window closed, the server stopped), the worker dies
 * with the process: these functions remove what the dead writer left.
 */
import { readdirSync, unlinkSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const TEMP_NAME = /^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Temp files for `output` written by process `pid` (worker threads share their process's pid). */
function tempFilesOf(names: string[], output: string, pid: number): string[] {
  const target = basename(output);
  return names.filter((name) => {
    const match = TEMP_NAME.exec(name);
    return match !== null && match[1] === target && Number(match[2]) === pid;
  });
}

/**
 * Synchronously removes this process's temp files for the given outputs: for shutdown paths (signal,
 * exit) where nothing asynchronous runs any more.
 */
export function removeOwnTempFilesSync(outputs: string[]): number {
  let removed = 0;
  for (const output of outputs) {
    let names: string[];
    try {
      names = readdirSync(dirname(output));
    } catch {
      continue;
    }
    for (const name of tempFilesOf(names, output, process.pid)) {
      try {
        unlinkSync(join(dirname(output), name));
        removed++;
      } catch {
        // already gone
      }
    }
  }
  return removed;
}

/** Removes temp files in `folder` whose writing process no longer exists (a crash or a kill). */
export async function sweepStaleTempFiles(folder: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(folder);
  } catch {
    return [];
  }
  const stale = names.filter((name) => {
    const match = TEMP_NAME.exec(name);
    return match !== null && Number(match[2]) !== process.pid && !processAlive(Number(match[2]));
  });
  await Promise.all(stale.map((name) => rm(join(folder, name), { force: true })));
  return stale.map((name) => join(folder, name));
}
