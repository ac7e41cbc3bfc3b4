/**
 * What the generated denseF64Wasm.ts is a build of: the AssemblyScript source, the asc flags and the asc
 * version, hashed together. build.ts writes the hash into the generated file; a unit test
 * (test/unit/linalgWasm.test.ts) recomputes it, so a source edited without a rebuild fails the tests.
 */
import { assemblyScriptSourceHash } from '../../wasmBuild';

/** asc flags: the module owns (exports) its memory, which the JS side grows as matrices need. */
export const DENSE_F64_ASC_FLAGS = ['-O3', '--noAssert', '--runtime', 'stub', '--initialMemory', '1', '--enable', 'simd'] as const;

export function denseF64SourceHash(sourceText: string, ascVersion: string): string {
  return assemblyScriptSourceHash(sourceText, DENSE_F64_ASC_FLAGS, ascVersion);
}
