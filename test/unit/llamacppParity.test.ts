/**
 * Our GGUF-path forward against llama.cpp itself (node-llama-cpp's CPU build) on the same file and
 * the same windows. llama.cpp runs with F32 K/V caches and without flash attention so that both
 * sides compute in f32; with its default F16 cache the logits differ by ~1e-2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ControlledEvaluateInputItem, Token } from 'node-llama-cpp';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows, windowNll } from '../../src/core/model/perplexity';
import { fixturesDir, microLlamaF32Gguf } from '../helpers/paths';

const evalText = readFileSync(join(fixturesDir, 'eval.txt'), 'utf8');
const CTX = 256;

test('logits and per-window loss on micro-llama-f32.gguf equal llama.cpp (node-llama-cpp) within 1e-4', async () => {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const llamaModel = await llama.loadModel({ modelPath: microLlamaF32Gguf });
  const ours = await loadModel(microLlamaF32Gguf);
  try {
    const windows = makeWindows(ours.tokenizer.encode(evalText), CTX, 2);
    const vocab = ours.model.config.vocabSize;
    const ourLogits: Float32Array[] = [];
    await ours.model.run(windows, (_w, logits) => ourLogits.push(logits.slice()));
    for (let w = 0; w < windows.length; w++) {
      const ids = Array.from(windows[w]!);
      // A fresh context per window: positions start at 0 as in our windows. Context larger than the
      // window so that llama.cpp never shifts it.
      const context = await llamaModel.createContext({
        contextSize: 2 * CTX,
        batchSize: CTX,
        threads: 1,
        flashAttention: false,
        experimentalKvCacheKeyType: 'F32',
        experimentalKvCacheValueType: 'F32',
      });
      try {
        const sequence = context.getSequence();
        // Full logits at every position but the last (totalLogitWeight sums over the returned logits only).
        const input: ControlledEvaluateInputItem[] = ids.map((id, i) => {
          const token = id as Token;
          return i === CTX - 1 ? token : [token, { generateNext: { logits: true, totalLogitWeight: true } }];
        });
        const results = await sequence.controlledEvaluate(input);
        let maxDiff = 0;
        let theirNll = 0;
        for (let i = 0; i < CTX - 1; i++) {
          const next = results[i]?.next;
          assert.ok(next?.logits !== undefined && next.totalLogitWeight !== undefined, `no logits at position ${i}`);
          const row = ourLogits[w]!.subarray(i * vocab, (i + 1) * vocab);
          assert.equal(next.logits.size, vocab);
          for (const [token, value] of next.logits) maxDiff = Math.max(maxDiff, Math.abs(value - row[token]!));
          const maxLogit = next.logits.values().next().value as number;
          const target = next.logits.get(ids[i + 1]! as Token);
          assert.ok(target !== undefined);
          theirNll += Math.log(next.totalLogitWeight) + maxLogit - target;
        }
        const ourNll = windowNll(ourLogits[w]!, CTX, vocab, windows[w]!);
        assert.ok(maxDiff < 1e-4, `window ${w}: max |logit diff| ${maxDiff}`);
        assert.ok(Math.abs(ourNll / theirNll - 1) < 1e-5, `window ${w}: our loss ${ourNll / (CTX - 1)} vs llama.cpp ${theirNll / (CTX - 1)}`);
      } finally {
        await context.dispose();
      }
    }
  } finally {
    await ours.close();
    await llamaModel.dispose();
    await llama.dispose();
  }
});
