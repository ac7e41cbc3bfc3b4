/**
 * GPU benchmarks (`npm run bench -- gpu`).
 * Prints, side by side in one run, with the adapter and the machine named:
 *  - host memcpy (the reference bandwidth on lavapipe), device-to-device copy (the reference on a GPU),
 *  - upload host -> GPU by queue.writeBuffer and by a mapped staging buffer,
 *  - kernel-only Q8_0 / Q4_0 throughput on a resident buffer, tile and direct kernels (GB/s of f32 read, and
 *    as a fraction of the device copy and of memcpy),
 *  - every GPU quant type in memory: the CPU port vs the GPU path, with the bytes compared,
 *  - end to end on a generated F32 checkpoint (QUANTLENS_BENCH_GPU_MB, default 1024 MiB): reading the
 *    file, the CPU path vs the GPU path of the quantizeTensors job (Q8_0, Q4_0) in the worker, and
 *    the stats job over all weights on both paths,
 *  - the real quantize job (`quantlens quantize`, in the worker) on a generated LLaMA of that BF16 size
 *    (bench/generateLlama.ts, its F32 GGUF, shared with the quantize bench in .cache/bench-quantize):
 *    Q8_0 and Q4_K_M on the CPU path vs the GPU path vs llama-quantize (found as bench/llamaCpp.ts says,
 *    its default threads; ours the exporter's default), the same input file, the three outputs compared,
 *  - llama-quantize on the same data when QUANTLENS_LLAMA_QUANTIZE and QUANTLENS_BENCH_GGUF_F32 name a
 *    binary and an F32 GGUF (it cannot read safetensors), next to our two paths on that GGUF.
 *  - statistics of all weights (part `stats`): the stats job on the CPU path (1 and 2 compute threads) and the GPU
 *    path on the generated F32 checkpoint (or QUANTLENS_BENCH_STATS_MODEL), each run QUANTLENS_BENCH_STATS_RUNS
 *    times (default 3), interleaved with reads of the file from the page cache, wall and CPU time (all threads)
 *    per run, the best and median wall ÷ the best read; then the same on the generated LLaMA's BF16 safetensors
 *    (a real checkpoint's layout: twice the values per byte, tensors of up to 8 windows; GPU path on GPUs only).
 * QUANTLENS_BENCH_GPU_PARTS (default all: device,types,tensors,stats,job) picks parts for trials.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { generateLlama, llamaShapeForSize } from './generateLlama';
import { findLlamaCppTool } from './llamaCpp';
import { acquireGpu, type GpuContext } from '../src/core/gpu/device';
import { createStorageBuffer, encodeKernel } from '../src/core/gpu/kernels';
import { GPU_QUANT_TYPES, defaultQuantizeVariant, quantizeDispatch, quantizeOnGpu, quantizedSize } from '../src/core/gpu/quantize';
import { quantizeGgml } from '../src/core/quant/ggml/index';
import { FileByteSource } from '../src/core/io/byteSource';
import { isSoftwareAdapter } from '../src/core/jobs/computeDevice';
import { JobRunner } from '../src/core/jobs/jobRunner';
import type { DeviceChoice, JobQuantType } from '../src/protocol/jobs';

const GB = 1e9;
/** Copies / kernel dispatches per submission in the device-side figures. */
const REPS = 20;
const MiB = 1024 * 1024;

function machineTag(): string {
  const cpu = cpus();
  return `${cpu[0]?.model.trim() ?? 'unknown CPU'} x${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${loadavg()[0]?.toFixed(1)}`;
}

let adapterTag = 'no adapter';
function line(label: string, value: string): void {
  console.log(`gpu: ${label.padEnd(44)} ${value}  [${adapterTag}; ${machineTag()}]`);
}

const rate = (bytes: number, ms: number): string => `${((bytes / GB) / (ms / 1000)).toFixed(2)} GB/s (${ms.toFixed(0)} ms for ${(bytes / MiB).toFixed(0)} MiB)`;

async function best(runs: number, fn: () => Promise<void>): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

function memcpyMs(bytes: number): number {
  const a = Buffer.alloc(bytes, 1);
  const b = Buffer.alloc(bytes);
  let min = Infinity;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    a.copy(b);
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

async function deviceFigures(gpu: GpuContext, bytes: number, memcpy: number): Promise<void> {
  const { device } = gpu;
  const values = new Float32Array(bytes / 4);
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(i) * 0.02;
  const a = createStorageBuffer(gpu, 'bench a', bytes);
  const b = createStorageBuffer(gpu, 'bench b', bytes);
  try {
    // Upload by writeBuffer (Dawn copies into its own staging memory, then to the buffer).
    const upload = await best(3, async () => {
      device.queue.writeBuffer(a, 0, values);
      await device.queue.onSubmittedWorkDone();
    });
    line('upload: queue.writeBuffer', rate(bytes, upload));
    // Upload through a buffer mapped at creation, copied on the GPU.
    const mapped = await best(3, async () => {
      const staging = device.createBuffer({ size: bytes, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.MAP_WRITE, mappedAtCreation: true });
      new Float32Array(staging.getMappedRange()).set(values);
      staging.unmap();
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(staging, 0, a, 0, bytes);
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
      staging.destroy();
    });
    line('upload: mappedAtCreation staging + copy', rate(bytes, mapped));
    // Upload through a ring of MAP_WRITE buffers reused with mapAsync (no allocation per chunk): fill,
    // unmap, copy on the GPU, remap while the next slot fills.
    const ringBytes = Math.min(16 * MiB, bytes);
    const ring = Array.from({ length: 4 }, () => device.createBuffer({ size: ringBytes, usage: GPUBufferUsage.MAP_WRITE | GPUBufferUsage.COPY_SRC, mappedAtCreation: true }));
    const ready: Promise<void>[] = ring.map(() => Promise.resolve());
    const isMapped = ring.map(() => true);
    const ringed = await best(3, async () => {
      let slot = 0;
      for (let offset = 0; offset < bytes; offset += ringBytes) {
        const n = Math.min(ringBytes, bytes - offset);
        const buffer = ring[slot]!;
        await ready[slot];
        if (!isMapped[slot]) await buffer.mapAsync(GPUMapMode.WRITE);
        new Float32Array(buffer.getMappedRange(0, n)).set(values.subarray(offset / 4, (offset + n) / 4));
        buffer.unmap();
        isMapped[slot] = false;
        const enc = device.createCommandEncoder();
        enc.copyBufferToBuffer(buffer, 0, a, offset, n);
        device.queue.submit([enc.finish()]);
        const s = slot;
        ready[s] = buffer.mapAsync(GPUMapMode.WRITE).then(() => {
          isMapped[s] = true;
        });
        slot = (slot + 1) % ring.length;
      }
      await Promise.all(ready);
      await device.queue.onSubmittedWorkDone();
    });
    ring.forEach((buffer) => buffer.destroy());
    line(`upload: ring of 4 x ${ringBytes / MiB} MiB MAP_WRITE buffers`, rate(bytes, ringed));
    // Device-side figures repeat the work REPS times in one submission, so submit/fence latency
    // (about a millisecond) does not hide a sub-millisecond copy or kernel.
    const copy = (await best(3, async () => {
      const enc = device.createCommandEncoder();
      for (let r = 0; r < REPS; r++) enc.copyBufferToBuffer(a, 0, b, 0, bytes);
      device.queue.submit([enc.finish()]);
      await device.queue.onSubmittedWorkDone();
    })) / REPS;
    line(`device-to-device copy (read + write, ${REPS} in one submit)`, rate(2 * bytes, copy));
    // Both kernels of the 32-value types (tile: GPUs, direct: software adapters; the default is marked).
    const preferred = defaultQuantizeVariant(gpu);
    for (const [name, variant] of [['Q8_0', 'tile'], ['Q8_0', 'direct'], ['Q4_0', 'tile'], ['Q4_0', 'direct']] as const) {
      const blocks = bytes / 128;
      const dispatch = quantizeDispatch(gpu, name, blocks, variant);
      const out = createStorageBuffer(gpu, 'bench out', dispatch.outputBytes);
      const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
      device.queue.writeBuffer(params, 0, dispatch.params);
      const run = async () => {
        const enc = device.createCommandEncoder();
        for (let r = 0; r < REPS; r++) encodeKernel(gpu, enc, dispatch.kernel, [a, out, params], dispatch.grid);
        device.queue.submit([enc.finish()]);
        await device.queue.onSubmittedWorkDone();
      };
      await run(); // compile + warm
      const c0 = process.cpuUsage();
      const ms = (await best(3, run)) / REPS;
      const cpu = process.cpuUsage(c0);
      const gbps = bytes / GB / (ms / 1000);
      line(
        `kernel only ${name} ${variant}${variant === preferred ? ' (default here)' : ''} (f32 read, ${REPS} in one submit)`,
        `${rate(bytes, ms)} = ${((gbps / ((2 * bytes) / GB / (copy / 1000))) * 100).toFixed(0)}% of device copy, ${((gbps / (bytes / GB / (memcpy / 1000))) * 100).toFixed(0)}% of host memcpy; CPU (user+sys, all threads) ${((cpu.user + cpu.system) / 1000 / (3 * REPS)).toFixed(0)} ms per pass`,
      );
      out.destroy();
      params.destroy();
    }
  } finally {
    a.destroy();
    b.destroy();
  }
}

/** Every GPU type in memory: CPU port (quantizeGgml) vs GPU path (upload + kernel + readback + layout), same bytes checked. */
async function perTypeFigures(gpu: GpuContext, bytes: number): Promise<void> {
  const values = new Float32Array(bytes / 4);
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 0.7) * 0.02 * (i % 997 === 0 ? 30 : 1);
  for (const type of GPU_QUANT_TYPES) {
    const cpuOut = new Uint8Array(quantizedSize(type, values.length));
    const gpuOut = new Uint8Array(cpuOut.length);
    await quantizeOnGpu(gpu, type, values.subarray(0, 4096), gpuOut.subarray(0, quantizedSize(type, 4096))); // compile
    const t0 = performance.now();
    quantizeGgml(type, values, cpuOut);
    const cpuMs = performance.now() - t0;
    const t1 = performance.now();
    await quantizeOnGpu(gpu, type, values, gpuOut);
    const gpuMs = performance.now() - t1;
    const same = Buffer.from(cpuOut.buffer).equals(Buffer.from(gpuOut.buffer));
    line(`in memory ${type}: CPU port vs GPU path`, `CPU ${rate(bytes, cpuMs)} | GPU ${rate(bytes, gpuMs)} | GPU/CPU time ${(gpuMs / cpuMs).toFixed(2)} | bytes ${same ? 'identical' : 'DIFFER'}`);
  }
}

/** A row-major F32 safetensors checkpoint of `tensors` matrices [rows, 4096], written with real (pseudo-random) values. */
function writeCheckpoint(path: string, totalBytes: number): number {
  const cols = 4096;
  const rowsPerTensor = 1024; // 16 MiB tensors
  const tensorBytes = rowsPerTensor * cols * 4;
  const count = Math.max(1, Math.round(totalBytes / tensorBytes));
  const header: Record<string, unknown> = {};
  for (let t = 0; t < count; t++) header[`layers.${t}.weight`] = { dtype: 'F32', shape: [rowsPerTensor, cols], data_offsets: [t * tensorBytes, (t + 1) * tensorBytes] };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    writeSync(fd, len);
    writeSync(fd, json);
    const values = new Float32Array(rowsPerTensor * cols);
    let seed = 12345;
    for (let t = 0; t < count; t++) {
      for (let i = 0; i < values.length; i++) {
        seed = (seed * 1664525 + 1013904223) >>> 0;
        values[i] = ((seed / 2 ** 32) * 2 - 1) * 0.05 * (i % 4096 === t % 4096 ? 40 : 1);
      }
      writeSync(fd, new Uint8Array(values.buffer));
    }
  } finally {
    closeSync(fd);
  }
  return count * tensorBytes;
}

async function readFileMs(path: string): Promise<number> {
  const source = await FileByteSource.open(path);
  try {
    const window = new Uint8Array(64 * MiB);
    return await best(2, async () => {
      for (let off = 0; off < source.size; off += window.byteLength) await source.read(off, window.subarray(0, Math.min(window.byteLength, source.size - off)));
    });
  } finally {
    await source.close();
  }
}

async function endToEnd(runner: JobRunner, model: string, dataBytes: number, dir: string, label: string): Promise<void> {
  const readMs = await readFileMs(model);
  line(`${label}: read the file (page cache)`, rate(statSync(model).size, readMs));
  for (const type of ['Q8_0', 'Q4_0'] as const satisfies readonly JobQuantType[]) {
    for (const device of ['cpu', 'gpu'] as const satisfies readonly DeviceChoice[]) {
      const out = join(dir, `out.${type}.${device}.bin`);
      const t0 = performance.now();
      const r = await runner.run({ kind: 'quantizeTensors', modelPath: model, outputPath: out, ggmlType: type, device });
      const ms = performance.now() - t0;
      line(`${label}: quantize ${type} ${device.toUpperCase()} path (job)`, `${rate(dataBytes, ms)}, ${r.tensors.length} tensors, ${(ms / readMs).toFixed(1)}x the read time`);
      rmSync(out, { force: true });
    }
  }
  for (const device of ['cpu', 'gpu'] as const satisfies readonly DeviceChoice[]) {
    const t0 = performance.now();
    await runner.run({ kind: 'stats', modelPath: model, device, histogramBins: 64, logOctaves: 24, outlierSigma: 6, topChannels: 8 });
    const ms = performance.now() - t0;
    line(`${label}: stats of all weights, ${device.toUpperCase()} path`, `${rate(dataBytes, ms)} = ${(ms / readMs).toFixed(1)}x the read time (target <= 2x)`);
  }
}

/** Wall and CPU time (user + system, every thread of this process, the job worker's included) of one run. */
async function timed(fn: () => Promise<void>): Promise<{ wall: number; cpu: number }> {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  await fn();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / 1000 };
}

/**
 * The stats job over all weights: CPU path at 1 and 2 compute threads (QUANTLENS_STATS_THREADS) and the GPU path,
 * runs interleaved with reads of the file, so that every variant sees the same machine load.
 */
async function statsFigures(model: string, label: string, hasGpu: boolean): Promise<void> {
  const runs = Math.max(1, Number(process.env.QUANTLENS_BENCH_STATS_RUNS ?? '3'));
  const bytes = statSync(model).size;
  const variants: { name: string; device: DeviceChoice; threads?: string }[] = [
    { name: 'CPU path, 1 thread', device: 'cpu', threads: '1' },
    { name: 'CPU path, 2 threads', device: 'cpu', threads: '2' },
  ];
  if (hasGpu) variants.push({ name: 'GPU path', device: 'gpu' });
  const reads: { wall: number; cpu: number }[] = [];
  const times = new Map<string, { wall: number; cpu: number }[]>(variants.map((v) => [v.name, []]));
  const readOnce = async () => {
    const source = await FileByteSource.open(model);
    try {
      const window = new Uint8Array(64 * MiB);
      reads.push(await timed(async () => {
        for (let off = 0; off < source.size; off += window.byteLength) await source.read(off, window.subarray(0, Math.min(window.byteLength, source.size - off)));
      }));
    } finally {
      await source.close();
    }
  };
  // A worker copies process.env when it starts: one runner per thread setting.
  const saved = process.env.QUANTLENS_STATS_THREADS;
  const runners = new Map<string, JobRunner>();
  try {
    for (const v of variants) {
      if (v.threads === undefined) delete process.env.QUANTLENS_STATS_THREADS;
      else process.env.QUANTLENS_STATS_THREADS = v.threads;
      runners.set(v.name, await JobRunner.start());
    }
    if (saved === undefined) delete process.env.QUANTLENS_STATS_THREADS;
    else process.env.QUANTLENS_STATS_THREADS = saved;
    await readOnce(); // page cache warm
    for (let r = 0; r < runs; r++) {
      for (const v of variants) {
        await readOnce();
        const runner = runners.get(v.name)!;
        times.get(v.name)!.push(await timed(async () => {
          await runner.run({ kind: 'stats', modelPath: model, device: v.device, histogramBins: 64, logOctaves: 24, outlierSigma: 6, topChannels: 8 });
        }));
      }
    }
  } finally {
    if (saved === undefined) delete process.env.QUANTLENS_STATS_THREADS;
    else process.env.QUANTLENS_STATS_THREADS = saved;
    for (const runner of runners.values()) await runner.dispose();
  }
  const bestRead = Math.min(...reads.map((x) => x.wall));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  line(`stats, ${label}: read the file (page cache), ${reads.length} reads`, `best ${rate(bytes, bestRead)}, median ${median(reads.map((x) => x.wall)).toFixed(0)} ms, CPU ${median(reads.map((x) => x.cpu)).toFixed(0)} ms`);
  for (const v of variants) {
    const t = times.get(v.name)!;
    const best = Math.min(...t.map((x) => x.wall));
    line(
      `stats of all weights, ${label}, ${v.name}`,
      `best ${best.toFixed(0)} ms = ${(best / bestRead).toFixed(2)}x the read, median ${median(t.map((x) => x.wall)).toFixed(0)} ms = ${(median(t.map((x) => x.wall)) / bestRead).toFixed(2)}x; CPU ${t.map((x) => x.cpu.toFixed(0)).join(' / ')} ms; walls ${t.map((x) => x.wall.toFixed(0)).join(' / ')} ms (target <= 2x)`,
    );
  }
}

function repoRoot(): string {
  for (const candidate of [resolve(__dirname, '..'), process.cwd()]) if (existsSync(join(candidate, 'package.json'))) return candidate;
  return process.cwd();
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 8 * MiB })) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * The quantize job end to end (read the F32 GGUF, quantize, write the GGUF, measure the card) on the CPU
 * path and the GPU path, beside llama-quantize on the same file; the outputs' hashes compared.
 */
async function quantizeJobFigures(runner: JobRunner, sizeMiB: number, dir: string): Promise<void> {
  const root = repoRoot();
  const shape = llamaShapeForSize(sizeMiB * MiB);
  const work = join(root, '.cache', 'bench-quantize');
  mkdirSync(work, { recursive: true });
  const folder = join(work, `llama-h${shape.hidden}-f${shape.ffn}-l${shape.layers}-v${shape.vocab}-s${shape.seed}`);
  const model = await generateLlama(folder, shape, join(root, 'test', 'fixtures', 'micro-llama'), (l) => console.log(`gpu: ${l}`));
  const input = model.f32Gguf;
  const inputBytes = statSync(input).size;
  const label = `LLaMA ${(model.parameters / 1e6).toFixed(0)} M params (${(model.bf16Bytes / MiB).toFixed(0)} MiB BF16), F32 GGUF`;
  const readMs = await readFileMs(input);
  line(`${label}: read the file (page cache)`, rate(inputBytes, readMs));
  const llama = findLlamaCppTool('llama-quantize');
  if (!llama.found) line('quantize job vs llama-quantize', `llama-quantize not found (${llama.reason}): ours only`);
  for (const target of ['Q8_0', 'Q4_K_M']) {
    const ms: Record<string, number> = {};
    const hashes: Record<string, string> = {};
    for (const device of ['cpu', 'gpu'] as const satisfies readonly DeviceChoice[]) {
      const out = join(dir, `job.${target}.${device}.gguf`);
      const t0 = performance.now();
      const r = await runner.run({ kind: 'quantize', request: { input, output: out, target }, device });
      ms[device] = performance.now() - t0;
      hashes[device] = await sha256File(out);
      line(`quantize job ${target}, ${device.toUpperCase()} path`, `${rate(inputBytes, ms[device])} of F32 in, ${(ms[device] / readMs).toFixed(1)}x the read time, card device ${String(r.result.card.recipe.device)}`);
      rmSync(out, { force: true });
      rmSync(`${out}.quant.json`, { force: true });
    }
    if (llama.found) {
      const out = join(dir, `llama.${target}.gguf`);
      const t0 = performance.now();
      const r = spawnSync(llama.path, [input, out, target], { stdio: 'ignore' });
      ms.llama = performance.now() - t0;
      if (r.status === 0) {
        hashes.llama = await sha256File(out);
        line(`llama-quantize ${target} (${availableParallelism()} threads, its default)`, rate(inputBytes, ms.llama));
      } else line(`llama-quantize ${target}`, `failed (exit ${r.status})`);
      rmSync(out, { force: true });
    }
    const sameCpuGpu = hashes.cpu === hashes.gpu;
    const sameLlama = hashes.llama === undefined ? 'not compared' : hashes.llama === hashes.gpu && hashes.llama === hashes.cpu ? 'identical' : 'DIFFERENT';
    const vsLlama = ms.llama === undefined || hashes.llama === undefined ? '' : `; CPU ÷ llama-quantize ${(ms.cpu! / ms.llama).toFixed(2)}, GPU ÷ llama-quantize ${(ms.gpu! / ms.llama).toFixed(2)}`;
    line(
      `quantize job ${target}: side by side`,
      `GPU ÷ CPU time ${(ms.gpu! / ms.cpu!).toFixed(2)} (lavapipe target <= 2)${vsLlama}; bytes CPU vs GPU ${sameCpuGpu ? 'identical' : 'DIFFERENT'}, vs llama-quantize ${sameLlama}`,
    );
  }
}

export async function benchGpu(): Promise<void> {
  const sizeMiB = Number(process.env.QUANTLENS_BENCH_GPU_MB ?? '1024');
  const parts = new Set((process.env.QUANTLENS_BENCH_GPU_PARTS ?? 'device,types,tensors,stats,job').split(',').map((p) => p.trim()));
  let gpu: GpuContext | null = null;
  try {
    gpu = await acquireGpu();
    adapterTag = gpu.description;
    console.log(`gpu: adapter ${gpu.description}; maxStorageBufferBindingSize ${gpu.limits.maxStorageBufferBindingSize}, maxBufferSize ${gpu.limits.maxBufferSize}`);
  } catch (e) {
    console.log(`gpu: no WebGPU device (${e instanceof Error ? e.message : String(e)}): GPU figures skipped, CPU figures only`);
  }
  const probeBytes = Math.min(256, sizeMiB) * MiB;
  const memcpy = memcpyMs(probeBytes);
  line('host memcpy (Buffer.copy, read + write)', rate(2 * probeBytes, memcpy));
  if (gpu !== null) {
    try {
      if (parts.has('device')) await deviceFigures(gpu, Math.min(probeBytes, Math.floor(gpu.limits.maxStorageBufferBindingSize / (4 * MiB)) * 4 * MiB), memcpy);
      if (parts.has('types')) await perTypeFigures(gpu, Math.min(probeBytes, 64 * MiB));
    } finally {
      gpu.destroy();
    }
  }
  const hasGpu = gpu !== null;
  const gpuIsHardware = gpu !== null && !isSoftwareAdapter(gpu.description);
  const dir = mkdtempSync(join(tmpdir(), 'quantlens-bench-gpu-'));
  const runner = await JobRunner.start();
  try {
    if (parts.has('stats')) {
      const given = process.env.QUANTLENS_BENCH_STATS_MODEL;
      const model = given ?? join(dir, 'stats.safetensors');
      if (given === undefined) writeCheckpoint(model, sizeMiB * MiB);
      await statsFigures(model, `${(statSync(model).size / MiB).toFixed(0)} MiB F32`, hasGpu);
      if (given === undefined) rmSync(model, { force: true });
      // A real checkpoint's layout: BF16 (twice the values per byte), a 32000 x 2048 embedding and lm_head (8
      // windows each) and 2-window MLP tensors; the GPU path is left out on software adapters (minutes there).
      const root = repoRoot();
      const shape = llamaShapeForSize(sizeMiB * MiB);
      const work = join(root, '.cache', 'bench-quantize');
      mkdirSync(work, { recursive: true });
      const llama = await generateLlama(join(work, `llama-h${shape.hidden}-f${shape.ffn}-l${shape.layers}-v${shape.vocab}-s${shape.seed}`), shape, join(root, 'test', 'fixtures', 'micro-llama'), (l) => console.log(`gpu: ${l}`), []);
      await statsFigures(join(llama.hfFolder, 'model.safetensors'), `LLaMA ${(llama.parameters / 1e6).toFixed(0)} M params, ${(llama.bf16Bytes / MiB).toFixed(0)} MiB BF16 safetensors`, hasGpu && gpuIsHardware);
    }
    if (parts.has('tensors')) {
      const model = join(dir, 'model.safetensors');
      const dataBytes = writeCheckpoint(model, sizeMiB * MiB);
      await endToEnd(runner, model, dataBytes, dir, `generated ${(dataBytes / MiB).toFixed(0)} MiB F32`);
      rmSync(model, { force: true });
    }
    const llamaQuantize = process.env.QUANTLENS_LLAMA_QUANTIZE;
    const gguf = process.env.QUANTLENS_BENCH_GGUF_F32;
    if (!parts.has('tensors')) {
      // the llama-quantize comparison on a given GGUF belongs to the quantizeTensors part
    } else if (llamaQuantize !== undefined && gguf !== undefined && existsSync(llamaQuantize) && existsSync(gguf)) {
      const ggufBytes = statSync(gguf).size;
      for (const type of ['Q8_0', 'Q4_0', 'Q4_K_M']) {
        const out = join(dir, `llama.${type}.gguf`);
        const t0 = performance.now();
        const r = spawnSync(llamaQuantize, [gguf, out, type], { stdio: 'ignore' });
        const ms = performance.now() - t0;
        line(`llama-quantize ${type} (${cpus().length} threads default)`, r.status === 0 ? rate(ggufBytes, ms) : `failed (exit ${r.status})`);
        rmSync(out, { force: true });
      }
      await endToEnd(runner, gguf, ggufBytes, dir, 'the same F32 GGUF');
    } else {
      line('llama-quantize', 'skipped: set QUANTLENS_LLAMA_QUANTIZE=<llama-quantize> and QUANTLENS_BENCH_GGUF_F32=<an F32 .gguf> to compare on the same file');
    }
    if (parts.has('job')) await quantizeJobFigures(runner, sizeMiB, dir);
  } finally {
    await runner.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
}
