/**
 * Calibrated-method benchmarks (run by `npm run bench`, never as timed tests), CPU only: GPTQ's
 * Hessian accumulation and its column updates (GFLOP/s counted from the algorithm's multiply-adds),
 * GPTQ time per layer for tiny-llama's linear shapes, and AWQ's scale search on the same shapes.
 * Inputs are synthetic (seeded) so that the figures do not depend on ../shared. There is no WebGPU
 * GPTQ yet: every figure here is the CPU path. Wall and CPU time are both printed (the machine may be shared).
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { HessianAccumulator, gptqQuantizeLayer } from '../src/core/methods/gptq';
import { awqSearchScales } from '../src/core/methods/awq';

function machineTag(): string {
  const cpu = cpus();
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'} x${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${loadavg()[0]?.toFixed(1)}, node ${process.version}`;
}

function seeded(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function timed<T>(fn: () => T): { value: T; wall: number; cpu: number } {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = fn();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { value, wall, cpu: (c.user + c.system) / 1e6 };
}

/** tiny-llama's linear layers: [name, rows (out), cols (in)]; q/k/v and gate/up share their Hessian. */
const TINY_LLAMA_LAYERS: [string, number, number][] = [
  ['q_proj', 384, 384],
  ['k_proj', 128, 384],
  ['v_proj', 128, 384],
  ['o_proj', 384, 384],
  ['gate_proj', 1024, 384],
  ['up_proj', 1024, 384],
  ['down_proj', 384, 1024],
];

export async function benchMethods(): Promise<void> {
  console.log(`methods bench on ${machineTag()}`);
  const tokens = 2048;
  const next = seeded(1);
  const hessians = new Map<number, Float64Array>();
  for (const cols of [384, 1024]) {
    const x = Float32Array.from({ length: tokens * cols }, () => next());
    const acc = new HessianAccumulator(cols);
    const t = timed(() => acc.addRows(x, tokens));
    // Upper triangle: cols*(cols+1)/2 dot products of `tokens` multiply-adds (2 flops each).
    const gflop = (cols * (cols + 1) * tokens) / 1e9;
    console.log(`Hessian ${cols}x${cols} over ${tokens} tokens: ${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU, ${(gflop / t.cpu).toFixed(2)} GFLOP/s (CPU time)`);
    hessians.set(cols, acc.hessian());
  }
  let layerTotal = 0;
  for (const [name, rows, cols] of TINY_LLAMA_LAYERS) {
    const w = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
    const h = hessians.get(cols)!;
    const t = timed(() => gptqQuantizeLayer(w, rows, cols, h, { target: { kind: 'int', bits: 4, groupSize: 128, sym: false } }));
    // Column updates: rows * cols^2 / 2 multiply-adds in total (within blocks plus the lazy batch updates).
    const updateGflop = (rows * cols * cols) / 1e9;
    layerTotal += t.cpu;
    console.log(`GPTQ W4 g128 ${name} ${rows}x${cols}: ${t.wall.toFixed(2)} s wall, ${t.cpu.toFixed(2)} s CPU (Cholesky + inverse included), column updates ~${(updateGflop / t.cpu).toFixed(2)} GFLOP/s`);
  }
  console.log(`GPTQ per tiny-llama layer (7 linears, Hessians given): ${layerTotal.toFixed(2)} s CPU; x8 layers = ${(layerTotal * 8).toFixed(1)} s CPU plus the calibration forward pass`);
  const meanAbs = Float64Array.from({ length: 384 }, () => Math.abs(next()) + 0.1);
  const gram = hessians.get(384)!.map((v) => v / 2);
  const linears = [384, 128, 128].map((rows, i) => ({ name: `qkv${i}`, weight: Float32Array.from({ length: rows * 384 }, () => next() * 0.05), rows }));
  const awq = timed(() => awqSearchScales(linears, 384, meanAbs, gram, { bits: 4, groupSize: 128 }));
  console.log(`AWQ scale search q/k/v (640x384, 20 ratios): ${awq.wall.toFixed(2)} s wall, ${awq.cpu.toFixed(2)} s CPU; chosen ratio ${awq.value.ratio}`);
}
