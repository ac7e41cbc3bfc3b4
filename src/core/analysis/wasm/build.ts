/**
 * Compiles weightStats.as (AssemblyScript) to WebAssembly and writes weightStatsWasm.ts (src/core/wasmBuild.ts).
 * Run after editing the source:
 *   npx tsx src/core/analysis/wasm/build.ts
 */
import { join } from 'node:path';
import { buildAssemblyScript } from '../../wasmBuild';
import { WEIGHT_STATS_ASC_FLAGS } from './buildInfo';

buildAssemblyScript({
  sourcePath: join(__dirname, 'weightStats.as'),
  generatedPath: join(__dirname, 'weightStatsWasm.ts'),
  flags: WEIGHT_STATS_ASC_FLAGS,
  constPrefix: 'WEIGHT_STATS',
  checkedBy: 'test/unit/weightStatsWasm.test.ts',
});
