import { test } from 'node:test';
import assert from 'node:assert/strict';
import { summarizeTensors, tensorLayer, tensorRole } from '../../src/core/formats/tensorRoles';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';

test('tensor roles and layers from HF and GGUF names', () => {
  const cases: Array<[string, string, number | null]> = [
    ['model.layers.3.self_attn.q_proj.weight', 'attn_q', 3],
    ['model.layers.3.self_attn.k_proj.weight', 'attn_k', 3],
    ['model.layers.3.self_attn.v_proj.weight', 'attn_v', 3],
    ['model.layers.3.self_attn.o_proj.weight', 'attn_o', 3],
    ['model.layers.12.mlp.gate_proj.weight', 'mlp_gate', 12],
    ['model.layers.12.mlp.up_proj.weight', 'mlp_up', 12],
    ['model.layers.12.mlp.down_proj.weight', 'mlp_down', 12],
    ['model.layers.0.input_layernorm.weight', 'norm', 0],
    ['model.layers.0.post_attention_layernorm.weight', 'norm', 0],
    ['model.norm.weight', 'norm', null],
    ['model.embed_tokens.weight', 'embedding', null],
    ['lm_head.weight', 'output', null],
    ['blk.7.attn_q.weight', 'attn_q', 7],
    ['blk.7.attn_k.weight', 'attn_k', 7],
    ['blk.7.attn_v.weight', 'attn_v', 7],
    ['blk.7.attn_output.weight', 'attn_o', 7],
    ['blk.7.ffn_gate.weight', 'mlp_gate', 7],
    ['blk.7.ffn_up.weight', 'mlp_up', 7],
    ['blk.7.ffn_down.weight', 'mlp_down', 7],
    ['blk.7.attn_norm.weight', 'norm', 7],
    ['blk.7.ffn_norm.weight', 'norm', 7],
    ['output_norm.weight', 'norm', null],
    ['token_embd.weight', 'embedding', null],
    ['output.weight', 'output', null],
    ['rope_freqs.weight', 'other', null],
    ['blk.2.attn_qkv.weight', 'other', 2],
  ];
  for (const [name, role, layer] of cases) {
    assert.equal(tensorRole(name), role, name);
    assert.equal(tensorLayer(name), layer, name);
  }
});

test('totals agree between the HF folder and the GGUF of the same model', async () => {
  const hf = await openCheckpoint(microLlamaDir);
  const gguf = await openCheckpoint(microLlamaF32Gguf);
  try {
    const a = summarizeTensors(hf.tensors);
    const b = summarizeTensors(gguf.tensors);
    assert.equal(a.parameters, 1_147_200);
    assert.equal(b.parameters, a.parameters);
    assert.equal(b.bytes, 2 * a.bytes, 'F32 is twice BF16');
    const params = (t: typeof a): Record<string, number> => Object.fromEntries(Object.entries(t.byRole).map(([k, v]) => [k, v.parameters]));
    assert.deepEqual(params(a), params(b));
    assert.deepEqual(Object.keys(a.byRole), ['attn_q', 'attn_k', 'attn_v', 'attn_o', 'mlp_gate', 'mlp_up', 'mlp_down', 'norm', 'embedding', 'output']);
    assert.deepEqual(
      Object.fromEntries(Object.entries(a.byLayer).map(([k, v]) => [k, v.parameters])),
      Object.fromEntries(Object.entries(b.byLayer).map(([k, v]) => [k, v.parameters])),
    );
    assert.equal(a.byLayer['1']?.parameters, 4096 * 2 + 2048 * 2 + 12288 * 3 + 128);
  } finally {
    await hf.close();
    await gguf.close();
  }
});
