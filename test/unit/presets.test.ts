import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fallbackForRowLength, planGgufTypes, tensorAllowsQuantization, useMoreBits, type PresetTensor } from '../../src/core/quant/ggufPresets';
import { LLAMA_FTYPE } from '../../src/core/formats/gguf/ggmlTypes';

/** A LLaMA-2-7B-like tensor list (32 layers, hidden 4096, FFN 11008, GQA optional), in a scrambled order. */
function llamaTensors(layers: number, hidden: number, ffn: number, kvRows: number, withOutput = true): PresetTensor[] {
  const t: PresetTensor[] = [];
  for (let l = layers - 1; l >= 0; l--) {
    t.push(
      { name: `blk.${l}.ffn_down.weight`, shape: [hidden, ffn], sourceType: 'F32' },
      { name: `blk.${l}.attn_v.weight`, shape: [kvRows, hidden], sourceType: 'F32' },
      { name: `blk.${l}.attn_q.weight`, shape: [hidden, hidden], sourceType: 'F32' },
      { name: `blk.${l}.attn_k.weight`, shape: [kvRows, hidden], sourceType: 'F32' },
      { name: `blk.${l}.attn_output.weight`, shape: [hidden, hidden], sourceType: 'F32' },
      { name: `blk.${l}.ffn_gate.weight`, shape: [ffn, hidden], sourceType: 'F32' },
      { name: `blk.${l}.ffn_up.weight`, shape: [ffn, hidden], sourceType: 'F32' },
      { name: `blk.${l}.attn_norm.weight`, shape: [hidden], sourceType: 'F32' },
      { name: `blk.${l}.ffn_norm.weight`, shape: [hidden], sourceType: 'F32' },
    );
  }
  t.push({ name: 'token_embd.weight', shape: [32000, hidden], sourceType: 'F32' }, { name: 'output_norm.weight', shape: [hidden], sourceType: 'F32' });
  if (withOutput) t.push({ name: 'output.weight', shape: [32000, hidden], sourceType: 'F32' });
  return t;
}

function typesOf(plan: ReturnType<typeof planGgufTypes>): Map<string, string> {
  return new Map(plan.tensors.map((c) => [c.name, c.type]));
}

function layersWith(types: Map<string, string>, suffix: string, type: string, layers: number): number[] {
  return Array.from({ length: layers }, (_, l) => l).filter((l) => types.get(`blk.${l}.${suffix}`) === type);
}

test('use_more_bits: first and last eighth, and every third layer between', () => {
  assert.deepEqual(Array.from({ length: 8 }, (_, i) => i).filter((i) => useMoreBits(i, 8)), [0, 3, 6, 7]);
  assert.deepEqual(Array.from({ length: 32 }, (_, i) => i).filter((i) => useMoreBits(i, 32)), [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]);
});

test('Q4_K_M on a 32-layer model: attn_v / ffn_down Q6_K on use_more_bits layers, output Q6_K, norms F32', () => {
  const plan = planGgufTypes('Q4_K_M', llamaTensors(32, 4096, 11008, 4096), { blockCount: 32, headCount: 32, headCountKv: 32 });
  const types = typesOf(plan);
  assert.equal(plan.fileType, LLAMA_FTYPE.MOSTLY_Q4_K_M);
  assert.equal(plan.quantizationVersion, 2);
  const more = [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31];
  assert.deepEqual(layersWith(types, 'attn_v.weight', 'Q6_K', 32), more);
  assert.deepEqual(layersWith(types, 'ffn_down.weight', 'Q6_K', 32), more);
  assert.equal(layersWith(types, 'attn_q.weight', 'Q4_K', 32).length, 32);
  assert.equal(types.get('output.weight'), 'Q6_K');
  assert.equal(types.get('token_embd.weight'), 'Q4_K');
  assert.equal(types.get('blk.5.attn_norm.weight'), 'F32');
  assert.equal(types.get('output_norm.weight'), 'F32');
  assert.equal(plan.tensors[0]!.name, 'blk.31.ffn_down.weight', 'results keep the given order');
});

test('tied embeddings: token_embd takes the output rule (Q6_K)', () => {
  const types = typesOf(planGgufTypes('Q4_K_M', llamaTensors(4, 512, 1024, 512, false), { blockCount: 4, headCount: 8, headCountKv: 8 }));
  assert.equal(types.get('token_embd.weight'), 'Q6_K');
});

test('Q3_K_S / M / L, Q2_K (with and without GQA >= 4), Q4_K_S, Q5_K_M mixtures', () => {
  const model = { blockCount: 32, headCount: 32, headCountKv: 32 };
  const tensors = llamaTensors(32, 4096, 11008, 4096);
  const s = typesOf(planGgufTypes('Q3_K_S', tensors, model));
  assert.equal(s.get('blk.0.attn_v.weight'), 'Q3_K');
  assert.equal(s.get('output.weight'), 'Q6_K');
  const m = typesOf(planGgufTypes('Q3_K_M', tensors, model));
  assert.deepEqual(layersWith(m, 'attn_v.weight', 'Q5_K', 32), [0, 1]);
  assert.deepEqual(layersWith(m, 'ffn_down.weight', 'Q5_K', 32), [0, 1]);
  assert.equal(m.get('blk.7.ffn_down.weight'), 'Q4_K');
  assert.equal(m.get('blk.7.attn_output.weight'), 'Q4_K');
  assert.equal(m.get('blk.7.attn_q.weight'), 'Q3_K');
  const l = typesOf(planGgufTypes('Q3_K_L', tensors, model));
  assert.equal(l.get('blk.9.attn_v.weight'), 'Q5_K');
  assert.equal(l.get('blk.9.ffn_down.weight'), 'Q5_K');
  assert.equal(l.get('blk.9.attn_output.weight'), 'Q5_K');
  const q2 = typesOf(planGgufTypes('Q2_K', tensors, model));
  assert.equal(q2.get('blk.3.attn_v.weight'), 'Q3_K');
  assert.equal(q2.get('blk.3.ffn_down.weight'), 'Q3_K');
  assert.equal(q2.get('blk.3.attn_output.weight'), 'Q3_K');
  assert.equal(q2.get('blk.3.ffn_up.weight'), 'Q2_K');
  const q2gqa = typesOf(planGgufTypes('Q2_K', llamaTensors(32, 4096, 11008, 1024), { blockCount: 32, headCount: 32, headCountKv: 8 }));
  assert.equal(q2gqa.get('blk.3.attn_v.weight'), 'Q4_K', 'n_gqa 4');
  const ks = typesOf(planGgufTypes('Q4_K_S', tensors, model));
  assert.deepEqual(layersWith(ks, 'attn_v.weight', 'Q5_K', 32), [0, 1, 2, 3]);
  assert.deepEqual(layersWith(ks, 'ffn_down.weight', 'Q5_K', 32), [0, 1, 2, 3]);
  const k5m = typesOf(planGgufTypes('Q5_K_M', tensors, model));
  assert.equal(k5m.get('blk.6.ffn_down.weight'), 'Q6_K');
  assert.equal(k5m.get('blk.7.ffn_down.weight'), 'Q5_K');
  const big = typesOf(planGgufTypes('Q3_K_M', tensors, { ...model, is70B: true }));
  assert.equal(big.get('blk.9.attn_v.weight'), 'Q5_K', '70B: attn_v Q4_K -> Q5_K');
});

test('legacy and float presets: Q4_0 keeps output at Q6_K, Q8_0 keeps Q8_0, F16 leaves norms F32', () => {
  const model = { blockCount: 2, headCount: 8, headCountKv: 8 };
  const tensors = llamaTensors(2, 512, 1024, 512);
  const q40 = typesOf(planGgufTypes('Q4_0', tensors, model));
  assert.equal(q40.get('output.weight'), 'Q6_K');
  assert.equal(q40.get('blk.0.attn_v.weight'), 'Q4_0');
  const q80 = planGgufTypes('Q8_0', tensors, model);
  assert.equal(q80.fileType, LLAMA_FTYPE.MOSTLY_Q8_0);
  assert.ok(q80.tensors.every((c) => c.type === (c.name.endsWith('norm.weight') ? 'F32' : 'Q8_0')));
  const f16 = planGgufTypes('F16', tensors, model);
  assert.equal(f16.fileType, LLAMA_FTYPE.MOSTLY_F16);
  assert.ok(f16.tensors.every((c) => c.type === (c.name.endsWith('norm.weight') ? 'F32' : 'F16')));
  assert.equal(planGgufTypes('BF16', tensors, model).fileType, LLAMA_FTYPE.MOSTLY_BF16);
  assert.equal(planGgufTypes('F32', tensors, model).fileType, LLAMA_FTYPE.ALL_F32);
});

test('plain K types are --pure: one type everywhere, file type of the _M preset', () => {
  const model = { blockCount: 2, headCount: 8, headCountKv: 8 };
  const plan = planGgufTypes('Q4_K', llamaTensors(2, 512, 1024, 512), model);
  assert.equal(plan.fileType, LLAMA_FTYPE.MOSTLY_Q4_K_M);
  assert.ok(plan.tensors.every((c) => c.type === (c.name.endsWith('norm.weight') ? 'F32' : 'Q4_K')));
  const pure6 = planGgufTypes('Q6_K', llamaTensors(2, 512, 1024, 512), model, { pure: true });
  assert.ok(pure6.tensors.every((c) => c.type === (c.name.endsWith('norm.weight') ? 'F32' : 'Q6_K')));
  assert.throws(() => planGgufTypes('Q9_K', [], model), /unknown GGUF target/);
});

test('row lengths that are not a multiple of 256 fall back as llama.cpp does; not a multiple of 32 -> F16', () => {
  assert.deepEqual(
    (['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K', 'Q8_0', 'Q4_0'] as const).map((t) => fallbackForRowLength('x', 384, t).type),
    ['Q4_0', 'Q4_0', 'Q5_0', 'Q5_1', 'Q8_0', 'Q8_0', 'Q4_0'],
  );
  assert.equal(fallbackForRowLength('x', 512, 'Q4_K').fallback, undefined);
  assert.match(fallbackForRowLength('x', 384, 'Q4_K').fallback ?? '', /384 is not a multiple of 256.*Q5_0/);
  assert.equal(fallbackForRowLength('x', 100, 'Q4_K').type, 'F16');
  assert.equal(fallbackForRowLength('x', 100, 'Q8_0').type, 'F16');
  // hidden 384 (tiny-llama): output -> Q8_0 (not Q6_K), attn_v on more-bits layers Q6_K -> Q8_0, others Q4_K -> Q5_0
  const types = typesOf(planGgufTypes('Q4_K_M', llamaTensors(8, 384, 1024, 128), { blockCount: 8, headCount: 6, headCountKv: 2 }));
  assert.equal(types.get('output.weight'), 'Q8_0');
  assert.equal(types.get('token_embd.weight'), 'Q5_0');
  assert.equal(types.get('blk.0.attn_v.weight'), 'Q8_0');
  assert.equal(types.get('blk.1.attn_v.weight'), 'Q5_0');
  assert.equal(types.get('blk.0.ffn_down.weight'), 'Q6_K', 'ffn_down rows are 1024 long');
  assert.equal(types.get('blk.1.ffn_down.weight'), 'Q4_K');
});

test('what llama.cpp never quantizes: 1-D tensors, norms, names not ending in weight', () => {
  assert.equal(tensorAllowsQuantization('blk.0.attn_norm.weight', [4096]), false);
  assert.equal(tensorAllowsQuantization('blk.0.ffn_norm.weight', [1, 4096]), false);
  assert.equal(tensorAllowsQuantization('blk.0.attn_q.bias', [4096, 4096]), false);
  assert.equal(tensorAllowsQuantization('blk.0.ffn_gate_inp.weight', [8, 4096]), false);
  assert.equal(tensorAllowsQuantization('blk.0.attn_q.weight', [4096, 4096]), true);
  assert.equal(tensorAllowsQuantization('blk.0.attn_q.weight', [1, 4096]), false, 'ggml_n_dims ignores outer dims of 1');
});
