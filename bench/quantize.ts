/**
 * Quantize speed and memory against llama-quantize (quantize issue, "Performance": same machine, same input,
 * same number of threads). On a generated LLaMA-shaped checkpoint (bench/generateLlama.ts;
 * QUANTLENS_BENCH_SIZE_GB, default 0.25, the issue's figure is taken at 1) both tools read the SAME BF16 GGUF
 * (written once by our exporter with --to BF16, as convert_hf_to_gguf --outtype bf16 would; llama-quantize
 * reads it natively). For Q8_0, Q4_0 and Q4_K_M (QUANTLENS_BENCH_QUANT_TYPES) and each thread count in
 * QUANTLENS_BENCH_THREADS (default: 1 and the hardware concurrency, llama-quantize's default and ours), it
 * times in child processes, QUANTLENS_BENCH_REPEATS times (default 1) with the order alternating:
 *   - llama-quantize from the BF16 GGUF,
 *   - ours from the same BF16 GGUF,
 *   - ours from the BF16 HF folder (our natural input; the same values, a second line),
 * and prints side by side: wall seconds, CPU seconds (user + sys, GNU time), the ratios ours / llama-quantize
 * (target <= 1.0), peak RSS of ours against the bound 2 x largest tensor (as f32) + 256 MiB, the load average
 * before each run, and whether each of our files has llama-quantize's sha256 (every run).
 * The generated model is kept in .cache/bench-quantize/ and reused; outputs are deleted after each run.
 * Each input is read through once, untimed, before each timed run (both tools alike): Dev's page cache is
 * dropped now and then, and a cold 2 GiB read charged to whichever run came first decided the ratio more
 * than the quantizers did.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, cpus, freemem, loadavg, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { findLlamaCppTool } from './llamaCpp';
import { generateLlama, llamaShapeForSize } from './generateLlama';
import { readGgufHeader } from '../src/core/formats/gguf/reader';
import { withFileSource } from '../src/core/io/byteSource';

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

/** sha256 of a file from byte `start` on, streamed. */
async function fileSha256(path: string, start = 0): Promise<string> {
  const { createHash } = await import('node:crypto');
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { start, highWaterMark: 8 * MIB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** sha256 of the whole GGUF and of its tensor data alone (from the header's data offset). */
async function ggufHashes(path: string): Promise<{ file: string; data: string }> {
  const header = await withFileSource(path, (s) => readGgufHeader(s));
  return { file: await fileSha256(path), data: await fileSha256(path, header.dataStart) };
}

function load1(): string {
  return (loadavg()[0] ?? 0).toFixed(1);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

interface TimedRun extends RunFigures {
  /** 1-minute load average just before the run. */
  load: string;
  hashes: { file: string; data: string } | null;
}

export async function benchQuantize(): Promise<void> {
  const root = repoRoot();
  const sizeGb = Number(process.env.QUANTLENS_BENCH_SIZE_GB ?? DEFAULT_SIZE_GB);
  if (!Number.isFinite(sizeGb) || sizeGb <= 0) throw new Error(`QUANTLENS_BENCH_SIZE_GB must be a positive number, not ${process.env.QUANTLENS_BENCH_SIZE_GB ?? ''}`);
  const types = (process.env.QUANTLENS_BENCH_QUANT_TYPES ?? DEFAULT_TYPES.join(',')).split(',').map((t) => t.trim()).filter((t) => t !== '');
  const repeats = Math.max(1, Math.floor(Number(process.env.QUANTLENS_BENCH_REPEATS ?? 1)) || 1);
  const shape = llamaShapeForSize(sizeGb * 2 ** 30);
  const work = join(root, '.cache', 'bench-quantize');
  const folder = join(work, `llama-h${shape.hidden}-f${shape.ffn}-l${shape.layers}-v${shape.vocab}-s${shape.seed}`);
  mkdirSync(work, { recursive: true });
  console.log(`quantize: machine: ${machine()}`);

  const genStarted = performance.now();
  const model = await generateLlama(folder, shape, join(root, 'test', 'fixtures', 'micro-llama'), (l) => console.log(`quantize: ${l}`), ['BF16']);
  console.log(
    `quantize: model: ${shape.layers} layers, hidden ${shape.hidden}, ffn ${shape.ffn}, vocab ${shape.vocab}, ${(model.parameters / 1e6).toFixed(0)} M parameters, ` +
      `${(model.bf16Bytes / 2 ** 30).toFixed(2)} GiB BF16 (HF folder), ${(statSync(model.bf16Gguf).size / 2 ** 30).toFixed(2)} GiB BF16 GGUF` +
      (model.written ? ` (written in ${((performance.now() - genStarted) / 1000).toFixed(0)} s)` : ' (reused)'),
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

  /** Warms `input`, runs one tool on it into `output`, hashes the output and deletes it. */
  const run = async (input: string, output: string, command: string, args: string[]): Promise<TimedRun> => {
    warmInput(input);
    const load = load1();
    const figures = timed(command, args);
    const hashes = figures.ok && existsSync(output) ? await ggufHashes(output) : null;
    rmSync(output, { force: true });
    return { ...figures, load, hashes };
  };

  try {
    for (const type of types) {
      for (const threads of threadCounts) {
        const ratios: { gguf: number[]; ggufCpu: number[]; hf: number[]; hfCpu: number[] } = { gguf: [], ggufCpu: [], hf: [], hfCpu: [] };
        for (let rep = 0; rep < repeats; rep++) {
          const llamaOut = join(work, `llama-${type}.gguf`);
          const oursGgufOut = join(work, `ours-gguf-${type}.gguf`);
          const oursHfOut = join(work, `ours-hf-${type}.gguf`);
          const runTheirs = async (): Promise<TimedRun | null> => (llama.found ? run(model.bf16Gguf, llamaOut, llama.path, [model.bf16Gguf, llamaOut, type, String(threads)]) : null);
          const runOursGguf = (): Promise<TimedRun> => run(model.bf16Gguf, oursGgufOut, process.execPath, [child, model.bf16Gguf, oursGgufOut, type, String(threads)]);
          const runOursHf = (): Promise<TimedRun> => run(model.hfFolder, oursHfOut, process.execPath, [child, model.hfFolder, oursHfOut, type, String(threads)]);
          // alternate who runs first, so that neither always finds the machine in the other's wake
          let theirs: TimedRun | null;
          let oursGguf: TimedRun;
          let oursHf: TimedRun;
          if (rep % 2 === 0) {
            theirs = await runTheirs();
            oursGguf = await runOursGguf();
            oursHf = await runOursHf();
          } else {
            oursHf = await runOursHf();
            oursGguf = await runOursGguf();
            theirs = await runTheirs();
          }
          // the HF folder's file has its own metadata (general.name, KV order): its tensor data is compared
          const same = (ours: TimedRun, part: 'file' | 'data'): string =>
            theirs === null || theirs.hashes === null || ours.hashes === null ? 'not compared (no output)' : ours.hashes[part] === theirs.hashes[part] ? 'identical' : 'DIFFERENT';
          console.log(`quantize: ${type}, ${threads} thread(s) each, run ${rep + 1} of ${repeats} (${rep % 2 === 0 ? 'llama-quantize first' : 'ours first'}):`);
          if (theirs !== null) console.log(`quantize:   llama-quantize, BF16 GGUF      ${fmt(theirs)} (load ${theirs.load})`);
          console.log(`quantize:   ours, same BF16 GGUF          ${fmt(oursGguf)} (load ${oursGguf.load})`);
          console.log(`quantize:   ours, BF16 HF folder          ${fmt(oursHf)} (load ${oursHf.load})`);
          console.log(`quantize:   ratio ours / llama-quantize, same BF16 GGUF: ${ratio(oursGguf, theirs)}`);
          console.log(`quantize:   ratio ours (HF folder) / llama-quantize (BF16 GGUF): ${ratio(oursHf, theirs)}`);
          console.log(`quantize:   peak RSS ours: GGUF ${rssLine(oursGguf)}, HF ${rssLine(oursHf)} (bound ${(boundBytes / MIB).toFixed(0)} MiB)`);
          console.log(`quantize:   sha256 vs llama-quantize: ours from the BF16 GGUF, whole file ${same(oursGguf, 'file')}; ours from the HF folder, tensor data ${same(oursHf, 'data')}`);
          if (theirs !== null && theirs.ok) {
            if (oursGguf.ok) ratios.gguf.push(oursGguf.wallSeconds / theirs.wallSeconds);
            if (oursHf.ok) ratios.hf.push(oursHf.wallSeconds / theirs.wallSeconds);
            if (oursGguf.ok && oursGguf.cpuSeconds !== null && theirs.cpuSeconds !== null) ratios.ggufCpu.push(oursGguf.cpuSeconds / theirs.cpuSeconds);
            if (oursHf.ok && oursHf.cpuSeconds !== null && theirs.cpuSeconds !== null) ratios.hfCpu.push(oursHf.cpuSeconds / theirs.cpuSeconds);
          }
        }
        if (repeats > 1 && ratios.gguf.length > 0) {
          const span = (v: number[]): string => (v.length === 0 ? 'n/a' : `median ${median(v).toFixed(2)} (${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)})`);
          console.log(`quantize: ${type}, ${threads} thread(s), ${repeats} runs: ours / llama-quantize, same BF16 GGUF: wall ${span(ratios.gguf)}, cpu ${span(ratios.ggufCpu)}; HF folder: wall ${span(ratios.hf)}, cpu ${span(ratios.hfCpu)}`);
        }
      }
    }
  } finally {
    rmSync(childDir, { recursive: true, force: true });
  }
}
