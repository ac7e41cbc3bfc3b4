/**
 * llama-quantize's per-tensor type choice, ported from llama.cpp's src/llama-quant.cpp
 * (`llama_tensor_get_type`, `llama_tensor_get_type_impl`, `tensor_type_fallback`,
 * `tensor_allows_quantization`, `llama_ftype_get_default_type`) for dense LLaMA-family models
 * (no experts, not Falcon; the 70B attn_v bump is available through `is70B`).
 *
 * Targets:
 * - presets (llama-quantize's names): Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K,
 *   Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16, BF16, F32 — with the mixture rules (output.weight Q6_K, attn_v /
 *   ffn_down bumps on the layers `use_more_bits` picks, ...);
 * - plain K types Q3_K, Q4_K, Q5_K: every quantizable tensor gets that type, as `llama-quantize --pure`
 *   (general.file_type is then that of the _M preset, as llama-quantize writes for its aliases).
 * In both cases a row length (ne[0]) that the chosen type's block does not divide falls back as llama.cpp
 * does: Q2_K/Q3_K -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, then F16 if even that does not fit.
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { ggmlTypeByName, LLAMA_FTYPE, type GgmlTypeName } from '../formats/gguf/ggmlTypes';

export const GGUF_PRESET_NAMES = [
  'F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1',
  'Q2_K', 'Q3_K_S', 'Q3_K_M', 'Q3_K_L', 'Q4_K_S', 'Q4_K_M', 'Q5_K_S', 'Q5_K_M', 'Q6_K',
] as const;
export type GgufPresetName = (typeof GGUF_PRESET_NAMES)[number];

/** Plain type names that mean "this type everywhere" (llama-quantize --pure). */
export const GGUF_PURE_TYPE_NAMES = ['Q3_K', 'Q4_K', 'Q5_K'] as const;
export type GgufPureTypeName = (typeof GGUF_PURE_TYPE_NAMES)[number];

export type GgufTargetName = GgufPresetName | GgufPureTypeName;

interface PresetInfo {
  fileType: number;
  defaultType: GgmlTypeName;
}

const PRESETS: Record<GgufPresetName, PresetInfo> = {
  F32: { fileType: LLAMA_FTYPE.ALL_F32, defaultType: 'F32' },
  F16: { fileType: LLAMA_FTYPE.MOSTLY_F16, defaultType: 'F16' },
  BF16: { fileType: LLAMA_FTYPE.MOSTLY_BF16, defaultType: 'BF16' },
  Q8_0: { fileType: LLAMA_FTYPE.MOSTLY_Q8_0, defaultType: 'Q8_0' },
  Q4_0: { fileType: LLAMA_FTYPE.MOSTLY_Q4_0, defaultType: 'Q4_0' },
  Q4_1: { fileType: LLAMA_FTYPE.MOSTLY_Q4_1, defaultType: 'Q4_1' },
  Q5_0: { fileType: LLAMA_FTYPE.MOSTLY_Q5_0, defaultType: 'Q5_0' },
  Q5_1: { fileType: LLAMA_FTYPE.MOSTLY_Q5_1, defaultType: 'Q5_1' },
  Q2_K: { fileType: LLAMA_FTYPE.MOSTLY_Q2_K, defaultType: 'Q2_K' },
  Q3_K_S: { fileType: LLAMA_FTYPE.MOSTLY_Q3_K_S, defaultType: 'Q3_K' },
  Q3_K_M: { fileType: LLAMA_FTYPE.MOSTLY_Q3_K_M, defaultType: 'Q3_K' },
  Q3_K_L: { fileType: LLAMA_FTYPE.MOSTLY_Q3_K_L, defaultType: 'Q3_K' },
  Q4_K_S: { fileType: LLAMA_FTYPE.MOSTLY_Q4_K_S, defaultType: 'Q4_K' },
  Q4_K_M: { fileType: LLAMA_FTYPE.MOSTLY_Q4_K_M, defaultType: 'Q4_K' },
  Q5_K_S: { fileType: LLAMA_FTYPE.MOSTLY_Q5_K_S, defaultType: 'Q5_K' },
  Q5_K_M: { fileType: LLAMA_FTYPE.MOSTLY_Q5_K_M, defaultType: 'Q5_K' },
  Q6_K: { fileType: LLAMA_FTYPE.MOSTLY_Q6_K, defaultType: 'Q6_K' },
};

const PURE: Record<GgufPureTypeName, PresetInfo> = {
  Q3_K: { fileType: LLAMA_FTYPE.MOSTLY_Q3_K_M, defaultType: 'Q3_K' },
  Q4_K: { fileType: LLAMA_FTYPE.MOSTLY_Q4_K_M, defaultType: 'Q4_K' },
  Q5_K: { fileType: LLAMA_FTYPE.MOSTLY_Q5_K_M, defaultType: 'Q5_K' },
};

/** GGML_QNT_VERSION, written as general.quantization_version. */
export const GGML_QUANTIZATION_VERSION = 2;

export function isGgufTargetName(name: string): name is GgufTargetName {
  return (GGUF_PRESET_NAMES as readonly string[]).includes(name) || (GGUF_PURE_TYPE_NAMES as readonly string[]).includes(name);
}

export interface PresetTensor {
  name: string;
  /** Row-major shape (outermost first). */
  shape: readonly number[];
  /** The tensor's type in the (converted) input: what it keeps when it is not quantized. */
  sourceType: GgmlTypeName;
}

export interface PresetModel {
  /** hparams.n_layer. */
  blockCount: number;
  headCount: number;
  headCountKv: number;
  /** llama.cpp's LLM_TYPE_70B: attn_v Q3_K/Q4_K become Q5_K. */
  is70B?: boolean;
}

export interface PresetOptions {
  /** llama-quantize --pure: the default type everywhere (still with shape fallbacks). */
  pure?: boolean;
}

export interface TensorTypeChoice {
  name: string;
  type: GgmlTypeName;
  /** Set when the row length forced a fallback: llama.cpp's warning, in words. */
  fallback?: string;
}

export interface GgufTypePlan {
  target: GgufTargetName;
  fileType: number;
  quantizationVersion: number;
  /** In the order the tensors were given. */
  tensors: TensorTypeChoice[];
}

type Category = 'OUTPUT' | 'TOKEN_EMBD' | 'ATTENTION_QKV' | 'ATTENTION_KV_B' | 'ATTENTION_V' | 'ATTENTION_K' | 'ATTENTION_Q' | 'ATTENTION_OUTPUT' | 'FFN_UP' | 'FFN_GATE' | 'FFN_DOWN' | 'OTHER';

/** tensor_get_category. */
function categoryOf(name: string): Category {
  if (name === 'output.weight') return 'OUTPUT';
  if (name === 'token_embd.weight' || name === 'per_layer_token_embd.weight') return 'TOKEN_EMBD';
  if (name.includes('attn_qkv.weight')) return 'ATTENTION_QKV';
  if (name.includes('attn_kv_b.weight')) return 'ATTENTION_KV_B';
  if (name.includes('attn_v.weight')) return 'ATTENTION_V';
  if (name.includes('attn_k.weight')) return 'ATTENTION_K';
  if (name.includes('attn_q.weight')) return 'ATTENTION_Q';
  if (name.includes('attn_output.weight')) return 'ATTENTION_OUTPUT';
  if (name.includes('ffn_up')) return 'FFN_UP';
  if (name.includes('ffn_gate')) return 'FFN_GATE';
  if (name.includes('ffn_down')) return 'FFN_DOWN';
  return 'OTHER';
}

function isAttnVLike(c: Category): boolean {
  return c === 'ATTENTION_V' || c === 'ATTENTION_QKV' || c === 'ATTENTION_KV_B';
}

/** ggml_n_dims: dimensions up to the last one larger than 1. */
function ggmlDims(shape: readonly number[]): number {
  const ne = [...shape].reverse();
  for (let i = ne.length - 1; i >= 1; i--) if ((ne[i] ?? 1) > 1) return i + 1;
  return 1;
}

const NEVER_QUANTIZED_PARTS = [
  '_norm.weight', 'ffn_gate_inp.weight', 'ffn_gate_tid2eid.weight', 'altup', 'laurel', 'per_layer_model_proj', 'ssm_conv1d',
  'shortconv.conv.weight', 'indexer.k_proj.weight', 'indexer.q_proj.weight', 'time_mix_first.weight', 'time_mix_w0.weight',
  'time_mix_w1.weight', 'time_mix_w2.weight', 'time_mix_v0.weight', 'time_mix_v1.weight', 'time_mix_v2.weight', 'time_mix_a0.weight',
  'time_mix_a1.weight', 'time_mix_a2.weight', 'time_mix_g1.weight', 'time_mix_g2.weight', 'time_mix_decay_w1.weight',
  'time_mix_decay_w2.weight', 'time_mix_lerp_fused.weight', 'attn_rel_b.weight', '.position_embd', 'sam.pos_embd', 'sam.neck.',
  'sam.net_', '.rel_pos', '.patch_embd', '.patch_merger', 'a.rvq.codebook', 'mm.a.code_embd',
];

/** tensor_allows_quantization (quantize_output_tensor = true, only_copy = false). */
export function tensorAllowsQuantization(name: string, shape: readonly number[]): boolean {
  if (ggmlDims(shape) < 2) return false;
  if (!name.endsWith('weight')) return false;
  if (name === 'position_embd.weight' || name === 'token_types.weight') return false;
  return !NEVER_QUANTIZED_PARTS.some((part) => name.includes(part));
}

/** use_more_bits: the first and last eighth of the layers, and every third one between. */
export function useMoreBits(iLayer: number, nLayers: number): boolean {
  const eighth = Math.trunc(nLayers / 8);
  return iLayer < eighth || iLayer >= Math.trunc((7 * nLayers) / 8) || (iLayer - eighth) % 3 === 2;
}

/** tensor_type_fallback: a type whose block does not divide ne[0] falls back. */
export function fallbackForRowLength(name: string, ne0: number, type: GgmlTypeName): TensorTypeChoice {
  const info = ggmlTypeByName(type);
  if (info === undefined) throw new UnsupportedError(`unknown ggml type ${type}`);
  if (ne0 % info.blockSize === 0) return { name, type };
  let next: GgmlTypeName;
  switch (type) {
    case 'Q2_K':
    case 'Q3_K':
      next = 'Q4_0';
      break;
    case 'Q4_K':
      next = 'Q5_0';
      break;
    case 'Q5_K':
      next = 'Q5_1';
      break;
    case 'Q6_K':
      next = 'Q8_0';
      break;
    default:
      if (info.blockSize <= 32) {
        next = type;
        break;
      }
      throw new UnsupportedError(`${name}: row length ${ne0} is not a multiple of ${info.blockSize} (needed by ${type}) and llama.cpp defines no fallback for ${type}`);
  }
  const nextInfo = ggmlTypeByName(next);
  if (nextInfo === undefined || ne0 % nextInfo.blockSize !== 0) next = 'F16';
  return { name, type: next, fallback: `row length ${ne0} is not a multiple of ${info.blockSize} (required by ${type}): falling back to ${next}` };
}

/** weight_name_comparer: by layer number (non-layer tensors first), then by name. */
function layerOf(name: string): number {
  const m = /^blk\.(\d+)\./.exec(name);
  return m === null ? -1 : Number(m[1]);
}
export function compareLlamaTensorNames(a: string, b: string): number {
  const la = layerOf(a);
  const lb = layerOf(b);
  if (la !== lb) return la - lb;
  return a < b ? -1 : a > b ? 1 : 0;
}

function resolveTarget(target: string): { info: PresetInfo; pure: boolean; name: GgufTargetName } {
  const upper = target.toUpperCase();
  if ((GGUF_PRESET_NAMES as readonly string[]).includes(upper)) return { info: PRESETS[upper as GgufPresetName], pure: false, name: upper as GgufPresetName };
  if ((GGUF_PURE_TYPE_NAMES as readonly string[]).includes(upper)) return { info: PURE[upper as GgufPureTypeName], pure: true, name: upper as GgufPureTypeName };
  throw new InvalidArgumentError(`unknown GGUF target ${target}: use one of ${[...GGUF_PRESET_NAMES, ...GGUF_PURE_TYPE_NAMES].join(', ')}`);
}

/**
 * The type of every tensor for `target`, as llama-quantize (no imatrix) chooses it.
 * The per-layer counters run over the tensors in llama.cpp's order (weight_name_comparer), whatever order
 * they are given in; the result keeps the given order.
 */
export function planGgufTypes(target: string, tensors: readonly PresetTensor[], model: PresetModel, options: PresetOptions = {}): GgufTypePlan {
  const { info, pure: pureTarget, name } = resolveTarget(target);
  const pure = pureTarget || options.pure === true;
  const defaultType = info.defaultType;
  const defaultIsQuantized = defaultType !== 'F32' && defaultType !== 'F16' && defaultType !== 'BF16';
  const ftype = info.fileType;
  const nGqa = model.headCountKv > 0 ? Math.trunc(model.headCount / model.headCountKv) : 1;

  const ordered = tensors.map((t, index) => ({ t, index, category: categoryOf(t.name) })).sort((a, b) => compareLlamaTensorNames(a.t.name, b.t.name));
  const nAttentionWv = ordered.filter((o) => isAttnVLike(o.category)).length;
  const hasTiedEmbeddings = !ordered.some((o) => o.category === 'OUTPUT');
  const nLayer = model.blockCount;
  let iAttentionWv = 0;
  let iFfnDown = 0;

  const F = LLAMA_FTYPE;
  const choices: TensorTypeChoice[] = new Array<TensorTypeChoice>(tensors.length);
  for (const { t, index, category } of ordered) {
    if (!tensorAllowsQuantization(t.name, t.shape)) {
      choices[index] = { name: t.name, type: t.sourceType };
      continue;
    }
    const ne0 = t.shape[t.shape.length - 1] ?? 1;
    let newType: GgmlTypeName = defaultType;
    if (!defaultIsQuantized) {
      choices[index] = { name: t.name, type: newType };
      continue;
    }
    if (!pure) {
      if (category === 'OUTPUT' || (hasTiedEmbeddings && category === 'TOKEN_EMBD')) {
        const blockSize = ggmlTypeByName(newType)?.blockSize ?? 1;
        if (ne0 % blockSize !== 0) newType = 'Q8_0';
        else if (newType !== 'Q8_0') newType = 'Q6_K';
      } else if (category === 'TOKEN_EMBD') {
        // only the IQ / ternary presets change the token embedding
      } else if (isAttnVLike(category)) {
        if (ftype === F.MOSTLY_Q2_K) newType = nGqa >= 4 ? 'Q4_K' : 'Q3_K';
        else if (ftype === F.MOSTLY_Q3_K_M) newType = iAttentionWv < 2 ? 'Q5_K' : 'Q4_K';
        else if (ftype === F.MOSTLY_Q3_K_L) newType = 'Q5_K';
        else if ((ftype === F.MOSTLY_Q4_K_M || ftype === F.MOSTLY_Q5_K_M) && useMoreBits(iAttentionWv, nAttentionWv)) newType = 'Q6_K';
        else if (ftype === F.MOSTLY_Q4_K_S && iAttentionWv < 4) newType = 'Q5_K';
        if (model.is70B === true && (newType === 'Q3_K' || newType === 'Q4_K')) newType = 'Q5_K';
        iAttentionWv++;
      } else if (category === 'FFN_DOWN') {
        const iLayer = iFfnDown;
        if (ftype === F.MOSTLY_Q2_K) newType = 'Q3_K';
        else if (ftype === F.MOSTLY_Q3_K_M) newType = iLayer < Math.trunc(nLayer / 16) ? 'Q5_K' : 'Q4_K';
        else if (ftype === F.MOSTLY_Q3_K_L) newType = 'Q5_K';
        else if (ftype === F.MOSTLY_Q4_K_M) {
          if (useMoreBits(iLayer, nLayer)) newType = 'Q6_K';
        } else if (ftype === F.MOSTLY_Q5_K_M && useMoreBits(iLayer, nLayer)) newType = 'Q6_K';
        else if (ftype === F.MOSTLY_Q4_K_S && iLayer < Math.trunc(nLayer / 8)) newType = 'Q5_K';
        iFfnDown++;
      } else if (category === 'ATTENTION_OUTPUT') {
        if (ftype === F.MOSTLY_Q2_K) newType = 'Q3_K';
        else if (ftype === F.MOSTLY_Q3_K_M) newType = 'Q4_K';
        else if (ftype === F.MOSTLY_Q3_K_L) newType = 'Q5_K';
      } else if (category === 'ATTENTION_QKV') {
        // unreachable: ATTENTION_QKV is attn_v-like and handled above, as in llama.cpp
      }
    }
    choices[index] = fallbackForRowLength(t.name, ne0, newType);
  }
  return { target: name, fileType: ftype, quantizationVersion: GGML_QUANTIZATION_VERSION, tensors: choices };
}
