/**
 * GPTQ layers on a job's ComputeDevice: the WebGPU driver (core/gpu/gptq.ts) while a device is held, the
 * CPU driver (core/methods/gptq.ts) otherwise. Under `auto` a GPU failure (device lost, out of memory,
 * validation error: GpuUnavailableError) reruns that layer on the CPU, says so once, and the rest of the
 * job stays on the CPU (ComputeDevice.run); under `gpu` it is an error. Cancellation passes through.
 * Where `auto` finds only a software adapter (lavapipe), the job opens its device with
 * `softwareAdapter: 'avoid'` and everything runs on the CPU: measured slower there (bench methods).
 */
import { gptqQuantizeLayerGpu } from '../gpu/gptq';
import { gptqQuantizeLayer } from '../methods/gptq';
import type { GptqLayerRunner } from '../methods/quantizeWithMethod';
import type { ComputeDevice } from './computeDevice';

export interface GptqOnDevice {
  run: GptqLayerRunner;
  /** 'gpu', 'cpu' or 'gpu+cpu': where the layers ran so far (for the quant card's recipe). */
  deviceUsed(): string;
}

export function gptqOnDevice(device: ComputeDevice): GptqOnDevice {
  const layers = { gpu: 0, cpu: 0 };
  const run: GptqLayerRunner = (weight, rows, cols, hessian, options) =>
    device.run(
      async (gpu) => {
        const result = await gptqQuantizeLayerGpu(gpu, weight, rows, cols, hessian, options);
        layers.gpu++;
        return result;
      },
      async () => {
        const result = gptqQuantizeLayer(weight, rows, cols, hessian, options);
        layers.cpu++;
        return result;
      },
    );
  return { run, deviceUsed: () => (layers.gpu > 0 ? (layers.cpu > 0 ? 'gpu+cpu' : 'gpu') : 'cpu') };
}

/**
 * gptqOnDevice with the device opened when the first layer runs, so that a run refused before calibration (bad
 * arguments, unreadable text) opens no device and says nothing about one. `dispose()` releases it.
 */
export function gptqOnLazyDevice(open: () => Promise<ComputeDevice>): GptqOnDevice & { dispose(): void } {
  let opened: Promise<{ device: ComputeDevice; onDevice: GptqOnDevice }> | null = null;
  let device: ComputeDevice | null = null;
  let onDevice: GptqOnDevice | null = null;
  return {
    run: async (weight, rows, cols, hessian, options) => {
      opened ??= open().then((d) => {
        device = d;
        onDevice = gptqOnDevice(d);
        return { device: d, onDevice };
      });
      return (await opened).onDevice.run(weight, rows, cols, hessian, options);
    },
    deviceUsed: () => onDevice?.deviceUsed() ?? 'cpu',
    dispose: () => device?.dispose(),
  };
}
