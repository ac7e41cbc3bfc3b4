/**
 * Perplexity where a ComputeDevice says: on the GPU when one is held, else on the CPU. Under `auto`,
 * what the GPU pass does not do (activation hooks, a head size over its kernel's limit) runs on the
 * CPU with a notice, and a GPU that fails mid-pass (GpuUnavailableError: device lost or destroyed,
 * out of memory) hands the pass to the CPU (ComputeDevice.run). Under `gpu` both are errors.
 */
import type { DeviceChoice } from '../../../protocol/jobs';
import { UnsupportedError } from '../../errors';
import type { ComputeDevice } from '../../jobs/computeDevice';
import type { GpuContext } from '../device';
import type { ForwardOptions, LlamaModel } from '../../model/forward';
import { perplexity, type PerplexityResult } from '../../model/perplexity';
import { assertGpuForwardModel, assertGpuForwardSupports, GpuLlama } from './gpuLlama';
import { perplexityOnGpu } from './gpuPerplexity';
import type { GpuForwardMemoryPlan } from './memoryPlan';

export interface DevicePerplexityResult extends PerplexityResult {
  /** Where the pass ran in the end. */
  device: 'gpu' | 'cpu';
  /** The GPU pass's memory estimate (made before any upload), when a GPU pass was planned. */
  gpuMemory?: GpuForwardMemoryPlan;
}

/**
 * Keeps one GpuLlama (and so its resident weights) across calls on the same device: an eval of
 * several settings reads and uploads the weights once per weight setting, not once per row.
 */
export class GpuModelCache {
  private entry: { gpu: GpuContext; model: LlamaModel; gpuModel: GpuLlama } | null = null;

  get(gpu: GpuContext, model: LlamaModel, residentWeightBytes: number | undefined, deviceMemoryBytes?: number): GpuLlama {
    if (this.entry !== null && this.entry.gpu === gpu && this.entry.model === model) return this.entry.gpuModel;
    this.dispose();
    const gpuModel = new GpuLlama(gpu, model, { residentWeightBytes, deviceMemoryBytes });
    this.entry = { gpu, model, gpuModel };
    return gpuModel;
  }

  dispose(): void {
    this.entry?.gpuModel.dispose();
    this.entry = null;
  }
}

export interface DevicePerplexityOptions extends ForwardOptions {
  /** Reuse the GPU model (resident weights) across calls; without it each call uploads and frees them. */
  cache?: GpuModelCache;
  /** f32 weight bytes the GPU pass may keep resident (see GpuLlama). */
  residentWeightBytes?: number;
  /** Told once per call when this pass leaves the GPU for the CPU. */
  notice?(message: string): void;
  /** Told the GPU pass's memory estimate before anything is uploaded (describeGpuMemoryPlan gives one line). */
  onMemoryPlan?(plan: GpuForwardMemoryPlan): void;
  /** The device's memory when known (WebGPU cannot tell): see GpuLlamaOptions.deviceMemoryBytes. */
  deviceMemoryBytes?: number;
}

export async function perplexityOnDevice(
  device: ComputeDevice,
  choice: DeviceChoice,
  model: LlamaModel,
  windows: readonly Int32Array[],
  options: DevicePerplexityOptions = {},
): Promise<DevicePerplexityResult> {
  const onCpu = async (): Promise<DevicePerplexityResult> => ({ ...(await perplexity(model, windows, options)), device: 'cpu' });
  if (device.gpu === null) return onCpu();
  try {
    assertGpuForwardModel(model);
    assertGpuForwardSupports(options);
  } catch (e) {
    if (!(e instanceof UnsupportedError) || choice === 'gpu') throw e;
    options.notice?.(`${e.message.replace(/; run it on the CPU$/, '')}: running this pass on the CPU`);
    return onCpu();
  }
  return device.run(async (gpu) => {
    const cache = options.cache;
    const gpuOptions = { residentWeightBytes: options.residentWeightBytes, deviceMemoryBytes: options.deviceMemoryBytes };
    const gpuModel = cache?.get(gpu, model, options.residentWeightBytes, options.deviceMemoryBytes) ?? new GpuLlama(gpu, model, gpuOptions);
    try {
      // The estimate and the resident / streamed choice (or the refusal) come before any upload.
      let plan: GpuForwardMemoryPlan;
      try {
        plan = gpuModel.memoryPlan(windows.length, windows[0]?.length ?? 0);
      } catch (e) {
        if (!(e instanceof UnsupportedError) || choice === 'gpu') throw e;
        options.notice?.(`${e.message}: running this pass on the CPU`);
        return await onCpu();
      }
      options.onMemoryPlan?.(plan);
      return { ...(await perplexityOnGpu(gpuModel, windows, options)), device: 'gpu', gpuMemory: plan };
    } catch (e) {
      cache?.dispose();
      throw e;
    } finally {
      if (cache === undefined) gpuModel.dispose();
    }
  }, onCpu);
}
