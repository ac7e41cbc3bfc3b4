/**
 * Our GGUF exports load in real llama.cpp (node-llama-cpp's CPU build): micro-llama exported to F32,
 * Q8_0 and Q4_K_M; llama.cpp's tokenization of a probe sentence equals tokenizer.json's (our BPE over the
 * HF file), and the next-token logits of the quantized files stay close to those of the F32 export.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ControlledEvaluateInputItem, Token } from 'node-llama-cpp';
import { microLlamaDir } from '../helpers/paths';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { tokenizerFromHfJson } from '../../src/core/model/tokenizer';

const VOCAB = 8192;
const PROBE = 'The quick brown fox jumps over the lazy dog, and then it reads the documentation.';

test('micro-llama F32 / Q8_0 / Q4_K_M exports load in llama.cpp; tokens match tokenizer.json; logits stay close', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-load-'));
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  try {
    const checkpoint = await openCheckpoint(microLlamaDir);
    const paths: Record<string, string> = {};
    try {
      for (const target of ['F32', 'Q8_0', 'Q4_K_M']) {
        paths[target] = join(dir, `micro-${target}.gguf`);
        await exportGguf(checkpoint, { target, outputPath: paths[target] });
      }
    } finally {
      await checkpoint.close();
    }
    const hfTokenizer = tokenizerFromHfJson(JSON.parse(await readFile(join(microLlamaDir, 'tokenizer.json'), 'utf8')), 'tokenizer.json');
    const expectedIds = Array.from(hfTokenizer.encode(PROBE));

    const lastLogits: Record<string, Float32Array> = {};
    for (const [target, path] of Object.entries(paths)) {
      const model = await llama.loadModel({ modelPath: path });
      try {
        const ids = model.tokenize(PROBE, false).map(Number);
        assert.deepEqual(ids, expectedIds, `${target}: llama.cpp tokenizes the probe as tokenizer.json does`);
        const context = await model.createContext({ contextSize: 128, batchSize: 128, threads: 1, flashAttention: false });
        try {
          const sequence = context.getSequence();
          const input: ControlledEvaluateInputItem[] = ids.map((id, i) => (i === ids.length - 1 ? [id as Token, { generateNext: { logits: true } }] : (id as Token)));
          const results = await sequence.controlledEvaluate(input);
          const logits = results[ids.length - 1]?.next?.logits;
          assert.ok(logits !== undefined, `${target}: llama.cpp returned logits`);
          const dense = new Float32Array(VOCAB);
          for (const [token, value] of logits) dense[Number(token)] = value;
          lastLogits[target] = dense;
        } finally {
          await context.dispose();
        }
      } finally {
        await model.dispose();
      }
    }
    const f32 = lastLogits.F32!;
    const argmax = (v: Float32Array): number => v.reduce((best, x, i) => (x > v[best]! ? i : best), 0);
    // llama.cpp multiplies Q8_0 / K-quant weights with Q8-quantized activations and keeps an F16 KV cache,
    // so even Q8_0 is not bit-close to F32 on this 1 M-parameter model: compare shape and ranking.
    for (const [target, minCosine, maxDiff] of [['Q8_0', 0.9999, 0.5], ['Q4_K_M', 0.995, 2]] as const) {
      const q = lastLogits[target]!;
      let dot = 0;
      let nq = 0;
      let nf = 0;
      let diff = 0;
      for (let i = 0; i < f32.length; i++) {
        dot += q[i]! * f32[i]!;
        nq += q[i]! * q[i]!;
        nf += f32[i]! * f32[i]!;
        diff = Math.max(diff, Math.abs(q[i]! - f32[i]!));
      }
      const cosine = dot / Math.sqrt(nq * nf);
      assert.ok(cosine > minCosine, `${target}: cosine(logits, F32 logits) = ${cosine.toFixed(5)}`);
      assert.ok(diff < maxDiff, `${target}: max |logit - F32 logit| = ${diff.toFixed(4)}`);
      assert.equal(argmax(q), argmax(f32), `${target}: the same next token as F32`);
    }
  } finally {
    await llama.dispose();
    await rm(dir, { recursive: true, force: true });
  }
});
