/**
 * ggml dequantization on the GPU (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and the K types Q2_K..Q6_K), value-exact
 * with ggml's dequantize_row_* (and so with the CPU port dequantizeGgml), plus the block-error map
 * against the original values: per 32 values (a block, or a sub-block of a K-type super-block) the sum
 * of squared errors and the largest |error|, from which the host derives MSE and SQNR. Streams chunks
 * of whole blocks (whole super-blocks for the K types) like quantize.ts.
 */
import { InvalidArgumentError } from '../errors';
import { guarded, type GpuContext } from './device';
import { KERNELS, align4, createStorageBuffer, encodeKernel, gridFor } from './kernels';
import { DEFAULT_MAX_CHUNK_BYTES, throwIfAborted, type GpuRunOptions } from './quantize';

/** Kernel mode, bytes per block and values per block (256: a K-type super-block) of each type. */
export const GPU_DEQUANT_TYPES = {
  Q8_0: { mode: 0, blockBytes: 34, blockElements: 32 },
  Q4_0: { mode: 1, blockBytes: 18, blockElements: 32 },
  Q4_1: { mode: 2, blockBytes: 20, blockElements: 32 },
  Q5_0: { mode: 3, blockBytes: 22, blockElements: 32 },
  Q5_1: { mode: 4, blockBytes: 24, blockElements: 32 },
  Q2_K: { mode: 5, blockBytes: 84, blockElements: 256 },
  Q3_K: { mode: 6, blockBytes: 110, blockElements: 256 },
  Q4_K: { mode: 7, blockBytes: 144, blockElements: 256 },
  Q5_K: { mode: 8, blockBytes: 176, blockElements: 256 },
  Q6_K: { mode: 9, blockBytes: 210, blockElements: 256 },
} as const;
export type GpuDequantType = keyof typeof GPU_DEQUANT_TYPES;

export function isGpuDequantType(t: string): t is GpuDequantType {
  return Object.hasOwn(GPU_DEQUANT_TYPES, t);
}

/** Values per cell of the block-error map (every type: a 32-value block or a K-type sub-block). */
export const ERROR_MAP_BLOCK = 32;

export interface BlockErrorMap {
  /** Per 32 values: sum of (dequantized - original)^2 (f32, summed in order). */
  blockSquaredError: Float32Array;
  /** Per 32 values: max |dequantized - original|. */
  blockMaxAbsError: Float32Array;
}

export interface ErrorSummary {
  mse: number;
  maxAbsError: number;
  /** 10 log10(sum x^2 / sum e^2); Infinity for an exact reconstruction. */
  sqnrDb: number;
}

/** Whole-tensor metrics from the block map and the original values (f64 on the host). */
export function summarizeBlockErrors(map: BlockErrorMap, reference: Float32Array): ErrorSummary {
  let errorEnergy = 0;
  let maxAbsError = 0;
  for (let b = 0; b < map.blockSquaredError.length; b++) {
    errorEnergy += map.blockSquaredError[b]!;
    maxAbsError = Math.max(maxAbsError, map.blockMaxAbsError[b]!);
  }
  let signal = 0;
  for (const x of reference) signal += x * x;
  return { mse: reference.length === 0 ? 0 : errorEnergy / reference.length, maxAbsError, sqnrDb: errorEnergy === 0 ? Infinity : 10 * Math.log10(signal / errorEnergy) };
}

/**
 * Decodes `src` (whole blocks of `type`) into `dst`; with `reference` (the values that were quantized)
 * also returns the block-error map.
 */
export async function dequantizeOnGpu(
  gpu: GpuContext,
  type: GpuDequantType,
  src: Uint8Array,
  dst: Float32Array,
  options: GpuRunOptions & { reference?: Float32Array } = {},
): Promise<BlockErrorMap | null> {
  const { mode, blockBytes, blockElements } = GPU_DEQUANT_TYPES[type];
  const label = options.label ?? 'tensor';
  if (dst.length % blockElements !== 0 || src.byteLength !== (dst.length / blockElements) * blockBytes) throw new InvalidArgumentError(`${label}: ${src.byteLength} bytes of ${type} do not hold ${dst.length} values`);
  if (options.reference !== undefined && options.reference.length !== dst.length) throw new InvalidArgumentError(`${label}: the reference has ${options.reference.length} values, not ${dst.length}`);
  // Work items are 32-value blocks (K types: 8 per super-block); chunks hold whole super-blocks.
  const subBlocks = blockElements / ERROR_MAP_BLOCK;
  const totalBlocks = dst.length / ERROR_MAP_BLOCK;
  const map: BlockErrorMap = { blockSquaredError: new Float32Array(totalBlocks), blockMaxAbsError: new Float32Array(totalBlocks) };
  if (totalBlocks === 0) return options.reference !== undefined ? map : null;
  const cap = Math.min(options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES, gpu.limits.maxStorageBufferBindingSize);
  const perChunk = Math.min(totalBlocks, Math.max(8, Math.floor(cap / 128 / 8) * 8));
  const chunkCount = Math.ceil(totalBlocks / perChunk);
  const { device } = gpu;
  const input = createStorageBuffer(gpu, `${type} blocks`, (perChunk / subBlocks) * blockBytes);
  const reference = createStorageBuffer(gpu, 'reference', perChunk * 128);
  const values = createStorageBuffer(gpu, 'dequantized', perChunk * 128);
  const errors = createStorageBuffer(gpu, 'block errors', perChunk * 8);
  const params = device.createBuffer({ size: 32, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  const staging = device.createBuffer({ size: align4(perChunk * 136), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    for (let chunk = 0; chunk < chunkCount; chunk++) {
      const first = chunk * perChunk;
      const blocks = Math.min(perChunk, totalBlocks - first);
      await guarded(gpu, `${label}: dequantize ${type} chunk ${chunk + 1}/${chunkCount}`, async () => {
        options.onPhase?.('upload', chunk, chunkCount);
        throwIfAborted(options.signal);
        const bytes = src.subarray((first / subBlocks) * blockBytes, ((first + blocks) / subBlocks) * blockBytes);
        if (bytes.byteLength % 4 === 0 && bytes.byteOffset % 4 === 0) device.queue.writeBuffer(input, 0, bytes);
        else {
          const padded = new Uint8Array(align4(bytes.byteLength));
          padded.set(bytes);
          device.queue.writeBuffer(input, 0, padded);
        }
        if (options.reference !== undefined) device.queue.writeBuffer(reference, 0, options.reference, first * 32, blocks * 32);
        const grid = gridFor(KERNELS.dequantize.workgroupsFor(blocks), gpu.limits.maxComputeWorkgroupsPerDimension);
        device.queue.writeBuffer(params, 0, new Uint32Array([blocks, mode, grid.x, blockBytes, 0, 0, 0, 0]));
        options.onPhase?.('compute', chunk, chunkCount);
        throwIfAborted(options.signal);
        const encoder = device.createCommandEncoder();
        encodeKernel(gpu, encoder, KERNELS.dequantize, [input, reference, values, errors, params], grid);
        encoder.copyBufferToBuffer(values, 0, staging, 0, blocks * 128);
        encoder.copyBufferToBuffer(errors, 0, staging, blocks * 128, blocks * 8);
        device.queue.submit([encoder.finish()]);
        options.onPhase?.('readback', chunk, chunkCount);
        await staging.mapAsync(GPUMapMode.READ, 0, blocks * 136);
        try {
          throwIfAborted(options.signal);
          const out = new Float32Array(staging.getMappedRange(0, blocks * 136));
          dst.set(out.subarray(0, blocks * 32), first * 32);
          for (let b = 0; b < blocks; b++) {
            map.blockSquaredError[first + b] = out[blocks * 32 + 2 * b]!;
            map.blockMaxAbsError[first + b] = out[blocks * 32 + 2 * b + 1]!;
          }
        } finally {
          staging.unmap();
        }
      });
    }
  } finally {
    for (const b of [input, reference, values, errors, params, staging]) b.destroy();
  }
  return options.reference !== undefined ? map : null;
}
