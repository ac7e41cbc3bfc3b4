/**
 * Kernels as data: `{name, wgsl, bindings, workgroupSize, dispatch}`. Shapes go into a uniform
 * buffer, never into the WGSL, so one compiled pipeline per kernel and device serves every tensor.
 * WGSL text comes from kernels/index.ts, generated from kernels/*.wgsl (see kernels/generate.ts).
 */
import { UnsupportedError } from '../errors';
import type { GpuContext } from './device';
import { WGSL_SOURCES } from './kernels/index';

export type BindingKind = 'read-only-storage' | 'storage' | 'uniform';

export interface Kernel {
  name: string;
  wgsl: string;
  /** Binding kinds in binding order (group 0). */
  bindings: readonly BindingKind[];
  /** Threads per workgroup (as in the WGSL). */
  workgroupSize: number;
  /** Workgroups needed for `items` work items (blocks, segments, elements, ...). */
  workgroupsFor(items: number): number;
}

const perThread = (wg: number) => (items: number) => Math.ceil(items / wg);

const quantizeBindings: readonly BindingKind[] = ['read-only-storage', 'storage', 'uniform'];

/** One thread per block (32 values; 256 for the K types). */
function quantizeKernel(name: 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k'): Kernel {
  return { name, wgsl: WGSL_SOURCES.common + '\n' + WGSL_SOURCES[name], bindings: quantizeBindings, workgroupSize: 64, workgroupsFor: perThread(64) };
}

export const KERNELS = {
  q8_0: quantizeKernel('q8_0'),
  q4_0: quantizeKernel('q4_0'),
  q4_1: quantizeKernel('q4_1'),
  q5_0: quantizeKernel('q5_0'),
  q5_1: quantizeKernel('q5_1'),
  /** One thread per 256-value super-block. */
  q2_k: quantizeKernel('q2_k'),
  q3_k: quantizeKernel('q3_k'),
  q4_k: quantizeKernel('q4_k'),
  q5_k: quantizeKernel('q5_k'),
  q6_k: quantizeKernel('q6_k'),
  /** One workgroup per segment. */
  rowMoments: { name: 'rowMoments', wgsl: WGSL_SOURCES.rowMoments, bindings: quantizeBindings, workgroupSize: 64, workgroupsFor: (segments: number) => segments },
  /** Each workgroup handles 64 * 64 elements. */
  histogram: {
    name: 'histogram',
    wgsl: WGSL_SOURCES.histogram,
    bindings: ['read-only-storage', 'storage', 'storage', 'storage', 'storage', 'uniform'],
    workgroupSize: 64,
    workgroupsFor: (elements: number) => Math.ceil(elements / (64 * 64)),
  },
  /** One thread per 32-value block: dequantize and block-error map. */
  dequantize: {
    name: 'dequantize',
    wgsl: WGSL_SOURCES.common + '\n' + WGSL_SOURCES.dequantize,
    bindings: ['read-only-storage', 'read-only-storage', 'storage', 'storage', 'uniform'],
    workgroupSize: 64,
    workgroupsFor: perThread(64),
  },
  decode: { name: 'decode', wgsl: WGSL_SOURCES.common + '\n' + WGSL_SOURCES.decode, bindings: quantizeBindings, workgroupSize: 256, workgroupsFor: perThread(256) },
} as const satisfies Record<string, Kernel>;

/** A 2-D grid for `workgroups` groups: x up to the per-dimension limit, y rows of it. Kernels read `groups_x`. */
export function gridFor(workgroups: number, maxPerDimension: number): { x: number; y: number } {
  if (workgroups <= 0) return { x: 0, y: 0 };
  const x = Math.min(workgroups, maxPerDimension);
  const y = Math.ceil(workgroups / x);
  if (y > maxPerDimension) throw new UnsupportedError(`a dispatch of ${workgroups} workgroups exceeds the device's grid of ${maxPerDimension} x ${maxPerDimension}`);
  return { x, y };
}

interface CachedPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

const pipelineCache = new WeakMap<GPUDevice, Map<string, CachedPipeline>>();

/** Compiles a kernel once per device. */
export function pipelineFor(gpu: GpuContext, kernel: Kernel): CachedPipeline {
  let perDevice = pipelineCache.get(gpu.device);
  if (perDevice === undefined) {
    perDevice = new Map();
    pipelineCache.set(gpu.device, perDevice);
  }
  const hit = perDevice.get(kernel.name);
  if (hit !== undefined) return hit;
  const { device } = gpu;
  const layout = device.createBindGroupLayout({
    label: kernel.name,
    entries: kernel.bindings.map((kind, binding) => ({ binding, visibility: GPUShaderStage.COMPUTE, buffer: { type: kind } })),
  });
  const module = device.createShaderModule({ label: kernel.name, code: kernel.wgsl });
  const pipeline = device.createComputePipeline({
    label: kernel.name,
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: 'main' },
  });
  const entry = { pipeline, layout };
  perDevice.set(kernel.name, entry);
  return entry;
}

/** Number of pipelines compiled for this device (for tests of the cache). */
export function cachedPipelineCount(gpu: GpuContext): number {
  return pipelineCache.get(gpu.device)?.size ?? 0;
}

/** Records one dispatch of `kernel` over `workgroups` groups into `encoder`. */
export function encodeKernel(gpu: GpuContext, encoder: GPUCommandEncoder, kernel: Kernel, buffers: readonly GPUBuffer[], grid: { x: number; y: number }): void {
  if (buffers.length !== kernel.bindings.length) throw new Error(`${kernel.name}: ${kernel.bindings.length} bindings, ${buffers.length} buffers given`);
  if (grid.x === 0) return;
  const { pipeline, layout } = pipelineFor(gpu, kernel);
  const bindGroup = gpu.device.createBindGroup({ layout, entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })) });
  const pass = encoder.beginComputePass({ label: kernel.name });
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(grid.x, grid.y);
  pass.end();
}

/** Rounds a byte size up to a multiple of 4 (copy and map sizes), at least 4. */
export function align4(bytes: number): number {
  return Math.max(4, Math.ceil(bytes / 4) * 4);
}

export function createStorageBuffer(gpu: GpuContext, label: string, bytes: number, extraUsage = 0): GPUBuffer {
  return gpu.device.createBuffer({ label, size: align4(bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage });
}

export function createUniformBuffer(gpu: GpuContext, label: string, words: Uint32Array): GPUBuffer {
  const buffer = gpu.device.createBuffer({ label, size: Math.max(16, Math.ceil(words.byteLength / 16) * 16), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  gpu.device.queue.writeBuffer(buffer, 0, words);
  return buffer;
}

/**
 * Copies `bytes` of `source` (from offset 0) into a MAP_READ buffer and returns a copy on the host.
 * The staging buffer is destroyed afterwards. Sizes are rounded up to 4 as mapping requires.
 */
export async function readBack(gpu: GpuContext, source: GPUBuffer, bytes: number): Promise<ArrayBuffer> {
  const size = align4(bytes);
  const staging = gpu.device.createBuffer({ label: 'readback', size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  try {
    const encoder = gpu.device.createCommandEncoder();
    encoder.copyBufferToBuffer(source, 0, staging, 0, size);
    gpu.device.queue.submit([encoder.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const copy = staging.getMappedRange().slice(0, bytes);
    staging.unmap();
    return copy;
  } finally {
    staging.destroy();
  }
}
