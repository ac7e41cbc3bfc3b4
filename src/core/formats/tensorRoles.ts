/**
 * What a tensor is for, from its name (Hugging Face and GGUF/llama.cpp conventions), which layer it
 * belongs to, and the parameter/byte totals that inspect and the inspector show.
 */
import type { TensorEntry } from './checkpoint';

export const TENSOR_ROLES = [
  'attn_q',
  'attn_k',
  'attn_v',
  'attn_o',
  'mlp_gate',
  'mlp_up',
  'mlp_down',
  'norm',
  'embedding',
  'output',
  'other',
] as const;
export type TensorRole = (typeof TENSOR_ROLES)[number];

/** First match wins; patterns cover HF (`model.layers.N.self_attn.q_proj`) and GGUF (`blk.N.attn_q`) names. */
const ROLE_PATTERNS: ReadonlyArray<readonly [RegExp, TensorRole]> = [
  [/(^|\.)(q_proj|attn_q|query|wq)(\.|$)/, 'attn_q'],
  [/(^|\.)(k_proj|attn_k|key|wk)(\.|$)/, 'attn_k'],
  [/(^|\.)(v_proj|attn_v|value|wv)(\.|$)/, 'attn_v'],
  [/(^|\.)(o_proj|attn_output|out_proj|wo)(\.|$)/, 'attn_o'],
  [/(^|\.)(gate_proj|ffn_gate|ffn_gate_exps|w1)(\.|$)/, 'mlp_gate'],
  [/(^|\.)(up_proj|ffn_up|ffn_up_exps|w3)(\.|$)/, 'mlp_up'],
  [/(^|\.)(down_proj|ffn_down|ffn_down_exps|w2)(\.|$)/, 'mlp_down'],
  [/(norm|layernorm|ln_f|ln_\d)(\.|_|$)/i, 'norm'],
  [/(^|\.)(embed_tokens|token_embd|wte|word_embeddings|tok_embeddings)(\.|$)/, 'embedding'],
  [/^(lm_head|output)(\.|$)/, 'output'],
];

export function tensorRole(name: string): TensorRole {
  for (const [pattern, role] of ROLE_PATTERNS) if (pattern.test(name)) return role;
  return 'other';
}

const LAYER_PATTERN = /(?:^|\.)(?:layers|blk|h|blocks|layer)\.(\d+)\./;

/** Transformer block index from `model.layers.N.` / `blk.N.` (and a few other conventions), or null. */
export function tensorLayer(name: string): number | null {
  const m = LAYER_PATTERN.exec(name);
  return m?.[1] !== undefined ? Number(m[1]) : null;
}

export interface TotalsBucket {
  tensors: number;
  parameters: number;
  bytes: number;
}

export interface CheckpointTotals {
  tensors: number;
  parameters: number;
  bytes: number;
  byDtype: Record<string, TotalsBucket>;
  /** Keyed by layer index; tensors outside any layer (embeddings, final norm, output) under "none". */
  byLayer: Record<string, TotalsBucket>;
  byRole: Record<string, TotalsBucket>;
}

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function add(buckets: Record<string, TotalsBucket>, key: string, parameters: number, bytes: number): void {
  const b = buckets[key] ?? (buckets[key] = { tensors: 0, parameters: 0, bytes: 0 });
  b.tensors += 1;
  b.parameters += parameters;
  b.bytes += bytes;
}

export function summarizeTensors(tensors: readonly TensorEntry[]): CheckpointTotals {
  const totals: CheckpointTotals = { tensors: 0, parameters: 0, bytes: 0, byDtype: {}, byLayer: {}, byRole: {} };
  const layers = new Map<number | null, TotalsBucket>();
  for (const t of tensors) {
    const parameters = elementCount(t.shape);
    totals.tensors += 1;
    totals.parameters += parameters;
    totals.bytes += t.nbytes;
    add(totals.byDtype, t.dtype, parameters, t.nbytes);
    add(totals.byRole, tensorRole(t.name), parameters, t.nbytes);
    const layer = tensorLayer(t.name);
    const b = layers.get(layer) ?? { tensors: 0, parameters: 0, bytes: 0 };
    b.tensors += 1;
    b.parameters += parameters;
    b.bytes += t.nbytes;
    layers.set(layer, b);
  }
  // Layers in numeric order, then the tensors outside any layer.
  const ordered = [...layers.keys()].filter((k): k is number => k !== null).sort((a, b) => a - b);
  for (const k of ordered) totals.byLayer[String(k)] = layers.get(k) ?? { tensors: 0, parameters: 0, bytes: 0 };
  const none = layers.get(null);
  if (none !== undefined) totals.byLayer.none = none;
  // Roles in the fixed TENSOR_ROLES order, whatever the file order.
  const byRole: Record<string, TotalsBucket> = {};
  for (const role of TENSOR_ROLES) {
    const b = totals.byRole[role];
    if (b !== undefined) byRole[role] = b;
  }
  totals.byRole = byRole;
  return totals;
}
