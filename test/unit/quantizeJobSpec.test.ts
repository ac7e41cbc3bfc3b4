/** The quantize job spec's device / threads / test seams as they cross the worker boundary (guards). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isJobSpec, isQuantizeJobSpec } from '../../src/protocol/jobs';

const request = { input: 'in', output: 'out.gguf', target: 'Q4_K_M' };

test('quantize job spec: device and threads are optional; when present they must be a device choice and a positive integer', () => {
  assert.ok(isQuantizeJobSpec({ kind: 'quantize', request }));
  for (const device of ['auto', 'gpu', 'cpu']) assert.ok(isQuantizeJobSpec({ kind: 'quantize', request, device }), device);
  assert.ok(isQuantizeJobSpec({ kind: 'quantize', request, device: 'gpu', threads: 8 }));
  assert.ok(isJobSpec({ kind: 'quantize', request, threads: 1, testFaults: { loseGpuAtTensor: 2, useSoftwareAdapter: true } }));
  for (const threads of [0, -1, 1.5, '2', Number.NaN, null]) assert.equal(isQuantizeJobSpec({ kind: 'quantize', request, threads }), false, String(threads));
  for (const device of ['tpu', '', 1, null]) assert.equal(isQuantizeJobSpec({ kind: 'quantize', request, device }), false, String(device));
  assert.equal(isQuantizeJobSpec({ kind: 'quantize', request, testFaults: { useSoftwareAdapter: 'yes' } }), false);
  assert.equal(isQuantizeJobSpec({ kind: 'quantize', request, testFaults: { loseGpuAtTensor: -1 } }), false);
});
