/**
 * GPU device acquisition over the `webgpu` npm package (Dawn as a Node addon).
 *
 * - The adapter is asked for with `powerPreference: 'high-performance'`; the device requests the
 *   adapter's own limits for buffer and binding sizes (the defaults are 256 MiB / 128 MiB).
 * - Anything that goes wrong (no package, no adapter, device lost, validation or out-of-memory
 *   errors) becomes a GpuUnavailableError, which callers turn into a CPU fallback said once.
 * - Dawn keeps the process alive and may busy-poll once a device exists: a GpuContext is owned by one
 *   job and destroyed in its `finally` (`withGpu` does that).
 */
import { pathToFileURL } from 'node:url';
import { GpuUnavailableError, QuantLensError } from '../errors';

export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupsPerDimension: number;
  minStorageBufferOffsetAlignment: number;
}

export interface GpuContext {
  readonly device: GPUDevice;
  /** For messages: vendor, architecture, description of the adapter. */
  readonly description: string;
  readonly limits: GpuLimits;
  /** Set once the device is lost or destroyed. */
  lostReason: string | null;
  /** Throws GpuUnavailableError when the device is gone. */
  assertAlive(): void;
  destroy(): void;
}

type WebGpuModule = { create(options: string[]): GPU; globals: object };

function isWebGpuModule(v: unknown): v is WebGpuModule {
  return typeof v === 'object' && v !== null && 'create' in v && typeof v.create === 'function' && 'globals' in v;
}

let cachedGpu: GPU | null = null;

/** Loads Dawn once per thread. The `webgpu` package is ESM with a native addon, hence the dynamic import. */
async function loadGpu(): Promise<GPU> {
  if (cachedGpu !== null) return cachedGpu;
  let mod: unknown;
  try {
    // Resolved through CommonJS first: a bare dynamic import fails under tsx's data: URLs, while
    // import() of a file URL works in the esbuild bundles (CJS) and under tsx alike.
    const entry = require.resolve('webgpu');
    mod = await import(pathToFileURL(entry).href);
  } catch (e) {
    throw new GpuUnavailableError(`the WebGPU runtime (npm package 'webgpu') could not be loaded: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const m: unknown = isWebGpuModule(mod) ? mod : typeof mod === 'object' && mod !== null && 'default' in mod ? mod.default : undefined;
  if (!isWebGpuModule(m)) throw new GpuUnavailableError(`the 'webgpu' package does not export create()/globals`);
  // The GPU* constants (GPUBufferUsage, GPUMapMode, ...) the code below uses.
  Object.assign(globalThis, m.globals);
  cachedGpu = m.create([]);
  return cachedGpu;
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
}

/** Gets an adapter and a device with the adapter's limits. Throws GpuUnavailableError when there is none. */
export async function acquireGpu(options: AcquireOptions = {}): Promise<GpuContext> {
  const gpu = await loadGpu();
  let adapter: GPUAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: options.powerPreference ?? 'high-performance' });
  } catch (e) {
    throw new GpuUnavailableError(`requesting a WebGPU adapter failed: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  if (adapter === null) throw new GpuUnavailableError('no WebGPU adapter is available (no GPU and no software Vulkan such as Mesa lavapipe)');
  const a = adapter.limits;
  const requiredLimits: Record<string, number> = {
    maxStorageBufferBindingSize: a.maxStorageBufferBindingSize,
    maxBufferSize: a.maxBufferSize,
    maxComputeWorkgroupsPerDimension: a.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: Math.min(8, a.maxStorageBuffersPerShaderStage),
    maxComputeWorkgroupStorageSize: a.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: Math.max(256, Math.min(a.maxComputeInvocationsPerWorkgroup, 256)),
    maxComputeWorkgroupSizeX: Math.min(a.maxComputeWorkgroupSizeX, 256),
  };
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice({ requiredLimits });
  } catch (e) {
    throw new GpuUnavailableError(`requesting a WebGPU device failed: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const info = adapter.info;
  const description = [info.vendor, info.architecture, info.description || info.device].filter((s) => s !== '').join(' / ') || 'unknown adapter';
  const limits: GpuLimits = {
    maxStorageBufferBindingSize: device.limits.maxStorageBufferBindingSize,
    maxBufferSize: device.limits.maxBufferSize,
    maxComputeWorkgroupsPerDimension: device.limits.maxComputeWorkgroupsPerDimension,
    minStorageBufferOffsetAlignment: device.limits.minStorageBufferOffsetAlignment,
  };
  const context: GpuContext = {
    device,
    description,
    limits,
    lostReason: null,
    assertAlive() {
      if (context.lostReason !== null) throw new GpuUnavailableError(`the GPU device was lost: ${context.lostReason}`);
    },
    destroy() {
      if (context.lostReason === null) context.lostReason = 'destroyed';
      device.destroy();
    },
  };
  void device.lost.then((info) => {
    if (context.lostReason === null) context.lostReason = `${info.reason}: ${info.message}`;
  });
  return context;
}

/** Runs `fn` with a fresh device and always destroys it afterwards (Dawn would keep the thread busy). */
export async function withGpu<T>(fn: (gpu: GpuContext) => Promise<T>, options?: AcquireOptions): Promise<T> {
  const gpu = await acquireGpu(options);
  try {
    return await fn(gpu);
  } finally {
    gpu.destroy();
  }
}

/**
 * Runs GPU work inside validation and out-of-memory error scopes; any error, and any failure of a
 * lost device (mapAsync rejecting, ...), becomes a GpuUnavailableError. Cancellation passes through.
 */
export async function guarded<T>(gpu: GpuContext, what: string, fn: () => Promise<T>): Promise<T> {
  gpu.assertAlive();
  const { device } = gpu;
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let value: T;
  try {
    value = await fn();
  } catch (e) {
    // Leave the scopes balanced; their content no longer matters.
    await device.popErrorScope().catch(() => null);
    await device.popErrorScope().catch(() => null);
    // Our own errors (cancel, NaN in a block, bad sizes) pass through; only what the WebGPU runtime
    // threw becomes GpuUnavailableError.
    if (e instanceof QuantLensError) throw e;
    if (gpu.lostReason !== null) throw new GpuUnavailableError(`${what}: the GPU device was lost (${gpu.lostReason})`, e);
    throw new GpuUnavailableError(`${what}: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const validation = await device.popErrorScope().catch(() => null);
  const oom = await device.popErrorScope().catch(() => null);
  const error = validation ?? oom;
  if (error !== null) throw new GpuUnavailableError(`${what}: ${error.message}`);
  gpu.assertAlive();
  return value;
}
