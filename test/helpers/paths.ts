import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const fixturesDir = join(repoRoot, 'test', 'fixtures');
export const microLlamaDir = join(fixturesDir, 'micro-llama');
export const microLlamaF32Gguf = join(fixturesDir, 'micro-llama-f32.gguf');

/** The project's shared folder (models too large for the repo). CI always has it beside the checkout. */
export const sharedDir = resolve(repoRoot, '..', 'shared');

/**
 * Path of a file in ../shared, or a skip reason when it is absent (a clone without the shared folder).
 * Use as: `const p = sharedFile('models/tiny-llama'); test('...', { skip: p.skip }, ...)`.
 */
export function sharedFile(relative: string): { path: string; skip: string | false } {
  const path = join(sharedDir, relative);
  if (existsSync(path)) return { path, skip: false };
  const reason = `${relative} is not present in ../shared (it stays outside the repo); this test needs it`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI must have it`);
  return { path, skip: reason };
}

export const tinyLlamaDir = sharedFile('models/tiny-llama');
export const tinyLlamaQ4KMGguf = sharedFile('models/gguf/tiny-llama-Q4_K_M.gguf');
