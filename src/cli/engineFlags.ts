/**
 * WebAssembly relaxed SIMD (f32x4.relaxed_madd, a fused multiply-add on x86 with FMA) is on by default from Node 21
 * and in VS Code's Electron, where the extension runs; Node 20 has it behind a flag. The CLI and the benchmarks turn
 * the flag on so that they run the kernels the extension runs (about 1.3x faster matmuls; src/core/model/wasmMatmul.ts
 * picks the kernel when it first compiles, so this must run before any kernel is used). V8 flags are per process, so
 * the job worker threads get it too.
 */
import { setFlagsFromString } from 'node:v8';

export function enableRelaxedSimdOnNode20(): void {
  const major = Number(process.versions.node.split('.')[0]);
  if (major < 21) setFlagsFromString('--experimental-wasm-relaxed-simd');
}
