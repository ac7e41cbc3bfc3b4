/**
 * One device per GPU test file. Tests skip ONLY when no adapter exists, and then print why;
 * any other failure to get a device fails the test. The device is destroyed after the file
 * (Dawn keeps the process busy otherwise).
 */
import type { TestContext } from 'node:test';
import { acquireGpu, type GpuContext } from '../../src/core/gpu/device';
import { GpuUnavailableError } from '../../src/core/errors';

let shared: Promise<GpuContext | string> | null = null;

/** The shared device, or a skip reason when this machine has no WebGPU adapter. */
export function sharedGpu(): Promise<GpuContext | string> {
  shared ??= acquireGpu().then(
    (gpu) => gpu,
    (e: unknown) => {
      if (e instanceof GpuUnavailableError && /no WebGPU adapter/.test(e.message)) return `no WebGPU adapter on this machine: ${e.message}`;
      throw e;
    },
  );
  return shared;
}

/** Returns the device, or marks the test skipped (with the reason printed) and returns null. */
export async function gpuOrSkip(t: TestContext): Promise<GpuContext | null> {
  const g = await sharedGpu();
  if (typeof g === 'string') {
    console.log(`# skipped: ${g}`);
    t.skip(g);
    return null;
  }
  return g;
}

export async function releaseSharedGpu(): Promise<void> {
  if (shared === null) return;
  const g = await shared.catch(() => null);
  if (g !== null && typeof g !== 'string') g.destroy();
  shared = null;
}
