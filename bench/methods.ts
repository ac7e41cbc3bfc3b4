/**
 * Calibrated-method benchmarks (run by `npm run bench`, never as timed tests), CPU only.
 *
 * Speed (always): GPTQ's Hessian accumulation and its column updates (GFLOP/s counted from the
 * algorithm's multiply-adds), GPTQ time per layer for tiny-llama's linear shapes, and AWQ's scale
 * search on the same shapes. Inputs are synthetic (seeded) so that these figures do not depend on
 * ../shared. There is no WebGPU GPTQ yet: every figure is the CPU path. Wall and CPU time are both
 * printed (the machine may be shared).
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
import { HessianAccumulator, gptqQuantizeLayer } from '../src/core/methods/gptq';
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
  if (process.argv.includes('--quality')) {
    await benchMethodQuality();
    return;
  }
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
