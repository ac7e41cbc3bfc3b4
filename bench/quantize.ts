/**
 * Quantize speed and memory against llama-quantize (quantize issue, "Performance"): on a generated
 * LLaMA-shaped checkpoint (bench/generateLlama.ts; QUANTLENS_BENCH_SIZE_GB, default 0.25, the issue's
 * figure is taken at 1), for Q8_0, Q4_0 and Q4_K_M (QUANTLENS_BENCH_QUANT_TYPES to change), it times in
 * child processes, one after the other:
 *   - ours from its natural input (the BF16 HF folder) and from the same F32 GGUF llama-quantize reads,
 *   - llama-quantize from the F32 GGUF with the same thread count,
 * for each thread count in QUANTLENS_BENCH_THREADS (default: 1 and the hardware concurrency, which is
 * llama-quantize's default and ours),
 * and prints side by side: wall seconds, CPU seconds, ratio ours / llama-quantize (target <= 1.0), peak RSS
 * of ours against the bound 2 x largest tensor (as f32) + 256 MiB, and whether our bytes from the F32 GGUF
 * equal llama-quantize's. llama-quantize comes from bench/llamaCpp.ts; without it ours is still timed.
 * The generated model is kept in .cache/bench-quantize/ and reused; outputs are deleted after each type.
 * Each input is read through once, untimed, before each timed run (ours and llama-quantize's alike): Dev's
 * page cache is dropped now and then, and a cold 2 GiB read (~2.5 s, ~1.8 s of it system CPU) charged to
 * whichever run came first decided the ratio more than the quantizers did.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, freemem, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { findLlamaCppTool } from './llamaCpp';
import { generateLlama, llamaShapeForSize } from './generateLlama';

const DEFAULT_SIZE_GB = 0.25;
const DEFAULT_TYPES = ['Q8_0', 'Q4_0', 'Q4_K_M'];
const MIB = 2 ** 20;

function repoRoot(): string {
  for (const candidate of [resolve(__dirname, '..'), process.cwd()]) {
    if (existsSync(join(candidate, 'package.json'))) return candidate;
  }
  return process.cwd();
}

function machine(): string {
  const cpu = cpus();
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM (${(freemem() / 2 ** 30).toFixed(1)} free), load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}, node ${process.version}`;
}

interface RunFigures {
  ok: boolean;
  wallSeconds: number;
  cpuSeconds: number | null;
  maxRssBytes: number | null;
  detail: string;
}

const TIME_BIN = '/usr/bin/time';

/** Runs a command, timing its wall clock here and its CPU / peak RSS with GNU time when the machine has it. */
function timed(command: string, args: string[], env?: NodeJS.ProcessEnv): RunFigures {
  const useTime = existsSync(TIME_BIN);
  const timeFile = join(repoRoot(), '.cache', 'bench-quantize', `time-${process.pid}.txt`);
  const started = performance.now();
  const r = useTime
    ? spawnSync(TIME_BIN, ['-f', '%U %S %M', '-o', timeFile, command, ...args], { encoding: 'utf8', env: env ?? process.env, maxBuffer: 64 * MIB })
    : spawnSync(command, args, { encoding: 'utf8', env: env ?? process.env, maxBuffer: 64 * MIB });
  const wallSeconds = (performance.now() - started) / 1000;
  let cpuSeconds: number | null = null;
  let maxRssBytes: number | null = null;
  if (useTime && existsSync(timeFile)) {
    const last = readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '';
    const [user, sys, rssKb] = last.split(' ').map(Number);
    if (user !== undefined && sys !== undefined && rssKb !== undefined && [user, sys, rssKb].every(Number.isFinite)) {
      cpuSeconds = user + sys;
      maxRssBytes = rssKb * 1024;
    }
    rmSync(timeFile, { force: true });
  }
  const ok = r.status === 0;
  const detail = ok ? '' : `exit ${String(r.status)}: ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}`;
  return { ok, wallSeconds, cpuSeconds, maxRssBytes, detail };
}

/** Bundles the child and, beside it, the quantize worker it starts (as dist/ holds cli.js and quantWorker.js). */
async function buildChild(outDir: string): Promise<void> {
  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: { quantizeChild: join(repoRoot(), 'bench', 'quantizeChild.ts'), quantWorker: join(repoRoot(), 'src', 'core', 'quant', 'ggml', 'quantWorker.ts') },
    outdir: outDir,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['vscode', 'webgpu', 'node-llama-cpp'],
    loader: { '.wgsl': 'text' },
    logLevel: 'warning',
  });
}

/** Reads a file, or every file of a folder, through once (to /dev/null), so the timed run that follows finds it in the page cache. */
function warmInput(path: string): void {
  const files = statSync(path).isDirectory() ? readdirSync(path).map((f) => join(path, f)).filter((f) => statSync(f).isFile()) : [path];
  const r = spawnSync('cat', files, { stdio: ['ignore', 'ignore', 'inherit'] });
  if (r.status !== 0) throw new Error(`could not read ${path} through (cat exit ${String(r.status)})`);
}

async function sameBytes(a: string, b: string): Promise<boolean> {
  if (statSync(a).size !== statSync(b).size) return false;
  const { createHash } = await import('node:crypto');
  const hash = async (p: string): Promise<string> => {
    const h = createHash('sha256');
    for await (const chunk of createReadStream(p, { highWaterMark: 8 * MIB })) h.update(chunk as Buffer);
    return h.digest('hex');
  };
  return (await hash(a)) === (await hash(b));
}

function fmt(r: RunFigures): string {
  if (!r.ok) return `failed (${r.detail})`;
  const cpu = r.cpuSeconds === null ? '' : `, cpu ${r.cpuSeconds.toFixed(2)} s`;
  const rss = r.maxRssBytes === null ? '' : `, peak RSS ${(r.maxRssBytes / MIB).toFixed(0)} MiB`;
  return `${r.wallSeconds.toFixed(2)} s wall${cpu}${rss}`;
}

function ratio(ours: RunFigures, theirs: RunFigures | null): string {
  if (theirs === null || !theirs.ok || !ours.ok) return 'n/a';
  const wall = ours.wallSeconds / theirs.wallSeconds;
  const cpu = ours.cpuSeconds !== null && theirs.cpuSeconds !== null && theirs.cpuSeconds > 0 ? ours.cpuSeconds / theirs.cpuSeconds : null;
  const verdict = wall <= 1 ? '[ok]' : '[ABOVE TARGET 1.0]';
  return `${wall.toFixed(2)} wall${cpu === null ? '' : `, ${cpu.toFixed(2)} cpu`} ${verdict}`;
}

export async function benchQuantize(): Promise<void> {
  const root = repoRoot();
  const sizeGb = Number(process.env.QUANTLENS_BENCH_SIZE_GB ?? DEFAULT_SIZE_GB);
  if (!Number.isFinite(sizeGb) || sizeGb <= 0) throw new Error(`QUANTLENS_BENCH_SIZE_GB must be a positive number, not ${process.env.QUANTLENS_BENCH_SIZE_GB ?? ''}`);
  const types = (process.env.QUANTLENS_BENCH_QUANT_TYPES ?? DEFAULT_TYPES.join(',')).split(',').map((t) => t.trim()).filter((t) => t !== '');
  const shape = llamaShapeForSize(sizeGb * 2 ** 30);
  const work = join(root, '.cache', 'bench-quantize');
  const folder = join(work, `llama-h${shape.hidden}-f${shape.ffn}-l${shape.layers}-v${shape.vocab}-s${shape.seed}`);
  mkdirSync(work, { recursive: true });
  console.log(`quantize: machine: ${machine()}`);

  const genStarted = performance.now();
  const model = await generateLlama(folder, shape, join(root, 'test', 'fixtures', 'micro-llama'), (l) => console.log(`quantize: ${l}`));
  console.log(
    `quantize: model: ${shape.layers} layers, hidden ${shape.hidden}, ffn ${shape.ffn}, vocab ${shape.vocab}, ${(model.parameters / 1e6).toFixed(0)} M parameters, ` +
      `${(model.bf16Bytes / 2 ** 30).toFixed(2)} GiB BF16 / ${(statSync(model.f32Gguf).size / 2 ** 30).toFixed(2)} GiB F32 GGUF` +
      (model.written ? ` (generated in ${((performance.now() - genStarted) / 1000).toFixed(0)} s)` : ' (reused)'),
  );
  const boundBytes = 2 * model.largestTensorValues * 4 + 256 * MIB;
  console.log(`quantize: RSS bound 2 x largest tensor (${shape.vocab} x ${shape.hidden} f32 = ${(model.largestTensorValues * 4 / MIB).toFixed(0)} MiB) + 256 MiB = ${(boundBytes / MIB).toFixed(0)} MiB`);

  const childDir = join(work, `bundle-${process.pid}`);
  await buildChild(childDir);
  const child = join(childDir, 'quantizeChild.js');
  const llama = findLlamaCppTool('llama-quantize');
  if (!llama.found) console.log(`quantize: llama-quantize: ${llama.reason}; timing ours only`);
  else console.log(`quantize: llama-quantize: ${llama.path} (from ${llama.from})`);
  const hardwareThreads = availableParallelism();
  const threadCounts = (process.env.QUANTLENS_BENCH_THREADS ?? (hardwareThreads > 1 ? `1,${hardwareThreads}` : '1')).split(',').map(Number).filter((t) => Number.isInteger(t) && t >= 1);
  const rssLine = (r: RunFigures): string => (r.maxRssBytes === null ? 'n/a' : `${(r.maxRssBytes / MIB).toFixed(0)} MiB ${r.maxRssBytes <= boundBytes ? '[ok]' : '[ABOVE BOUND]'}`);

  for (const type of types) {
    for (const threads of threadCounts) {
      const oursHfOut = join(work, `ours-hf-${type}.gguf`);
      const oursGgufOut = join(work, `ours-gguf-${type}.gguf`);
      const llamaOut = join(work, `llama-${type}.gguf`);
      warmInput(model.hfFolder);
      const oursHf = timed(process.execPath, [child, model.hfFolder, oursHfOut, type, String(threads)]);
      warmInput(model.f32Gguf);
      const oursGguf = timed(process.execPath, [child, model.f32Gguf, oursGgufOut, type, String(threads)]);
      let theirs: RunFigures | null = null;
      let identical = 'not compared (no llama-quantize)';
      if (llama.found) {
        warmInput(model.f32Gguf);
        theirs = timed(llama.path, [model.f32Gguf, llamaOut, type, String(threads)]);
        if (theirs.ok && oursGguf.ok) identical = (await sameBytes(oursGgufOut, llamaOut)) ? 'identical' : 'DIFFERENT';
        rmSync(llamaOut, { force: true });
      }
      console.log(`quantize: ${type}, ${threads} thread(s) each, load ${loadavg()[0]?.toFixed(1)}:`);
      console.log(`quantize:   ours from BF16 HF folder    ${fmt(oursHf)}`);
      console.log(`quantize:   ours from F32 GGUF          ${fmt(oursGguf)}`);
      if (theirs !== null) console.log(`quantize:   llama-quantize F32 GGUF     ${fmt(theirs)}`);
      console.log(`quantize:   ratio ours/llama, same input (F32 GGUF): ${ratio(oursGguf, theirs)}`);
      console.log(`quantize:   ratio ours/llama, natural inputs (HF vs F32 GGUF): ${ratio(oursHf, theirs)}`);
      console.log(`quantize:   peak RSS ours: HF ${rssLine(oursHf)}, GGUF ${rssLine(oursGguf)} (bound ${(boundBytes / MIB).toFixed(0)} MiB)`);
      console.log(`quantize:   bytes, ours vs llama-quantize from the same F32 GGUF: ${identical}`);
      rmSync(oursHfOut, { force: true });
      rmSync(oursGgufOut, { force: true });
    }
  }
  rmSync(childDir, { recursive: true, force: true });
}
