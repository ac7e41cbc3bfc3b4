/**
 * Reader benchmarks (run by `npm run bench`, never as timed tests):
 *  1. header parse of tiny-llama's safetensors (median of many runs; target < 5 ms),
 *  2. parse of generated headers with 100,000 tensors, safetensors JSON and GGUF (target < 500 ms),
 *  3. `quantlens inspect --json` of a 20 GB sparse synthetic checkpoint in a child process
 *     (peak RSS from the child's own process.resourceUsage().maxRSS; target < 100 MB).
 * Every figure is printed with the machine it ran on.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { cpus, freemem, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { FileByteSource, MemoryByteSource } from '../src/core/io/byteSource';
import { readSafetensorsHeader } from '../src/core/formats/safetensors/header';
import { readGgufHeader } from '../src/core/formats/gguf/reader';
import { encodeGgufHeader, type EncodedTensorInfo } from '../src/core/formats/gguf/encodeHeader';

const HEADER_RUNS = 200;
const LARGE_HEADER_TENSORS = 100_000;
const LARGE_HEADER_RUNS = 7;
const SPARSE_TARGET_BYTES = 20e9;

function machine(): string {
  const cpu = cpus();
  return `${cpu[0]?.model ?? 'unknown CPU'}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(1)} GiB RAM (${(freemem() / 2 ** 30).toFixed(1)} free), node ${process.version}, load average ${loadavg()[0]?.toFixed(1)} (wall times inflate when it exceeds the core count; CPU times do not)`;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] ?? NaN) : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** A short machine tag for every figure line (the full description is printed first). */
function machineTag(): string {
  const cpu = cpus();
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'} x${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${loadavg()[0]?.toFixed(1)}`;
}

function report(label: string, value: string, target: string, pass: boolean | null): void {
  const verdict = pass === null ? '' : pass ? '  [ok]' : '  [ABOVE TARGET]';
  console.log(`formats: ${label}: ${value} (target ${target})${verdict} [${machineTag()}]`);
}

/** Wall and CPU (user + system) milliseconds of each run. */
async function timeRuns(runs: number, fn: () => Promise<unknown>): Promise<{ wall: number[]; cpu: number[] }> {
  const wall: number[] = [];
  const cpu: number[] = [];
  for (let i = 0; i < runs; i++) {
    const cpuBefore = process.cpuUsage();
    const started = performance.now();
    await fn();
    wall.push(performance.now() - started);
    const used = process.cpuUsage(cpuBefore);
    cpu.push((used.user + used.system) / 1000);
  }
  return { wall, cpu };
}

function timing(t: { wall: number[]; cpu: number[] }, digits: number): string {
  return `${median(t.wall).toFixed(digits)} ms wall, ${median(t.cpu).toFixed(digits)} ms CPU`;
}

async function benchTinyLlamaHeader(): Promise<void> {
  const path = resolve('..', 'shared', 'models', 'tiny-llama', 'model.safetensors');
  if (!existsSync(path)) {
    console.log(`formats: tiny-llama header parse: skipped (${path} not present)`);
    return;
  }
  // Warm up the JIT, then time open + header read + validation + close.
  const once = async (): Promise<void> => {
    const source = await FileByteSource.open(path);
    try {
      await readSafetensorsHeader(source);
    } finally {
      await source.close();
    }
  };
  await timeRuns(20, once);
  const times = await timeRuns(HEADER_RUNS, once);
  report(`tiny-llama safetensors header parse (open+read+validate+close), median of ${HEADER_RUNS}`, timing(times, 3), '< 5 ms', median(times.wall) < 5);
}

function syntheticSafetensorsHeader(count: number): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const bytes = 4096 * 2;
    header[`model.layers.${Math.floor(i / 9)}.t${i % 9}.weight`] = { dtype: 'BF16', shape: [64, 64], data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  // Only the header is materialised; the data buffer is accounted for by the size the source claims.
  const file = new Uint8Array(8 + json.byteLength);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  file.set(json, 8);
  return file;
}

/** A ByteSource whose bytes are `head` followed by zeros up to `size` (no memory for the data). */
class HeadOnlySource extends MemoryByteSource {
  override readonly size: number;
  constructor(
    private readonly head: Uint8Array,
    size: number,
  ) {
    super(head, 'synthetic');
    this.size = size;
  }
  override async read(offset: number, target: Uint8Array): Promise<void> {
    target.fill(0);
    if (offset < this.head.byteLength) target.set(this.head.subarray(offset, Math.min(this.head.byteLength, offset + target.byteLength)));
  }
}

async function benchLargeHeaders(): Promise<void> {
  const st = syntheticSafetensorsHeader(LARGE_HEADER_TENSORS);
  const stSize = st.byteLength + LARGE_HEADER_TENSORS * 4096 * 2;
  await readSafetensorsHeader(new HeadOnlySource(st, stSize));
  const stTimes = await timeRuns(LARGE_HEADER_RUNS, () => readSafetensorsHeader(new HeadOnlySource(st, stSize)));
  report(`safetensors header with ${LARGE_HEADER_TENSORS.toLocaleString('en-US')} tensors (${(st.byteLength / 1e6).toFixed(1)} MB JSON), median of ${LARGE_HEADER_RUNS}`, timing(stTimes, 1), '< 500 ms', median(stTimes.wall) < 500);

  const tensors: EncodedTensorInfo[] = [];
  for (let i = 0; i < LARGE_HEADER_TENSORS; i++) tensors.push({ name: `blk.${Math.floor(i / 9)}.t${i % 9}.weight`, ne: [64, 64], typeId: 1, offset: i * 8192 });
  const gguf = encodeGgufHeader({ kv: [['general.architecture', { type: 'STRING', value: 'llama' }]], tensors });
  const ggufSize = gguf.dataStart + LARGE_HEADER_TENSORS * 8192;
  await readGgufHeader(new HeadOnlySource(gguf.bytes, ggufSize));
  const ggTimes = await timeRuns(LARGE_HEADER_RUNS, () => readGgufHeader(new HeadOnlySource(gguf.bytes, ggufSize)));
  report(`GGUF header with ${LARGE_HEADER_TENSORS.toLocaleString('en-US')} tensor infos (${(gguf.bytes.byteLength / 1e6).toFixed(1)} MB), median of ${LARGE_HEADER_RUNS}`, timing(ggTimes, 1), '< 500 ms', median(ggTimes.wall) < 500);
}

/** A LLaMA-shaped BF16 layout of about 20 GB: hidden 4096, FFN 14336, 40 layers, vocab 32000. */
function syntheticLayout(): Array<{ name: string; shape: number[] }> {
  const hidden = 4096;
  const ffn = 14336;
  const out: Array<{ name: string; shape: number[] }> = [{ name: 'model.embed_tokens.weight', shape: [32000, hidden] }];
  for (let l = 0; l < 40; l++) {
    const p = `model.layers.${l}.`;
    out.push(
      { name: `${p}input_layernorm.weight`, shape: [hidden] },
      { name: `${p}self_attn.q_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}self_attn.k_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}self_attn.v_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}self_attn.o_proj.weight`, shape: [hidden, hidden] },
      { name: `${p}post_attention_layernorm.weight`, shape: [hidden] },
      { name: `${p}mlp.gate_proj.weight`, shape: [ffn, hidden] },
      { name: `${p}mlp.up_proj.weight`, shape: [ffn, hidden] },
      { name: `${p}mlp.down_proj.weight`, shape: [hidden, ffn] },
    );
  }
  out.push({ name: 'model.norm.weight', shape: [hidden] }, { name: 'lm_head.weight', shape: [32000, hidden] });
  return out;
}

function writeSparseSafetensors(path: string): number {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', note: 'synthetic sparse benchmark file' } };
  let offset = 0;
  for (const t of syntheticLayout()) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 2;
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  head.write(json, 8, 'utf8');
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, head, 0, head.byteLength, 0);
    ftruncateSync(fd, head.byteLength + offset);
  } finally {
    closeSync(fd);
  }
  return head.byteLength + offset;
}

function writeSparseGguf(path: string): number {
  const tensors: EncodedTensorInfo[] = [];
  let offset = 0;
  for (const t of syntheticLayout()) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 2; // F16
    tensors.push({ name: t.name.replace(/^model\./, ''), ne: [...t.shape].reverse(), typeId: 1, offset });
    offset += Math.ceil(bytes / 32) * 32;
  }
  const header = encodeGgufHeader({ kv: [['general.architecture', { type: 'STRING', value: 'llama' }]], tensors });
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, header.bytes, 0, header.bytes.byteLength, 0);
    ftruncateSync(fd, header.dataStart + offset);
  } finally {
    closeSync(fd);
  }
  return header.dataStart + offset;
}

/** How to start the CLI: the bundle next to this one (dist/cli.js), or the sources through tsx. */
function cliCommand(): { args: string[]; note: string } {
  const candidates = [join(dirname(process.argv[1] ?? '.'), 'cli.js'), resolve('dist', 'cli.js')];
  for (const c of candidates) if (existsSync(c)) return { args: [c], note: c };
  return { args: ['--import', 'tsx', resolve('src', 'cli', 'main.ts')], note: 'src/cli/main.ts through tsx (RSS includes the TypeScript loader)' };
}

async function inspectPeakRss(dir: string, path: string, size: number, kind: string): Promise<void> {
  // The child records its own peak RSS on exit: Node does not report a child's rusage to the parent.
  const preload = join(dir, 'record-rss.cjs');
  const rssOut = join(dir, 'rss.txt');
  writeFileSync(preload, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(rssOut)}, String(process.resourceUsage().maxRSS)));\n`);
  const cli = cliCommand();
  const started = performance.now();
  const child = spawnSync(process.execPath, ['--require', preload, ...cli.args, 'inspect', path, '--json'], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  const elapsed = performance.now() - started;
  if (child.status !== 0) throw new Error(`inspect failed (${child.status}): ${child.stderr}`);
  const parsed = JSON.parse(child.stdout) as { totals: { parameters: number; bytes: number }; tensors: unknown[] };
  const maxRssKiB = Number(readFileSync(rssOut, 'utf8'));
  const mb = (maxRssKiB * 1024) / 1e6;
  report(
    `inspect --json of a ${(size / 1e9).toFixed(1)} GB sparse ${kind} (${parsed.tensors.length} tensors, ${(parsed.totals.parameters / 1e9).toFixed(2)} B params) via ${cli.note}: peak RSS`,
    `${mb.toFixed(1)} MB, wall ${elapsed.toFixed(0)} ms`,
    '< 100 MB',
    mb < 100,
  );
}

async function benchSparseInspect(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ql-bench-sparse-'));
  try {
    const st = join(dir, 'synthetic-20gb.safetensors');
    const stSize = writeSparseSafetensors(st);
    if (stSize < SPARSE_TARGET_BYTES * 0.95) throw new Error(`synthetic file is only ${stSize} bytes`);
    await inspectPeakRss(dir, st, stSize, 'safetensors');
    rmSync(st);
    const gguf = join(dir, 'synthetic-20gb.gguf');
    const ggufSize = writeSparseGguf(gguf);
    await inspectPeakRss(dir, gguf, ggufSize, 'GGUF (F16)');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchFormats(): Promise<void> {
  console.log(`formats: machine: ${machine()}`);
  await benchTinyLlamaHeader();
  await benchLargeHeaders();
  await benchSparseInspect();
}
