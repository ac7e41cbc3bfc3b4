/**
 * GPTQ on a job's ComputeDevice: the WebGPU driver (core/gpu/gptq.ts) while a device is held, the CPU driver
 * (core/methods/gptq.ts) otherwise, for both halves of the method:
 * - the Hessians, accumulated during the calibration pass (GpuHessianAccumulator instead of HessianAccumulator,
 *   through the runner's `hessian` provider that quantizeWithMethod hands to the calibration driver);
 * - each linear layer's column updates.
 * Under `auto` a GPU failure (device lost, out of memory, validation error: GpuUnavailableError) reruns that site's
 * statistics pass or that layer on the CPU, says so once, and the rest of the job stays on the CPU
 * (ComputeDevice.run); under `gpu` it is an error. Cancellation passes through.
 * Where `auto` finds only a software adapter (lavapipe), the job opens its device with
 * `softwareAdapter: 'avoid'` and everything runs on the CPU: measured slower there (bench methods).
 */
import { GpuHessianAccumulator, gptqQuantizeLayerGpu } from '../gpu/gptq';
import type { GramProvider } from '../methods/calibrate';
import { gptqQuantizeLayer } from '../methods/gptq';
import type { GptqLayerRunner } from '../methods/quantizeWithMethod';
import type { ComputeDevice } from './computeDevice';

export interface GptqOnDevice {
  /** One linear's GPTQ; `run.hessian` accumulates the calibration Hessians on the same device. */
  run: GptqLayerRunner;
  /** 'gpu', 'cpu' or 'gpu+cpu': where the Hessians and layers ran so far (for the quant card's recipe). */
  deviceUsed(): string;
}

export function gptqOnDevice(device: ComputeDevice): GptqOnDevice {
  const used = { gpu: 0, cpu: 0 };
  const hessian: GramProvider = (columns, pass) =>
    device.run(
      async (gpu) => {
        // A Hessian wider than one storage binding stays on the CPU (the device could not hold it as one matrix).
        if (columns * columns * 4 > gpu.limits.maxStorageBufferBindingSize) {
          used.cpu++;
          return pass(true);
        }
        const accumulator = new GpuHessianAccumulator(gpu, columns);
        try {
          const result = await pass(accumulator);
          used.gpu++;
          return result;
        } finally {
          accumulator.destroy();
        }
      },
      async () => {
        const result = await pass(true);
        used.cpu++;
        return result;
      },
    );
  const run: GptqLayerRunner = (weight, rows, cols, h, options) =>
    device.run(
      async (gpu) => {
        const result = await gptqQuantizeLayerGpu(gpu, weight, rows, cols, h, options);
        used.gpu++;
        return result;
      },
      async () => {
        const result = gptqQuantizeLayer(weight, rows, cols, h, options);
        used.cpu++;
        return result;
      },
    );
  run.hessian = hessian;
  return { run, deviceUsed: () => (used.gpu > 0 ? (used.cpu > 0 ? 'gpu+cpu' : 'gpu') : 'cpu') };
}

/**
 * gptqOnDevice with the device opened when the first Hessian or layer needs it, so that a run refused before
 * calibration (bad arguments, unreadable text) opens no device and says nothing about one. `dispose()` releases it.
 */
export function gptqOnLazyDevice(open: () => Promise<ComputeDevice>): GptqOnDevice & { dispose(): void } {
  let opened: Promise<GptqOnDevice> | null = null;
  let device: ComputeDevice | null = null;
  let onDevice: GptqOnDevice | null = null;
  const onDeviceNow = (): Promise<GptqOnDevice> =>
    (opened ??= open().then((d) => {
      device = d;
      onDevice = gptqOnDevice(d);
      return onDevice;
    }));
  const run: GptqLayerRunner = async (weight, rows, cols, hessian, options) => (await onDeviceNow()).run(weight, rows, cols, hessian, options);
  run.hessian = async (columns, pass) => {
    const provider = (await onDeviceNow()).run.hessian;
    return provider === undefined ? pass(true) : provider(columns, pass);
  };
  return {
    run,
    deviceUsed: () => onDevice?.deviceUsed() ?? 'cpu',
    dispose: () => device?.dispose(),
  };
}
