/**
 * ggml block quantization on the GPU, byte-exact with the CPU reference (ggml's quantize_row_*_ref):
 * the kernels are ports of the C with the same f32 operations in the same order, IEEE division done
 * in integers (WGSL's `/` may be 2.5 ULP off) and products kept out of fused multiply-adds.
 * Rounding rules per type are written at the top of each kernels/<type>.wgsl.
 *
 * Types: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (on GPUs a workgroup of 64 invocations per tile of 64 blocks:
 * contiguous loads into workgroup memory, one invocation per block, the tile's ggml bytes stored as whole
 * words, lib/legacy_tile.wgsl; on software adapters one invocation per one or two blocks writing whole words
 * without workgroup memory, lib/legacy_direct.wgsl; the same bytes either way) and Q2_K..Q6_K (one thread per 256-value super-block, with the K-quant scale
 * searches ported; sqrtf done exactly).
 * The tensor is streamed in chunks of whole blocks (an even number of blocks, so every chunk starts
 * at a 256-byte aligned source offset) that fit the device's binding limit; each chunk is uploaded,
 * quantized and read back through a MAP_READ buffer: the 32-value types come back as ggml bytes plus one
 * NaN/Inf bit per block; the K types as padded blocks (210-byte blocks straddle u32 words) that the host lays out.
 */
import { CancelledError, InvalidArgumentError, NumericError } from '../errors';
import { guarded, type GpuContext } from './device';
import { KERNELS, align4, createStorageBuffer, encodeKernel, gridFor, type Kernel } from './kernels';
import { WGSL_SOURCES } from './kernels/index';
import { isSoftwareAdapter } from '../jobs/computeDevice';

export const GPU_QUANT_TYPES = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type GpuQuantType = (typeof GPU_QUANT_TYPES)[number];

interface QuantFormat {
  kernel: Kernel;
  /** The 32-value types' kernel for software adapters (lib/legacy_direct.wgsl); absent for the K types. */
  direct?: Kernel;
  /** Values per block. */
  blockElements: number;
  blockBytes: number;
  /**
   * 'packed': the kernel writes the chunk's blocks as ggml bytes from word 0, then the NaN/Inf bits from word
   * `flagsWord`; 'raw': the kernel writes each block's bytes padded to `outWords - 1` words, then the block's
   * NaN/Inf flag word, and the host drops the padding.
   */
  layout: 'packed' | 'raw';
  outWords: number;
}

/**
 * Which kernel quantizes the 32-value types: 'tile' (a workgroup per 64 blocks, contiguous loads and stores
 * through workgroup memory: GPUs) or 'direct' (an invocation per one or two blocks, no workgroup memory:
 * software adapters, where workgroup memory and barriers cost more than strided access). Same bytes.
 */
export type QuantizeVariant = 'tile' | 'direct';

/** Blocks per workgroup of the tile kernels (WG in lib/legacy_tile.wgsl). */
const TILE_BLOCKS = 64;
/** Invocations per workgroup of the direct kernels. */
const DIRECT_WG = 64;

function directKernel(name: 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1', perInvocation: number): Kernel {
  const source = WGSL_SOURCES[`${name}_direct`];
  return {
    name: `${name}_direct`,
    wgsl: WGSL_SOURCES.common + '\n' + source,
    bindings: ['read-only-storage', 'storage', 'uniform'],
    workgroupSize: DIRECT_WG,
    workgroupsFor: (blocks) => Math.ceil(blocks / perInvocation / DIRECT_WG),
  };
}

const packed = { blockElements: 32, layout: 'packed', outWords: 0 } as const;
// Blocks of an odd number of 16-bit halves (34, 18, 22 bytes) go two per direct invocation (PER in legacy_direct.wgsl).
const FORMATS: Record<GpuQuantType, QuantFormat> = {
  Q8_0: { ...packed, kernel: KERNELS.q8_0, direct: directKernel('q8_0', 2), blockBytes: 34 },
  Q4_0: { ...packed, kernel: KERNELS.q4_0, direct: directKernel('q4_0', 2), blockBytes: 18 },
  Q4_1: { ...packed, kernel: KERNELS.q4_1, direct: directKernel('q4_1', 1), blockBytes: 20 },
  Q5_0: { ...packed, kernel: KERNELS.q5_0, direct: directKernel('q5_0', 2), blockBytes: 22 },
  Q5_1: { ...packed, kernel: KERNELS.q5_1, direct: directKernel('q5_1', 1), blockBytes: 24 },
  Q2_K: { kernel: KERNELS.q2_k, blockElements: 256, blockBytes: 84, layout: 'raw', outWords: 22 },
  Q3_K: { kernel: KERNELS.q3_k, blockElements: 256, blockBytes: 110, layout: 'raw', outWords: 29 },
  Q4_K: { kernel: KERNELS.q4_k, blockElements: 256, blockBytes: 144, layout: 'raw', outWords: 37 },
  Q5_K: { kernel: KERNELS.q5_k, blockElements: 256, blockBytes: 176, layout: 'raw', outWords: 45 },
  Q6_K: { kernel: KERNELS.q6_k, blockElements: 256, blockBytes: 210, layout: 'raw', outWords: 54 },
};

/** The kernel that runs `type` as `variant`, and how many blocks one of its flag words covers ('packed' layout). */
function kernelFor(format: QuantFormat, variant: QuantizeVariant): { kernel: Kernel; flagBlocks: number } {
  if (variant === 'direct' && format.direct !== undefined) return { kernel: format.direct, flagBlocks: format.blockBytes % 4 === 0 ? 1 : 2 };
  return { kernel: format.kernel, flagBlocks: 32 };
}

/** 'direct' on software adapters (lavapipe, SwiftShader), 'tile' on GPUs. */
export function defaultQuantizeVariant(gpu: GpuContext): QuantizeVariant {
  return isSoftwareAdapter(gpu.description) ? 'direct' : 'tile';
}

/** Where a chunk of `blocks` blocks lands in the kernel's output buffer, in u32 words. */
interface OutputLayout {
  /** First word of the NaN/Inf flags ('packed'; 0 for 'raw', whose flags sit in each block). */
  flagsWord: number;
  /** Blocks per flag word. */
  flagBlocks: number;
  totalWords: number;
}

function outputLayout(format: QuantFormat, variant: QuantizeVariant, blocks: number): OutputLayout {
  if (format.layout === 'raw') return { flagsWord: 0, flagBlocks: 1, totalWords: blocks * format.outWords };
  const { flagBlocks } = kernelFor(format, variant);
  const blockWords = Math.ceil((blocks * format.blockBytes) / 4);
  // The tile kernel writes the flag words of its last, partial tile whole.
  const flagWords = flagBlocks === 32 ? Math.ceil(blocks / TILE_BLOCKS) * (TILE_BLOCKS / 32) : Math.ceil(blocks / flagBlocks);
  return { flagsWord: blockWords, flagBlocks, totalWords: blockWords + flagWords };
}

/** One dispatch of `type`'s kernel over `blocks` blocks: its grid, its uniform words and its output size. */
export interface QuantizeDispatch {
  kernel: Kernel;
  grid: { x: number; y: number };
  /** block_count, zero (hides products from FMA contraction), groups_x, flags_word. */
  params: Uint32Array;
  outputBytes: number;
}

export function quantizeDispatch(gpu: GpuContext, type: GpuQuantType, blocks: number, variant: QuantizeVariant = defaultQuantizeVariant(gpu)): QuantizeDispatch {
  const format = FORMATS[type];
  const { kernel } = kernelFor(format, variant);
  const grid = gridFor(kernel.workgroupsFor(blocks), gpu.limits.maxComputeWorkgroupsPerDimension);
  const layout = outputLayout(format, variant, blocks);
  return { kernel, grid, params: new Uint32Array([blocks, 0, grid.x, layout.flagsWord]), outputBytes: layout.totalWords * 4 };
}

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
  /** The 32-value types' kernel (default: defaultQuantizeVariant; tests run both). */
  variant?: QuantizeVariant;
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
  const variant = options.variant ?? defaultQuantizeVariant(gpu);
  const outBytes = outputLayout(format, variant, perChunk).totalWords * 4;
  const chunkCount = Math.ceil(totalBlocks / perChunk);
  const { device } = gpu;
  const buffers = takeChunkBuffers(gpu, perChunk * qk * 4, outBytes);
  const { input, output, params, staging } = buffers;
  let finished = false;
  try {
    for (let chunk = 0; chunk < chunkCount; chunk++) {
      const firstBlock = chunk * perChunk;
      const blocks = Math.min(perChunk, totalBlocks - firstBlock);
      await guarded(gpu, `${label}: ${type} chunk ${chunk + 1}/${chunkCount}`, async () => {
        options.onPhase?.('upload', chunk, chunkCount);
        throwIfAborted(options.signal);
        device.queue.writeBuffer(input, 0, src, firstBlock * qk, blocks * qk);
        const dispatch = quantizeDispatch(gpu, type, blocks, variant);
        device.queue.writeBuffer(params, 0, dispatch.params);
        options.onPhase?.('compute', chunk, chunkCount);
        throwIfAborted(options.signal);
        const encoder = device.createCommandEncoder();
        encodeKernel(gpu, encoder, dispatch.kernel, [input, output, params], dispatch.grid);
        encoder.copyBufferToBuffer(output, 0, staging, 0, dispatch.outputBytes);
        device.queue.submit([encoder.finish()]);
        options.onPhase?.('readback', chunk, chunkCount);
        throwIfAborted(options.signal);
        await staging.mapAsync(GPUMapMode.READ, 0, dispatch.outputBytes);
        try {
          throwIfAborted(options.signal);
          const words = new Uint32Array(staging.getMappedRange(0, dispatch.outputBytes));
          const where = { label, firstBlock, blockElements: qk };
          if (format.layout === 'packed') copyPackedOutput(format, outputLayout(format, variant, blocks), words, blocks, dst, firstBlock * format.blockBytes, where);
          else copyRawBlocks(format, words, blocks, dst, firstBlock * format.blockBytes, where);
        } finally {
          staging.unmap();
        }
      });
    }
    finished = true;
  } finally {
    // Kept for the next call on this device only after a clean run (a failed device's buffers are of no use).
    if (finished) giveBackChunkBuffers(gpu, buffers);
    else destroyChunkBuffers(buffers);
  }
}

/** One call's device buffers: f32 input, kernel output, its MAP_READ copy and the uniform words. */
interface ChunkBuffers {
  input: GPUBuffer;
  output: GPUBuffer;
  params: GPUBuffer;
  staging: GPUBuffer;
}

/**
 * Per device, the buffers of the last call that finished, reused by the next call that fits in them: the
 * exporter calls quantizeOnGpu once per window, and creating (and Dawn's zero-filling) three buffers per
 * window cost 35-65 % of the GPU path's time on lavapipe (16 MiB Q8_0 windows: 127-181 ms per 64 MiB vs
 * 76-147 ms in one call). At most one set per device (up to one chunk: 64 MiB of f32 by default), freed
 * with the device.
 */
const idleChunkBuffers = new WeakMap<GPUDevice, ChunkBuffers>();

function takeChunkBuffers(gpu: GpuContext, inputBytes: number, outputBytes: number): ChunkBuffers {
  const idle = idleChunkBuffers.get(gpu.device);
  if (idle !== undefined) {
    idleChunkBuffers.delete(gpu.device);
    if (idle.input.size >= inputBytes && idle.output.size >= outputBytes) return idle;
    // Grow to the larger of both, so windows of alternating sizes do not keep reallocating.
    inputBytes = Math.max(inputBytes, idle.input.size);
    outputBytes = Math.max(outputBytes, idle.output.size);
    destroyChunkBuffers(idle);
  }
  const { device } = gpu;
  return {
    input: createStorageBuffer(gpu, 'quantize input', inputBytes),
    output: createStorageBuffer(gpu, 'quantize output', outputBytes),
    params: device.createBuffer({ label: 'quantize params', size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
    staging: device.createBuffer({ label: 'quantize readback', size: align4(outputBytes), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
  };
}

function giveBackChunkBuffers(gpu: GpuContext, buffers: ChunkBuffers): void {
  const idle = idleChunkBuffers.get(gpu.device);
  if (idle !== undefined) {
    // Two calls ran at once: keep the larger set.
    if (idle.input.size + idle.output.size >= buffers.input.size + buffers.output.size) {
      destroyChunkBuffers(buffers);
      return;
    }
    destroyChunkBuffers(idle);
  }
  idleChunkBuffers.set(gpu.device, buffers);
}

function destroyChunkBuffers(buffers: ChunkBuffers): void {
  buffers.input.destroy();
  buffers.output.destroy();
  buffers.params.destroy();
  buffers.staging.destroy();
}

interface BlockPlace {
  label: string;
  firstBlock: number;
  blockElements: number;
}

function nonFiniteError(where: BlockPlace, block: number): NumericError {
  const b = where.firstBlock + block;
  const qk = where.blockElements;
  return new NumericError(`${where.label}: block ${b} (values ${b * qk}..${b * qk + qk - 1}) holds NaN or Inf, which cannot be quantized`);
}

/** 'packed' output: checks the NaN/Inf bits (the first flagged block is named), then copies the ggml bytes as they are. */
function copyPackedOutput(format: QuantFormat, layout: OutputLayout, words: Uint32Array, blocks: number, dst: Uint8Array, dstOffset: number, where: BlockPlace): void {
  for (let w = 0; w * layout.flagBlocks < blocks; w++) {
    const bits = words[layout.flagsWord + w]!;
    if (bits !== 0) throw nonFiniteError(where, w * layout.flagBlocks + (31 - Math.clz32(bits & -bits)));
  }
  dst.set(new Uint8Array(words.buffer, words.byteOffset, blocks * format.blockBytes), dstOffset);
}

/** 'raw' output: each block's bytes padded to whole words, then its flag word. */
function copyRawBlocks(format: QuantFormat, words: Uint32Array, blocks: number, dst: Uint8Array, dstOffset: number, where: BlockPlace): void {
  const bytes = new Uint8Array(words.buffer, words.byteOffset, words.byteLength);
  for (let b = 0; b < blocks; b++) {
    const w = b * format.outWords;
    if (words[w + format.outWords - 1] !== 0) throw nonFiniteError(where, b);
    dst.set(bytes.subarray(w * 4, w * 4 + format.blockBytes), dstOffset + b * format.blockBytes);
  }
}
