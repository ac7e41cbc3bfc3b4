/**
 * Calibrated-method benchmarks (run by `npm run bench`, never as timed tests), CPU only.
 *
 * Speed (always): GPTQ on the CPU and on WebGPU side by side in one run (benchGptqSpeed below): the
 * device peaks (our WebAssembly matmul on the CPU, the GPTQ matmul kernel on the GPU) on the shapes GPTQ
 * uses, Hessian accumulation and lazy-batch-update throughput in GFLOP/s against them, GPTQ time per
 * layer and per model for tiny-llama's shapes and for the ~1 GB generated LLaMA's (bench/generateLlama.ts
 * llamaShapeForSize: hidden 2048, FFN 5632), and the calibration's peak memory against one layer's
 * weights + activations + Hessian (tiny-llama from ../shared, when present). Then AWQ's scale search.
 * Inputs are synthetic (seeded) except the memory part. Wall and CPU time are both printed (the machine
 * may be shared). QUANTLENS_BENCH_GPTQ_LAYERS (default 1) layers of the 1 GB model are timed, the rest
 * extrapolated (said so); of each of its linears the first QUANTLENS_BENCH_GPTQ_BLOCKS (default 4) blocks of
 * 128 columns are timed on a synthetic Hinv and the rest extrapolated by work; its Cholesky of the 5632-wide
 * Hessian is extrapolated from the 2048-wide one (n^3) unless QUANTLENS_BENCH_GPTQ_CHOLESKY=measure.
 * --gptq-gpu=off (QUANTLENS_BENCH_GPTQ_GPU=off) runs the CPU side only.
 *
 * Quality (`npm run bench -- methods --quality`): the method table of src/core/methods/README.md on
 * ../shared/models/tiny-llama: perplexity on ../shared/data/eval.txt (reference protocol: windows of
 * 256 tokens from token 0, no BOS) of FP, RTN / GPTQ / GPTQ act-order / AWQ at W4 and W3 g128, and
 * plain W8A8 / SmoothQuant / LLM.int8(), every method calibrated on the first windows of
 * ../shared/data/calib.txt. Options (argv or env): --calib-windows=N (QUANTLENS_BENCH_CALIB_WINDOWS,
 * default 128 = 32768 tokens), --eval-windows=N (QUANTLENS_BENCH_EVAL_WINDOWS, default 64, capped by
 * what eval.txt holds), --only=<comma list of row labels>. It takes tens of minutes on 2 cores.
 */
import { existsSync, readFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  HessianAccumulator,
  applyLazyBatchUpdate,
  columnBlockOf,
  finishGptq,
  prepareGptq,
  quantizeColumnBlock,
  type GptqLayerResult,
  type GptqLayerState,
} from '../src/core/methods/gptq';
import { acquireGpu, type GpuContext } from '../src/core/gpu/device';
import { GpuHessianAccumulator, defaultGptqMatmulVariant, gptqColumnsOnGpu, timeStridedMatmul, type GptqMatmulVariant, type StridedMatmul } from '../src/core/gpu/gptq';
import { createStorageBuffer } from '../src/core/gpu/kernels';
import { isSoftwareAdapter } from '../src/core/jobs/computeDevice';
import { matmul, matmulKernelKind } from '../src/core/model/wasmMatmul';
import { tryUpperCholeskyOfInverse, tryUpperCholeskyOfInverseScalar } from '../src/core/methods/linalg';
import { denseF64Available } from '../src/core/methods/wasm/denseF64';
import { CancelledError } from '../src/core/errors';
import { llamaShapeForSize } from './generateLlama';
import { awqSearchScales } from '../src/core/methods/awq';
import { evaluationOptions, quantizeWithMethod, type MethodName, type MethodSettings } from '../src/core/methods/quantizeWithMethod';
import { loadModel } from '../src/core/model/loadModel';
import { makeWindows, perplexity } from '../src/core/model/perplexity';

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

export async function benchMethods(): Promise<void> {
  if (process.argv.includes('--quality')) {
    await benchMethodQuality();
    return;
  }
  console.log(`methods bench on ${machineTag()}`);
  await benchGptqSpeed();
  const next = seeded(1);
  const acc = new HessianAccumulator(384);
  acc.addRows(Float32Array.from({ length: 2048 * 384 }, () => next()), 2048);
  const hessian384 = acc.hessian();
  const meanAbs = Float64Array.from({ length: 384 }, () => Math.abs(next()) + 0.1);
  const gram = hessian384.map((v) => v / 2);
  const linears = [384, 128, 128].map((rows, i) => ({ name: `qkv${i}`, weight: Float32Array.from({ length: rows * 384 }, () => next() * 0.05), rows }));
  const awq = timed(() => awqSearchScales(linears, 384, meanAbs, gram, { bits: 4, groupSize: 128 }));
  console.log(`AWQ scale search q/k/v (640x384, 20 ratios): ${awq.wall.toFixed(2)} s wall, ${awq.cpu.toFixed(2)} s CPU; chosen ratio ${awq.value.ratio}`);
}

function option(name: string, env: string): string | undefined {
  const prefix = `--${name}=`;
  return process.argv.find((a) => a.startsWith(prefix))?.slice(prefix.length) ?? process.env[env];
}

function positiveOption(name: string, env: string, fallback: number): number {
  const text = option(name, env);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer, got ${text}`);
  return n;
}

/** One row of the quality table: a label, the method, its settings. */
interface QualityRow {
  label: string;
  method: MethodName;
  settings: MethodSettings;
}

/** In order of importance: on a busy machine the first rows are the ones that must come out. */
const QUALITY_ROWS: QualityRow[] = [
  { label: 'W4g128 rtn', method: 'rtn', settings: { bits: 4, groupSize: 128 } },
  { label: 'W4g128 gptq', method: 'gptq', settings: { bits: 4, groupSize: 128 } },
  { label: 'W3g128 rtn', method: 'rtn', settings: { bits: 3, groupSize: 128 } },
  { label: 'W3g128 gptq', method: 'gptq', settings: { bits: 3, groupSize: 128 } },
  { label: 'W4g128 awq', method: 'awq', settings: { bits: 4, groupSize: 128 } },
  { label: 'W8A8 plain', method: 'rtn-a8', settings: { bits: 8, groupSize: -1 } },
  { label: 'W8A8 smoothquant a0.5', method: 'smoothquant', settings: { bits: 8, groupSize: -1, alpha: 0.5 } },
  { label: 'W8 llm-int8 t6', method: 'llm-int8', settings: { bits: 8, groupSize: -1, threshold: 6 } },
  { label: 'W4g128 gptq act-order', method: 'gptq', settings: { bits: 4, groupSize: 128, actOrder: true } },
  { label: 'W3g128 gptq act-order', method: 'gptq', settings: { bits: 3, groupSize: 128, actOrder: true } },
  { label: 'W3g128 awq', method: 'awq', settings: { bits: 3, groupSize: 128 } },
];

async function benchMethodQuality(): Promise<void> {
  const shared = join('..', 'shared');
  const modelDir = join(shared, 'models', 'tiny-llama');
  const calibFile = join(shared, 'data', 'calib.txt');
  const evalFile = join(shared, 'data', 'eval.txt');
  for (const p of [modelDir, calibFile, evalFile]) {
    if (!existsSync(p)) {
      console.log(`method quality: ${p} is not present (run from the repo root with ../shared beside it); skipped`);
      return;
    }
  }
  const ctx = 256;
  const calibWindows = positiveOption('calib-windows', 'QUANTLENS_BENCH_CALIB_WINDOWS', 128);
  const wantEval = positiveOption('eval-windows', 'QUANTLENS_BENCH_EVAL_WINDOWS', 64);
  const only = option('only', 'QUANTLENS_BENCH_ONLY')?.split(',').map((s) => s.trim());
  const loaded = await loadModel(modelDir);
  try {
    // Tokenizer reads small text files; the model's weights stay lazy (one layer at a time).
    const calibIds = loaded.tokenizer.encode(readFileSync(calibFile, 'utf8'));
    const evalIds = loaded.tokenizer.encode(readFileSync(evalFile, 'utf8'));
    const evalWindows = Math.min(wantEval, Math.floor(evalIds.length / ctx));
    const calibration = makeWindows(calibIds, ctx, calibWindows);
    const evaluation = makeWindows(evalIds, ctx, evalWindows);
    console.log(`method quality on ${machineTag()}`);
    console.log(`tiny-llama; calibration ${calibWindows} x ${ctx} = ${calibWindows * ctx} tokens of calib.txt (${calibIds.length} there); evaluation ${evalWindows} x ${ctx} tokens of eval.txt (${evalIds.length} there)`);
    const results: { label: string; ppl: number; calibSeconds: number }[] = [];
    const fp = await perplexity(loaded.model, evaluation);
    console.log(`FP: ppl ${fp.perplexity.toFixed(3)} (${fp.seconds.toFixed(0)} s)`);
    results.push({ label: 'FP', ppl: fp.perplexity, calibSeconds: 0 });
    for (const row of QUALITY_ROWS) {
      if (only !== undefined && !only.includes(row.label)) continue;
      const run = await quantizeWithMethod(loaded.model, calibration, row.method, row.settings);
      for (const w of run.warnings) console.log(`  warning: ${w}`);
      const p = await perplexity(loaded.model, evaluation, evaluationOptions(run));
      console.log(`${row.label}: ppl ${p.perplexity.toFixed(3)} (calibration ${run.seconds.toFixed(0)} s, evaluation ${p.seconds.toFixed(0)} s)`);
      results.push({ label: row.label, ppl: p.perplexity, calibSeconds: run.seconds });
    }
    console.log('\n| setting | ppl | vs FP | calibration s |\n| --- | --- | --- | --- |');
    for (const r of results) console.log(`| ${r.label} | ${r.ppl.toFixed(3)} | ${r.label === 'FP' ? '' : `${(((r.ppl - fp.perplexity) / fp.perplexity) * 100).toFixed(2)}%`} | ${r.calibSeconds.toFixed(0)} |`);
  } finally {
    await loaded.close();
  }
}

// ---------------------------------------------------------------------------------------------------
// GPTQ speed: CPU vs WebGPU (issue #6, "Performance")

interface LinearShape {
  name: string;
  rows: number;
  cols: number;
}

/** The seven linears of one LLaMA layer; q/k/v, o and gate/up read Hessians of width hidden / q width / hidden. */
function layerLinears(hidden: number, ffn: number, kvWidth: number): LinearShape[] {
  return [
    { name: 'q_proj', rows: hidden, cols: hidden },
    { name: 'k_proj', rows: kvWidth, cols: hidden },
    { name: 'v_proj', rows: kvWidth, cols: hidden },
    { name: 'o_proj', rows: hidden, cols: hidden },
    { name: 'gate_proj', rows: ffn, cols: hidden },
    { name: 'up_proj', rows: ffn, cols: hidden },
    { name: 'down_proj', rows: hidden, cols: ffn },
  ];
}

async function timedAsync<T>(fn: () => Promise<T>): Promise<{ value: T; wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wall = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  return { value, wall, cpu: (c.user + c.system) / 1e6 };
}

const gflops = (flops: number, seconds: number): string => `${(flops / 1e9 / seconds).toFixed(2)} GFLOP/s`;

/** A random upper-triangular Hinv-like factor (diagonal ~1, small off-diagonal), for timing only. */
function syntheticUpperFactor(cols: number, next: () => number): Float64Array {
  const u = new Float64Array(cols * cols);
  const off = 0.05 / Math.sqrt(cols);
  for (let i = 0; i < cols; i++) {
    u[i * cols + i] = 0.5 + 0.25 * (next() + 1);
    for (let j = i + 1; j < cols; j++) u[i * cols + j] = next() * off;
  }
  return u;
}

/**
 * A prepared GPTQ state (int target) with a given factor instead of the Cholesky of a Hessian, for timing the
 * column phase of shapes whose float64 Cholesky takes minutes here. Built from a prepared state of one group's
 * width (so any field prepareGptq adds comes along) with the column-sized arrays replaced.
 */
function stateWithFactor(weight: Float32Array, rows: number, cols: number, hinv: Float64Array, groupSize: number): GptqLayerState {
  const target = { kind: 'int' as const, bits: 4, groupSize, sym: false };
  const h = new Float64Array(groupSize * groupSize);
  for (let i = 0; i < groupSize; i++) h[i * groupSize + i] = 1;
  const small = prepareGptq(new Float32Array(rows * groupSize), rows, groupSize, h, { target });
  const wp = new Float64Array(rows * cols);
  for (let i = 0; i < wp.length; i++) wp[i] = weight[i]!;
  const groups = Math.ceil(cols / groupSize);
  return {
    ...small,
    cols,
    wp,
    hinv,
    perm: Int32Array.from({ length: cols }, (_, i) => i),
    dequantP: new Float64Array(rows * cols),
    codesP: new Uint8Array(rows * cols),
    scales: new Float32Array(groups * rows),
    zeros: new Int32Array(groups * rows),
  };
}

/** Process CPU time in seconds (all threads: on lavapipe the "GPU" threads are this process's too). */
function cpuSeconds(): number {
  const c = process.cpuUsage();
  return (c.user + c.system) / 1e6;
}

/** The CPU driver's steps over the first `maxBlocks` blocks, CPU time of the column blocks and of the lazy batch updates. */
function cpuColumns(state: GptqLayerState, maxBlocks: number): { result: GptqLayerResult | null; columnBlocks: number; update: number } {
  let columnBlocks = 0;
  let update = 0;
  let blocks = 0;
  for (let i1 = 0; i1 < state.cols && blocks < maxBlocks; i1 += state.blockSize, blocks++) {
    const i2 = Math.min(i1 + state.blockSize, state.cols);
    const t0 = cpuSeconds();
    const err1 = quantizeColumnBlock(state, i1, i2, columnBlockOf(state, i1, i2));
    const t1 = cpuSeconds();
    applyLazyBatchUpdate(state, i1, i2, err1);
    columnBlocks += t1 - t0;
    update += cpuSeconds() - t1;
  }
  return { result: blocks * state.blockSize >= state.cols ? finishGptq(state) : null, columnBlocks, update };
}

/** Work of blocks [0, maxBlocks): in-block column updates (rows * count^2) and lazy batch updates, in flops. */
function blockWork(rows: number, cols: number, blockSize: number, maxBlocks: number): { total: number; lazy: number } {
  let total = 0;
  let lazy = 0;
  let blocks = 0;
  for (let i1 = 0; i1 < cols && blocks < maxBlocks; i1 += blockSize, blocks++) {
    const i2 = Math.min(cols, i1 + blockSize);
    const l = 2 * rows * (i2 - i1) * (cols - i2);
    lazy += l;
    total += l + rows * (i2 - i1) ** 2;
  }
  return { total, lazy };
}

function codesDiffer(a: Uint8Array, b: Uint8Array): string {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return `${((n / a.length) * 100).toFixed(3)} % codes differ`;
}

interface PeakFigures {
  cpu: number;
  gpu: number;
}

/** GFLOP/s of our WebAssembly matmul and of the GPTQ kernel on GPTQ's shapes; the best of each is the peak. */
async function devicePeaks(gpu: GpuContext | null, variant: GptqMatmulVariant): Promise<PeakFigures> {
  const next = seeded(5);
  // [label, M, K, N]: out (M x N) = A (M x K) . B^T (N x K)
  const shapes: [string, number, number, number][] = [
    ['Hessian chunk 1024 cols x 256 tokens', 1024, 256, 1024],
    ['Hessian chunk 2048 cols x 256 tokens', 2048, 256, 2048],
    ['lazy update 2048 rows x 128 x 1920 cols', 2048, 128, 1920],
    ['lazy update 5632 rows x 128 x 1920 cols', 5632, 128, 1920],
    ['square 2048', 2048, 2048, 2048],
  ];
  let cpuPeak = 0;
  let gpuPeak = 0;
  console.log(`CPU matmul kernel: ${matmulKernelKind()} (WebAssembly SIMD unless 'js'), one thread`);
  for (const [label, M, K, N] of shapes) {
    const a = Float32Array.from({ length: M * K }, () => next());
    const b = Float32Array.from({ length: N * K }, () => next());
    const out = new Float32Array(M * N);
    const flops = 2 * M * N * K;
    const reps = Math.max(1, Math.round(4e9 / flops));
    const c = timed(() => {
      for (let i = 0; i < reps; i++) matmul(a, b, out, M, K, N);
    });
    const cpuRate = (flops * reps) / 1e9 / c.cpu;
    cpuPeak = Math.max(cpuPeak, cpuRate);
    let gpuText = 'no GPU';
    if (gpu !== null) {
      const ga = createStorageBuffer(gpu, 'peak a', a.byteLength);
      const gb = createStorageBuffer(gpu, 'peak b', b.byteLength);
      const go = createStorageBuffer(gpu, 'peak out', out.byteLength);
      try {
        gpu.device.queue.writeBuffer(ga, 0, a);
        gpu.device.queue.writeBuffer(gb, 0, b);
        // a(m, k) = A[m*K + k], b(k, n) = B[n*K + k]
        const p: StridedMatmul = { M, N, K, op: 'set', aOff: 0, aRs: K, aCs: 1, bOff: 0, bRs: 1, bCs: K, oOff: 0, oRs: N };
        await timeStridedMatmul(gpu, variant, ga, gb, go, p, 1); // compile + warm
        const gpuReps = Math.max(1, Math.round(reps / 2));
        const seconds = await timeStridedMatmul(gpu, variant, ga, gb, go, p, gpuReps);
        const rate = (flops * gpuReps) / 1e9 / seconds;
        gpuPeak = Math.max(gpuPeak, rate);
        gpuText = `${rate.toFixed(2)} GFLOP/s (${variant} kernel, ${gpuReps} per submission)`;
      } finally {
        for (const x of [ga, gb, go]) x.destroy();
      }
    }
    console.log(`peak ${label}: CPU ${cpuRate.toFixed(2)} GFLOP/s (CPU time) | GPU ${gpuText}`);
  }
  console.log(`device peaks (best of the shapes above): CPU ${cpuPeak.toFixed(2)} GFLOP/s, GPU ${gpu === null ? 'n/a' : `${gpuPeak.toFixed(2)} GFLOP/s`}`);
  return { cpu: cpuPeak, gpu: gpuPeak };
}

async function hessianThroughput(gpu: GpuContext | null, variant: GptqMatmulVariant, peaks: PeakFigures): Promise<void> {
  const tokens = 2048;
  const next = seeded(1);
  for (const cols of [384, 1024, 2048, 5632]) {
    const x = Float32Array.from({ length: tokens * cols }, () => next());
    // Upper triangle: cols*(cols+1)/2 dot products of `tokens` multiply-adds (2 flops each).
    const flops = cols * (cols + 1) * tokens;
    const cpuAcc = new HessianAccumulator(cols);
    const c = timed(() => cpuAcc.addRows(x, tokens));
    const hCpu = cpuAcc.hessian();
    let gpuText = 'no GPU';
    if (gpu !== null) {
      const acc = new GpuHessianAccumulator(gpu, cols, { matmul: variant });
      try {
        const g = await timedAsync(async () => {
          await acc.addRows(x, tokens);
          return acc.hessian();
        });
        let worst = 0;
        let max = 0;
        for (let i = 0; i < hCpu.length; i++) {
          worst = Math.max(worst, Math.abs(g.value[i]! - hCpu[i]!));
          max = Math.max(max, Math.abs(hCpu[i]!));
        }
        gpuText = `${g.wall.toFixed(2)} s wall (incl. upload + readback), ${gflops(flops, g.wall)} = ${((flops / 1e9 / g.wall / peaks.gpu) * 100).toFixed(0)} % of the GPU peak (${g.cpu.toFixed(2)} CPU s of this process); max |H_gpu - H_cpu| / max |H| = ${(worst / max).toExponential(1)}`;
      } finally {
        acc.destroy();
      }
    }
    console.log(
      `Hessian ${cols}x${cols} over ${tokens} tokens: CPU ${c.wall.toFixed(2)} s wall, ${c.cpu.toFixed(2)} s CPU, ${gflops(flops, c.cpu)} (CPU time) = ${((flops / 1e9 / c.cpu / peaks.cpu) * 100).toFixed(0)} % of the CPU peak | GPU ${gpuText}`,
    );
  }
}

interface LayerTimes {
  cpu: number;
  gpu: number;
}

/**
 * One layer's linears, CPU driver vs GPU driver. `hessianFor(cols)` gives a real Hessian (prepare = the float64
 * Cholesky, timed on both), or null: then the column phase runs on a synthetic factor and `choleskySeconds(cols)`
 * is added. With `maxBlocks` below a linear's block count only the first blocks are timed (the GPU driver is
 * stopped there through its cancel check) and the column phase is extrapolated by the work of all blocks over
 * the work of the timed ones (said so). Times are process CPU seconds (wall under load is printed too).
 */
export async function gptqLayer(
  label: string,
  linears: LinearShape[],
  gpu: GpuContext | null,
  variant: GptqMatmulVariant,
  peaks: PeakFigures,
  hessianFor: (cols: number) => Float64Array | null,
  choleskySeconds: (cols: number) => number,
  maxBlocks: number,
): Promise<LayerTimes> {
  const next = seeded(9);
  const totals: LayerTimes = { cpu: 0, gpu: 0 };
  const target = { kind: 'int' as const, bits: 4, groupSize: 128, sym: false };
  const bs = 128;
  for (const lin of linears) {
    const { rows, cols } = lin;
    const weight = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
    const h = hessianFor(cols);
    const factor = h === null ? syntheticUpperFactor(cols, next) : null;
    const makeState = (signal?: AbortSignal): { state: GptqLayerState; prepare: number } => {
      const t0 = cpuSeconds();
      const state = factor === null ? prepareGptq(weight, rows, cols, h!, { target, signal }) : { ...stateWithFactor(weight, rows, cols, factor, bs), signal };
      return { state, prepare: factor === null ? cpuSeconds() - t0 : choleskySeconds(cols) };
    };
    const allBlocks = Math.ceil(cols / bs);
    const timedBlocks = Math.min(allBlocks, maxBlocks);
    const work = blockWork(rows, cols, bs, allBlocks);
    const timedWork = blockWork(rows, cols, bs, timedBlocks);
    const scale = work.total / timedWork.total;
    const partial = timedBlocks < allBlocks ? ` [${timedBlocks} of ${allBlocks} blocks timed, column phase x${scale.toFixed(2)} EXTRAPOLATED by work]` : '';
    const prepLabel = factor === null ? 'prepare (Cholesky)' : 'Cholesky (see above)';

    const cpuPrepared = makeState();
    const c = timed(() => cpuColumns(cpuPrepared.state, timedBlocks));
    const cpuColumnsTime = c.cpu * scale;
    const cpuTotal = cpuPrepared.prepare + cpuColumnsTime;
    totals.cpu += cpuTotal;
    let gpuText = 'no GPU';
    if (gpu !== null) {
      // Stops the driver at the start of block `timedBlocks` (quantizeColumnBlock reads `aborted` once per block).
      let reads = 0;
      const controller = new AbortController();
      Object.defineProperty(controller.signal, 'aborted', { get: () => ++reads > timedBlocks });
      const gpuPrepared = makeState(timedBlocks < allBlocks ? controller.signal : undefined);
      const g = await timedAsync(async () => {
        try {
          return await gptqColumnsOnGpu(gpu, gpuPrepared.state, { matmul: variant });
        } catch (e) {
          if (e instanceof CancelledError) return null;
          throw e;
        }
      });
      // lavapipe computes on this process's threads: its CPU time is the device's; a real GPU's is wall time.
      const software = isSoftwareAdapter(gpu.description);
      const gpuColumnsTime = (software ? g.cpu : g.wall) * scale;
      const gpuTotal = gpuPrepared.prepare + gpuColumnsTime;
      totals.gpu += gpuTotal;
      const t = g.value?.timing;
      const detail =
        t === undefined
          ? ''
          : `: upload ${t.upload.toFixed(2)}, column blocks ${t.columnBlocks.toFixed(2)}, device wait ${t.deviceWait.toFixed(2)} s wall; ${codesDiffer(c.value.result!.codes, g.value!.codes)}`;
      gpuText = `${gpuTotal.toFixed(2)} s (${prepLabel} ${gpuPrepared.prepare.toFixed(2)}, columns ${gpuColumnsTime.toFixed(2)} ${software ? "CPU s of this process incl. lavapipe's threads" : 's wall'}, ${(g.wall * scale).toFixed(2)} s wall${detail}; lazy updates at ${gflops(timedWork.lazy, software ? g.cpu : g.wall)} or better)`;
    }
    console.log(
      `${label} GPTQ W4 g128 ${lin.name} ${rows}x${cols}${partial}: CPU ${cpuTotal.toFixed(2)} s (${prepLabel} ${cpuPrepared.prepare.toFixed(2)}, column blocks ${(c.value.columnBlocks * scale).toFixed(2)}, ` +
        `lazy updates ${(c.value.update * scale).toFixed(2)} = ${gflops(timedWork.lazy, c.value.update)}, ${((timedWork.lazy / 1e9 / c.value.update / peaks.cpu) * 100).toFixed(1)} % of the CPU peak; ${(c.wall * scale).toFixed(2)} s wall) | GPU ${gpuText}`,
    );
  }
  return totals;
}

/** Peak RSS of a real GPTQ calibration of tiny-llama against one layer's weights + activations + Hessian. */
async function calibrationMemory(): Promise<void> {
  const modelDir = join('..', 'shared', 'models', 'tiny-llama');
  const calibFile = join('..', 'shared', 'data', 'calib.txt');
  if (!existsSync(modelDir) || !existsSync(calibFile)) {
    console.log(`calibration memory: ${modelDir} or ${calibFile} is not present; skipped`);
    return;
  }
  const loaded = await loadModel(modelDir);
  try {
    const windows = 16;
    const ctx = 256;
    const calibration = makeWindows(loaded.tokenizer.encode(readFileSync(calibFile, 'utf8')), ctx, windows);
    const c = loaded.model.config;
    const before = process.memoryUsage().rss;
    const peakBefore = process.resourceUsage().maxRSS * 1024;
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    const t = await timedAsync(() =>
      // What `quantize --method gptq` runs: GPTQ's codes kept for the writer, each rewritten layer dropped as it finishes.
      quantizeWithMethod(loaded.model, calibration, 'gptq', { bits: 4, groupSize: 128 }, { keepGptqResults: true, layers: 'discard', onProgress: () => (peak = Math.max(peak, process.memoryUsage().rss)) }),
    );
    clearInterval(sampler);
    const maxRss = process.resourceUsage().maxRSS * 1024;
    const tokens = windows * ctx;
    const H = c.hiddenSize;
    const I = c.intermediateSize;
    const q = c.numHeads * c.headDim;
    const kv = c.numKvHeads * c.headDim;
    const layerWeights = 4 * (H * q + 2 * H * kv + q * H + 3 * H * I);
    // The calibration's buffers: hidden states, contexts and SwiGLU activations of all windows (f32), plus per-window scratch.
    const activations = 4 * tokens * (H + q + I);
    // The widest site: HessianAccumulator (f64 sum, f32 product, f32 chunk), H (f64), and prepareGptq's f64 copies and
    // Cholesky temporaries (damped H, L, L^-1, H^-1, its L, Hinv: 6 n^2), plus the f64 weights / dequantized copies of
    // its largest linear.
    const widest = Math.max(H, q, I);
    const hessian = widest * widest * (8 + 4 + 8 + 6 * 8) + widest * 256 * 4 + 2 * 8 * H * I;
    const outputs = c.numLayers * layerWeights;
    // GPTQ's kept results: a code byte per weight plus f32 scale and i32 zero per group of 128.
    const keptCodes = (outputs / 4) * (1 + 8 / 128);
    const modelF32 = outputs + 4 * c.vocabSize * H * (c.tieWordEmbeddings ? 1 : 2);
    const MB = 1e6;
    console.log(
      `calibration memory (tiny-llama, GPTQ W4 g128, ${windows} x ${ctx} tokens, CPU, ${t.wall.toFixed(0)} s): RSS ${(before / MB).toFixed(0)} MB before, ` +
        `peak sampled ${(peak / MB).toFixed(0)} MB (+${((peak - before) / MB).toFixed(0)} MB), process maxRSS ${(maxRss / MB).toFixed(0)} MB (was ${(peakBefore / MB).toFixed(0)} MB before); ` +
        `one layer's working set: weights ${(layerWeights / MB).toFixed(1)} MB f32 + activations ${(activations / MB).toFixed(1)} MB + Hessian and Cholesky temporaries ${(hessian / MB).toFixed(1)} MB = ${((layerWeights + activations + hessian) / MB).toFixed(1)} MB; ` +
        `plus GPTQ's kept codes for the writer ~${(keptCodes / MB).toFixed(1)} MB (one byte per weight); the rewritten layers (${(outputs / MB).toFixed(1)} MB f32 in all) leave memory as each layer finishes ` +
        `(dropped here as in quantize --method gptq; AWQ / SmoothQuant / compare spill them to a temporary file); the whole model in f32 ${(modelF32 / MB).toFixed(0)} MB`,
    );
  } finally {
    await loaded.close();
  }
}

/**
 * Hinv (tryUpperCholeskyOfInverse) alone per width, in GFLOP/s of the work the path does: the WebAssembly
 * path (wasm/denseF64.ts) one Cholesky and one triangular inverse, n^3/3 each (2/3 n^3); the scalar path
 * (Cholesky, inverse from the factor, Cholesky) 4/3 n^3. The scalar path is timed at 1024 for the ratio.
 */
function factorThroughput(widths: number[]): void {
  const seededSpd = (n: number): Float64Array => {
    const h = new Float64Array(n * n);
    const r = seeded(n);
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) h[i * n + j] = h[j * n + i] = (i === j ? n : 0) + r() * 0.5;
    return h;
  };
  const kind = denseF64Available() ? 'WebAssembly f64x2 (blocked Cholesky of J H J + triangular inverse)' : 'scalar JS (WebAssembly unavailable)';
  for (const n of widths) {
    const h = seededSpd(n);
    const fast = timed(() => tryUpperCholeskyOfInverse(h, n));
    const flops = ((denseF64Available() ? 2 : 4) / 3) * n ** 3;
    let scalarText = '';
    if (n <= 1024) {
      const slow = timed(() => tryUpperCholeskyOfInverseScalar(h, n));
      scalarText = `; scalar JS path ${slow.cpu.toFixed(2)} CPU s, ${gflops((4 / 3) * n ** 3, slow.cpu)} (x${(slow.cpu / fast.cpu).toFixed(1)} the time)`;
    }
    console.log(`Hinv ${n}x${n}, ${kind}: ${fast.cpu.toFixed(2)} CPU s (${fast.wall.toFixed(2)} s wall), ${gflops(flops, fast.cpu)} of the work it does${scalarText}`);
  }
}

export async function benchGptqSpeed(): Promise<void> {
  // Memory first, while the process's peak RSS is still its own.
  await calibrationMemory();
  let gpu: GpuContext | null = null;
  if (option('gptq-gpu', 'QUANTLENS_BENCH_GPTQ_GPU') === 'off') {
    console.log('GPTQ on WebGPU: not run (--gptq-gpu=off); CPU figures only');
  } else {
    try {
      gpu = await acquireGpu();
    } catch (e) {
      console.log(`GPTQ on WebGPU: no device (${e instanceof Error ? e.message : String(e)}); CPU figures only`);
    }
  }
  try {
    const variant: GptqMatmulVariant = gpu === null ? 'tiled' : defaultGptqMatmulVariant(gpu);
    console.log(
      `GPTQ speed: CPU = this machine (${machineTag()}); GPU = ${gpu === null ? 'none' : `${gpu.description} (${variant} matmul kernel)`}` +
        (gpu !== null && isSoftwareAdapter(gpu.description) ? ' -- a SOFTWARE renderer on the same CPU cores: the GPU figures are lavapipe on this CPU, not a GPU' : ''),
    );
    const peaks = await devicePeaks(gpu, variant);
    await hessianThroughput(gpu, variant, peaks);

    // tiny-llama shapes, real Hessians of random inputs (prepare = the float64 Cholesky, timed).
    const next = seeded(3);
    const hessians = new Map<number, Float64Array>();
    for (const cols of [384, 1024]) {
      const acc = new HessianAccumulator(cols);
      acc.addRows(Float32Array.from({ length: 2048 * cols }, () => next()), 2048);
      hessians.set(cols, acc.hessian());
    }
    const tiny = await gptqLayer('tiny-llama', layerLinears(384, 1024, 128), gpu, variant, peaks, (cols) => hessians.get(cols) ?? null, () => 0, Infinity);
    const tinyLayers = 8;
    console.log(
      `GPTQ per tiny-llama layer (7 linears, Hessians given): CPU ${tiny.cpu.toFixed(2)} s, GPU ${gpu === null ? 'n/a' : `${tiny.gpu.toFixed(2)} s`}; ` +
        `per model (x${tinyLayers} layers, measured one layer): CPU ${(tiny.cpu * tinyLayers).toFixed(1)} s, GPU ${gpu === null ? 'n/a' : `${(tiny.gpu * tinyLayers).toFixed(1)} s`} (plus the calibration forward pass)`,
    );

    // The ~1 GB generated LLaMA (bf16): hidden 2048, FFN 5632, 16 heads / 4 KV heads.
    const shape = llamaShapeForSize(2 ** 30);
    const kvWidth = (shape.hidden / shape.heads) * shape.kvHeads;
    const timedLayers = Math.min(shape.layers, positiveOption('gptq-layers', 'QUANTLENS_BENCH_GPTQ_LAYERS', 1));
    const measureAll = process.env.QUANTLENS_BENCH_GPTQ_CHOLESKY === 'measure';
    const maxBlocks = positiveOption('gptq-blocks', 'QUANTLENS_BENCH_GPTQ_BLOCKS', 4);
    const cholesky = new Map<number, number>();
    const measureCholesky = (cols: number): number => {
      const h = new Float64Array(cols * cols);
      const r = seeded(cols);
      for (let i = 0; i < cols; i++) for (let j = 0; j <= i; j++) h[i * cols + j] = h[j * cols + i] = (i === j ? cols : 0) + r() * 0.5;
      const t0 = cpuSeconds();
      prepareGptq(new Float32Array(cols), 1, cols, h, { target: { kind: 'int', bits: 4, groupSize: 128, sym: false } });
      return cpuSeconds() - t0;
    };
    factorThroughput([1024, shape.hidden, ...(measureAll ? [shape.ffn] : [])]);
    cholesky.set(shape.hidden, measureCholesky(shape.hidden));
    console.log(`1 GB model: prepareGptq (damping + float64 Cholesky, inverse, Cholesky) of a ${shape.hidden}-wide Hessian: ${cholesky.get(shape.hidden)!.toFixed(1)} CPU s (measured; the same on both paths)`);
    if (measureAll) {
      cholesky.set(shape.ffn, measureCholesky(shape.ffn));
      console.log(`1 GB model: prepareGptq of a ${shape.ffn}-wide Hessian: ${cholesky.get(shape.ffn)!.toFixed(1)} CPU s (measured)`);
    } else {
      cholesky.set(shape.ffn, cholesky.get(shape.hidden)! * (shape.ffn / shape.hidden) ** 3);
      console.log(`1 GB model: prepareGptq of a ${shape.ffn}-wide Hessian: ~${cholesky.get(shape.ffn)!.toFixed(0)} CPU s (EXTRAPOLATED as n^3 from the ${shape.hidden}-wide one; QUANTLENS_BENCH_GPTQ_CHOLESKY=measure measures it)`);
    }
    let big: LayerTimes = { cpu: 0, gpu: 0 };
    for (let l = 0; l < timedLayers; l++) {
      const t = await gptqLayer(`1GB layer ${l}`, layerLinears(shape.hidden, shape.ffn, kvWidth), gpu, variant, peaks, () => null, (cols) => cholesky.get(cols) ?? 0, maxBlocks);
      big = { cpu: big.cpu + t.cpu, gpu: big.gpu + t.gpu };
    }
    const perLayer = { cpu: big.cpu / timedLayers, gpu: big.gpu / timedLayers };
    console.log(
      `GPTQ per 1 GB-model layer (hidden ${shape.hidden}, FFN ${shape.ffn}, ${shape.layers} layers, ${timedLayers} timed; column phase on a synthetic factor, the first ${maxBlocks} blocks of each linear timed and the rest extrapolated by work; Cholesky as above): ` +
        `CPU ${perLayer.cpu.toFixed(1)} s, GPU ${gpu === null ? 'n/a' : `${perLayer.gpu.toFixed(1)} s`}; per model (x${shape.layers}, ${timedLayers < shape.layers ? 'EXTRAPOLATED from the timed layers' : 'all layers timed'}): ` +
        `CPU ${((perLayer.cpu * shape.layers) / 60).toFixed(1)} min, GPU ${gpu === null ? 'n/a' : `${((perLayer.gpu * shape.layers) / 60).toFixed(1)} min`} (plus the calibration forward pass)`,
    );
  } finally {
    gpu?.destroy();
  }
}
