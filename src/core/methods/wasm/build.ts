/**
 * Compiles denseF64.as (AssemblyScript) to WebAssembly and writes denseF64Wasm.ts (src/core/wasmBuild.ts).
 * Run after editing the source:
 *   npx tsx src/core/methods/wasm/build.ts
 */
import { join } from 'node:path';
import { buildAssemblyScript } from '../../wasmBuild';
import { DENSE_F64_ASC_FLAGS } from './buildInfo';

buildAssemblyScript({
  sourcePath: join(__dirname, 'denseF64.as'),
  generatedPath: join(__dirname, 'denseF64Wasm.ts'),
  flags: DENSE_F64_ASC_FLAGS,
  constPrefix: 'DENSE_F64',
  checkedBy: 'test/unit/linalgWasm.test.ts',
});
