import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CancelledError, InvalidArgumentError, UnsupportedError } from '../../src/core/errors';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel } from '../../src/core/model/forward';
import { applyRope, causalAttention, matmulTransposed, ropeTables } from '../../src/core/model/kernels';
import { attentionByMatmul, attentionScratch, matmul, wasmMatmulAvailable } from '../../src/core/model/wasmMatmul';
import { llamaConfigFromHf } from '../../src/core/model/llamaConfig';
import { fakeQuantizeActivations, fakeQuantizeKv, fakeQuantizeWeight, parseQuantSetting, roundHalfEven } from '../../src/core/model/fakeQuant';
import { fixturesDir, microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';

interface Reference {
  probe: { ids: number[]; logits_last_top5: number[]; logits_row0_first8: number[] };
}
const reference = JSON.parse(readFileSync(join(fixturesDir, 'micro-llama-reference.json'), 'utf8')) as Reference;
const microConfig = JSON.parse(readFileSync(join(microLlamaDir, 'config.json'), 'utf8')) as Record<string, unknown>;

/** Logits [rows, vocab] of one window. */
async function probeLogits(path: string, ids: number[]): Promise<{ logits: Float32Array; vocab: number }> {
  const ck = await openCheckpoint(path);
  try {
    const model = LlamaModel.fromCheckpoint(ck);
    let out = new Float32Array(0);
    await model.run([Int32Array.from(ids)], (_w, logits) => {
      out = logits.slice();
    });
    return { logits: out, vocab: model.config.vocabSize };
  } finally {
    await ck.close();
  }
}

function topK(row: Float32Array, k: number): number[] {
  return Array.from(row.keys())
    .sort((a, b) => row[b]! - row[a]!)
    .slice(0, k);
}

test('matmulTransposed equals the naive product (blocked and remainder paths)', () => {
  for (const [rows, inner, outs] of [
    [5, 7, 9],
    [8, 16, 12],
    [1, 3, 1],
    [13, 33, 6],
  ] as const) {
    const x = Float32Array.from({ length: rows * inner }, (_, i) => Math.sin(i * 1.3));
    const w = Float32Array.from({ length: outs * inner }, (_, i) => Math.cos(i * 0.7));
    const got = new Float32Array(rows * outs);
    matmulTransposed(x, w, got, rows, inner, outs);
    for (let t = 0; t < rows; t++) {
      for (let o = 0; o < outs; o++) {
        let s = 0;
        for (let k = 0; k < inner; k++) s += x[t * inner + k]! * w[o * inner + k]!;
        assert.ok(Math.abs(got[t * outs + o]! - s) < 1e-5, `(${rows}x${inner}x${outs}) [${t},${o}] ${got[t * outs + o]} vs ${s}`);
      }
    }
  }
});

test('the WebAssembly SIMD matmul equals the JS kernel within f32 accumulation error', () => {
  assert.equal(wasmMatmulAvailable(), true, 'Node >= 16 runs WebAssembly SIMD');
  for (const [rows, inner, outs] of [
    [3, 8, 4],
    [17, 64, 36],
    [256, 384, 128],
    [5, 7, 9], // no dimension a multiple of 4: 1-row remainder kernel, zero-padded panel
  ] as const) {
    const x = Float32Array.from({ length: rows * inner }, (_, i) => Math.sin(i * 0.37));
    const w = Float32Array.from({ length: outs * inner }, (_, i) => Math.cos(i * 0.11));
    const expected = new Float32Array(rows * outs);
    const got = new Float32Array(rows * outs).fill(NaN);
    matmulTransposed(x, w, expected, rows, inner, outs);
    matmul(x, w, got, rows, inner, outs);
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - expected[i]!) <= 1e-5 * Math.max(1, Math.abs(expected[i]!)), `(${rows}x${inner}x${outs}) [${i}] ${got[i]} vs ${expected[i]}`);
  }
});

test('attention on the matmul kernel equals the triangular reference loop (causal, GQA)', () => {
  for (const [rows, heads, kvHeads, d] of [
    [9, 4, 2, 8],
    [32, 6, 2, 16],
    [7, 3, 3, 6], // head size and rows not multiples of the panel: padded key and value panels
  ] as const) {
    const q = Float32Array.from({ length: rows * heads * d }, (_, i) => Math.sin(i * 0.7) * 2);
    const k = Float32Array.from({ length: rows * kvHeads * d }, (_, i) => Math.cos(i * 0.3) * 2);
    const v = Float32Array.from({ length: rows * kvHeads * d }, (_, i) => Math.sin(i * 0.11 + 1));
    const expected = new Float32Array(rows * heads * d);
    const got = new Float32Array(rows * heads * d).fill(NaN);
    causalAttention(q, k, v, expected, rows, heads, kvHeads, d, new Float64Array(rows));
    attentionByMatmul(q, k, v, got, rows, heads, kvHeads, d, attentionScratch(rows, d));
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - expected[i]!) < 1e-5, `(${rows},${heads},${kvHeads},${d}) [${i}] ${got[i]} vs ${expected[i]}`);
    // Row 0 attends only to itself: its output is v of position 0 for every head of the group.
    assert.ok(Math.abs(got[0]! - v[0]!) < 1e-6);
  }
});

test('interleaved RoPE on llama.cpp-permuted rows equals rotate-half RoPE on HF rows', () => {
  const heads = 2;
  const d = 8;
  const rows = 5;
  const hf = Float32Array.from({ length: rows * heads * d }, (_, i) => Math.sin(i + 0.5));
  // llama.cpp's converter: per head, reshape (2, d/2) and swap -> dim 2i = hf i, dim 2i+1 = hf i + d/2.
  const permuted = new Float32Array(hf.length);
  for (let t = 0; t < rows; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < d / 2; i++) {
        const base = t * heads * d + h * d;
        permuted[base + 2 * i] = hf[base + i]!;
        permuted[base + 2 * i + 1] = hf[base + i + d / 2]!;
      }
  const tables = ropeTables(rows, d, 10000);
  applyRope(hf, rows, heads, d, tables, 'half');
  applyRope(permuted, rows, heads, d, tables, 'interleaved');
  for (let t = 0; t < rows; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < d / 2; i++) {
        const base = t * heads * d + h * d;
        assert.equal(permuted[base + 2 * i], hf[base + i]);
        assert.equal(permuted[base + 2 * i + 1], hf[base + i + d / 2]);
      }
  // Position 0 is the identity; later positions really rotate.
  assert.notDeepEqual(Array.from(hf.subarray(heads * d)), Array.from(Float32Array.from({ length: (rows - 1) * heads * d }, (_, i) => Math.sin(i + heads * d + 0.5))));
});

test('safetensors (BF16) path: probe logits equal the PyTorch reference within 5e-5', async () => {
  const { logits, vocab } = await probeLogits(microLlamaDir, reference.probe.ids);
  const row0 = Array.from(logits.subarray(0, 8));
  row0.forEach((v, i) => assert.ok(Math.abs(v - reference.probe.logits_row0_first8[i]!) < 5e-5, `row0[${i}] ${v} vs ${reference.probe.logits_row0_first8[i]}`));
  const last = logits.subarray((reference.probe.ids.length - 1) * vocab, reference.probe.ids.length * vocab);
  assert.deepEqual(topK(last, 5), reference.probe.logits_last_top5);
});

test('GGUF (F32, permuted Q/K, interleaved RoPE) path gives the safetensors logits within 1e-4', async () => {
  const a = await probeLogits(microLlamaDir, reference.probe.ids);
  const b = await probeLogits(microLlamaF32Gguf, reference.probe.ids);
  assert.equal(a.logits.length, b.logits.length);
  let maxDiff = 0;
  for (let i = 0; i < a.logits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a.logits[i]! - b.logits[i]!));
  assert.ok(maxDiff < 1e-4, `max |diff| ${maxDiff}`);
});

test('config: unsupported fields are refused by name; rope_theta at top level or in rope_parameters', () => {
  const refuse = (patch: Record<string, unknown>, field: RegExp): void => {
    assert.throws(() => llamaConfigFromHf({ ...microConfig, ...patch }, 'config.json'), (e: unknown) => e instanceof UnsupportedError && field.test(e.message), JSON.stringify(patch));
  };
  refuse({ rope_scaling: { rope_type: 'linear', factor: 2 } }, /'rope_scaling'/);
  refuse({ rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4 } }, /'rope_parameters'/);
  refuse({ attention_bias: true }, /'attention_bias'/);
  refuse({ mlp_bias: true }, /'mlp_bias'/);
  refuse({ hidden_act: 'gelu' }, /'hidden_act'/);
  refuse({ model_type: 'gpt2' }, /'model_type'/);
  const top = { ...microConfig, rope_theta: 500000 } as Record<string, unknown>;
  delete top.rope_parameters;
  assert.equal(llamaConfigFromHf(top, 'config.json').ropeTheta, 500000);
  assert.equal(llamaConfigFromHf({ ...microConfig, rope_parameters: { rope_type: 'default', rope_theta: 1e6 } }, 'config.json').ropeTheta, 1e6);
  const c = llamaConfigFromHf(microConfig, 'config.json');
  assert.deepEqual([c.numLayers, c.hiddenSize, c.numHeads, c.numKvHeads, c.headDim, c.maxPositionEmbeddings], [2, 64, 4, 2, 16, 512]);
});

test('a context longer than max_position_embeddings or a pass larger than memory is refused; an aborted signal cancels between layers', async () => {
  const ck = await openCheckpoint(microLlamaDir);
  try {
    const model = LlamaModel.fromCheckpoint(ck);
    await assert.rejects(model.run([new Int32Array(513).fill(5)], () => undefined), (e: unknown) => e instanceof InvalidArgumentError && /max_position_embeddings \(512\)/.test(e.message));
    // A pass that would not fit is refused with the figure it needs, before anything is read.
    const need = model.estimatePeakBytes(2, 64);
    assert.ok(need > model.largestLayerBytes());
    await assert.rejects(
      model.run([new Int32Array(64).fill(7), new Int32Array(64).fill(9)], () => undefined, { memoryLimitBytes: need - 1 }),
      (e: unknown) => e instanceof UnsupportedError && e.message.includes(`${(need / 2 ** 30).toFixed(3)} GiB`),
    );
    const controller = new AbortController();
    let logitsSeen = 0;
    await assert.rejects(
      model.run([new Int32Array(64).fill(7), new Int32Array(64).fill(9)], () => logitsSeen++, {
        signal: controller.signal,
        onProgress: (done) => {
          if (done === 1) controller.abort();
        },
      }),
      CancelledError,
    );
    assert.equal(logitsSeen, 0);
  } finally {
    await ck.close();
  }
});

test('fake quant: setting grammar, ties to even, and the reference rules on known values', () => {
  assert.deepEqual(parseQuantSetting('W8', 64), { label: 'W8', weightBits: 8, weightGroup: -1, activationBits: null, kvBits: null });
  assert.deepEqual(parseQuantSetting('w4', 64), { label: 'W4g64', weightBits: 4, weightGroup: 64, activationBits: null, kvBits: null });
  assert.deepEqual(parseQuantSetting('W4g32A8', 64), { label: 'W4g32A8', weightBits: 4, weightGroup: 32, activationBits: 8, kvBits: null });
  assert.deepEqual(parseQuantSetting('W8KV4', 128), { label: 'W8KV4', weightBits: 8, weightGroup: -1, activationBits: null, kvBits: 4 });
  assert.equal(parseQuantSetting('KV2', 64).label, 'KV2');
  assert.throws(() => parseQuantSetting('W7', 64), InvalidArgumentError);
  assert.throws(() => parseQuantSetting('Q4_K', 64), InvalidArgumentError);
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4, -2.6].map(roundHalfEven), [0, 2, 2, 0, -2, -2, 2, -3]);

  // W8: symmetric absmax per row: scale = 1.27 / 127 = 0.01; 0.005 / 0.01 = 0.5 rounds to 0 (even).
  const w8 = Float32Array.from([1.27, -0.635, 0.02, 0.3]);
  fakeQuantizeWeight(w8, 1, 4, 8, -1);
  const s = Math.fround(Math.fround(1.27) / 127);
  assert.deepEqual(Array.from(w8), [127, -64, 2, 30].map((q) => Math.fround(q * s)));
  // W2 g4: min -1, max 2 -> scale 1, zero 1, levels {-1, 0, 1, 2}.
  const w2 = Float32Array.from([-1, 2, 0.4, 1.6]);
  fakeQuantizeWeight(w2, 1, 4, 2, 4);
  assert.deepEqual(Array.from(w2), [-1, 2, 0, 2]);
  // A8: per token absmax.
  const a = Float32Array.from([127, 1.4, -63.5, 0, 2, 1]);
  fakeQuantizeActivations(a, 2, 3, 8);
  assert.deepEqual(Array.from(a.subarray(0, 3)), [127, 1, -64]);
  // KV2: per token per head (2 heads of 2) asymmetric.
  const kv = Float32Array.from([0, 3, -3, 0]);
  fakeQuantizeKv(kv, 1, 2, 2, 2);
  assert.deepEqual(Array.from(kv), [0, 3, -3, 0]);
  assert.throws(() => fakeQuantizeWeight(new Float32Array(6), 1, 6, 4, 4), InvalidArgumentError);
});
