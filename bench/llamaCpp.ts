/**
 * The one way every bench finds llama.cpp's tools (llama-quantize, llama-perplexity, llama-imatrix):
 *  1. the folder named by the environment variable LLAMA_CPP_BIN_DIR, else
 *  2. `.cache/llama.cpp/bin` in the repository, which `scripts/build-llama-cpp.sh` fills from the llama.cpp
 *     source that node-llama-cpp ships (no network).
 * When neither holds the tool, `findLlamaCppTool` says so plainly and how to get it.
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

export type LlamaCppTool = 'llama-quantize' | 'llama-perplexity' | 'llama-imatrix';

/** Repository root, whether this runs from bench/*.ts (tsx) or from dist/bench.js (bundle). */
function repoRoot(): string {
  for (const candidate of [resolve(__dirname, '..'), process.cwd()]) {
    if (existsSync(join(candidate, 'package.json'))) return candidate;
  }
  return process.cwd();
}

export const DEFAULT_LLAMA_CPP_BIN_DIR = join('.cache', 'llama.cpp', 'bin');

export type LlamaCppLookup = { found: true; path: string; from: string } | { found: false; reason: string };

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Where `tool` is, or a one-line reason it is absent (with the fix). */
export function findLlamaCppTool(tool: LlamaCppTool): LlamaCppLookup {
  const fromEnv = process.env.LLAMA_CPP_BIN_DIR;
  if (fromEnv !== undefined && fromEnv !== '') {
    const path = join(fromEnv, tool);
    if (isExecutable(path)) return { found: true, path, from: 'LLAMA_CPP_BIN_DIR' };
    return { found: false, reason: `LLAMA_CPP_BIN_DIR=${fromEnv} has no executable ${tool}` };
  }
  const local = join(repoRoot(), DEFAULT_LLAMA_CPP_BIN_DIR);
  const path = join(local, tool);
  if (isExecutable(path)) return { found: true, path, from: DEFAULT_LLAMA_CPP_BIN_DIR };
  return {
    found: false,
    reason: `${tool} not found: LLAMA_CPP_BIN_DIR is not set and ${DEFAULT_LLAMA_CPP_BIN_DIR} has no ${tool}; run scripts/build-llama-cpp.sh (builds it from node-llama-cpp's bundled source, no network) or set LLAMA_CPP_BIN_DIR to a llama.cpp build's bin folder`,
  };
}
