/**
 * Hugging Face LLaMA-family folder -> GGUF conversion facts, as llama.cpp's convert_hf_to_gguf.py does them
 * (`LlamaModel`): tensor names, the Q/K row permutation, every metadata key llama.cpp reads, and the
 * tokenizer from tokenizer.json.
 *
 * Supported architectures: LlamaForCausalLM and MistralForCausalLM (both written as `llama`), and
 * Qwen2ForCausalLM (written as `qwen2`, as convert_hf_to_gguf's Qwen2Model: q/k/v biases as `blk.N.attn_q.bias`
 * etc., no Q/K row permutation since llama.cpp rotates qwen2 NEOX-style, which is HF's rotate-half layout), with
 * byte-level BPE tokenizers (tokenizer.json, model.type BPE with a ByteLevel pre-tokenizer: GPT-2 style,
 * or the Llama-3 / Qwen2 split regexes). Others are refused with UnsupportedError naming what is missing.
 */
import { FormatError, UnsupportedError } from '../errors';
import type { GgufValue } from '../formats/gguf/reader';
import { gguf } from '../formats/gguf/writer';
import type { SentencePieceModel } from '../model/sentencepiece';

export const SUPPORTED_HF_ARCHITECTURES = ['LlamaForCausalLM', 'MistralForCausalLM', 'Qwen2ForCausalLM'] as const;

/** The llama.cpp architecture (`general.architecture`, the prefix of the model keys) of an HF architecture. */
export type GgufArchitecture = 'llama' | 'qwen2';

export interface LlamaHparams {
  architecture: string;
  /** What llama.cpp calls it: decides key prefix, bias tensors and the Q/K permutation. */
  ggufArch: GgufArchitecture;
  blockCount: number;
  contextLength: number;
  embeddingLength: number;
  feedForwardLength: number;
  headCount: number;
  headCountKv: number;
  headDim: number;
  /** Whether config.json names head_dim explicitly (convert then writes key_length / value_length). */
  headDimExplicit: boolean;
  rmsNormEps: number;
  ropeTheta: number;
  vocabSize: number;
  tieWordEmbeddings: boolean;
}

function num(config: Record<string, unknown>, key: string, file: string): number {
  const v = config[key];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new FormatError(file, `config.json needs a number for "${key}"`, key);
  return v;
}

function optionalNum(config: Record<string, unknown>, key: string): number | undefined {
  const v = config[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** Validates config.json (already parsed, still unknown-typed) for a supported LLaMA-family model. */
export function readLlamaHparams(config: Record<string, unknown> | null, file: string): LlamaHparams {
  if (config === null) throw new UnsupportedError(`${file}: no config.json beside the weights; GGUF export needs the model's hyperparameters`);
  const archs = config.architectures;
  const architecture = Array.isArray(archs) && typeof archs[0] === 'string' ? archs[0] : undefined;
  if (architecture === undefined || !(SUPPORTED_HF_ARCHITECTURES as readonly string[]).includes(architecture)) {
    throw new UnsupportedError(
      `${file}: architecture ${architecture ?? '(none given)'} cannot be exported to GGUF by this version; supported: ${SUPPORTED_HF_ARCHITECTURES.join(', ')}`,
    );
  }
  const ggufArch: GgufArchitecture = architecture === 'Qwen2ForCausalLM' ? 'qwen2' : 'llama';
  if (ggufArch === 'llama' && (config.attention_bias === true || config.mlp_bias === true)) {
    throw new UnsupportedError(`${file}: LLaMA with attention or MLP biases is not supported for GGUF export`);
  }
  if (ggufArch === 'qwen2' && config.use_sliding_window === true) {
    throw new UnsupportedError(`${file}: field 'use_sliding_window' is true; Qwen2 sliding-window attention is not supported for GGUF export`);
  }
  const ropeParameters = typeof config.rope_parameters === 'object' && config.rope_parameters !== null ? (config.rope_parameters as Record<string, unknown>) : undefined;
  const ropeScaling = typeof config.rope_scaling === 'object' && config.rope_scaling !== null ? (config.rope_scaling as Record<string, unknown>) : undefined;
  const ropeType = ropeParameters?.rope_type ?? ropeScaling?.rope_type ?? ropeScaling?.type;
  if (ropeType !== undefined && ropeType !== 'default') {
    throw new UnsupportedError(`${file}: RoPE scaling "${String(ropeType)}" is not supported for GGUF export yet (only the default RoPE)`);
  }
  const headCount = num(config, 'num_attention_heads', file);
  const embeddingLength = num(config, 'hidden_size', file);
  const explicitHeadDim = optionalNum(config, 'head_dim');
  const ropeTheta = optionalNum(ropeParameters ?? {}, 'rope_theta') ?? optionalNum(config, 'rope_theta') ?? 10000;
  const hp: LlamaHparams = {
    architecture,
    ggufArch,
    blockCount: num(config, 'num_hidden_layers', file),
    contextLength: num(config, 'max_position_embeddings', file),
    embeddingLength,
    feedForwardLength: num(config, 'intermediate_size', file),
    headCount,
    headCountKv: optionalNum(config, 'num_key_value_heads') ?? headCount,
    headDim: explicitHeadDim ?? embeddingLength / headCount,
    headDimExplicit: explicitHeadDim !== undefined,
    rmsNormEps: num(config, 'rms_norm_eps', file),
    ropeTheta,
    vocabSize: num(config, 'vocab_size', file),
    tieWordEmbeddings: config.tie_word_embeddings === true,
  };
  for (const [k, v] of Object.entries(hp)) {
    if (typeof v === 'number' && k !== 'rmsNormEps' && k !== 'ropeTheta' && (!Number.isSafeInteger(v) || v <= 0)) {
      throw new FormatError(file, `config.json: ${k} must be a positive integer, got ${v}`);
    }
  }
  if (hp.headCount % hp.headCountKv !== 0) throw new FormatError(file, `num_attention_heads ${hp.headCount} is not a multiple of num_key_value_heads ${hp.headCountKv}`);
  return hp;
}

export interface MappedTensor {
  /** GGUF name. */
  name: string;
  /** Name in the HF checkpoint. */
  source: string;
  /** Rows are permuted from HF's rotate-half layout with this many heads (Q: n_head, K: n_head_kv). */
  permuteHeads?: number;
}

const LAYER_MAP: Record<string, string> = {
  'input_layernorm.weight': 'attn_norm.weight',
  'self_attn.q_proj.weight': 'attn_q.weight',
  'self_attn.k_proj.weight': 'attn_k.weight',
  'self_attn.v_proj.weight': 'attn_v.weight',
  'self_attn.o_proj.weight': 'attn_output.weight',
  'post_attention_layernorm.weight': 'ffn_norm.weight',
  'mlp.gate_proj.weight': 'ffn_gate.weight',
  'mlp.up_proj.weight': 'ffn_up.weight',
  'mlp.down_proj.weight': 'ffn_down.weight',
};
/** Qwen2's q/k/v biases (llama.cpp's qwen2 loads `attn_q.bias` etc.; there is none on o_proj). */
const QWEN2_BIAS_MAP: Record<string, string> = {
  'self_attn.q_proj.bias': 'attn_q.bias',
  'self_attn.k_proj.bias': 'attn_k.bias',
  'self_attn.v_proj.bias': 'attn_v.bias',
};

/** HF tensor name -> GGUF tensor (null for tensors convert_hf_to_gguf drops, e.g. rotary inv_freq). */
export function mapLlamaTensorName(hfName: string, hp: LlamaHparams, file: string): MappedTensor | null {
  if (hfName === 'model.embed_tokens.weight') return { name: 'token_embd.weight', source: hfName };
  if (hfName === 'model.norm.weight') return { name: 'output_norm.weight', source: hfName };
  if (hfName === 'lm_head.weight') return { name: 'output.weight', source: hfName };
  if (hfName.endsWith('rotary_emb.inv_freq')) return null;
  const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
  if (m !== null) {
    const layer = Number(m[1]);
    const rest = m[2]!;
    const mapped = LAYER_MAP[rest] ?? (hp.ggufArch === 'qwen2' ? QWEN2_BIAS_MAP[rest] : undefined);
    if (mapped !== undefined && layer < hp.blockCount) {
      const name = `blk.${layer}.${mapped}`;
      // Only `llama` is permuted to interleaved pairs; qwen2 keeps HF's layout (NEOX rope in llama.cpp).
      if (hp.ggufArch !== 'llama') return { name, source: hfName };
      if (rest === 'self_attn.q_proj.weight') return { name, source: hfName, permuteHeads: hp.headCount };
      if (rest === 'self_attn.k_proj.weight') return { name, source: hfName, permuteHeads: hp.headCountKv };
      return { name, source: hfName };
    }
  }
  throw new UnsupportedError(`${file}: tensor ${hfName} has no GGUF name for a LLaMA model (unexpected for ${hp.architecture})`);
}

/**
 * convert_hf_to_gguf's `permute`: rows viewed as (heads, 2, headDim/2) become (heads, headDim/2, 2).
 * `src` holds `rows` complete rows of `cols` values starting at a head boundary; writes into `dst`.
 */
export function permuteQkRows(src: Float32Array, dst: Float32Array, rows: number, cols: number, headRows: number): void {
  const half = headRows / 2;
  for (let r = 0; r < rows; r++) {
    const head = Math.floor(r / headRows);
    const within = r - head * headRows;
    const i = within >> 1;
    const j = within & 1;
    const from = head * headRows + j * half + i;
    dst.set(src.subarray(from * cols, (from + 1) * cols), r * cols);
  }
}

/** gguf-py's model_weight_count_rounded_notation (min_digits 2). */
export function sizeLabel(parameters: number): string {
  let scaled: number;
  let suffix: string;
  if (parameters > 1e12) [scaled, suffix] = [parameters * 1e-12, 'T'];
  else if (parameters > 1e9) [scaled, suffix] = [parameters * 1e-9, 'B'];
  else if (parameters > 1e6) [scaled, suffix] = [parameters * 1e-6, 'M'];
  else [scaled, suffix] = [parameters * 1e-3, 'K'];
  const digits = String(Math.round(scaled)).replace(/^0+/, '').length;
  const fix = Math.max(2 - digits, 0);
  return `${scaled.toFixed(fix)}${suffix}`;
}

/** gguf-py Metadata.id_to_title on a folder name: "tiny-llama" -> "Tiny Llama". */
export function titleFromFolderName(folder: string): string {
  return folder
    .trim()
    .replace(/-/g, ' ')
    .split(/\s+/)
    .filter((w) => w.length > 0)
    .map((w) => (w === w.toLowerCase() && !/^(v\d+(?:\.\d+)*|\d.*)$/.test(w) ? w[0]!.toUpperCase() + w.slice(1) : w))
    .join(' ');
}

/**
 * The model KVs convert_hf_to_gguf writes for `llama` or `qwen2`, in its order, up to the tokenizer. Both
 * share TextModel.set_gguf_parameters; LlamaModel adds vocab_size and rope.dimension_count, Qwen2Model nothing.
 */
export function llamaModelKvs(hp: LlamaHparams, name: string, parameters: number, fileType: number, quantizationVersion: number): Array<[string, GgufValue]> {
  const a = hp.ggufArch;
  const kv: Array<[string, GgufValue]> = [
    ['general.architecture', gguf.str(a)],
    ['general.type', gguf.str('model')],
    ['general.name', gguf.str(name)],
    ['general.size_label', gguf.str(sizeLabel(parameters))],
    [`${a}.block_count`, gguf.u32(hp.blockCount)],
    [`${a}.context_length`, gguf.u32(hp.contextLength)],
    [`${a}.embedding_length`, gguf.u32(hp.embeddingLength)],
    [`${a}.feed_forward_length`, gguf.u32(hp.feedForwardLength)],
    [`${a}.attention.head_count`, gguf.u32(hp.headCount)],
    [`${a}.attention.head_count_kv`, gguf.u32(hp.headCountKv)],
    [`${a}.rope.freq_base`, gguf.f32(hp.ropeTheta)],
    [`${a}.attention.layer_norm_rms_epsilon`, gguf.f32(hp.rmsNormEps)],
  ];
  if (hp.headDimExplicit) {
    kv.push([`${a}.attention.key_length`, gguf.u32(hp.headDim)]);
    kv.push([`${a}.attention.value_length`, gguf.u32(hp.headDim)]);
  }
  kv.push(['general.file_type', gguf.u32(fileType)]);
  if (a === 'llama') {
    kv.push(['llama.vocab_size', gguf.u32(hp.vocabSize)]);
    kv.push(['llama.rope.dimension_count', gguf.u32(hp.headDim)]);
  }
  kv.push(['general.quantization_version', gguf.u32(quantizationVersion)]);
  return kv;
}

/** llama.cpp token types (llama_token_type / gguf TokenType). */
export const TOKEN_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

const GPT2_REGEX_PRE = 'gpt-2';
const LLAMA3_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_SPLIT = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Which `tokenizer.ggml.pre` llama.cpp chose for a byte-level BPE pre-tokenizer of this shape. */
export function bpePreTokenizerName(preTokenizer: unknown, file: string): string {
  if (isObject(preTokenizer) && preTokenizer.type === 'ByteLevel' && preTokenizer.use_regex !== false) return GPT2_REGEX_PRE;
  if (isObject(preTokenizer) && preTokenizer.type === 'Sequence' && Array.isArray(preTokenizer.pretokenizers)) {
    const split = preTokenizer.pretokenizers.find((p): p is Record<string, unknown> => isObject(p) && p.type === 'Split');
    const pattern = split !== undefined && isObject(split.pattern) ? split.pattern.Regex : undefined;
    if (pattern === LLAMA3_SPLIT) return 'llama-bpe';
    if (pattern === QWEN2_SPLIT) return 'qwen2';
  }
  throw new UnsupportedError(`${file}: this byte-level BPE pre-tokenizer is not one llama.cpp's converter recognises here (supported: GPT-2 ByteLevel, Llama-3 and Qwen2 split regexes)`);
}

/** convert_hf_to_gguf's does_token_look_special: added tokens that ought to be control tokens. */
export function doesTokenLookSpecial(token: string): boolean {
  return (
    ['<pad>', '<mask>', '<2mass>', '[@BOS@]'].includes(token) ||
    (token.startsWith('<|') && token.endsWith('|>')) ||
    (token.startsWith('<\uff5c') && token.endsWith('\uff5c>')) ||
    (token.startsWith('<unused') && token.endsWith('>'))
  );
}

export interface GgufTokenizer {
  kv: Array<[string, GgufValue]>;
  tokens: string[];
}

/**
 * tokenizer.json (already parsed, unknown-typed) -> the tokenizer.ggml.* KVs that convert_hf_to_gguf
 * writes for a byte-level BPE (`_set_vocab_gpt2`): tokens by id (missing ids become [PAD<id>]), token types
 * (added special tokens CONTROL, other added tokens USER_DEFINED, the rest NORMAL), merges "a b",
 * pre-tokenizer name, bos / eos / unk / pad ids from tokenizer_config.json names, then config.json's
 * <kind>_token_id for the kinds still unset (`modelConfig`).
 */
export function gpt2TokenizerKvs(tokenizerJson: unknown, tokenizerConfig: unknown, hp: LlamaHparams, file: string, modelConfig: unknown = null): GgufTokenizer {
  if (!isObject(tokenizerJson) || !isObject(tokenizerJson.model)) throw new FormatError(file, 'tokenizer.json has no "model" object');
  const model = tokenizerJson.model;
  if (model.type !== 'BPE') throw new UnsupportedError(`${file}: tokenizer model ${String(model.type)} is not supported for GGUF export (byte-level BPE only; SentencePiece models are not yet)`);
  if (!isObject(model.vocab)) throw new FormatError(file, 'tokenizer.json model.vocab is not an object');
  const pre = bpePreTokenizerName(tokenizerJson.pre_tokenizer, file);
  const byId = new Map<number, string>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new FormatError(file, `vocab entry ${JSON.stringify(token)} has a bad id`);
    byId.set(id, token);
  }
  const added = new Map<number, { content: string; special: boolean }>();
  if (Array.isArray(tokenizerJson.added_tokens)) {
    for (const t of tokenizerJson.added_tokens) {
      if (isObject(t) && typeof t.id === 'number' && typeof t.content === 'string') {
        added.set(t.id, { content: t.content, special: t.special === true });
        byId.set(t.id, t.content);
      }
    }
  }
  const tokens: string[] = [];
  const types: number[] = [];
  for (let i = 0; i < hp.vocabSize; i++) {
    const token = byId.get(i);
    if (token === undefined) {
      tokens.push(`[PAD${i}]`);
      types.push(TOKEN_TYPE.USER_DEFINED);
      continue;
    }
    const a = added.get(i);
    if (a !== undefined) {
      if (a.special || doesTokenLookSpecial(token)) {
        tokens.push(token);
        types.push(TOKEN_TYPE.CONTROL);
      } else {
        tokens.push(token.replace(/\u2581/g, ' '));
        types.push(TOKEN_TYPE.USER_DEFINED);
      }
    } else {
      tokens.push(token);
      types.push(TOKEN_TYPE.NORMAL);
    }
  }
  const merges: string[] = [];
  if (Array.isArray(model.merges)) {
    for (const m of model.merges) {
      if (typeof m === 'string') merges.push(m);
      else if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') merges.push(`${m[0]} ${m[1]}`);
      else throw new FormatError(file, 'tokenizer.json model.merges has an entry that is neither "a b" nor ["a", "b"]');
    }
  }
  const kv: Array<[string, GgufValue]> = [
    ['tokenizer.ggml.model', gguf.str('gpt2')],
    ['tokenizer.ggml.pre', gguf.str(pre)],
    ['tokenizer.ggml.tokens', gguf.strings(tokens)],
    ['tokenizer.ggml.token_type', gguf.i32s(types)],
    ['tokenizer.ggml.merges', gguf.strings(merges)],
  ];
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => {
    if (!idOf.has(t)) idOf.set(t, i);
  });
  const config = isObject(tokenizerConfig) ? tokenizerConfig : {};
  const specialName = (key: string): string | undefined => {
    const v = config[key];
    if (typeof v === 'string') return v;
    if (isObject(v) && typeof v.content === 'string') return v.content;
    return undefined;
  };
  const written = new Set<string>();
  for (const [key, ggufKey] of [
    ['bos_token', 'tokenizer.ggml.bos_token_id'],
    ['eos_token', 'tokenizer.ggml.eos_token_id'],
    ['unk_token', 'tokenizer.ggml.unknown_token_id'],
    ['sep_token', 'tokenizer.ggml.seperator_token_id'],
    ['pad_token', 'tokenizer.ggml.padding_token_id'],
  ] as const) {
    const tokenName = specialName(key);
    const id = tokenName === undefined ? undefined : idOf.get(tokenName);
    if (id !== undefined) {
      kv.push([ggufKey, gguf.u32(id)]);
      written.add(ggufKey);
    }
  }
  // SpecialVocab then fills the kinds still unset from config.json's <kind>_token_id (no vocabulary bound for
  // _set_vocab_gpt2): a folder without tokenizer_config.json still gets bos / eos.
  if (isObject(modelConfig)) {
    for (const [kind, ggufKey] of SPECIAL_TOKEN_KEYS) {
      const id = modelConfig[`${kind}_token_id`];
      if (ggufKey === null || written.has(ggufKey) || typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) continue;
      kv.push([ggufKey, gguf.u32(id)]);
      written.add(ggufKey);
    }
  }
  for (const [key, ggufKey] of [
    ['add_bos_token', 'tokenizer.ggml.add_bos_token'],
    ['add_eos_token', 'tokenizer.ggml.add_eos_token'],
  ] as const) {
    const v = config[key];
    if (typeof v === 'boolean') kv.push([ggufKey, gguf.bool(v)]);
  }
  return { kv, tokens };
}

/** Where convert_hf_to_gguf's SpecialVocab finds special tokens for a SentencePiece vocabulary. */
export interface SentencePieceSideFiles {
  /** tokenizer_config.json, tokenizer.json, added_tokens.json and config.json, each parsed (unknown) or null. */
  tokenizerConfig: unknown;
  tokenizerJson: unknown;
  addedTokens: unknown;
  config: unknown;
}

/** SpecialVocab's token kinds, in its order, with the GGUF key each is written under (GGUFWriter has no cls handler). */
const SPECIAL_TOKEN_KEYS = [
  ['bos', 'tokenizer.ggml.bos_token_id'],
  ['eos', 'tokenizer.ggml.eos_token_id'],
  ['unk', 'tokenizer.ggml.unknown_token_id'],
  ['sep', 'tokenizer.ggml.seperator_token_id'],
  ['pad', 'tokenizer.ggml.padding_token_id'],
  ['cls', null],
  ['mask', 'tokenizer.ggml.mask_token_id'],
] as const;
/** The add_<kind>_token flags GGUFWriter has a key for. */
const ADD_TOKEN_FLAGS = new Set(['bos', 'eos', 'sep']);

/**
 * A SentencePiece tokenizer.model -> the tokenizer.ggml.* KVs that convert_hf_to_gguf writes for it
 * (`_set_vocab_sentencepiece`): add_space_prefix from tokenizer_config's add_prefix_space when set,
 * model "llama", pre "default", pieces / scores / types by id (ids up to config vocab_size that the
 * model lacks become [PAD<id>] UNUSED with score -10000; added_tokens.json entries USER_DEFINED and
 * tokenizer_config added_tokens_decoder entries CONTROL or USER_DEFINED, both score -1000), then
 * SpecialVocab: special ids from tokenizer_config names matched against tokenizer.json's added tokens,
 * then config.json's <kind>_token_id, and add_<kind>_token flags from tokenizer_config.
 */
export function sentencePieceTokenizerKvs(spm: SentencePieceModel, side: SentencePieceSideFiles, hp: LlamaHparams, file: string): GgufTokenizer {
  const vocabSize = hp.vocabSize > 0 ? hp.vocabSize : spm.pieces.length;
  const tokens: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  for (let i = 0; i < vocabSize; i++) {
    tokens.push(`[PAD${i}]`);
    scores.push(-10000);
    types.push(TOKEN_TYPE.UNUSED);
  }
  spm.pieces.forEach((p, id) => {
    if (id >= vocabSize) return;
    tokens[id] = p.piece;
    scores[id] = p.score;
    // IsUnknown / IsControl / IsUnused / IsByte, else NORMAL (user-defined pieces are written NORMAL too).
    types[id] = p.type === TOKEN_TYPE.UNKNOWN || p.type === TOKEN_TYPE.CONTROL || p.type === TOKEN_TYPE.UNUSED || p.type === TOKEN_TYPE.BYTE ? p.type : TOKEN_TYPE.NORMAL;
  });
  if (isObject(side.addedTokens)) {
    for (const [content, id] of Object.entries(side.addedTokens)) {
      if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new FormatError(file, `added_tokens.json entry ${JSON.stringify(content)} has a bad id`);
      if (id >= vocabSize) continue;
      tokens[id] = content;
      scores[id] = -1000;
      types[id] = TOKEN_TYPE.USER_DEFINED;
    }
  }
  const tokenizerConfig = isObject(side.tokenizerConfig) ? side.tokenizerConfig : {};
  const decoder = tokenizerConfig.added_tokens_decoder;
  if (isObject(decoder)) {
    for (const [key, data] of Object.entries(decoder)) {
      const id = Number(key);
      if (!Number.isSafeInteger(id) || id < 0 || !isObject(data) || typeof data.content !== 'string') {
        throw new FormatError(file, `tokenizer_config.json added_tokens_decoder entry ${JSON.stringify(key)} is not {content: string}`);
      }
      if (id >= vocabSize) continue;
      let content = data.content;
      if (data.special === true || doesTokenLookSpecial(content)) types[id] = TOKEN_TYPE.CONTROL;
      else {
        content = content.replace(/\u2581/g, ' ');
        types[id] = TOKEN_TYPE.USER_DEFINED;
      }
      scores[id] = -1000;
      tokens[id] = content;
    }
  }
  const kv: Array<[string, GgufValue]> = [];
  if (typeof tokenizerConfig.add_prefix_space === 'boolean') kv.push(['tokenizer.ggml.add_space_prefix', gguf.bool(tokenizerConfig.add_prefix_space)]);
  kv.push(
    ['tokenizer.ggml.model', gguf.str('llama')],
    ['tokenizer.ggml.pre', gguf.str('default')],
    ['tokenizer.ggml.tokens', gguf.strings(tokens)],
    ['tokenizer.ggml.scores', gguf.f32s(scores)],
    ['tokenizer.ggml.token_type', gguf.i32s(types)],
  );
  // SpecialVocab: the first id found for a kind wins; ids outside the vocabulary are skipped.
  const special = new Map<string, number>();
  const setSpecial = (kind: string, id: unknown): void => {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0 || id >= vocabSize || special.has(kind)) return;
    special.set(kind, id);
  };
  const addFlags: Array<[string, boolean]> = [];
  const addedInJson = isObject(side.tokenizerJson) && Array.isArray(side.tokenizerJson.added_tokens) ? side.tokenizerJson.added_tokens.filter(isObject) : [];
  if (isObject(side.tokenizerConfig)) {
    for (const [kind] of SPECIAL_TOKEN_KEYS) {
      const add = tokenizerConfig[`add_${kind}_token`];
      if (typeof add === 'boolean' && ADD_TOKEN_FLAGS.has(kind)) addFlags.push([kind, add]);
      const entry = tokenizerConfig[`${kind}_token`];
      const content = typeof entry === 'string' ? entry : isObject(entry) && typeof entry.content === 'string' ? entry.content : undefined;
      if (content === undefined) continue;
      setSpecial(kind, addedInJson.find((a) => a.content === content)?.id);
    }
  }
  if (isObject(side.config)) {
    const textConfig = isObject(side.config.text_config) ? side.config.text_config : {};
    for (const [kind] of SPECIAL_TOKEN_KEYS) setSpecial(kind, side.config[`${kind}_token_id`] ?? textConfig[`${kind}_token_id`]);
  }
  for (const [kind, id] of special) {
    const key = SPECIAL_TOKEN_KEYS.find(([k]) => k === kind)?.[1];
    if (key !== undefined && key !== null) kv.push([key, gguf.u32(id)]);
  }
  for (const [kind, add] of addFlags) kv.push([`tokenizer.ggml.add_${kind}_token`, gguf.bool(add)]);
  return { kv, tokens };
}
