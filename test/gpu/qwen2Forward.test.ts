/**
 * Qwen2 (q/k/v biases, rope_theta 1e6, rotate-half RoPE) on the WebGPU forward pass: the same probe and
 * perplexity as test/unit/qwen2.test.ts, against the CPU pass and PyTorch (test/fixtures/qwen2-tiny-oracle.json).
 * Tolerances: logits within 1e-4 of the CPU pass (measured 1.6e-6 on lavapipe) and 1e-3 of PyTorch (measured
 * 4.5e-4, as the CPU pass and llama.cpp); perplexity within 1e-5 relative of the CPU pass and of PyTorch's
 * ppl_fp32 (measured 4e-9 and 4.7e-6).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GpuLlama } from '../../src/core/gpu/forward/gpuLlama';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows, windowNll } from '../../src/core/model/perplexity';
import { fixturesDir } from '../helpers/paths';
import { qwen2Oracle as oracle, qwen2TinyDir } from '../helpers/qwen2Oracle';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

after(releaseSharedGpu);

test('qwen2-tiny on the GPU: probe logits and perplexity match the CPU pass and PyTorch', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const lm = await loadModel(qwen2TinyDir);
  const model = new GpuLlama(gpu, lm.model);
  try {
    const vocab = lm.model.config.vocabSize;
    const rows = oracle.probe_ids.length;
    const probe = [Int32Array.from(oracle.probe_ids)];
    let gpuLogits = new Float32Array(0);
    let cpuLogits = new Float32Array(0);
    await model.run(probe, (_w, logits) => (gpuLogits = logits.slice()));
    await lm.model.run(probe, (_w, logits) => (cpuLogits = logits.slice()));
    let vsCpu = 0;
    for (let i = 0; i < cpuLogits.length; i++) vsCpu = Math.max(vsCpu, Math.abs(gpuLogits[i]! - cpuLogits[i]!));
    let vsPyTorch = 0;
    oracle.probe_last_logits.forEach((v, j) => (vsPyTorch = Math.max(vsPyTorch, Math.abs(gpuLogits[(rows - 1) * vocab + j]! - v))));
    oracle.probe_first8_logits.forEach((row, r) => row.forEach((v, j) => (vsPyTorch = Math.max(vsPyTorch, Math.abs(gpuLogits[r * vocab + j]! - v)))));
    t.diagnostic(`GPU vs CPU ${vsCpu.toExponential(2)}, GPU vs PyTorch ${vsPyTorch.toExponential(2)}`);
    assert.ok(vsCpu < 1e-4, `GPU vs CPU ${vsCpu}`);
    assert.ok(vsPyTorch < 1e-3, `GPU vs PyTorch ${vsPyTorch}`);

    const windows = makeWindows(lm.tokenizer.encode(readFileSync(join(fixturesDir, 'eval.txt'), 'utf8')), oracle.ctx, oracle.windows);
    let gpuLoss = 0;
    await model.run(windows, (w, logits, n) => (gpuLoss += windowNll(logits, n, vocab, windows[w]!)));
    let cpuLoss = 0;
    await lm.model.run(windows, (w, logits, n) => (cpuLoss += windowNll(logits, n, vocab, windows[w]!)));
    const predictions = windows.length * (oracle.ctx - 1);
    const gpuPpl = Math.exp(gpuLoss / predictions);
    const cpuPpl = Math.exp(cpuLoss / predictions);
    t.diagnostic(`ppl GPU ${gpuPpl}, CPU ${cpuPpl}, PyTorch ${oracle.ppl_fp32}`);
    assert.ok(Math.abs(gpuPpl / cpuPpl - 1) < 1e-5, `GPU ppl ${gpuPpl} vs CPU ${cpuPpl}`);
    assert.ok(Math.abs(gpuPpl / oracle.ppl_fp32 - 1) < 1e-5, `GPU ppl ${gpuPpl} vs PyTorch ${oracle.ppl_fp32}`);
  } finally {
    model.dispose();
    await lm.close();
  }
});
