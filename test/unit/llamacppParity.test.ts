/**
 * Our GGUF-path forward against llama.cpp itself (node-llama-cpp's CPU build) on the same file and
 * the same windows. llama.cpp runs with F32 K/V caches and without flash attention so that both
 * sides compute in f32; with its default F16 cache the logits differ by ~1e-2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows, windowNll } from '../../src/core/model/perplexity';
import { fixturesDir, microLlamaF32Gguf } from '../helpers/paths';
import { withLlamaCppModel } from '../helpers/llamaCpp';

const evalText = readFileSync(join(fixturesDir, 'eval.txt'), 'utf8');
const CTX = 256;

test('logits and per-window loss on micro-llama-f32.gguf equal llama.cpp (node-llama-cpp) within 1e-4', async () => {
  const ours = await loadModel(microLlamaF32Gguf);
  try {
    const windows = makeWindows(ours.tokenizer.encode(evalText), CTX, 2);
    const vocab = ours.model.config.vocabSize;
    const ourLogits: Float32Array[] = [];
    await ours.model.run(windows, (_w, logits) => ourLogits.push(logits.slice()));
    await withLlamaCppModel(microLlamaF32Gguf, async (run) => {
      for (let w = 0; w < windows.length; w++) {
        const theirs = await run(Array.from(windows[w]!));
        assert.equal(theirs.logits.length, (CTX - 1) * vocab);
        let maxDiff = 0;
        for (let i = 0; i < theirs.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(theirs.logits[i]! - ourLogits[w]![i]!));
        const ourNll = windowNll(ourLogits[w]!, CTX, vocab, windows[w]!);
        assert.ok(maxDiff < 1e-4, `window ${w}: max |logit diff| ${maxDiff}`);
        assert.ok(Math.abs(ourNll / theirs.nll - 1) < 1e-5, `window ${w}: our loss ${ourNll / (CTX - 1)} vs llama.cpp ${theirs.nll / (CTX - 1)}`);
      }
    });
  } finally {
    await ours.close();
  }
});
