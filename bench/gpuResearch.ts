/**
 * The research quantizers, CPU reference (core/quant) vs GPU path (core/gpu/researchQuant.ts: upload,
 * kernels, readback), on one in-memory f32 tensor of 64 MiB ([4096, 4096]); each line gives both times,
 * both rates (GB/s of f32 read) and whether the outputs are bit-identical. Called from bench/gpu.ts
 * with its device and line printer: `await benchResearchQuant(gpu, line);`.
 */
import type { GpuContext } from '../src/core/gpu/device';
import type { GpuRunOptions } from '../src/core/gpu/quantize';
import {
  quantizeFp8E4M3OnGpu,
  quantizeInt8AbsmaxOnGpu,
  quantizeInt8ZeroPointOnGpu,
  quantizeNf4OnGpu,
  quantizeRowsIntNOnGpu,
} from '../src/core/gpu/researchQuant';
import { quantizeInt8Absmax, quantizeInt8ZeroPoint } from '../src/core/quant/int8';
import { allocateIntN, quantizeRowsIntN, type IntNScheme } from '../src/core/quant/intN';
import { quantizeNf4 } from '../src/core/quant/nf4';
import { quantizeFp8E4M3 } from '../src/core/quant/fp8';

const GB = 1e9;
const MiB = 1024 * 1024;

type Output = Uint8Array | Int8Array | Float32Array;

interface ResearchScheme {
  name: string;
  cpu(values: Float32Array, rows: number, cols: number): Output[];
  gpu(gpu: GpuContext, values: Float32Array, rows: number, cols: number, options?: GpuRunOptions): Promise<Output[]>;
}

function intN(scheme: IntNScheme, minZero: number): Pick<ResearchScheme, 'cpu' | 'gpu'> {
  return {
    cpu: (values, rows, cols) => {
      const q = allocateIntN(rows, cols, scheme);
      quantizeRowsIntN(values, q, minZero);
      return [q.levels, q.scales, q.zeros];
    },
    gpu: async (gpu, values, rows, cols, options) => {
      const q = allocateIntN(rows, cols, scheme);
      await quantizeRowsIntNOnGpu(gpu, values, q, minZero, options);
      return [q.levels, q.scales, q.zeros];
    },
  };
}

const SCHEMES: ResearchScheme[] = [
  {
    name: 'INT8 absmax per channel',
    cpu: (v, r, c) => Object.values(quantizeInt8Absmax(v, r, c, 'channel')).filter(isOutput),
    gpu: async (g, v, r, c, o) => Object.values(await quantizeInt8AbsmaxOnGpu(g, v, r, c, 'channel', o)).filter(isOutput),
  },
  {
    name: 'INT8 absmax per tensor',
    cpu: (v, r, c) => Object.values(quantizeInt8Absmax(v, r, c, 'tensor')).filter(isOutput),
    gpu: async (g, v, r, c, o) => Object.values(await quantizeInt8AbsmaxOnGpu(g, v, r, c, 'tensor', o)).filter(isOutput),
  },
  {
    name: 'INT8 zero-point per channel',
    cpu: (v, r, c) => Object.values(quantizeInt8ZeroPoint(v, r, c, 'channel')).filter(isOutput),
    gpu: async (g, v, r, c, o) => Object.values(await quantizeInt8ZeroPointOnGpu(g, v, r, c, 'channel', o)).filter(isOutput),
  },
  { name: 'INT4 asym g128 (GPTQ zeros >= 1)', ...intN({ bits: 4, groupSize: 128, symmetric: false }, 1) },
  { name: 'INT4 sym g32', ...intN({ bits: 4, groupSize: 32, symmetric: true }, 0) },
  { name: 'INT3 asym g64', ...intN({ bits: 3, groupSize: 64, symmetric: false }, 0) },
  {
    name: 'NF4 (blocks of 64)',
    cpu: (v) => {
      const q = quantizeNf4(v);
      return [q.packed, q.absmax];
    },
    gpu: async (g, v, _r, _c, o) => {
      const q = await quantizeNf4OnGpu(g, v, o);
      return [q.packed, q.absmax];
    },
  },
  {
    name: 'FP8 E4M3 per channel',
    cpu: (v, r, c) => Object.values(quantizeFp8E4M3(v, r, c, 'channel')).filter(isOutput),
    gpu: async (g, v, r, c, o) => Object.values(await quantizeFp8E4M3OnGpu(g, v, r, c, 'channel', o)).filter(isOutput),
  },
];

function isOutput(v: unknown): v is Output {
  return v instanceof Uint8Array || v instanceof Int8Array || v instanceof Float32Array;
}

function sameBytes(a: Output[], b: Output[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i]!;
    return Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
  });
}

const rate = (bytes: number, ms: number): string => `${(bytes / GB / (ms / 1000)).toFixed(2)} GB/s (${ms.toFixed(0)} ms)`;

/**
 * Prints one line per scheme through `log(label, value)`: CPU and GPU time and GB/s, GPU/CPU time,
 * and whether every output (codes, scales, zeros, absmax) is bit-identical. `bytes` of f32 input
 * (default 64 MiB, as [bytes / 16 KiB, 4096]).
 */
export async function benchResearchQuant(gpu: GpuContext, log: (label: string, value: string) => void, bytes = 64 * MiB): Promise<void> {
  const cols = 4096;
  const rows = Math.max(1, Math.floor(bytes / 4 / cols));
  const values = new Float32Array(rows * cols);
  // Smooth values with a few large outliers per row, as real weights have.
  for (let i = 0; i < values.length; i++) values[i] = Math.sin(i * 0.7) * 0.02 * (i % 997 === 0 ? 30 : 1);
  const inputBytes = values.byteLength;
  const warm = values.subarray(0, 64 * cols);
  for (const scheme of SCHEMES) {
    await scheme.gpu(gpu, warm, 64, cols); // compile the pipelines outside the timing
    const t0 = performance.now();
    const cpuOut = scheme.cpu(values, rows, cols);
    const cpuMs = performance.now() - t0;
    // Time spent in the upload phases (queue.writeBuffer copies the data when called): the rest is
    // kernels, readback and laying out the results.
    let uploadMs = 0;
    let uploadStarted = 0;
    const onPhase = (phase: string): void => {
      const now = performance.now();
      if (phase === 'upload') uploadStarted = now;
      else if (phase === 'compute' && uploadStarted > 0) {
        uploadMs += now - uploadStarted;
        uploadStarted = 0;
      }
    };
    const t1 = performance.now();
    const gpuOut = await scheme.gpu(gpu, values, rows, cols, { onPhase });
    const gpuMs = performance.now() - t1;
    const same = sameBytes(cpuOut, gpuOut);
    log(
      `in memory ${scheme.name}: CPU vs GPU`,
      `CPU ${rate(inputBytes, cpuMs)} | GPU ${rate(inputBytes, gpuMs)}, of which upload ${uploadMs.toFixed(0)} ms, the rest ${rate(inputBytes, gpuMs - uploadMs)} | GPU/CPU time ${(gpuMs / cpuMs).toFixed(2)} | outputs ${same ? 'bit-identical' : 'DIFFER'} (${(inputBytes / MiB).toFixed(0)} MiB f32)`,
    );
  }
}
