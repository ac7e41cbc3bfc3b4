/**
 * Compiles ggmlQuants.as (AssemblyScript) to WebAssembly and writes ggmlQuantsWasm.ts (src/core/wasmBuild.ts).
 * Run after editing the source:
 *   npx tsx src/core/quant/ggml/wasm/build.ts
 */
import { join } from 'node:path';
import { buildAssemblyScript } from '../../../wasmBuild';
import { ASC_FLAGS } from './buildInfo';

buildAssemblyScript({
  sourcePath: join(__dirname, 'ggmlQuants.as'),
  generatedPath: join(__dirname, 'ggmlQuantsWasm.ts'),
  flags: ASC_FLAGS,
  constPrefix: 'GGML_QUANTS',
  checkedBy: 'test/unit/ggmlWasm.test.ts',
});
