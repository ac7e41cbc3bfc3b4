/**
 * Forward-pass benchmark (`npm run bench -- forward`): tokens per second of the perplexity eval of
 * tiny-llama (64 windows x 256 tokens of eval.txt) on our CPU path, side by side with llama.cpp on
 * the same machine and text, at the same thread count (QL_BENCH_THREADS, default 1; ours is 1 thread):
 *  - node-llama-cpp (the CPU prebuilt in node_modules) evaluating the same windows;
 *  - `llama-perplexity` (bench/llamaCpp.ts finds it), CPU seconds of the child from GNU time.
 * Same weights on both sides: tiny-llama (BF16 safetensors; ours computes in f32) against llama.cpp
 * on the F32 and BF16 GGUFs of the same tensors (written by our quantize into .cache/bench-forward/),
 * and tiny-llama-Q4_K_M.gguf on both (ours dequantizes it layer by layer to f32).
 * Work per token is not identical: ours computes the output head for the 255 positions it scores
 * (all but the last; the logits stay in the kernels' heap, LlamaModel.runNll), llama-perplexity for
 * the 128 it scores, node-llama-cpp (evaluate without generating) for none but the last; the output
 * head is about 20% of tiny-llama's multiply-adds.
 * Wall and CPU time are both printed: the machine may be shared; compare tokens per CPU-second.
 * QL_BENCH_WINDOWS runs fewer windows for trials.
 * The matmul kernel alone (QL_BENCH_FORWARD part `kernel`): GMAC per CPU-second of matmulResident on
 * tiny-llama's layer and head shapes (256 rows; x copied in and the outputs out, as in the pass),
 * best of 3, beside a register-only loop of independent f32x4 multiply-adds (the engine's ceiling).
 * Peak memory of a calibration pass (issue #5: the largest layer plus activations, not the whole
 * model): a child process (fresh peak RSS) runs `runCalibration` (activation statistics, no output
 * head) over QL_BENCH_CALIB_TOKENS tokens (default 16,384) of calib.txt, and prints its peak RSS
 * beside the model's f32 size and the pass's own estimate (LlamaModel.estimatePeakBytes); on
 * tiny-llama, and on QL_BENCH_CALIB_MODEL too when set (a larger model, e.g. the quantize bench's
 * generated one, where the weights dominate: `.cache/bench-quantize/llama-.../hf`).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { loadModel } from '../src/core/model/loadModel';
import { makeWindows, perplexity } from '../src/core/model/perplexity';
import { readTextFile, runCalibration } from '../src/core/model/calibration';
import { matmulKernelKind, matmulResident, residentWeight } from '../src/core/model/wasmMatmul';
import { buildModule, op, v } from '../src/core/model/wasm/assembler';
import { wasmApi } from '../src/core/wasmApi';
import { benchLlamaPerplexityCpu, tinyLlamaGguf, type PeerFigures } from './forwardPeers';
import { acquireGpu, type GpuContext } from '../src/core/gpu/device';
import { GpuLlama } from '../src/core/gpu/forward/gpuLlama';
import { perplexityOnGpu } from '../src/core/gpu/forward/gpuPerplexity';

const CTX = 256;

function machineTag(): string {
  const cpu = cpus();
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'} x${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${loadavg()[0]?.toFixed(1)}, node ${process.version}`;
}

function sharedDir(): string {
  return process.env.QUANTLENS_SHARED_DIR ?? resolve(process.cwd(), '..', 'shared');
}

async function benchOurs(modelPath: string, textPath: string, windows: number): Promise<PeerFigures> {
  const lm = await loadModel(modelPath);
  try {
    const ids = lm.tokenizer.encode(await readTextFile(textPath));
    const batches = makeWindows(ids, CTX, windows);
    const c0 = process.cpuUsage();
    const r = await perplexity(lm.model, batches);
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    const tokens = windows * CTX;
    console.log(
      `ours (CPU, 1 thread, wasm ${matmulKernelKind()} matmul) ${modelPath.split(/[\\/]/).slice(-1)[0]}: ppl ${r.perplexity.toFixed(4)}, ${tokens} tokens in ${r.seconds.toFixed(1)} s wall / ${cpu.toFixed(1)} s CPU = ${r.tokensPerSecond.toFixed(0)} tok/s wall, ${(tokens / cpu).toFixed(0)} tok/s per CPU-second; peak RSS so far ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
    );
    return { tokens, wallSeconds: r.seconds, cpuSeconds: cpu };
  } finally {
    await lm.close();
  }
}

/**
 * Our WebGPU path (src/core/gpu/forward): the same windows, losses computed on the device. Two
 * passes: the first includes reading the weights from the file and uploading them, the second runs
 * on the weights already resident (what a multi-setting eval or a second run on the same device sees).
 */
async function benchOursGpu(modelPath: string, textPath: string, windows: number): Promise<void> {
  const name = modelPath.split(/[\\/]/).slice(-1)[0];
  let gpu: GpuContext;
  try {
    gpu = await acquireGpu();
  } catch (e) {
    console.log(`ours (WebGPU) ${name}: not run (${e instanceof Error ? e.message : String(e)})`);
    return;
  }
  const lm = await loadModel(modelPath);
  try {
    const batches = makeWindows(lm.tokenizer.encode(await readTextFile(textPath)), CTX, windows);
    // QL_GPU_MATMUL=tiled|direct overrides the matmul kernel chosen for the adapter.
    const variant = process.env.QL_GPU_MATMUL;
    const model = new GpuLlama(gpu, lm.model, { matmul: variant === 'tiled' || variant === 'direct' ? variant : undefined });
    try {
      const tokens = windows * CTX;
      for (const pass of ['first pass (read + upload weights)', 'second pass (weights resident)']) {
        const r = await perplexityOnGpu(model, batches);
        console.log(`ours (WebGPU on ${gpu.description}, ${model.matmulVariant} matmul) ${name}, ${pass}: ppl ${r.perplexity.toFixed(4)}, ${tokens} tokens in ${r.seconds.toFixed(2)} s wall = ${r.tokensPerSecond.toFixed(0)} tok/s`);
      }
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
    await lm.close();
  }
}

async function benchNodeLlamaCpp(ggufPath: string, textPath: string, windows: number, threads: number): Promise<PeerFigures> {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath: ggufPath });
  try {
    const ids = model.tokenize(await readTextFile(textPath));
    const context = await model.createContext({ contextSize: 2 * CTX, batchSize: CTX, threads });
    try {
      const sequence = context.getSequence();
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      for (let w = 0; w < windows; w++) {
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(ids.slice(w * CTX, (w + 1) * CTX));
      }
      const wall = (performance.now() - t0) / 1000;
      const c = process.cpuUsage(c0);
      const cpu = (c.user + c.system) / 1e6;
      const tokens = windows * CTX;
      console.log(`node-llama-cpp (${threads} thread(s)) ${ggufPath.split(/[\\/]/).slice(-1)[0]}: ${tokens} tokens in ${wall.toFixed(1)} s wall / ${cpu.toFixed(1)} s CPU = ${(tokens / wall).toFixed(0)} tok/s wall, ${(tokens / cpu).toFixed(0)} tok/s per CPU-second`);
      return { tokens, wallSeconds: wall, cpuSeconds: cpu };
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

/** CPU seconds of the best of `rounds` calls of `run` (each `reps` times). */
function bestCpuSeconds(run: () => void, reps: number, rounds = 3): number {
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage();
    for (let i = 0; i < reps; i++) run();
    const c = process.cpuUsage(c0);
    best = Math.min(best, (c.user + c.system) / 1e6 / reps);
  }
  return best;
}

/** GMAC/s of 12 independent f32x4 multiply-add chains on registers (the engine's ceiling for the kernels). */
function fmaCeilingGmacs(): number | null {
  const api = wasmApi();
  if (api === undefined) return null;
  const chains = 12;
  const fused = matmulKernelKind() === 'relaxed-madd';
  const N = 0, A = 1, B = 2, ACC = 3;
  const { get, set, i32 } = op;
  const step = (c: number): number[] =>
    fused
      ? [...get(A), ...get(B), ...get(ACC + c), ...v.f32RelaxedMadd, ...set(ACC + c)]
      : [...get(A), ...get(B), ...v.f32Mul, ...get(ACC + c), ...v.f32Add, ...set(ACC + c)];
  const code = [
    ...v.f32Const(1.0000001), ...set(A), ...v.f32Const(0.9999999), ...set(B),
    ...op.block, ...op.loop,
    ...Array.from({ length: chains }, (_, c) => step(c)).flat(),
    ...get(N), ...i32(1), ...op.i32Sub, ...op.tee(N), ...op.brIf(0),
    ...op.end, ...op.end,
    // Stored so that the loop is not dead code.
    ...Array.from({ length: chains }, (_, c) => [...i32(16 * c), ...get(ACC + c), ...v.store()]).flat(),
  ];
  const bytes = buildModule([{ name: 'fma', params: 1, locals: { i32: 0, f32: 0, v128: 2 + chains }, code }], 1);
  const fma = new api.Instance(new api.Module(bytes), { env: { mem: new api.Memory({ initial: 1 }) } }).exports.fma as (n: number) => void;
  const iterations = 5e6;
  fma(1000);
  return (iterations * chains * 4) / bestCpuSeconds(() => fma(iterations), 1) / 1e9;
}

function benchMatmulKernel(): void {
  const shapes: [string, number, number, number][] = [
    ['q/o 384x384', 256, 384, 384],
    ['k/v 128x384', 256, 384, 128],
    ['gate/up 1024x384', 256, 384, 1024],
    ['down 384x1024', 256, 1024, 384],
    ['head 8192x384', 255, 384, 8192],
  ];
  const parts: string[] = [];
  for (const [name, rows, inner, outs] of shapes) {
    const x = Float32Array.from({ length: rows * inner }, (_, i) => Math.sin(i));
    const w = Float32Array.from({ length: outs * inner }, (_, i) => Math.cos(i));
    const out = new Float32Array(rows * outs);
    const resident = residentWeight(w, outs, inner);
    try {
      matmulResident(x, resident, out, rows);
      const macs = rows * inner * outs;
      const seconds = bestCpuSeconds(() => matmulResident(x, resident, out, rows), Math.max(2, Math.round(1e9 / macs)));
      parts.push(`${name} ${(macs / seconds / 1e9).toFixed(1)}`);
    } finally {
      resident.release();
    }
  }
  const ceiling = fmaCeilingGmacs();
  console.log(`matmul kernel (wasm ${matmulKernelKind()}, matmulResident, 256 rows), GMAC per CPU-second: ${parts.join(', ')}; register-only f32x4 multiply-add loop ${ceiling === null ? 'n/a' : ceiling.toFixed(1)}`);
}

const CALIB_CHILD_ENV = 'QL_BENCH_FORWARD_CALIB_CHILD';

/** In the child: one calibration pass over `modelPath`, then one line of figures (MiB). */
async function calibrationChild(modelPath: string, textPath: string, tokens: number): Promise<void> {
  const lm = await loadModel(modelPath);
  try {
    const text = await readTextFile(textPath);
    const modelF32 = lm.checkpoint.tensors.reduce((n, t) => n + 4 * t.shape.reduce((a, b) => a * b, 1), 0);
    const before = process.resourceUsage().maxRSS * 1024;
    const rssBefore = process.memoryUsage().rss;
    const r = await runCalibration(lm.model, lm.tokenizer, text, { tokens, ctx: CTX });
    const peak = process.resourceUsage().maxRSS * 1024;
    const estimate = lm.model.estimatePeakBytes(r.windows, r.windowTokens);
    const mib = (n: number): string => (n / 2 ** 20).toFixed(1);
    console.log(
      `calibration pass (activation statistics, no head) ${modelPath.split(/[\\/]/).slice(-1)[0]}: ${r.tokens} tokens (${r.windows} x ${r.windowTokens}) in ${r.seconds.toFixed(1)} s; ` +
        `peak RSS ${mib(peak)} MiB (${mib(rssBefore)} MiB after loading, peak before the pass ${mib(before)} MiB: the pass added ${mib(Math.max(0, peak - rssBefore))} MiB); ` +
        `estimate (largest layer as f32 twice + activations) ${mib(estimate)} MiB, largest layer ${mib(lm.model.largestLayerBytes())} MiB; whole model as f32 ${mib(modelF32)} MiB`,
    );
  } finally {
    await lm.close();
  }
}

/** Runs the calibration pass in a fresh process (its own peak RSS) and relays its line. */
function benchCalibrationPeak(modelPath: string, textPath: string): void {
  const tokens = Number(process.env.QL_BENCH_CALIB_TOKENS ?? 16384);
  const script = process.argv[1];
  if (script === undefined) return;
  const r = spawnSync(process.execPath, [...process.execArgv, script, 'forward'], {
    encoding: 'utf8',
    env: { ...process.env, [CALIB_CHILD_ENV]: JSON.stringify({ modelPath, textPath, tokens }) },
    maxBuffer: 16 * 2 ** 20,
  });
  const line = r.stdout.split('\n').find((l) => l.startsWith('calibration pass'));
  console.log(line ?? `calibration pass: child failed (exit ${String(r.status)}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
}

export async function benchForward(): Promise<void> {
  const child = process.env[CALIB_CHILD_ENV];
  if (child !== undefined) {
    const { modelPath, textPath, tokens } = JSON.parse(child) as { modelPath: string; textPath: string; tokens: number };
    await calibrationChild(modelPath, textPath, tokens);
    return;
  }
  console.log(`forward bench on ${machineTag()}`);
  const shared = sharedDir();
  const tiny = join(shared, 'models', 'tiny-llama');
  const q4 = join(shared, 'models', 'gguf', 'tiny-llama-Q4_K_M.gguf');
  const text = join(shared, 'data', 'eval.txt');
  if (!existsSync(text) || (!existsSync(tiny) && !existsSync(q4))) {
    console.log(`forward bench skipped: ${text}, or both ${tiny} and ${q4}, missing (set QUANTLENS_SHARED_DIR)`);
    return;
  }
  const windows = Number(process.env.QL_BENCH_WINDOWS ?? 64);
  const threads = Number(process.env.QL_BENCH_THREADS ?? 1);
  // Which parts to run (QL_BENCH_FORWARD=calib,kernel,cpu,gpu,llama; default all): the CPU path alone takes
  // minutes for 64 windows, which a GPU machine's run may skip.
  const paths = new Set((process.env.QL_BENCH_FORWARD ?? 'calib,kernel,cpu,gpu,llama').split(','));
  console.log(`tiny-llama eval: ${windows} windows x ${CTX} tokens of ${text}; llama.cpp threads ${threads} (QL_BENCH_THREADS), ours single-threaded; runs ${[...paths].join(', ')} (QL_BENCH_FORWARD)`);
  const calib = join(shared, 'data', 'calib.txt');
  if (paths.has('calib') && existsSync(calib)) {
    for (const model of [tiny, process.env.QL_BENCH_CALIB_MODEL]) if (model !== undefined && existsSync(model)) benchCalibrationPeak(model, calib);
  }
  if (paths.has('kernel')) benchMatmulKernel();
  let oursF32: PeerFigures | null = null;
  let oursQ4: PeerFigures | null = null;
  if (existsSync(tiny)) {
    if (paths.has('cpu')) oursF32 = await benchOurs(tiny, text, windows);
    if (paths.has('gpu')) await benchOursGpu(tiny, text, windows);
  }
  if (existsSync(q4)) {
    if (paths.has('cpu')) oursQ4 = await benchOurs(q4, text, windows);
    if (paths.has('gpu')) await benchOursGpu(q4, text, windows);
  } else {
    console.log(`${q4} is missing: the Q4_K_M comparison is skipped`);
  }
  if (!paths.has('llama')) return;
  // llama.cpp on the same weights: F32 (the arithmetic ours does), BF16, and the Q4_K_M file.
  const peers: { gguf: string; ours: PeerFigures | null }[] = [];
  if (existsSync(tiny)) {
    for (const type of ['F32', 'BF16'] as const) {
      const gguf = tinyLlamaGguf(tiny, type);
      if (gguf !== null) peers.push({ gguf, ours: oursF32 });
    }
  }
  if (existsSync(q4)) peers.push({ gguf: q4, ours: oursQ4 });
  let first = true;
  for (const { gguf, ours } of peers) {
    const name = gguf.split(/[\\/]/).slice(-1)[0];
    const node = await benchNodeLlamaCpp(gguf, text, windows, threads).catch((e: unknown) => {
      console.log(`node-llama-cpp ${name}: not run (${e instanceof Error ? e.message : String(e)})`);
      return null;
    });
    const cli = benchLlamaPerplexityCpu(gguf, text, windows, CTX, threads, first);
    first = false;
    if (ours?.cpuSeconds == null || ours.cpuSeconds <= 0) continue;
    const rate = (f: PeerFigures): number => f.tokens / (f.cpuSeconds ?? f.wallSeconds);
    const oursRate = rate(ours);
    const parts = [node === null ? null : `node-llama-cpp ${(rate(node) / oursRate).toFixed(2)}x`, cli === null ? null : `llama-perplexity ${(rate(cli) / oursRate).toFixed(2)}x`].filter((p) => p !== null);
    if (parts.length > 0) console.log(`  ${name}: llama.cpp tokens per CPU-second / ours = ${parts.join(', ')} (target <= 3x)`);
  }
}
