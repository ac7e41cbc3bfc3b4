/**
 * Leftovers of interrupted atomic writes. The core writes each output through a hidden temp file
 * beside it, `.<name>.<pid>.<8 hex>.tmp` (core/io/atomicWrite.ts), and removes it on failure or
 * cancel. When the editor is shut down mid-job (the window closed, the server stopped), the worker dies
 * with the process: these functions remove what the dead writer left.
 */
import { readdirSync, statSync, unlinkSync } from 'node:fs';
import { readdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const TEMP_NAME = /^\.(.+)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The folders a job for `output` writes temp files into: the output's folder (the output itself, its
 * quant card `<output>.quant.json`, quantize_config.json) and, in folder mode, the output folder
 * (config.json, tokenizer files).
 */
function jobFolders(output: string): string[] {
  const folders = [dirname(output)];
  try {
    if (statSync(output).isDirectory()) folders.push(output);
  } catch {
    // not there (yet)
  }
  return folders;
}

/**
 * Synchronously removes this process's temp files (worker threads share the pid) in the folders the
 * given outputs' jobs write to: for shutdown paths (signal, exit) where nothing asynchronous runs any
 * more. Every temp file of a job counts, not only the output's: a shutdown can come while the quant
 * card or a side file is being written.
 */
export function removeOwnTempFilesSync(outputs: string[]): number {
  let removed = 0;
  const folders = new Set(outputs.flatMap(jobFolders));
  for (const folder of folders) {
    let names: string[];
    try {
      names = readdirSync(folder);
    } catch {
      continue;
    }
    for (const name of names) {
      const match = TEMP_NAME.exec(name);
      if (match === null || Number(match[2]) !== process.pid) continue;
      try {
        unlinkSync(join(folder, name));
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
