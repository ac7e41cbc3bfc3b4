/**
 * ggml block quantization on the GPU, byte-exact with the CPU reference (ggml's quantize_row_*_ref):
 * the kernels are ports of the C with the same f32 operations in the same order, IEEE division done
 * in integers (WGSL's `/` may be 2.5 ULP off) and products kept out of fused multiply-adds.
 * Rounding rules per type are written at the top of each kernels/<type>.wgsl.
 *
 * Types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (one thread per 32-value block) and Q2_K..Q6_K (one
 * thread per 256-value super-block, with the K-quant scale searches ported; sqrtf done exactly).
 * The tensor is streamed in chunks of whole blocks (an even number of blocks, so every chunk starts
 * at a 256-byte aligned source offset) that fit the device's binding limit; each chunk is uploaded,
 * quantized, read back through a MAP_READ buffer and laid out as ggml blocks on the host
 * (18/20/22/24/34/210-byte blocks straddle u32 words, so kernels write word-aligned fields or padded blocks).
 */
import { CancelledError, InvalidArgumentError, NumericError } from '../errors';
import { guarded, type GpuContext } from './device';
import { KERNELS, align4, createStorageBuffer, encodeKernel, gridFor, type Kernel } from './kernels';

export const GPU_QUANT_TYPES = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type GpuQuantType = (typeof GPU_QUANT_TYPES)[number];

interface QuantFormat {
  kernel: Kernel;
  /** Values per block. */
  blockElements: number;
  blockBytes: number;
  /**
   * 'split': the kernel writes [d | m << 16, qh, qs words..., flag] (11 words) and the host builds the
   * block; 'raw': the kernel writes the block bytes at their offsets, padded to whole words, then the flag.
   */
  layout: 'split' | 'raw';
  outWords: number;
  /** Scale words: 1 = d only, 2 = d and m (both f16). */
  halves: 1 | 2;
  hasQh: boolean;
  qsBytes: number;
}

const split = { blockElements: 32, layout: 'split', outWords: 11 } as const;
const FORMATS: Record<GpuQuantType, QuantFormat> = {
  Q8_0: { ...split, kernel: KERNELS.q8_0, blockBytes: 34, halves: 1, hasQh: false, qsBytes: 32 },
  Q4_0: { ...split, kernel: KERNELS.q4_0, blockBytes: 18, halves: 1, hasQh: false, qsBytes: 16 },
  Q4_1: { ...split, kernel: KERNELS.q4_1, blockBytes: 20, halves: 2, hasQh: false, qsBytes: 16 },
  Q5_0: { ...split, kernel: KERNELS.q5_0, blockBytes: 22, halves: 1, hasQh: true, qsBytes: 16 },
  Q5_1: { ...split, kernel: KERNELS.q5_1, blockBytes: 24, halves: 2, hasQh: true, qsBytes: 16 },
  Q2_K: { kernel: KERNELS.q2_k, blockElements: 256, blockBytes: 84, layout: 'raw', outWords: 22, halves: 1, hasQh: false, qsBytes: 0 },
  Q3_K: { kernel: KERNELS.q3_k, blockElements: 256, blockBytes: 110, layout: 'raw', outWords: 29, halves: 1, hasQh: false, qsBytes: 0 },
  Q4_K: { kernel: KERNELS.q4_k, blockElements: 256, blockBytes: 144, layout: 'raw', outWords: 37, halves: 1, hasQh: false, qsBytes: 0 },
  Q5_K: { kernel: KERNELS.q5_k, blockElements: 256, blockBytes: 176, layout: 'raw', outWords: 45, halves: 1, hasQh: false, qsBytes: 0 },
  Q6_K: { kernel: KERNELS.q6_k, blockElements: 256, blockBytes: 210, layout: 'raw', outWords: 54, halves: 1, hasQh: false, qsBytes: 0 },
};

/** Values per block of the 32-value types (the K types use 256: see blockElementsOf). */
export const QK = 32;

export function blockElementsOf(type: GpuQuantType): number {
  return FORMATS[type].blockElements;
}

export function isGpuQuantType(t: string): t is GpuQuantType {
  return (GPU_QUANT_TYPES as readonly string[]).includes(t);
}

export function quantizedSize(type: GpuQuantType, elements: number): number {
  return (elements / FORMATS[type].blockElements) * FORMATS[type].blockBytes;
}

export type GpuPhase = 'upload' | 'compute' | 'readback';

export interface GpuRunOptions {
  signal?: AbortSignal;
  /** Called as each phase of each chunk starts (progress, and tests that cancel mid-phase). */
  onPhase?: (phase: GpuPhase, chunk: number, chunkCount: number) => void;
  /** Upper bound of one chunk's f32 input, in bytes (default 64 MiB; also capped by the device). */
  maxChunkBytes?: number;
  /** Names the tensor in errors. */
  label?: string;
}

export const DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024;

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new CancelledError();
}

/** Blocks per chunk: whole, even numbers of blocks within the device's and the caller's limits. */
function chunkBlocks(gpu: GpuContext, maxChunkBytes: number, blockElements: number): number {
  const cap = Math.min(maxChunkBytes, gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const blocks = Math.floor(cap / (blockElements * 4) / 2) * 2;
  if (blocks < 2) throw new InvalidArgumentError(`a chunk of ${cap} bytes cannot hold two blocks`);
  return blocks;
}

/**
 * Quantizes `src` (a multiple of 32 values) into `dst` (exactly quantizedSize bytes).
 * Throws NumericError for NaN/Inf, CancelledError when `signal` aborts, GpuUnavailableError when the device fails.
 */
export async function quantizeOnGpu(gpu: GpuContext, type: GpuQuantType, src: Float32Array, dst: Uint8Array, options: GpuRunOptions = {}): Promise<void> {
  const label = options.label ?? 'tensor';
  const format = FORMATS[type];
  const qk = format.blockElements;
  if (src.length % qk !== 0) throw new InvalidArgumentError(`${label}: ${src.length} values is not a multiple of the ${type} block size ${qk}`);
  const totalBlocks = src.length / qk;
  if (dst.byteLength !== totalBlocks * format.blockBytes) throw new InvalidArgumentError(`${label}: output holds ${dst.byteLength} bytes, ${type} needs ${totalBlocks * format.blockBytes}`);
  if (totalBlocks === 0) return;
  throwIfAborted(options.signal);

  const perChunk = Math.min(chunkBlocks(gpu, options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES, qk), totalBlocks);
  const outStride = format.outWords;
  const chunkCount = Math.ceil(totalBlocks / perChunk);
  const { device } = gpu;
  const input = createStorageBuffer(gpu, `${type} input`, perChunk * qk * 4);
  const output = createStorageBuffer(gpu, `${type} output`, perChunk * outStride * 4);
  const params = device.createBuffer({ label: `${type} params`, size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const staging = device.createBuffer({ label: `${type} readback`, size: align4(perChunk * outStride * 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    for (let chunk = 0; chunk < chunkCount; chunk++) {
      const firstBlock = chunk * perChunk;
      const blocks = Math.min(perChunk, totalBlocks - firstBlock);
      await guarded(gpu, `${label}: ${type} chunk ${chunk + 1}/${chunkCount}`, async () => {
        options.onPhase?.('upload', chunk, chunkCount);
        throwIfAborted(options.signal);
        device.queue.writeBuffer(input, 0, src, firstBlock * qk, blocks * qk);
        const grid = gridFor(format.kernel.workgroupsFor(blocks), gpu.limits.maxComputeWorkgroupsPerDimension);
        // block_count, zero (hides products from FMA contraction), groups_x
        device.queue.writeBuffer(params, 0, new Uint32Array([blocks, 0, grid.x, 0]));
        options.onPhase?.('compute', chunk, chunkCount);
        throwIfAborted(options.signal);
        const encoder = device.createCommandEncoder();
        encodeKernel(gpu, encoder, format.kernel, [input, output, params], grid);
        const outBytes = blocks * outStride * 4;
        encoder.copyBufferToBuffer(output, 0, staging, 0, outBytes);
        device.queue.submit([encoder.finish()]);
        options.onPhase?.('readback', chunk, chunkCount);
        throwIfAborted(options.signal);
        await staging.mapAsync(GPUMapMode.READ, 0, outBytes);
        try {
          throwIfAborted(options.signal);
          const words = new Uint32Array(staging.getMappedRange(0, outBytes));
          interleaveBlocks(format, words, blocks, dst, firstBlock * format.blockBytes, label, firstBlock);
        } finally {
          staging.unmap();
        }
      });
    }
  } finally {
    input.destroy();
    output.destroy();
    params.destroy();
    staging.destroy();
  }
}

/** Writes kernel output words as ggml blocks: [d][m][qh][qs] (fields present per type), or copies raw blocks. */
function interleaveBlocks(format: QuantFormat, words: Uint32Array, blocks: number, dst: Uint8Array, dstOffset: number, label: string, firstBlock: number): void {
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  const qk = format.blockElements;
  for (let b = 0; b < blocks; b++) {
    const w = b * format.outWords;
    if (words[w + format.outWords - 1] !== 0) throw new NumericError(`${label}: block ${firstBlock + b} (values ${(firstBlock + b) * qk}..${(firstBlock + b) * qk + qk - 1}) holds NaN or Inf, which cannot be quantized`);
    let o = dstOffset + b * format.blockBytes;
    if (format.layout === 'raw') {
      dst.set(bytes.subarray(w * 4, w * 4 + format.blockBytes), o);
      continue;
    }
    const scales = words[w]!;
    dst[o++] = scales & 0xff;
    dst[o++] = (scales >>> 8) & 0xff;
    if (format.halves === 2) {
      dst[o++] = (scales >>> 16) & 0xff;
      dst[o++] = (scales >>> 24) & 0xff;
    }
    if (format.hasQh) {
      const qh = words[w + 1]!;
      dst[o++] = qh & 0xff;
      dst[o++] = (qh >>> 8) & 0xff;
      dst[o++] = (qh >>> 16) & 0xff;
      dst[o++] = (qh >>> 24) & 0xff;
    }
    const qsStart = (w + 2) * 4;
    dst.set(bytes.subarray(qsStart, qsStart + format.qsBytes), o);
  }
}
