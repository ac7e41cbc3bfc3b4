/**
 * LLaMA-family hyper-parameters, from a Hugging Face config.json or from a GGUF's `llama.*` / `qwen2.*` keys.
 * Anything that would change the math and that the forward pass does not implement is refused with
 * an UnsupportedError naming the field, rather than silently computing something else.
 *
 * Architectures: `llama` (LlamaForCausalLM) and `qwen2` (Qwen2ForCausalLM: the LLaMA block with biases on
 * the q/k/v projections, not on o; its sliding-window attention is refused when switched on).
 */
import { FormatError, UnsupportedError } from '../errors';
import type { MetadataValue } from '../formats/checkpoint';
import type { RopeLayout } from './kernels';

export interface LlamaConfig {
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  vocabSize: number;
  rmsNormEps: number;
  ropeTheta: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** How Q/K dims pair for RoPE in this file's layout (GGUF rows were permuted by the converter). */
  ropeLayout: RopeLayout;
  /** The q/k/v projections carry biases (Qwen2): the weight loader requires `*.bias` for each. */
  attentionBias: boolean;
  bosTokenId: number | null;
  eosTokenId: number | null;
}

const SUPPORTED_MODEL_TYPES = new Set(['llama', 'qwen2']);
/** GGUF `general.architecture` values the forward pass runs (the keys are `<arch>.*`). */
const SUPPORTED_GGUF_ARCHITECTURES = new Set(['llama', 'qwen2']);

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function positiveInt(file: string, obj: Record<string, unknown>, key: string, fallback?: number): number {
  const v = obj[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new FormatError(file, `missing required field '${key}'`);
  }
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) throw new FormatError(file, `field '${key}' must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function positiveNumber(file: string, v: unknown, key: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FormatError(file, `field '${key}' must be a positive number, got ${JSON.stringify(v)}`);
  return v;
}

function optionalTokenId(v: unknown): number | null {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  if (Array.isArray(v) && typeof v[0] === 'number' && Number.isSafeInteger(v[0])) return v[0];
  return null;
}

/** Refuses a rope scaling block unless it is the plain (default) rotation. */
function checkRopeScaling(file: string, field: string, value: unknown): void {
  if (value === undefined || value === null) return;
  if (!isRecord(value)) throw new FormatError(file, `field '${field}' must be an object or null`);
  const type = value.rope_type ?? value.type;
  if (type === undefined || type === 'default' || type === 'none') return;
  throw new UnsupportedError(`${file}: field '${field}' has rope type '${String(type)}'; only the default rotary embedding (no scaling) is supported`);
}

function checkFlagFalse(file: string, config: Record<string, unknown>, key: string, what: string): void {
  const v = config[key];
  if (v === undefined || v === null || v === false) return;
  throw new UnsupportedError(`${file}: field '${key}' is ${JSON.stringify(v)}; ${what} is not supported by the LLaMA forward pass`);
}

/** Parses a Hugging Face config.json object (already JSON-decoded, still unknown). `file` names it in errors. */
export function llamaConfigFromHf(raw: unknown, file: string): LlamaConfig {
  if (!isRecord(raw)) throw new FormatError(file, 'config.json is not a JSON object');
  const modelType = raw.model_type;
  if (typeof modelType !== 'string' || !SUPPORTED_MODEL_TYPES.has(modelType)) {
    throw new UnsupportedError(`${file}: field 'model_type' is ${JSON.stringify(modelType)}; supported: ${[...SUPPORTED_MODEL_TYPES].join(', ')}`);
  }
  const act = raw.hidden_act ?? 'silu';
  if (act !== 'silu') throw new UnsupportedError(`${file}: field 'hidden_act' is ${JSON.stringify(act)}; only 'silu' (SwiGLU) is supported`);
  // Qwen2 always has q/k/v biases (and none on o_proj); LLaMA's `attention_bias` would add one on o_proj too.
  const attentionBias = modelType === 'qwen2';
  if (modelType === 'llama') checkFlagFalse(file, raw, 'attention_bias', 'a bias on the attention projections (q/k/v and o_proj)');
  if (modelType === 'qwen2') checkFlagFalse(file, raw, 'use_sliding_window', 'sliding-window attention');
  checkFlagFalse(file, raw, 'mlp_bias', 'a bias on the MLP projections');
  checkRopeScaling(file, 'rope_scaling', raw.rope_scaling);
  let ropeTheta = 10000;
  if (raw.rope_parameters !== undefined && raw.rope_parameters !== null) {
    checkRopeScaling(file, 'rope_parameters', raw.rope_parameters);
    const params = raw.rope_parameters as Record<string, unknown>;
    if (params.rope_theta !== undefined) ropeTheta = positiveNumber(file, params.rope_theta, 'rope_parameters.rope_theta');
    if (params.partial_rotary_factor !== undefined && params.partial_rotary_factor !== 1) {
      throw new UnsupportedError(`${file}: field 'rope_parameters.partial_rotary_factor' is ${JSON.stringify(params.partial_rotary_factor)}; only full rotary embeddings are supported`);
    }
  } else if (raw.rope_theta !== undefined) {
    ropeTheta = positiveNumber(file, raw.rope_theta, 'rope_theta');
  }
  const hiddenSize = positiveInt(file, raw, 'hidden_size');
  const numHeads = positiveInt(file, raw, 'num_attention_heads');
  const numKvHeads = positiveInt(file, raw, 'num_key_value_heads', numHeads);
  if (numHeads % numKvHeads !== 0) throw new FormatError(file, `num_attention_heads ${numHeads} is not a multiple of num_key_value_heads ${numKvHeads}`);
  const headDim = positiveInt(file, raw, 'head_dim', hiddenSize / numHeads);
  if (headDim % 2 !== 0) throw new FormatError(file, `head_dim ${headDim} must be even for rotary embeddings`);
  const eps = raw.rms_norm_eps === undefined ? 1e-6 : positiveNumber(file, raw.rms_norm_eps, 'rms_norm_eps');
  const tie = raw.tie_word_embeddings;
  if (tie !== undefined && typeof tie !== 'boolean') throw new FormatError(file, `field 'tie_word_embeddings' must be a boolean`);
  return {
    hiddenSize,
    intermediateSize: positiveInt(file, raw, 'intermediate_size'),
    numLayers: positiveInt(file, raw, 'num_hidden_layers'),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: positiveInt(file, raw, 'vocab_size'),
    rmsNormEps: eps,
    ropeTheta,
    maxPositionEmbeddings: positiveInt(file, raw, 'max_position_embeddings', 2048),
    tieWordEmbeddings: tie === true,
    ropeLayout: 'half',
    attentionBias,
    bosTokenId: optionalTokenId(raw.bos_token_id),
    eosTokenId: optionalTokenId(raw.eos_token_id),
  };
}

/** A metadata value as a safe non-negative integer (GGUF u64 values arrive as bigint). */
export function metadataInt(v: MetadataValue | undefined): number | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  return undefined;
}

/** Parses a GGUF's metadata. `file` names it in errors. */
export function llamaConfigFromGguf(metadata: Record<string, MetadataValue>, file: string): LlamaConfig {
  const arch = metadata['general.architecture'];
  if (typeof arch !== 'string' || !SUPPORTED_GGUF_ARCHITECTURES.has(arch)) {
    throw new UnsupportedError(`${file}: key 'general.architecture' is ${JSON.stringify(String(arch))}; supported: ${[...SUPPORTED_GGUF_ARCHITECTURES].join(', ')}`);
  }
  const int = (key: string, fallback?: number): number => {
    const v = metadataInt(metadata[key]);
    if (v !== undefined && v > 0) return v;
    if (metadata[key] === undefined && fallback !== undefined) return fallback;
    throw new FormatError(file, `key '${key}' is missing or not a positive integer`);
  };
  const num = (key: string, fallback: number): number => {
    const v = metadata[key];
    if (v === undefined) return fallback;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) throw new FormatError(file, `key '${key}' must be a positive number`);
    return v;
  };
  const scaling = metadata[`${arch}.rope.scaling.type`];
  if (scaling !== undefined && scaling !== 'none') throw new UnsupportedError(`${file}: key '${arch}.rope.scaling.type' is '${String(scaling)}'; only unscaled rotary embeddings are supported`);
  const hiddenSize = int(`${arch}.embedding_length`);
  const numHeads = int(`${arch}.attention.head_count`);
  const numKvHeads = int(`${arch}.attention.head_count_kv`, numHeads);
  if (numHeads % numKvHeads !== 0) throw new FormatError(file, `head_count ${numHeads} is not a multiple of head_count_kv ${numKvHeads}`);
  const headDim = int(`${arch}.attention.key_length`, hiddenSize / numHeads);
  const ropeDims = int(`${arch}.rope.dimension_count`, headDim);
  if (ropeDims !== headDim) throw new UnsupportedError(`${file}: key '${arch}.rope.dimension_count' is ${ropeDims} but the head size is ${headDim}; partial rotary embeddings are not supported`);
  const tokens = metadata['tokenizer.ggml.tokens'];
  const vocabFromTokens = Array.isArray(tokens) ? tokens.length : undefined;
  return {
    hiddenSize,
    intermediateSize: int(`${arch}.feed_forward_length`),
    numLayers: int(`${arch}.block_count`),
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: int(`${arch}.vocab_size`, vocabFromTokens),
    rmsNormEps: num(`${arch}.attention.layer_norm_rms_epsilon`, 1e-5),
    ropeTheta: num(`${arch}.rope.freq_base`, 10000),
    maxPositionEmbeddings: int(`${arch}.context_length`, 2048),
    // Decided from the tensors (a missing `output.weight` means tied) by the weight loader.
    tieWordEmbeddings: false,
    // llama.cpp's converter permutes LLaMA's Q/K rows to interleaved pairs; Qwen2 keeps HF's rotate-half
    // layout, which llama.cpp rotates with NEOX-style RoPE.
    ropeLayout: arch === 'qwen2' ? 'half' : 'interleaved',
    attentionBias: arch === 'qwen2',
    bosTokenId: metadataInt(metadata['tokenizer.ggml.bos_token_id']) ?? null,
    eosTokenId: metadataInt(metadata['tokenizer.ggml.eos_token_id']) ?? null,
  };
}
