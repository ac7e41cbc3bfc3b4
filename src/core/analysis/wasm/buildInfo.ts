/**
 * What the generated weightStatsWasm.ts is a build of: the AssemblyScript source, the asc flags and the asc
 * version, hashed together. build.ts writes the hash into the generated file; test/unit/weightStatsWasm.test.ts
 * recomputes it, so a source edited without a rebuild fails the tests.
 */
import { assemblyScriptSourceHash } from '../../wasmBuild';

/**
 * asc flags: the memory is imported and shared (the JS side makes it, grows it to the job's windows and hands it
 * to a helper thread that runs the same kernels on other rows); 65536 pages = the whole 32-bit space as maximum.
 */
export const WEIGHT_STATS_ASC_FLAGS = ['-O3', '--noAssert', '--runtime', 'stub', '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536', '--enable', 'simd', '--enable', 'threads'] as const;

export function weightStatsSourceHash(sourceText: string, ascVersion: string): string {
  return assemblyScriptSourceHash(sourceText, WEIGHT_STATS_ASC_FLAGS, ascVersion);
}
