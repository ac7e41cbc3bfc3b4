/**
 * Qwen2 (q/k/v biases, rope_theta 1e6, rotate-half RoPE) on the CPU forward pass, against PyTorch:
 * test/fixtures/qwen2-tiny-oracle.json is transformers 5.17 Qwen2ForCausalLM in fp32 on the bf16 weights of
 * test/fixtures/qwen2-tiny (biases drawn with std 0.5, so a pass that drops them is far off).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, UnsupportedError } from '../../src/core/errors';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel, addRowBias } from '../../src/core/model/forward';
import { llamaConfigFromHf } from '../../src/core/model/llamaConfig';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows, perplexity } from '../../src/core/model/perplexity';
import { fixturesDir } from '../helpers/paths';
import { qwen2Oracle, qwen2TinyDir } from '../helpers/qwen2Oracle';

const qwen2Config = JSON.parse(readFileSync(join(qwen2TinyDir, 'config.json'), 'utf8')) as Record<string, unknown>;

/** Logits [rows, vocab] of the probe through `model`. */
async function probeLogits(model: LlamaModel, ids: readonly number[]): Promise<Float32Array> {
  let out = new Float32Array(0);
  await model.run([Int32Array.from(ids)], (_w, logits) => {
    out = logits.slice();
  });
  return out;
}

function argmaxRows(logits: Float32Array, rows: number, vocab: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < rows; t++) {
    let best = 0;
    for (let j = 1; j < vocab; j++) if (logits[t * vocab + j]! > logits[t * vocab + best]!) best = j;
    out.push(best);
  }
  return out;
}

/** Largest |ours - PyTorch| over the last row (full vocabulary) and the first 8 logits of every row. */
function probeError(logits: Float32Array, vocab: number): { last: number; first8: number } {
  const rows = qwen2Oracle.probe_ids.length;
  let last = 0;
  qwen2Oracle.probe_last_logits.forEach((v, j) => (last = Math.max(last, Math.abs(logits[(rows - 1) * vocab + j]! - v))));
  let first8 = 0;
  qwen2Oracle.probe_first8_logits.forEach((row, t) => row.forEach((v, j) => (first8 = Math.max(first8, Math.abs(logits[t * vocab + j]! - v)))));
  return { last, first8 };
}

/**
 * Probe logits within 1e-3 of PyTorch's (logits up to 2.7 in magnitude). Measured: 4.5e-4 on the last row,
 * growing with the position from 5e-7 at position 0 (only summation order differs: the bf16 weights are exact
 * in f32; the large random biases make the attention sharp, which amplifies rounding).
 */
const PROBE_TOLERANCE = 1e-3;
/** Perplexity relative tolerance against PyTorch's fp32 figure. */
const PPL_RELATIVE_TOLERANCE = 1e-5;

test('qwen2 config: model_type qwen2 implies q/k/v biases and rope_theta from rope_parameters', () => {
  const c = llamaConfigFromHf(qwen2Config, 'qwen2-tiny/config.json');
  assert.equal(c.attentionBias, true);
  assert.equal(c.ropeTheta, 1e6);
  assert.equal(c.ropeLayout, 'half');
  assert.equal(c.numKvHeads, 2);
  assert.equal(c.tieWordEmbeddings, false);
  assert.equal(llamaConfigFromHf({ ...qwen2Config, tie_word_embeddings: true }, 'x').tieWordEmbeddings, true);
});

test('qwen2 config: sliding-window attention and LLaMA attention_bias are refused naming the field', () => {
  assert.throws(() => llamaConfigFromHf({ ...qwen2Config, use_sliding_window: true }, 'cfg.json'), (e: unknown) => e instanceof UnsupportedError && /use_sliding_window/.test(e.message));
  const llama = { ...qwen2Config, model_type: 'llama', architectures: ['LlamaForCausalLM'], attention_bias: true };
  assert.throws(() => llamaConfigFromHf(llama, 'cfg.json'), (e: unknown) => e instanceof UnsupportedError && /attention_bias/.test(e.message));
  assert.throws(() => llamaConfigFromHf({ ...qwen2Config, model_type: 'qwen3' }, 'cfg.json'), (e: unknown) => e instanceof UnsupportedError && /model_type.*qwen3.*supported: llama, qwen2/.test(e.message));
});

test('addRowBias adds the bias to every row', () => {
  const out = Float32Array.from([1, 2, 3, 4, 5, 6]);
  addRowBias(out, Float32Array.from([10, 20, 30]), 2);
  assert.deepEqual([...out], [11, 22, 33, 14, 25, 36]);
});

test('qwen2-tiny CPU forward: probe logits and argmax match PyTorch fp32', async () => {
  const ck = await openCheckpoint(qwen2TinyDir);
  try {
    const model = LlamaModel.fromCheckpoint(ck);
    const vocab = model.config.vocabSize;
    const logits = await probeLogits(model, qwen2Oracle.probe_ids);
    const err = probeError(logits, vocab);
    assert.ok(err.last < PROBE_TOLERANCE, `last-row max |diff| ${err.last}`);
    assert.ok(err.first8 < PROBE_TOLERANCE, `first-8 max |diff| ${err.first8}`);
    assert.deepEqual(argmaxRows(logits, qwen2Oracle.probe_ids.length, vocab), qwen2Oracle.probe_argmax);
    // The biases matter: without them the logits are far from PyTorch's (guards against a silent drop).
    const weights = await model.readLayer(0);
    assert.ok(weights.bias !== undefined && weights.bias.q.length === 64 && weights.bias.k.length === 32 && weights.bias.v.length === 32);
  } finally {
    await ck.close();
  }
});

test('qwen2-tiny CPU forward without its biases is far from PyTorch (the oracle can tell)', async () => {
  const ck = await openCheckpoint(qwen2TinyDir);
  try {
    const model = LlamaModel.fromCheckpoint(ck);
    const readLayer = model.readLayer.bind(model);
    model.readLayer = async (l) => {
      const w = await readLayer(l);
      delete w.bias;
      return w;
    };
    const err = probeError(await probeLogits(model, qwen2Oracle.probe_ids), model.config.vocabSize);
    assert.ok(err.last > 100 * PROBE_TOLERANCE && err.first8 > 10 * PROBE_TOLERANCE, `dropping the biases moved the logits by only ${err.last} / ${err.first8}`);
  } finally {
    await ck.close();
  }
});

test('qwen2-tiny perplexity over eval.txt matches PyTorch fp32', async () => {
  const lm = await loadModel(qwen2TinyDir);
  try {
    const text = readFileSync(join(fixturesDir, 'eval.txt'), 'utf8');
    const windows = makeWindows(lm.tokenizer.encode(text), qwen2Oracle.ctx, qwen2Oracle.windows);
    const result = await perplexity(lm.model, windows);
    const rel = Math.abs(result.perplexity / qwen2Oracle.ppl_fp32 - 1);
    assert.ok(rel < PPL_RELATIVE_TOLERANCE, `ppl ${result.perplexity} vs PyTorch ${qwen2Oracle.ppl_fp32} (relative ${rel})`);
  } finally {
    await lm.close();
  }
});

test('biases are required where the config implies them and refused where it does not', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-qwen2-bias-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const variant = async (name: string, weightsFrom: string, config: Record<string, unknown>): Promise<unknown> => {
    const folder = join(dir, name);
    mkdirSync(folder);
    symlinkSync(join(weightsFrom, 'model.safetensors'), join(folder, 'model.safetensors'));
    writeFileSync(join(folder, 'config.json'), JSON.stringify(config));
    const ck = await openCheckpoint(folder);
    try {
      LlamaModel.fromCheckpoint(ck);
      return null;
    } catch (e) {
      return e;
    } finally {
      await ck.close();
    }
  };
  // micro-llama's weights (no biases) under a qwen2 config: the missing q bias is named.
  const microConfig = JSON.parse(readFileSync(join(fixturesDir, 'micro-llama', 'config.json'), 'utf8')) as Record<string, unknown>;
  const missing = await variant('no-bias', join(fixturesDir, 'micro-llama'), { ...microConfig, model_type: 'qwen2', architectures: ['Qwen2ForCausalLM'] });
  assert.ok(missing instanceof FormatError && /model\.layers\.0\.self_attn\.q_proj\.bias' is missing/.test(missing.message), String(missing));
  // qwen2-tiny's weights (with biases) under a llama config: the undeclared bias is refused, not ignored.
  const undeclared = await variant('undeclared', qwen2TinyDir, { ...qwen2Config, model_type: 'llama', architectures: ['LlamaForCausalLM'] });
  assert.ok(undeclared instanceof UnsupportedError && /q_proj\.bias' is a bias this model's config does not declare/.test(undeclared.message), String(undeclared));
  assert.equal(await variant('ok', qwen2TinyDir, qwen2Config), null);
});
