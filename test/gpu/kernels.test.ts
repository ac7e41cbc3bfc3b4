import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderKernelIndex } from '../../src/core/gpu/kernels/generate';
import { KERNELS, cachedPipelineCount, gridFor, pipelineFor } from '../../src/core/gpu/kernels';
import { repoRoot } from '../helpers/paths';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

after(releaseSharedGpu);

const kernelDir = join(repoRoot, 'src', 'core', 'gpu', 'kernels');

test('kernels/index.ts is generated from the current .wgsl files', () => {
  assert.equal(readFileSync(join(kernelDir, 'index.ts'), 'utf8'), renderKernelIndex(kernelDir), 'run `npx tsx src/core/gpu/kernels/generate.ts`');
});

test('a 2-D grid covers any workgroup count within the per-dimension limit', () => {
  assert.deepEqual(gridFor(0, 65535), { x: 0, y: 0 });
  assert.deepEqual(gridFor(10, 65535), { x: 10, y: 1 });
  assert.deepEqual(gridFor(65536, 65535), { x: 65535, y: 2 });
  const g = gridFor(999_999, 1000);
  assert.ok(g.x * g.y >= 999_999 && g.x <= 1000 && g.y <= 1000);
  assert.throws(() => gridFor(1001 * 1000, 1000));
});

test('every kernel compiles on the device, and pipelines are compiled once per device', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  gpu.device.pushErrorScope('validation');
  for (const kernel of Object.values(KERNELS)) pipelineFor(gpu, kernel);
  const error = await gpu.device.popErrorScope();
  assert.equal(error, null, error?.message);
  const count = cachedPipelineCount(gpu);
  assert.equal(count, Object.keys(KERNELS).length);
  for (const kernel of Object.values(KERNELS)) pipelineFor(gpu, kernel);
  assert.equal(cachedPipelineCount(gpu), count);
});
