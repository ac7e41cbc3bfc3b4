/**
 * What the generated ggmlQuantsWasm.ts is a build of: the AssemblyScript source, the asc flags and the
 * asc version, hashed together. build.ts writes the hash into the generated file; a unit test recomputes
 * it, so a source edited without a rebuild fails the tests.
 */
import { assemblyScriptSourceHash } from '../../../wasmBuild';

/** asc flags. The memory is imported and shared so a pool thread can quantize in memory the main thread fills. */
export const ASC_FLAGS = [
  '-O3',
  '--noAssert',
  '--runtime',
  'stub',
  '--importMemory',
  '--sharedMemory',
  '--initialMemory',
  '1',
  '--maximumMemory',
  '32768',
  '--enable',
  'threads',
  '--enable',
  'simd',
] as const;

/** The memory's maximum in 64 KiB pages (2 GiB), as declared by --maximumMemory. */
export const WASM_MAXIMUM_PAGES = 32768;

export function ggmlQuantsSourceHash(sourceText: string, ascVersion: string): string {
  return assemblyScriptSourceHash(sourceText, ASC_FLAGS, ascVersion);
}
