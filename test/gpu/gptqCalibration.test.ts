/**
 * GPTQ's Hessian accumulated on the device during the calibration pass (issue #6): with a job's device, the
 * GptqLayerRunner of jobs/gptqDevice.ts carries a `hessian` provider, and calibrate.ts gathers each GPTQ site's
 * Gram on GpuHessianAccumulator instead of the CPU HessianAccumulator. Checked on micro-llama's real calibration
 * (lavapipe where there is no GPU):
 * - the device Hessians equal the CPU ones to f32 accuracy (both sum f32 chunk products in float64);
 * - GPTQ over them (CPU layers, so that only the Hessian differs; and the full device path) gives codes with a tiny
 *   fraction of flips and the same perplexity within 0.5 % (stated tolerance: the flips move it by ~0.01 %);
 * - cancel in the middle of a device Hessian is a CancelledError and the device keeps working;
 * - `--device cpu` (a ComputeDevice without a GPU) is the plain CPU path bit for bit: codes and perplexity.
 * Skips only when no WebGPU adapter exists.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';
import { GpuHessianAccumulator } from '../../src/core/gpu/gptq';
import { runLayerwiseCalibration, type GramProvider, type LayerwiseMethod } from '../../src/core/methods/calibrate';
import { gptqQuantizeLayer } from '../../src/core/methods/gptq';
import type { AsyncGramAccumulator } from '../../src/core/methods/inputStats';
import { evaluationOptions, quantizeWithMethod, type GptqLayerRunner, type MethodRun } from '../../src/core/methods/quantizeWithMethod';
import { loadModel, type LoadedModel } from '../../src/core/model/loadModel';
import { makeWindows, perplexity } from '../../src/core/model/perplexity';
import { CancelledError } from '../../src/core/errors';
import { ComputeDevice } from '../../src/core/jobs/computeDevice';
import { gptqOnDevice } from '../../src/core/jobs/gptqDevice';
import type { GpuContext } from '../../src/core/gpu/device';
import { fixturesDir, microLlamaDir } from '../helpers/paths';

after(releaseSharedGpu);

const SETTINGS = { bits: 4, groupSize: 32 };

function windowsOf(loaded: LoadedModel, file: string, count: number): Int32Array[] {
  return makeWindows(loaded.tokenizer.encode(readFileSync(join(fixturesDir, file), 'utf8')), 128, count);
}

/** The Hessians a calibration pass gathers, in site order (GPTQ's method leaves the weights as they are here). */
async function gatheredHessians(loaded: LoadedModel, windows: Int32Array[], gram?: GramProvider): Promise<Float64Array[]> {
  const hessians: Float64Array[] = [];
  const method: LayerwiseMethod = {
    statsOptions: () => ({ gram: true }),
    processSite(ctx) {
      const h = ctx.stats.hessian();
      assert.ok(h !== null);
      hessians.push(h.slice());
    },
  };
  await runLayerwiseCalibration(loaded.model, windows, method, { gram });
  return hessians;
}

/** A provider that always accumulates on `gpu`, recording which accumulator each site got. */
function deviceHessians(gpu: GpuContext, kinds: string[]): GramProvider {
  return async (columns, pass) => {
    const acc = new GpuHessianAccumulator(gpu, columns);
    try {
      kinds.push('gpu');
      return await pass(acc);
    } finally {
      acc.destroy();
    }
  };
}

function codeFlips(a: MethodRun, b: MethodRun): { flips: number; codes: number } {
  let flips = 0;
  let codes = 0;
  for (const [name, r] of a.gptqResults) {
    const g = b.gptqResults.get(name);
    assert.ok(g !== undefined, name);
    assert.equal(g.codes.length, r.codes.length);
    for (let i = 0; i < r.codes.length; i++) if (r.codes[i] !== g.codes[i]) flips++;
    codes += r.codes.length;
  }
  return { flips, codes };
}

test('device Hessians in calibration: equal to the CPU ones to f32 accuracy; GPTQ over them flips few codes, same perplexity within 0.5 %', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const loaded = await loadModel(microLlamaDir);
  try {
    const calib = windowsOf(loaded, 'calib-64k.txt', 16);
    const evaluation = windowsOf(loaded, 'eval.txt', 8);
    const kinds: string[] = [];
    const onCpu = await gatheredHessians(loaded, calib);
    const onGpu = await gatheredHessians(loaded, calib, deviceHessians(gpu, kinds));
    assert.deepEqual(kinds, Array(8).fill('gpu'), 'every site of both layers accumulated on the device');
    assert.equal(onGpu.length, onCpu.length);
    let worst = 0;
    onCpu.forEach((h, i) => {
      const g = onGpu[i]!;
      let max = 0;
      let diff = 0;
      for (let j = 0; j < h.length; j++) {
        max = Math.max(max, Math.abs(h[j]!));
        diff = Math.max(diff, Math.abs(h[j]! - g[j]!));
      }
      worst = Math.max(worst, diff / max);
    });
    console.log(`# micro-llama calibration Hessians, device vs CPU: max |dH| / max |H| = ${worst.toExponential(2)}`);
    assert.ok(worst < 1e-5, `Hessians differ by ${worst} of their max`);

    // Only the Hessian on the device (CPU layers), then everything on the device.
    const cpu = await quantizeWithMethod(loaded.model, calib, 'gptq', SETTINGS, { keepGptqResults: true });
    const gpuKinds: string[] = [];
    const hessianOnly: GptqLayerRunner = async (weight, rows, cols, h, options) => gptqQuantizeLayer(weight, rows, cols, h, options);
    hessianOnly.hessian = deviceHessians(gpu, gpuKinds);
    const withDeviceHessian = await quantizeWithMethod(loaded.model, calib, 'gptq', SETTINGS, { keepGptqResults: true, gptqLayer: hessianOnly });
    assert.equal(gpuKinds.length, 8);
    const device = await ComputeDevice.open('gpu', () => {});
    let allOnDevice: MethodRun;
    let used: string;
    try {
      const onDevice = gptqOnDevice(device);
      assert.ok(onDevice.run.hessian !== undefined, 'the device runner carries a Hessian provider');
      allOnDevice = await quantizeWithMethod(loaded.model, calib, 'gptq', SETTINGS, { keepGptqResults: true, gptqLayer: onDevice.run });
      used = onDevice.deviceUsed();
    } finally {
      device.dispose();
    }
    assert.equal(used, 'gpu');
    const pplCpu = (await perplexity(loaded.model, evaluation, evaluationOptions(cpu))).perplexity;
    for (const [label, run] of [
      ['device Hessian, CPU layers', withDeviceHessian],
      ['device Hessian and layers', allOnDevice],
    ] as const) {
      const { flips, codes } = codeFlips(cpu, run);
      const ppl = (await perplexity(loaded.model, evaluation, evaluationOptions(run))).perplexity;
      console.log(`# ${label}: ${flips} of ${codes} codes differ from the CPU run; perplexity ${ppl.toFixed(4)} vs CPU ${pplCpu.toFixed(4)}`);
      assert.ok(flips / codes < 0.005, `${label}: ${flips} of ${codes} codes differ`);
      assert.ok(Math.abs(ppl - pplCpu) / pplCpu < 0.005, `${label}: perplexity ${ppl} vs ${pplCpu}`);
    }
  } finally {
    await loaded.close();
  }
});

test('device Hessian in calibration: cancel in the middle of a site is a CancelledError; the device keeps working', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const loaded = await loadModel(microLlamaDir);
  try {
    const calib = windowsOf(loaded, 'calib-64k.txt', 8);
    const controller = new AbortController();
    let added = 0;
    const runner: GptqLayerRunner = async (weight, rows, cols, h, options) => gptqQuantizeLayer(weight, rows, cols, h, options);
    runner.hessian = async (columns, pass) => {
      const acc = new GpuHessianAccumulator(gpu, columns);
      // Abort after the device took three windows of layer 0's first site.
      const counting: AsyncGramAccumulator = {
        columns,
        addRows: async (x, rows) => {
          await acc.addRows(x, rows);
          if (++added === 3) controller.abort();
        },
        hessian: () => acc.hessian(),
      };
      try {
        return await pass(counting);
      } finally {
        acc.destroy();
      }
    };
    await assert.rejects(quantizeWithMethod(loaded.model, calib, 'gptq', SETTINGS, { signal: controller.signal, gptqLayer: runner }), CancelledError);
    assert.equal(added, 3, 'stopped at the next window');
    // The device is fine afterwards: a full device-Hessian calibration runs.
    const kinds: string[] = [];
    const hessians = await gatheredHessians(loaded, calib.slice(0, 4), deviceHessians(gpu, kinds));
    assert.equal(hessians.length, 8);
  } finally {
    await loaded.close();
  }
});

test('--device cpu: GPTQ through the job device runner is the plain CPU path bit for bit (codes, scales, perplexity)', async () => {
  const loaded = await loadModel(microLlamaDir);
  try {
    const calib = windowsOf(loaded, 'calib-64k.txt', 8);
    const evaluation = windowsOf(loaded, 'eval.txt', 4);
    const plain = await quantizeWithMethod(loaded.model, calib, 'gptq', SETTINGS, { keepGptqResults: true });
    const device = await ComputeDevice.open('cpu', () => {});
    try {
      const onDevice = gptqOnDevice(device);
      const viaDevice = await quantizeWithMethod(loaded.model, calib, 'gptq', SETTINGS, { keepGptqResults: true, gptqLayer: onDevice.run });
      assert.equal(onDevice.deviceUsed(), 'cpu');
      for (const [name, r] of plain.gptqResults) {
        const d = viaDevice.gptqResults.get(name);
        assert.ok(d !== undefined);
        assert.deepEqual(d.codes, r.codes, `${name}: codes`);
        assert.deepEqual(d.scales, r.scales, `${name}: scales`);
        assert.deepEqual(d.zeros, r.zeros, `${name}: zeros`);
      }
      const a = await perplexity(loaded.model, evaluation, evaluationOptions(plain));
      const b = await perplexity(loaded.model, evaluation, evaluationOptions(viaDevice));
      assert.equal(b.perplexity, a.perplexity);
    } finally {
      device.dispose();
    }
  } finally {
    await loaded.close();
  }
});

test('device Hessian under auto: a device lost in the middle of a site reruns that site\'s pass on the CPU (said once), the rest stays there', async (t) => {
  const shared = await gpuOrSkip(t);
  if (shared === null) return;
  const loaded = await loadModel(microLlamaDir);
  try {
    const calib = windowsOf(loaded, 'calib-64k.txt', 4);
    const onCpu = await gatheredHessians(loaded, calib);
    const notices: string[] = [];
    const auto = await ComputeDevice.open('auto', (m) => notices.push(m), { softwareAdapter: 'use' });
    try {
      const onAuto = gptqOnDevice(auto);
      const provider = onAuto.run.hessian;
      assert.ok(provider !== undefined);
      let added = 0;
      // The device goes away after two windows of the first site.
      const losing: GramProvider = (columns, pass) =>
        provider(columns, (gram) =>
          pass(
            gram === true
              ? gram
              : {
                  columns,
                  addRows: async (x, rows) => {
                    if (++added === 3) auto.gpu!.destroy();
                    await gram.addRows(x, rows);
                  },
                  hessian: () => gram.hessian(),
                },
          ),
        );
      const hessians = await gatheredHessians(loaded, calib, losing);
      assert.equal(hessians.length, onCpu.length);
      hessians.forEach((h, i) => assert.deepEqual(h, onCpu[i], `site ${i}: the CPU Hessian`));
      assert.equal(onAuto.deviceUsed(), 'cpu', 'no site finished on the device');
      assert.equal(notices.length, 1, notices.join(' | '));
      assert.match(notices[0]!, /continuing on the CPU/);
    } finally {
      auto.dispose();
    }
  } finally {
    await loaded.close();
  }
});
