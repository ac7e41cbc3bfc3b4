/**
 * The llama.cpp side of the forward bench, made fair (same weights, same threads, CPU time of the
 * right process):
 *  - the same tiny-llama weights as F32 and BF16 GGUFs, written by our own `quantize --to F32|BF16`
 *    into .cache/bench-forward/ (reused), beside the shared Q4_K_M GGUF;
 *  - `llama-perplexity` (bench/llamaCpp.ts finds it) with `-t <threads> -c 256 -b 256 --chunks N`,
 *    its CPU seconds from GNU time (user + sys of the child), model load included as ours includes
 *    reading and decoding the weights.
 * What llama.cpp runs per token on this machine is printed from its own log (system_info: SIMD
 * features, LLAMAFILE sgemm for F32/BF16, REPACK for Q4_K).
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { findLlamaCppTool } from './llamaCpp';

const TIME_BIN = '/usr/bin/time';

function repoRoot(): string {
  for (const candidate of [resolve(__dirname, '..'), process.cwd()]) {
    if (existsSync(join(candidate, 'package.json'))) return candidate;
  }
  return process.cwd();
}

/** Our CLI bundle: dist/cli.js beside dist/bench.js, else the repository's dist/. */
function cliBundle(): string | null {
  for (const candidate of [join(__dirname, 'cli.js'), join(repoRoot(), 'dist', 'cli.js')]) {
    if (existsSync(candidate)) return candidate;
  }
  return null;
}

/** tiny-llama as a GGUF of `type` (F32 or BF16) written by our quantize, cached; null (with the reason printed) when it cannot be made. */
export function tinyLlamaGguf(tinyFolder: string, type: 'F32' | 'BF16'): string | null {
  const dir = join(repoRoot(), '.cache', 'bench-forward');
  const out = join(dir, `tiny-llama-${type}.gguf`);
  if (existsSync(out)) return out;
  const cli = cliBundle();
  if (cli === null) {
    console.log(`tiny-llama ${type} GGUF: not made (no dist/cli.js; run npm run build)`);
    return null;
  }
  mkdirSync(dir, { recursive: true });
  const r = spawnSync(process.execPath, [cli, 'quantize', tinyFolder, '--to', type, '-o', out], { encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(out)) {
    console.log(`tiny-llama ${type} GGUF: quantize failed (exit ${String(r.status)}): ${(r.stderr ?? '').trim().split('\n').slice(-2).join(' | ')}`);
    return null;
  }
  rmSync(`${out}.quant.json`, { force: true });
  return out;
}

export interface PeerFigures {
  tokens: number;
  wallSeconds: number;
  cpuSeconds: number | null;
}

/** llama-perplexity on `gguf` at `threads` threads; prints one line and returns the figures (null when not run). */
export function benchLlamaPerplexityCpu(gguf: string, textPath: string, windows: number, ctx: number, threads: number, printSystemInfo: boolean): PeerFigures | null {
  const tool = findLlamaCppTool('llama-perplexity');
  if (!tool.found) {
    console.log(`llama-perplexity: not run (${tool.reason})`);
    return null;
  }
  const useTime = existsSync(TIME_BIN);
  const timeFile = join(repoRoot(), '.cache', 'bench-forward', `time-${process.pid}.txt`);
  mkdirSync(join(repoRoot(), '.cache', 'bench-forward'), { recursive: true });
  const args = ['-m', gguf, '-f', textPath, '-c', String(ctx), '--chunks', String(windows), '-t', String(threads), '-b', String(ctx)];
  const started = performance.now();
  const r = useTime
    ? spawnSync(TIME_BIN, ['-f', '%U %S', '-o', timeFile, tool.path, ...args], { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 })
    : spawnSync(tool.path, args, { encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
  const wallSeconds = (performance.now() - started) / 1000;
  let cpuSeconds: number | null = null;
  if (useTime && existsSync(timeFile)) {
    const [user, sys] = (readFileSync(timeFile, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
    if (user !== undefined && sys !== undefined && Number.isFinite(user) && Number.isFinite(sys)) cpuSeconds = user + sys;
    rmSync(timeFile, { force: true });
  }
  const log = `${r.stdout}\n${r.stderr}`;
  const name = gguf.split(/[\\/]/).slice(-1)[0];
  if (r.status !== 0) {
    console.log(`llama-perplexity ${name} failed (exit ${String(r.status)}): ${log.trim().split('\n').slice(-3).join(' | ')}`);
    return null;
  }
  if (printSystemInfo) {
    const info = /system_info: (.*)/.exec(log)?.[1];
    if (info !== undefined) console.log(`llama-perplexity system_info: ${info.trim()}`);
  }
  const ppl = /Final estimate: PPL = ([\d.]+)/.exec(log)?.[1] ?? '?';
  const tokens = windows * ctx;
  const cpu = cpuSeconds === null ? 'CPU time n/a (no GNU time)' : `${cpuSeconds.toFixed(1)} s CPU = ${(tokens / cpuSeconds).toFixed(0)} tok/s per CPU-second`;
  console.log(`llama-perplexity (${threads} thread(s)) ${name}: ppl ${ppl} (its own scoring: BOS, second half of each chunk), ${tokens} tokens in ${wallSeconds.toFixed(1)} s wall / ${cpu}, load included`);
  return { tokens, wallSeconds, cpuSeconds };
}
