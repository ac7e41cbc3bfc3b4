/**
 * Forward-pass benchmark (`npm run bench -- forward`): tokens per second of the perplexity eval of
 * tiny-llama (64 windows x 256 tokens of eval.txt) on our CPU path, side by side with llama.cpp on
 * the same machine and text:
 *  - node-llama-cpp (the CPU prebuilt in node_modules) evaluating the same windows, always;
 *  - `llama-perplexity` from LLAMA_CPP_BIN_DIR when that variable names a folder holding it.
 * Models come from ../shared (or QUANTLENS_SHARED_DIR): tiny-llama (BF16 safetensors) and
 * tiny-llama-Q4_K_M.gguf, which both runtimes read (ours dequantizes it layer by layer).
 * Wall and CPU time are both printed: the machine may be shared.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { loadModel } from '../src/core/model/loadModel';
import { makeWindows, perplexity } from '../src/core/model/perplexity';
import { readTextFile } from '../src/core/model/calibration';
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

async function benchOurs(modelPath: string, textPath: string, windows: number): Promise<void> {
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
      `ours (CPU, 1 thread) ${modelPath.split(/[\\/]/).slice(-1)[0]}: ppl ${r.perplexity.toFixed(4)}, ${tokens} tokens in ${r.seconds.toFixed(1)} s wall / ${cpu.toFixed(1)} s CPU = ${r.tokensPerSecond.toFixed(0)} tok/s wall, ${(tokens / cpu).toFixed(0)} tok/s per CPU-second; peak RSS so far ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MiB`,
    );
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
    const model = new GpuLlama(gpu, lm.model);
    try {
      const tokens = windows * CTX;
      for (const pass of ['first pass (read + upload weights)', 'second pass (weights resident)']) {
        const r = await perplexityOnGpu(model, batches);
        console.log(`ours (WebGPU on ${gpu.description}) ${name}, ${pass}: ppl ${r.perplexity.toFixed(4)}, ${tokens} tokens in ${r.seconds.toFixed(2)} s wall = ${r.tokensPerSecond.toFixed(0)} tok/s`);
      }
    } finally {
      model.dispose();
    }
  } finally {
    gpu.destroy();
    await lm.close();
  }
}

async function benchNodeLlamaCpp(ggufPath: string, textPath: string, windows: number, threads: number): Promise<void> {
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
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}

function benchLlamaPerplexity(ggufPath: string, textPath: string, windows: number, threads: number): void {
  const dir = process.env.LLAMA_CPP_BIN_DIR;
  const exe = dir === undefined ? undefined : join(dir, process.platform === 'win32' ? 'llama-perplexity.exe' : 'llama-perplexity');
  if (exe === undefined || !existsSync(exe)) {
    console.log(`llama-perplexity: not run (${dir === undefined ? 'LLAMA_CPP_BIN_DIR is not set' : `no llama-perplexity in ${dir}`}); set LLAMA_CPP_BIN_DIR to a llama.cpp build's bin folder to compare`);
    return;
  }
  const t0 = performance.now();
  const r = spawnSync(exe, ['-m', ggufPath, '-f', textPath, '-c', String(CTX), '--chunks', String(windows), '-t', String(threads), '-b', String(CTX)], { encoding: 'utf8' });
  const wall = (performance.now() - t0) / 1000;
  const log = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) {
    console.log(`llama-perplexity failed (exit ${r.status}): ${log.split('\n').slice(-5).join(' | ')}`);
    return;
  }
  const final = /Final estimate: PPL = ([\d.]+)/.exec(log)?.[1] ?? '?';
  const prompt = /prompt eval time =\s*([\d.]+) ms \/\s*(\d+) tokens/.exec(log);
  const rate = prompt === null ? '' : `, prompt eval ${(Number(prompt[2]) / (Number(prompt[1]) / 1000)).toFixed(0)} tok/s`;
  console.log(`llama-perplexity (${threads} thread(s)): ppl ${final} (its own method: BOS, second half of each chunk scored), ${windows * CTX} tokens in ${wall.toFixed(1)} s wall including load${rate}`);
}

export async function benchForward(): Promise<void> {
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
  // Which runtimes to run (QL_BENCH_FORWARD=cpu,gpu,llama; default all): the CPU path alone takes
  // minutes for 64 windows, which a GPU machine's run may skip.
  const paths = new Set((process.env.QL_BENCH_FORWARD ?? 'cpu,gpu,llama').split(','));
  console.log(`tiny-llama eval: ${windows} windows x ${CTX} tokens of ${text}; llama.cpp threads ${threads} (QL_BENCH_THREADS), ours single-threaded; runs ${[...paths].join(', ')} (QL_BENCH_FORWARD)`);
  if (existsSync(tiny)) {
    if (paths.has('cpu')) await benchOurs(tiny, text, windows);
    if (paths.has('gpu')) await benchOursGpu(tiny, text, windows);
  }
  if (existsSync(q4)) {
    if (paths.has('cpu')) await benchOurs(q4, text, windows);
    if (paths.has('gpu')) await benchOursGpu(q4, text, windows);
    if (paths.has('llama')) {
      await benchNodeLlamaCpp(q4, text, windows, threads).catch((e: unknown) => console.log(`node-llama-cpp: not run (${e instanceof Error ? e.message : String(e)})`));
      benchLlamaPerplexity(q4, text, windows, threads);
    }
  } else {
    console.log(`${q4} is missing: llama.cpp comparison skipped`);
  }
}
