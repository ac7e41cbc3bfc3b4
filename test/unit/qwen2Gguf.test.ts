/**
 * Qwen2 -> GGUF (llama.cpp's `qwen2` architecture) and back: the export of test/fixtures/qwen2-tiny is loaded
 * by llama.cpp itself (node-llama-cpp's CPU build) and its logits are compared with PyTorch's
 * (test/fixtures/qwen2-tiny-oracle.json) and with our forward pass; our reader + forward on the GGUF give the
 * perplexity of the safetensors. llama.cpp runs with F32 K/V caches and no flash attention (f32 throughout).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnsupportedError } from '../../src/core/errors';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { readLlamaHparams } from '../../src/core/convert/hfLlama';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { readGgufHeader } from '../../src/core/formats/gguf/reader';
import { layoutSafetensors, bytesOf } from '../../src/core/formats/safetensors/writer';
import { withFileSource } from '../../src/core/io/byteSource';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows, perplexity } from '../../src/core/model/perplexity';
import { fixturesDir } from '../helpers/paths';
import { qwen2Oracle as oracle, qwen2TinyDir } from '../helpers/qwen2Oracle';
import { withLlamaCppModel } from '../helpers/llamaCpp';

const evalText = readFileSync(join(fixturesDir, 'eval.txt'), 'utf8');
const VOCAB = 8192;
const ROWS = oracle.probe_ids.length;

/** llama.cpp's logits [rows, vocab] at every probe position (test/helpers/llamaCpp.ts: fresh context, F32 caches). */
async function llamaCppProbeLogits(modelPath: string, ids: readonly number[]): Promise<Float32Array> {
  return withLlamaCppModel(modelPath, async (run) => (await run(ids, { allRows: true })).logits);
}

/** Our forward's probe logits [rows, vocab] on any checkpoint path. */
async function ourProbeLogits(path: string): Promise<Float32Array> {
  const lm = await loadModel(path);
  try {
    let out = new Float32Array(0);
    await lm.model.run([Int32Array.from(oracle.probe_ids)], (_w, logits) => {
      out = logits.slice();
    });
    return out;
  } finally {
    await lm.close();
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** Largest |logits - PyTorch| over the full last row and the first 8 logits of each row. */
function errorVsPyTorch(logits: Float32Array): number {
  let m = 0;
  oracle.probe_last_logits.forEach((v, j) => (m = Math.max(m, Math.abs(logits[(ROWS - 1) * VOCAB + j]! - v))));
  oracle.probe_first8_logits.forEach((row, t) => row.forEach((v, j) => (m = Math.max(m, Math.abs(logits[t * VOCAB + j]! - v)))));
  return m;
}

function argmaxRows(logits: Float32Array): number[] {
  const out: number[] = [];
  for (let t = 0; t < ROWS; t++) {
    let best = 0;
    for (let j = 1; j < VOCAB; j++) if (logits[t * VOCAB + j]! > logits[t * VOCAB + best]!) best = j;
    out.push(best);
  }
  return out;
}

async function oursPerplexity(path: string): Promise<number> {
  const lm = await loadModel(path);
  try {
    return (await perplexity(lm.model, makeWindows(lm.tokenizer.encode(evalText), oracle.ctx, oracle.windows))).perplexity;
  } finally {
    await lm.close();
  }
}

async function exportTo(dir: string, input: string, target: string): Promise<string> {
  const out = join(dir, `qwen2-tiny-${target}.gguf`);
  const ck = await openCheckpoint(input);
  try {
    await exportGguf(ck, { target, outputPath: out, threads: 1 });
  } finally {
    await ck.close();
  }
  return out;
}

/**
 * llama.cpp f32 vs PyTorch f32 on the probe (logits up to 2.7). Measured 4.5e-4, the same as our CPU pass vs
 * PyTorch: the GPU reference is the one that differs (its summation order); llama.cpp and we agree to 1e-6.
 */
const F32_VS_PYTORCH = 1e-3;
/** Our forward vs llama.cpp on the same F32 GGUF, every logit of the probe. Measured 9.5e-7. */
const F32_OURS_VS_LLAMACPP = 1e-5;
/**
 * Quantized files: llama.cpp's CPU matmul also rounds the activations to Q8_0 / Q8_K (ours keeps them f32),
 * so the two differ by that rounding. Measured 3.7e-2 (Q8_0) and 4.3e-2 (Q4_K_M).
 */
const QUANTIZED_OURS_VS_LLAMACPP = 0.1;

test('qwen2 export: metadata and tensors as convert_hf_to_gguf Qwen2Model writes them', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-qwen2-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = await exportTo(dir, qwen2TinyDir, 'F32');
  const header = await withFileSource(path, (s) => readGgufHeader(s));
  const str = (k: string): unknown => {
    const v = header.kv.get(k);
    return v === undefined || v.type === 'ARRAY' ? undefined : v.value;
  };
  assert.equal(str('general.architecture'), 'qwen2');
  assert.equal(str('qwen2.block_count'), 2);
  assert.equal(str('qwen2.context_length'), 512);
  assert.equal(str('qwen2.embedding_length'), 64);
  assert.equal(str('qwen2.feed_forward_length'), 192);
  assert.equal(str('qwen2.attention.head_count'), 4);
  assert.equal(str('qwen2.attention.head_count_kv'), 2);
  assert.equal(str('qwen2.rope.freq_base'), 1e6);
  assert.equal(Math.fround(1e-6), str('qwen2.attention.layer_norm_rms_epsilon'));
  assert.equal(str('tokenizer.ggml.model'), 'gpt2');
  // No tokenizer_config.json in qwen2-tiny: SpecialVocab takes bos / eos from config.json's *_token_id.
  assert.equal(str('tokenizer.ggml.bos_token_id'), 0);
  assert.equal(str('tokenizer.ggml.eos_token_id'), 1);
  assert.equal(header.kv.has('tokenizer.ggml.padding_token_id'), false, 'pad_token_id is null');
  for (const k of header.kv.keys()) assert.ok(!k.startsWith('llama.'), `llama key ${k} in a qwen2 file`);
  assert.equal(header.kv.has('qwen2.vocab_size'), false, 'Qwen2Model writes no vocab_size');
  const names = header.tensors.map((x) => x.name);
  for (const b of ['attn_q.bias', 'attn_k.bias', 'attn_v.bias']) assert.ok(names.includes(`blk.1.${b}`), `missing blk.1.${b}`);
  assert.ok(!names.some((n) => n.includes('attn_output.bias')));
  assert.ok(names.includes('output.weight'), 'untied: lm_head is written as output.weight');
  // No Q/K permutation: attn_q.weight holds HF's q_proj rows in HF's order.
  const gg = await openCheckpoint(path);
  const hf = await openCheckpoint(qwen2TinyDir);
  try {
    assert.deepEqual(await gg.readRowsF32('blk.0.attn_q.weight'), await hf.readRowsF32('model.layers.0.self_attn.q_proj.weight'));
    assert.deepEqual(await gg.readRowsF32('blk.0.attn_k.bias'), await hf.readRowsF32('model.layers.0.self_attn.k_proj.bias'));
  } finally {
    await gg.close();
    await hf.close();
  }
});

test('qwen2 export: sliding-window attention and unknown architectures are refused', () => {
  const config = JSON.parse(readFileSync(join(qwen2TinyDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(readLlamaHparams(config, 'c').ggufArch, 'qwen2');
  assert.throws(() => readLlamaHparams({ ...config, use_sliding_window: true }, 'c'), (e: unknown) => e instanceof UnsupportedError && /use_sliding_window/.test(e.message));
  assert.throws(() => readLlamaHparams({ ...config, architectures: ['Qwen3ForCausalLM'] }, 'c'), (e: unknown) => e instanceof UnsupportedError && /Qwen2ForCausalLM/.test(e.message));
});

test('qwen2-tiny F32 GGUF: llama.cpp loads it and its logits match PyTorch and ours; our GGUF perplexity equals the safetensors one', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-qwen2-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = await exportTo(dir, qwen2TinyDir, 'F32');
  const theirs = await llamaCppProbeLogits(path, oracle.probe_ids);
  const ours = await ourProbeLogits(path);
  const vsPyTorch = errorVsPyTorch(theirs);
  assert.ok(vsPyTorch < F32_VS_PYTORCH, `llama.cpp vs PyTorch ${vsPyTorch}`);
  assert.deepEqual(argmaxRows(theirs), oracle.probe_argmax);
  const oursVsTheirs = maxAbsDiff(ours, theirs);
  assert.ok(oursVsTheirs < F32_OURS_VS_LLAMACPP, `ours vs llama.cpp ${oursVsTheirs}`);
  t.diagnostic(`F32: llama.cpp vs PyTorch ${vsPyTorch.toExponential(2)}, ours vs llama.cpp ${oursVsTheirs.toExponential(2)} (all ${ROWS} x ${VOCAB} logits)`);
  const gguf = await oursPerplexity(path);
  const safetensors = await oursPerplexity(qwen2TinyDir);
  assert.ok(Math.abs(gguf / safetensors - 1) < 1e-6, `GGUF ppl ${gguf} vs safetensors ${safetensors}`);
  assert.ok(Math.abs(gguf / oracle.ppl_fp32 - 1) < 1e-5, `GGUF ppl ${gguf} vs PyTorch ${oracle.ppl_fp32}`);
});

test('qwen2-tiny Q8_0 and Q4_K_M GGUF: llama.cpp loads them and agrees with our forward on the same file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-qwen2-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const target of ['Q8_0', 'Q4_K_M']) {
    const path = await exportTo(dir, qwen2TinyDir, target);
    const header = await withFileSource(path, (s) => readGgufHeader(s));
    const types = new Map(header.tensors.map((x) => [x.name, x.type.name]));
    assert.equal(types.get('blk.0.attn_q.bias'), 'F32', 'biases stay F32 (llama-quantize quantizes only 2-D *.weight)');
    const theirs = await llamaCppProbeLogits(path, oracle.probe_ids);
    const ours = await ourProbeLogits(path);
    const diff = maxAbsDiff(ours, theirs);
    t.diagnostic(`${target}: ours vs llama.cpp ${diff.toExponential(2)}, llama.cpp vs PyTorch ${errorVsPyTorch(theirs).toExponential(2)}`);
    assert.ok(diff < QUANTIZED_OURS_VS_LLAMACPP, `${target} ours vs llama.cpp ${diff}`);
  }
});

test('tied qwen2 (tie_word_embeddings, no lm_head): exported without output.weight, llama.cpp uses token_embd as we do', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-qwen2-tied-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tiedDir = join(dir, 'qwen2-tied');
  // The same model with lm_head dropped and tie_word_embeddings set, written as F32 safetensors.
  const hf = await openCheckpoint(qwen2TinyDir);
  try {
    const kept = hf.tensors.filter((x) => x.name !== 'lm_head.weight');
    const layout = layoutSafetensors(kept.map((x) => ({ name: x.name, dtype: 'F32' as const, shape: [...x.shape] })));
    const parts: Uint8Array[] = [layout.header];
    for (const x of kept) parts.push(bytesOf(await hf.readRowsF32(x.name)));
    mkdirSync(tiedDir);
    writeFileSync(join(tiedDir, 'model.safetensors'), Buffer.concat(parts));
  } finally {
    await hf.close();
  }
  const config = JSON.parse(readFileSync(join(qwen2TinyDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  writeFileSync(join(tiedDir, 'config.json'), JSON.stringify({ ...config, tie_word_embeddings: true }));
  copyFileSync(join(qwen2TinyDir, 'tokenizer.json'), join(tiedDir, 'tokenizer.json'));

  const path = await exportTo(dir, tiedDir, 'F32');
  const header = await withFileSource(path, (s) => readGgufHeader(s));
  assert.ok(!header.tensors.some((x) => x.name === 'output.weight'), 'tied: no output.weight, as convert_hf_to_gguf');
  const theirs = await llamaCppProbeLogits(path, oracle.probe_ids);
  const oursSafetensors = await ourProbeLogits(tiedDir);
  const oursGguf = await ourProbeLogits(path);
  const diff = maxAbsDiff(oursSafetensors, theirs);
  t.diagnostic(`tied F32: ours (safetensors) vs llama.cpp ${diff.toExponential(2)}`);
  assert.ok(diff < F32_OURS_VS_LLAMACPP, `tied: ours (safetensors) vs llama.cpp ${diff}`);
  assert.ok(maxAbsDiff(oursGguf, oursSafetensors) < 1e-5, 'tied: our GGUF and safetensors passes agree');
  // Really tied: the untied model's logits differ (its lm_head is not the embedding).
  assert.ok(maxAbsDiff(oursSafetensors, await ourProbeLogits(qwen2TinyDir)) > 0.1);
});

interface QuantizeOracle {
  inputSha256: string;
  inputBytes: number;
  outputs: Record<string, { fileBytes: number; fileSha256: string }>;
}

test('qwen2-tiny presets: the export from the HF folder has the bytes llama-quantize writes from our F32 export', async (t) => {
  const oracleFile = JSON.parse(readFileSync(join(fixturesDir, 'oracles', 'qwen2-tiny-llama-quantize.json'), 'utf8')) as QuantizeOracle;
  const sha = (p: string): string => createHash('sha256').update(readFileSync(p)).digest('hex');
  const dir = mkdtempSync(join(tmpdir(), 'ql-qwen2-presets-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The oracle's input must be what we export today (else regenerate the oracle, see its `how`).
  assert.equal(sha(await exportTo(dir, qwen2TinyDir, 'F32')), oracleFile.inputSha256, 'our F32 export changed since the oracle was made');
  const differing: string[] = [];
  for (const [target, expected] of Object.entries(oracleFile.outputs)) {
    const path = await exportTo(dir, qwen2TinyDir, target);
    if (sha(path) !== expected.fileSha256) differing.push(target);
    rmSync(path);
  }
  assert.deepEqual(differing, [], `presets whose bytes differ from llama-quantize's: ${differing.join(', ')}`);
  assert.equal(Object.keys(oracleFile.outputs).length, 16);
});
