/**
 * Where a job computes: `gpu` (required), `cpu`, or `auto` (the GPU when an adapter exists, else the
 * CPU). With `auto`, a GPU that is missing or fails mid-job (device lost, validation error) hands the
 * rest of the job to the CPU path, and the job says so once. A job whose CPU path beats a software
 * renderer (Mesa lavapipe / llvmpipe, SwiftShader) opens with `softwareAdapter: 'avoid'`: under `auto`
 * such an adapter is given back and the job runs on the CPU (said once); `gpu` still uses it.
 * The device is destroyed by dispose().
 */
import type { DeviceChoice } from '../../protocol/jobs';
import { GpuUnavailableError, describeError } from '../errors';
import { acquireGpu, type GpuContext } from '../gpu/device';

/** Mesa lavapipe / llvmpipe, SwiftShader, WARP: adapters that run on the CPU. */
export function isSoftwareAdapter(description: string): boolean {
  return /\b(software|llvmpipe|lavapipe|swiftshader|warp)\b/i.test(description);
}

export class ComputeDevice {
  private noticed = false;

  private constructor(
    private readonly choice: DeviceChoice,
    private current: GpuContext | null,
    private readonly notice: (message: string) => void,
  ) {}

  static async open(choice: DeviceChoice, notice: (message: string) => void, options: { softwareAdapter?: 'use' | 'avoid' } = {}): Promise<ComputeDevice> {
    if (choice === 'cpu') return new ComputeDevice(choice, null, notice);
    try {
      const gpu = await acquireGpu();
      if (choice === 'auto' && options.softwareAdapter === 'avoid' && isSoftwareAdapter(gpu.description)) {
        gpu.destroy();
        const device = new ComputeDevice(choice, null, notice);
        device.sayOnce(`the only WebGPU adapter is a software renderer (${gpu.description}): running on the CPU, which is faster here (--device gpu uses the adapter anyway)`);
        return device;
      }
      return new ComputeDevice(choice, gpu, notice);
    } catch (e) {
      if (choice === 'gpu' || !(e instanceof GpuUnavailableError)) throw e;
      const device = new ComputeDevice(choice, null, notice);
      device.sayOnce(`${e.message}: running on the CPU`);
      return device;
    }
  }

  get gpu(): GpuContext | null {
    return this.current;
  }

  get kind(): 'gpu' | 'cpu' {
    return this.current === null ? 'cpu' : 'gpu';
  }

  get description(): string {
    return this.current === null ? 'CPU' : this.current.description;
  }

  /** Runs `onGpu` when a device is held, else `onCpu`; with `auto`, a GPU failure reruns the step on the CPU. */
  async run<T>(onGpu: (gpu: GpuContext) => Promise<T>, onCpu: () => Promise<T>): Promise<T> {
    const gpu = this.current;
    if (gpu === null) return onCpu();
    try {
      return await onGpu(gpu);
    } catch (e) {
      if (!(e instanceof GpuUnavailableError) || this.choice === 'gpu') throw e;
      this.sayOnce(`the GPU failed (${describeError(e)}): continuing on the CPU`);
      this.current = null;
      gpu.destroy();
      return onCpu();
    }
  }

  private sayOnce(message: string): void {
    if (this.noticed) return;
    this.noticed = true;
    this.notice(message);
  }

  dispose(): void {
    this.current?.destroy();
    this.current = null;
  }
}
