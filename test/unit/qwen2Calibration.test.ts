/**
 * The calibration pass the methods share (methods/calibrate.ts) must compute each site's input exactly as
 * the forward pass does. On Qwen2 that includes the q/k/v biases before attention: without them GPTQ/AWQ
 * would calibrate the o projection on inputs the model never produces.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel } from '../../src/core/model/forward';
import { runLayerwiseCalibration } from '../../src/core/methods/calibrate';
import { qwen2Oracle, qwen2TinyDir } from '../helpers/qwen2Oracle';

test('qwen2-tiny: the calibration pass sees the forward pass\'s attention output (q/k/v biases applied), value for value', async () => {
  const windows = [Int32Array.from(qwen2Oracle.probe_ids)];
  const checkpoint = await openCheckpoint(qwen2TinyDir);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const forwardMax: Float32Array[] = [];
    await model.run(windows, () => {}, {
      hooks: {
        onActivation(site, x, rows, width) {
          if (site.kind !== 'attn_out') return;
          const m = (forwardMax[site.layer] ??= new Float32Array(width));
          for (let r = 0; r < rows; r++) for (let j = 0; j < width; j++) m[j] = Math.max(m[j]!, Math.abs(x[r * width + j]!));
        },
      },
    });
    const calibrationMax: Float32Array[] = [];
    await runLayerwiseCalibration(model, windows, {
      statsOptions: () => ({}),
      processSite(ctx) {
        if (ctx.site === 'attn_out') calibrationMax[ctx.layer] = ctx.stats.maxAbs.slice();
      },
    });
    assert.equal(calibrationMax.length, 2);
    for (let l = 0; l < 2; l++) assert.deepEqual(calibrationMax[l], forwardMax[l], `layer ${l} attention output per-channel absmax`);
  } finally {
    await checkpoint.close();
  }
});
