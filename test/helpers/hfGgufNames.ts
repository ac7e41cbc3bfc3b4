/**
 * The test side of llama.cpp's HF -> GGUF conversion, written independently of src/core/convert so the
 * reader tests check our code against convert_hf_to_gguf.py's output, not against itself.
 */
import assert from 'node:assert/strict';

const GGUF_TO_HF_PART: Record<string, string> = {
  attn_norm: 'input_layernorm',
  ffn_norm: 'post_attention_layernorm',
  attn_q: 'self_attn.q_proj',
  attn_k: 'self_attn.k_proj',
  attn_v: 'self_attn.v_proj',
  attn_output: 'self_attn.o_proj',
  ffn_gate: 'mlp.gate_proj',
  ffn_up: 'mlp.up_proj',
  ffn_down: 'mlp.down_proj',
};

const GGUF_TO_HF_FIXED: Record<string, string> = {
  'token_embd.weight': 'model.embed_tokens.weight',
  'output.weight': 'lm_head.weight',
  'output_norm.weight': 'model.norm.weight',
};

/** The Hugging Face name of a GGUF tensor of a LLaMA model (`blk.0.attn_q.weight` -> `model.layers.0.self_attn.q_proj.weight`). */
export function hfNameOfGguf(ggufName: string): string {
  const direct = GGUF_TO_HF_FIXED[ggufName];
  if (direct !== undefined) return direct;
  const m = /^blk\.(\d+)\.(\w+)\.weight$/.exec(ggufName);
  const part = m ? GGUF_TO_HF_PART[m[2] ?? ''] : undefined;
  assert.ok(m && part !== undefined, `unmapped GGUF tensor ${ggufName}`);
  return `model.layers.${m[1]}.${part}.weight`;
}

/**
 * Undoes convert_hf_to_gguf's Q/K permute(): GGUF row h*hd + 2i + j holds HF row h*hd + j*(hd/2) + i
 * (rows reshaped (n_head, 2, hd/2) and the last two axes swapped).
 */
export function unpermuteQkRows(values: Float32Array, rows: number, cols: number, nHead: number): Float32Array {
  const out = new Float32Array(values.length);
  const headDim = rows / nHead;
  const half = headDim / 2;
  for (let h = 0; h < nHead; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const ggufRow = h * headDim + 2 * i + j;
        out.set(values.subarray(ggufRow * cols, (ggufRow + 1) * cols), (h * headDim + j * half + i) * cols);
      }
    }
  }
  return out;
}
