/**
 * GPTQ's heavy parts on WebGPU (issue #6 item 4); the CPU path is core/methods/gptq.ts.
 *
 * - `GpuHessianAccumulator`: sum x x^T of a layer's inputs. Chunks of token rows are uploaded and
 *   multiplied on the device (`gptq_matmul`, upper-triangle tiles only) into an f32 partial sum; every
 *   `tokensPerReadback` tokens (default 4096) the partial sum is read back and added into a float64 sum
 *   on the host. Precision: f32 products and f32 sums over at most that many tokens (the reference
 *   gptq.py keeps the whole Hessian in f32; the CPU accumulator sums 256-token f32 chunks in float64),
 *   float64 across readbacks.
 * - `gptqQuantizeLayerGpu`: the steps of the CPU driver (prepareGptq -> per block columnBlockOf /
 *   quantizeColumnBlock -> lazy batch update -> finishGptq) with W (f32, stored transposed: cols x rows,
 *   so that a block of columns is one contiguous range) and Hinv (f32) resident on the device. Per block
 *   the columns the CPU step reads come back, the CPU quantizes them column by column (float64, as the
 *   CPU driver), Err1 goes up and W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] runs as a matmul on the device:
 *   first over the next block's columns (read back as soon as they are done), then over the rest, which
 *   overlaps the CPU's work on the next block. The Cholesky of H^-1 stays on the CPU (prepareGptq).
 *   The update is f32 on the device and float64 on the CPU, so a weight that lands within rounding of a
 *   grid boundary may take the neighbouring code (test/gpu/gptq.test.ts bounds how often, and the
 *   layer's output error against the CPU's).
 */
import { InvalidArgumentError } from '../errors';
import { isSoftwareAdapter } from '../jobs/computeDevice';
import type { AsyncGramAccumulator } from '../methods/inputStats';
import { columnBlockOf, finishGptq, hessianFromSum, prepareGptq, quantizeColumnBlock, type GptqLayerResult, type GptqLayerState, type GptqOptions } from '../methods/gptq';
import { guarded, type GpuContext } from './device';
import { createStorageBuffer, encodeKernel, pipelineFor, type Kernel } from './kernels';
import { WGSL_SOURCES } from './kernels/index';

/** Output tile of one matmul workgroup (64 x 64). */
const TILE = 64;

export const GPTQ_KERNELS = {
  /** Workgroups: a 2-D grid of 64 x 64 output tiles (x over n, y over m). */
  matmul: { name: 'gptq_matmul', wgsl: WGSL_SOURCES.gptq_matmul, bindings: ['read-only-storage', 'read-only-storage', 'storage', 'uniform'], workgroupSize: 256, workgroupsFor: (n: number) => Math.ceil(n / TILE) },
  /** The same product without workgroup memory, for software adapters. */
  matmulDirect: {
    name: 'gptq_matmul_direct',
    wgsl: WGSL_SOURCES.gptq_matmul_direct,
    bindings: ['read-only-storage', 'read-only-storage', 'storage', 'uniform'],
    workgroupSize: 256,
    workgroupsFor: (n: number) => Math.ceil(n / TILE),
  },
} as const satisfies Record<string, Kernel>;

export type GptqMatmulVariant = 'tiled' | 'direct';

/** `tiled` on GPUs, `direct` on software adapters (lavapipe runs barriers as coroutines). */
export function defaultGptqMatmulVariant(gpu: GpuContext): GptqMatmulVariant {
  return isSoftwareAdapter(gpu.description) ? 'direct' : 'tiled';
}

function kernelOf(variant: GptqMatmulVariant): Kernel {
  return variant === 'direct' ? GPTQ_KERNELS.matmulDirect : GPTQ_KERNELS.matmul;
}

/**
 * out[oOff + m*oRs + n] (op)= sum_k a[aOff + m*aRs + k*aCs] * b[bOff + k*bRs + n*bCs], all indices in f32 elements.
 * op: `set`, `add` or `subtract`; `upperTiles` skips tiles entirely below the diagonal (m > n).
 */
export interface StridedMatmul {
  M: number;
  N: number;
  K: number;
  op: 'set' | 'add' | 'subtract';
  upperTiles?: boolean;
  aOff: number;
  aRs: number;
  aCs: number;
  bOff: number;
  bRs: number;
  bCs: number;
  oOff: number;
  oRs: number;
}

/** The uniform words of one product (the kernels' Params). */
export function matmulParams(p: StridedMatmul): Uint32Array {
  const flags = (p.op === 'set' ? 0 : 1) | (p.op === 'subtract' ? 2 : 0) | (p.upperTiles === true ? 4 : 0);
  const words = [p.M, p.N, p.K, flags, p.aOff, p.aRs, p.aCs, p.bOff, p.bRs, p.bCs, p.oOff, p.oRs];
  for (const w of words) if (!Number.isInteger(w) || w < 0 || w > 0xffffffff) throw new InvalidArgumentError(`GPTQ matmul: parameter ${w} does not fit a u32`);
  return Uint32Array.from(words);
}

/** Records one strided product into `encoder`; `uniform` (16 words) is written now, in queue order. */
export function encodeStridedMatmul(gpu: GpuContext, encoder: GPUCommandEncoder, variant: GptqMatmulVariant, a: GPUBuffer, b: GPUBuffer, out: GPUBuffer, uniform: GPUBuffer, p: StridedMatmul): void {
  if (p.M === 0 || p.N === 0) return;
  const tilesX = Math.ceil(p.N / TILE);
  const tilesY = Math.ceil(p.M / TILE);
  const max = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (tilesX > max || tilesY > max) throw new InvalidArgumentError(`GPTQ matmul: ${p.M} x ${p.N} exceeds the device's grid`);
  gpu.device.queue.writeBuffer(uniform, 0, matmulParams(p));
  encodeKernel(gpu, encoder, kernelOf(variant), [a, b, out, uniform], { x: tilesX, y: tilesY });
}

function uniformBuffer(gpu: GpuContext, label: string): GPUBuffer {
  return gpu.device.createBuffer({ label, size: 64, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
}

export interface GpuHessianOptions {
  /** Token rows per upload and dispatch (default 1024). */
  chunkTokens?: number;
  /** Tokens summed in f32 on the device before the partial sum is read back into float64 (default 4096). */
  tokensPerReadback?: number;
  matmul?: GptqMatmulVariant;
}

/**
 * sum x x^T of a layer's inputs on the device (see the file comment for the precision). The same contract
 * as methods/gptq.ts HessianAccumulator, asynchronous; `destroy()` frees the device buffers. The calibration pass
 * takes it as an InputStatsOptions.gram (jobs/gptqDevice.ts's `hessian` provider) for GPTQ's sites.
 */
export class GpuHessianAccumulator implements AsyncGramAccumulator {
  readonly columns: number;
  /** Number of token rows added so far. */
  tokens = 0;
  private readonly sum: Float64Array;
  private pendingTokens = 0;
  private readonly chunkTokens: number;
  private readonly tokensPerReadback: number;
  private readonly variant: GptqMatmulVariant;
  private readonly partial: GPUBuffer;
  private readonly chunk: GPUBuffer;
  private readonly uniform: GPUBuffer;

  constructor(
    private readonly gpu: GpuContext,
    columns: number,
    options: GpuHessianOptions = {},
  ) {
    if (!Number.isInteger(columns) || columns <= 0) throw new InvalidArgumentError(`Hessian: invalid column count ${columns}`);
    this.columns = columns;
    this.chunkTokens = options.chunkTokens ?? 1024;
    this.tokensPerReadback = options.tokensPerReadback ?? 4096;
    if (!(Number.isInteger(this.chunkTokens) && this.chunkTokens > 0)) throw new InvalidArgumentError(`Hessian: invalid chunk of ${this.chunkTokens} tokens`);
    this.variant = options.matmul ?? defaultGptqMatmulVariant(gpu);
    const bytes = columns * columns * 4;
    if (bytes > gpu.limits.maxStorageBufferBindingSize) {
      throw new InvalidArgumentError(`Hessian: ${columns}x${columns} f32 (${bytes} bytes) exceeds the device's storage binding limit ${gpu.limits.maxStorageBufferBindingSize}`);
    }
    this.sum = new Float64Array(columns * columns);
    this.partial = createStorageBuffer(gpu, 'gptq hessian partial', bytes);
    this.chunk = createStorageBuffer(gpu, 'gptq hessian rows', this.chunkTokens * columns * 4);
    this.uniform = uniformBuffer(gpu, 'gptq hessian params');
  }

  /** Adds `rowCount` token rows of a row-major (rowCount x columns) activation matrix. */
  async addRows(x: Float32Array, rowCount: number): Promise<void> {
    const n = this.columns;
    if (x.length < rowCount * n) throw new InvalidArgumentError(`Hessian: ${x.length} values do not hold ${rowCount} rows of ${n}`);
    const { gpu } = this;
    await guarded(gpu, 'GPTQ Hessian on the GPU', async () => {
      for (let t0 = 0; t0 < rowCount; t0 += this.chunkTokens) {
        const tCount = Math.min(this.chunkTokens, rowCount - t0);
        gpu.device.queue.writeBuffer(this.chunk, 0, x.buffer, x.byteOffset + t0 * n * 4, tCount * n * 4);
        const encoder = gpu.device.createCommandEncoder();
        // H[i, j] += sum_t X[t, i] X[t, j]: a(m, k) = X[k, m], b(k, n) = X[k, n].
        encodeStridedMatmul(gpu, encoder, this.variant, this.chunk, this.chunk, this.partial, this.uniform, {
          M: n,
          N: n,
          K: tCount,
          op: 'add',
          upperTiles: true,
          aOff: 0,
          aRs: 1,
          aCs: n,
          bOff: 0,
          bRs: n,
          bCs: 1,
          oOff: 0,
          oRs: n,
        });
        gpu.device.queue.submit([encoder.finish()]);
        // One chunk in flight: the host's copy of the next chunk waits for this one (bounded queue memory).
        await gpu.device.queue.onSubmittedWorkDone();
        this.pendingTokens += tCount;
        if (this.pendingTokens >= this.tokensPerReadback) await this.drain();
      }
    });
    this.tokens += rowCount;
  }

  /** Adds the device's f32 partial sum (upper triangle) into the float64 sum and clears it. */
  private async drain(): Promise<void> {
    const { gpu } = this;
    const n = this.columns;
    const bytes = n * n * 4;
    const staging = gpu.device.createBuffer({ label: 'gptq hessian readback', size: bytes, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    try {
      const encoder = gpu.device.createCommandEncoder();
      encoder.copyBufferToBuffer(this.partial, 0, staging, 0, bytes);
      encoder.clearBuffer(this.partial);
      gpu.device.queue.submit([encoder.finish()]);
      await staging.mapAsync(GPUMapMode.READ);
      const p = new Float32Array(staging.getMappedRange());
      const s = this.sum;
      for (let i = 0; i < n; i++) for (let j = i; j < n; j++) s[i * n + j]! += p[i * n + j]!;
      staging.unmap();
    } finally {
      staging.destroy();
    }
    this.pendingTokens = 0;
  }

  /** H = 2/n * sum x x^T as a full symmetric matrix (from the upper triangle). */
  async hessian(): Promise<Float64Array> {
    if (this.tokens === 0) throw new InvalidArgumentError('Hessian: no calibration tokens reached this layer');
    if (this.pendingTokens > 0) await guarded(this.gpu, 'GPTQ Hessian readback', () => this.drain());
    return hessianFromSum(this.sum, this.columns, this.tokens);
  }

  destroy(): void {
    this.partial.destroy();
    this.chunk.destroy();
    this.uniform.destroy();
  }
}

export interface GpuGptqOptions extends GptqOptions {
  matmul?: GptqMatmulVariant;
}

/** Where the time of one layer went (seconds, wall). */
export interface GpuGptqTiming {
  /** prepareGptq: damping, Cholesky of H^-1 (CPU). */
  prepare: number;
  /** Uploading W and Hinv. */
  upload: number;
  /** quantizeColumnBlock (CPU). */
  columnBlocks: number;
  /** Waiting for the device: the lazy batch updates and readbacks not hidden behind the CPU's work. */
  deviceWait: number;
}

export type GpuGptqLayerResult = GptqLayerResult & { timing: GpuGptqTiming };

/**
 * The columns quantizeColumnBlock reads for block [i1, i2): W1 = W[:, i1:i2], and for int targets the
 * whole of every group that starts in the block (its grid comes from the block-start state of W).
 */
function readEnd(state: GptqLayerState, i1: number, i2: number): number {
  if (state.target.kind !== 'int') return i2;
  let end = i2;
  const g = state.groupSize;
  for (let c = Math.ceil(i1 / g) * g; c < i2; c += g) end = Math.max(end, Math.min(state.cols, c + g));
  return end;
}

/**
 * GPTQ-quantizes one layer with the lazy batch updates on the device (see the file comment). Same
 * arguments and result as gptqQuantizeLayer, plus where the time went. GPU failures throw
 * GpuUnavailableError (the caller may rerun the layer on the CPU); cancel throws CancelledError between
 * columns. Device buffers are freed before returning.
 */
export async function gptqQuantizeLayerGpu(gpu: GpuContext, weight: Float32Array, rows: number, cols: number, hessian: Float64Array, options: GpuGptqOptions): Promise<GpuGptqLayerResult> {
  const t0 = performance.now();
  const state = prepareGptq(weight, rows, cols, hessian, options);
  const prepare = (performance.now() - t0) / 1000;
  const result = await gptqColumnsOnGpu(gpu, state, options);
  result.timing.prepare = prepare;
  return result;
}

/**
 * The column phase of GPTQ on the device, from a prepared state (prepareGptq): everything of
 * gptqQuantizeLayerGpu after the Cholesky. `timing.prepare` is 0 here.
 */
export async function gptqColumnsOnGpu(gpu: GpuContext, state: GptqLayerState, options: { matmul?: GptqMatmulVariant } = {}): Promise<GpuGptqLayerResult> {
  const timing: GpuGptqTiming = { prepare: 0, upload: 0, columnBlocks: 0, deviceWait: 0 };
  let t = performance.now();
  const lap = (): number => {
    const now = performance.now();
    const s = (now - t) / 1000;
    t = now;
    return s;
  };
  const { rows, cols } = state;
  const variant = options.matmul ?? defaultGptqMatmulVariant(gpu);
  const bs = state.blockSize;
  const wBytes = rows * cols * 4;
  const binding = gpu.limits.maxStorageBufferBindingSize;
  if (wBytes > binding || cols * cols * 4 > binding) {
    throw new InvalidArgumentError(`GPTQ on the GPU: a ${rows}x${cols} layer (W ${wBytes} bytes, Hinv ${cols * cols * 4}) exceeds the storage binding limit ${binding}`);
  }
  let maxRead = 0;
  for (let i1 = 0; i1 < cols; i1 += bs) maxRead = Math.max(maxRead, readEnd(state, i1, Math.min(cols, i1 + bs)) - i1);

  const buffers: GPUBuffer[] = [];
  const track = (b: GPUBuffer): GPUBuffer => {
    buffers.push(b);
    return b;
  };
  try {
    return await guarded(gpu, 'GPTQ on the GPU', async () => {
      const { device } = gpu;
      const wt = track(createStorageBuffer(gpu, 'gptq W^T', wBytes));
      const hinv = track(createStorageBuffer(gpu, 'gptq Hinv', cols * cols * 4));
      const errT = track(createStorageBuffer(gpu, 'gptq Err1^T', bs * rows * 4));
      const staging = track(device.createBuffer({ label: 'gptq columns readback', size: Math.max(4, maxRead * rows * 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));
      const uniformNext = track(uniformBuffer(gpu, 'gptq update (next block)'));
      const uniformRest = track(uniformBuffer(gpu, 'gptq update (rest)'));
      pipelineFor(gpu, kernelOf(variant));
      // W^T in f32 from the prepared (permuted, dead-columns-zeroed) float64 weights, one row of W^T at a time.
      const { wp } = state;
      const column = new Float32Array(rows);
      for (let c = 0; c < cols; c++) {
        for (let r = 0; r < rows; r++) column[r] = wp[r * cols + c]!;
        device.queue.writeBuffer(wt, c * rows * 4, column);
      }
      device.queue.writeBuffer(hinv, 0, Float32Array.from(state.hinv));
      timing.upload = lap();

      // The columns [c0, c1) of W^T into state.wp (the CPU steps read W from there).
      const readColumns = async (c0: number, c1: number): Promise<void> => {
        await staging.mapAsync(GPUMapMode.READ, 0, (c1 - c0) * rows * 4);
        const v = new Float32Array(staging.getMappedRange(0, (c1 - c0) * rows * 4));
        for (let c = c0; c < c1; c++) {
          const src = (c - c0) * rows;
          for (let r = 0; r < rows; r++) wp[r * cols + c] = v[src + r]!;
        }
        staging.unmap();
      };
      const copyColumns = (encoder: GPUCommandEncoder, c0: number, c1: number): void => encoder.copyBufferToBuffer(wt, c0 * rows * 4, staging, 0, (c1 - c0) * rows * 4);

      {
        const encoder = device.createCommandEncoder();
        copyColumns(encoder, 0, readEnd(state, 0, Math.min(cols, bs)));
        device.queue.submit([encoder.finish()]);
        await readColumns(0, readEnd(state, 0, Math.min(cols, bs)));
      }
      timing.deviceWait += lap();
      const errHost = new Float32Array(bs * rows);
      for (let i1 = 0; i1 < cols; i1 += bs) {
        const i2 = Math.min(i1 + bs, cols);
        const count = i2 - i1;
        const err1 = quantizeColumnBlock(state, i1, i2, columnBlockOf(state, i1, i2));
        timing.columnBlocks += lap();
        if (i2 >= cols) break;
        // Err1^T (count x rows) so that b(k, n) = Err1[n, k] is read along n.
        for (let r = 0; r < rows; r++) for (let k = 0; k < count; k++) errHost[k * rows + r] = err1[r * count + k]!;
        device.queue.writeBuffer(errT, 0, errHost, 0, count * rows);
        // W^T[c, r] -= sum_k Hinv[i1 + k, c] * Err1[r, k] for c in [from, to).
        const update = (encoder: GPUCommandEncoder, uniform: GPUBuffer, from: number, to: number): void =>
          encodeStridedMatmul(gpu, encoder, variant, hinv, errT, wt, uniform, {
            M: to - from,
            N: rows,
            K: count,
            op: 'subtract',
            aOff: i1 * cols + from,
            aRs: 1,
            aCs: cols,
            bOff: 0,
            bRs: rows,
            bCs: 1,
            oOff: from * rows,
            oRs: rows,
          });
        const n2 = Math.min(i2 + bs, cols);
        const nextEnd = readEnd(state, i2, n2);
        const first = device.createCommandEncoder();
        update(first, uniformNext, i2, nextEnd);
        copyColumns(first, i2, nextEnd);
        const rest = device.createCommandEncoder();
        update(rest, uniformRest, nextEnd, cols);
        device.queue.submit([first.finish()]);
        device.queue.submit([rest.finish()]);
        await readColumns(i2, nextEnd);
        timing.deviceWait += lap();
      }
      const result = finishGptq(state);
      timing.columnBlocks += lap();
      return { ...result, timing };
    });
  } finally {
    for (const b of buffers) b.destroy();
  }
}

/**
 * Runs one strided product on resident buffers `reps` times in one submission and returns the seconds
 * of the whole submission (for the benchmark's device peak; the caller owns the buffers).
 */
export async function timeStridedMatmul(gpu: GpuContext, variant: GptqMatmulVariant, a: GPUBuffer, b: GPUBuffer, out: GPUBuffer, p: StridedMatmul, reps: number): Promise<number> {
  const uniform = uniformBuffer(gpu, 'gptq matmul timing');
  try {
    return await guarded(gpu, 'GPTQ matmul timing', async () => {
      pipelineFor(gpu, kernelOf(variant));
      const encoder = gpu.device.createCommandEncoder();
      for (let i = 0; i < reps; i++) encodeStridedMatmul(gpu, encoder, variant, a, b, out, uniform, p);
      const t0 = performance.now();
      gpu.device.queue.submit([encoder.finish()]);
      await gpu.device.queue.onSubmittedWorkDone();
      return (performance.now() - t0) / 1000;
    });
  } finally {
    uniform.destroy();
  }
}
