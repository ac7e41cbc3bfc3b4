/**
 * Byte-level BPE (GPT-2 style) tokenizer, loaded from a Hugging Face `tokenizer.json` or from a
 * GGUF's `tokenizer.ggml.*` keys. Written here rather than pulled from npm: the algorithm is ~200
 * lines, it must run offline inside the extension host and the worker, and the ids have to match
 * both `tokenizers` (Rust) and llama.cpp exactly, which the tests check.
 *
 * Steps: split out added (special) tokens; split the rest with the pre-tokenizer regex; map each
 * piece's UTF-8 bytes to the printable byte alphabet; apply merges by rank (lowest rank first,
 * leftmost first among equal ranks); look the resulting symbols up in the vocabulary.
 */
import { FormatError, UnsupportedError } from '../errors';
import type { MetadataValue } from '../formats/checkpoint';
import { isSentencePieceStyleHfJson, sentencePieceTokenizerFromGguf, sentencePieceTokenizerFromHfJson } from './sentencepiece';
import { parseHfMerges } from './hfMerges';

/** What the model code needs from a tokenizer (byte-level BPE here, SentencePiece in sentencepiece.ts). */
export interface Tokenizer {
  /** Where it came from, for messages. */
  readonly source: string;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  /** Token ids of `text`. Never adds BOS/EOS; callers that want them prepend `bosTokenId`. */
  encode(text: string): number[];
  decode(ids: readonly number[]): string;
}

/** The name callers have used for "a tokenizer" since byte-level BPE was the only kind. */
export type BpeTokenizer = Tokenizer;

/** GPT-2's pre-tokenizer pattern (HF ByteLevel use_regex, llama.cpp pre `gpt-2`). */
const GPT2_PATTERN = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
/** LLaMA-3 / `llama-bpe` pattern, with the case-insensitive contractions spelled out (JS has no (?i:...)). */
const LLAMA3_PATTERN =
  "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const LLAMA3_HF_REGEX = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/** Qwen2's pattern (llama.cpp pre `qwen2`): LLaMA-3's with single digits. */
const QWEN2_PATTERN = LLAMA3_PATTERN.replace('\\p{N}{1,3}', '\\p{N}');
const QWEN2_HF_REGEX = LLAMA3_HF_REGEX.replace('\\p{N}{1,3}', '\\p{N}');

/** GGUF `tokenizer.ggml.pre` values whose split pattern we implement. */
const GGUF_PRE_PATTERNS: Record<string, string> = {
  'gpt-2': GPT2_PATTERN,
  default: GPT2_PATTERN,
  'llama3': LLAMA3_PATTERN,
  'llama-bpe': LLAMA3_PATTERN,
  qwen2: QWEN2_PATTERN,
};

/** GPT-2's reversible byte -> printable character table. */
function byteAlphabet(): { encode: string[]; decode: Map<string, number> } {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const encode = new Array<string>(256);
  const set = new Set(printable);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    encode[b] = String.fromCodePoint(set.has(b) ? b : 256 + extra++);
  }
  const decode = new Map<string, number>();
  encode.forEach((c, b) => decode.set(c, b));
  return { encode, decode };
}

const BYTES = byteAlphabet();

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

export interface BpeTokenizerSpec {
  /** Where it came from, for messages. */
  source: string;
  vocab: Map<string, number>;
  /** Merge pairs in rank order, each as [left, right]. */
  merges: Array<[string, string]>;
  pattern: string;
  addedTokens: AddedToken[];
  bosTokenId: number | null;
  eosTokenId: number | null;
}

export class ByteLevelBpeTokenizer implements Tokenizer {
  readonly source: string;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  private readonly vocab: Map<string, number>;
  private readonly idToToken: string[];
  /** Rank of the merge `left + ' ' + right`; the separator never occurs inside a byte-mapped symbol. */
  private readonly mergeRank = new Map<string, number>();
  private readonly splitter: RegExp;
  private readonly added: AddedToken[];
  private readonly cache = new Map<string, number[]>();

  constructor(spec: BpeTokenizerSpec) {
    this.source = spec.source;
    this.vocab = spec.vocab;
    this.bosTokenId = spec.bosTokenId;
    this.eosTokenId = spec.eosTokenId;
    this.idToToken = [];
    for (const [token, id] of spec.vocab) this.idToToken[id] = token;
    for (const a of spec.addedTokens) this.idToToken[a.id] = a.content;
    this.vocabSize = this.idToToken.length;
    spec.merges.forEach(([l, r], rank) => {
      const key = `${l} ${r}`;
      if (!this.mergeRank.has(key)) this.mergeRank.set(key, rank);
    });
    try {
      this.splitter = new RegExp(spec.pattern, 'gu');
    } catch (e) {
      throw new UnsupportedError(`${spec.source}: pre-tokenizer pattern cannot be compiled in JavaScript (${String(e)})`);
    }
    // Longest first, so that one added token that is a prefix of another does not win.
    this.added = [...spec.addedTokens].sort((a, b) => b.content.length - a.content.length);
  }

  /** Token ids of `text`. Never adds BOS/EOS; callers that want them prepend `bosTokenId`. */
  encode(text: string): number[] {
    const ids: number[] = [];
    let start = 0;
    // Added tokens match literally anywhere and are never split further.
    while (start < text.length) {
      let best: { at: number; token: AddedToken } | null = null;
      for (const a of this.added) {
        if (a.content.length === 0) continue;
        const at = text.indexOf(a.content, start);
        if (at >= 0 && (best === null || at < best.at)) best = { at, token: a };
      }
      const end = best === null ? text.length : best.at;
      this.encodeOrdinary(text.slice(start, end), ids);
      if (best === null) break;
      ids.push(best.token.id);
      start = best.at + best.token.content.length;
    }
    return ids;
  }

  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    for (const id of ids) {
      const token = this.idToToken[id];
      if (token === undefined) throw new FormatError(this.source, `token id ${id} is outside the vocabulary`);
      if (this.added.some((a) => a.id === id)) {
        bytes.push(...new TextEncoder().encode(token));
        continue;
      }
      for (const ch of token) {
        const b = BYTES.decode.get(ch);
        if (b === undefined) throw new FormatError(this.source, `token ${id} holds a character outside the byte alphabet`);
        bytes.push(b);
      }
    }
    return new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes));
  }

  private encodeOrdinary(text: string, ids: number[]): void {
    if (text.length === 0) return;
    const encoder = new TextEncoder();
    for (const match of text.matchAll(this.splitter)) {
      const piece = match[0];
      const cached = this.cache.get(piece);
      if (cached !== undefined) {
        for (const id of cached) ids.push(id);
        continue;
      }
      let mapped = '';
      for (const b of encoder.encode(piece)) mapped += BYTES.encode[b];
      const pieceIds = this.bpe(mapped);
      if (this.cache.size < 100_000) this.cache.set(piece, pieceIds);
      for (const id of pieceIds) ids.push(id);
    }
  }

  /** Merges the symbols of one byte-mapped piece; lowest rank first, leftmost among ties. */
  private bpe(mapped: string): number[] {
    const whole = this.vocab.get(mapped);
    if (whole !== undefined && mapped.length === 1) return [whole];
    const symbols = Array.from(mapped);
    for (;;) {
      let bestRank = Infinity;
      let bestAt = -1;
      for (let i = 0; i + 1 < symbols.length; i++) {
        const rank = this.mergeRank.get(`${symbols[i]!} ${symbols[i + 1]!}`);
        if (rank !== undefined && rank < bestRank) {
          bestRank = rank;
          bestAt = i;
        }
      }
      if (bestAt < 0) break;
      const left = symbols[bestAt]!;
      const right = symbols[bestAt + 1]!;
      // Merge every occurrence of this pair, left to right (GPT-2's rule).
      const next: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
          next.push(left + right);
          i++;
        } else {
          next.push(symbols[i]!);
        }
      }
      symbols.length = 0;
      symbols.push(...next);
      if (symbols.length === 1) break;
    }
    return symbols.map((s) => {
      const id = this.vocab.get(s);
      if (id === undefined) throw new FormatError(this.source, `BPE produced symbol ${JSON.stringify(s)} that is not in the vocabulary`);
      return id;
    });
  }
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The split pattern of a tokenizer.json pre_tokenizer (ByteLevel with use_regex, or Split + ByteLevel). */
function patternFromHfPreTokenizer(pre: unknown, file: string): string {
  if (!isRecord(pre)) throw new UnsupportedError(`${file}: field 'pre_tokenizer' is missing; only byte-level BPE tokenizers are supported`);
  if (pre.type === 'ByteLevel') {
    if (pre.add_prefix_space === true) throw new UnsupportedError(`${file}: field 'pre_tokenizer.add_prefix_space' is true; not supported`);
    if (pre.use_regex === false) throw new UnsupportedError(`${file}: ByteLevel pre_tokenizer without a split regex is not supported`);
    return GPT2_PATTERN;
  }
  if (pre.type === 'Sequence' && Array.isArray(pre.pretokenizers)) {
    const parts = pre.pretokenizers as unknown[];
    const split = parts.find((p) => isRecord(p) && p.type === 'Split');
    const byteLevel = parts.find((p) => isRecord(p) && p.type === 'ByteLevel');
    if (parts.length === 2 && isRecord(split) && isRecord(byteLevel) && byteLevel.use_regex === false && isRecord(split.pattern) && typeof split.pattern.Regex === 'string') {
      const regex = split.pattern.Regex;
      if (split.behavior !== 'Isolated') throw new UnsupportedError(`${file}: pre_tokenizer Split behavior '${String(split.behavior)}' is not supported`);
      return regex === LLAMA3_HF_REGEX ? LLAMA3_PATTERN : regex === QWEN2_HF_REGEX ? QWEN2_PATTERN : regex;
    }
  }
  throw new UnsupportedError(`${file}: field 'pre_tokenizer' of type '${String(pre.type)}' is not supported (byte-level BPE only)`);
}

/** Builds a tokenizer from a parsed tokenizer.json (still unknown) and its config's special tokens. */
export function tokenizerFromHfJson(raw: unknown, file: string, special?: { bosTokenId: number | null; eosTokenId: number | null }): Tokenizer {
  if (!isRecord(raw)) throw new FormatError(file, 'tokenizer.json is not a JSON object');
  if (isSentencePieceStyleHfJson(raw)) return sentencePieceTokenizerFromHfJson(raw, file, special);
  const model = raw.model;
  if (!isRecord(model) || model.type !== 'BPE') throw new UnsupportedError(`${file}: field 'model.type' is ${JSON.stringify(isRecord(model) ? model.type : undefined)}; only BPE is supported`);
  if (raw.normalizer !== null && raw.normalizer !== undefined) throw new UnsupportedError(`${file}: field 'normalizer' is set; byte-level BPE without a normalizer is supported (SentencePiece-style tokenizers are not yet)`);
  if (model.byte_fallback === true) throw new UnsupportedError(`${file}: field 'model.byte_fallback' is true (SentencePiece-style BPE); not supported yet`);
  for (const field of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[field] !== null && model[field] !== undefined && model[field] !== '') throw new UnsupportedError(`${file}: field 'model.${field}' is not supported`);
  }
  if (!isRecord(model.vocab)) throw new FormatError(file, "field 'model.vocab' must be an object");
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new FormatError(file, `vocab entry ${JSON.stringify(token)} has id ${JSON.stringify(id)}`);
    vocab.set(token, id);
  }
  const merges = parseHfMerges(model.merges, file);
  const addedTokens: AddedToken[] = [];
  if (Array.isArray(raw.added_tokens)) {
    for (const a of raw.added_tokens as unknown[]) {
      if (isRecord(a) && typeof a.id === 'number' && typeof a.content === 'string') addedTokens.push({ id: a.id, content: a.content, special: a.special === true });
    }
  }
  return new ByteLevelBpeTokenizer({
    source: file,
    vocab,
    merges,
    pattern: patternFromHfPreTokenizer(raw.pre_tokenizer, file),
    addedTokens,
    bosTokenId: special?.bosTokenId ?? null,
    eosTokenId: special?.eosTokenId ?? null,
  });
}

/** GGUF token types (llama.cpp `llama_token_type`): 3 = control, 4 = user defined. */
const GGUF_TOKEN_CONTROL = 3;
const GGUF_TOKEN_USER_DEFINED = 4;

/** Builds a tokenizer from a GGUF's `tokenizer.ggml.*` metadata. */
export function tokenizerFromGgufMetadata(metadata: Record<string, MetadataValue>, file: string): Tokenizer {
  const model = metadata['tokenizer.ggml.model'];
  if (model === 'llama') return sentencePieceTokenizerFromGguf(metadata, file);
  if (model !== 'gpt2') throw new UnsupportedError(`${file}: key 'tokenizer.ggml.model' is ${JSON.stringify(String(model))}; supported: 'gpt2' (byte-level BPE), 'llama' (SentencePiece BPE)`);
  const pre = metadata['tokenizer.ggml.pre'] ?? 'default';
  const pattern = typeof pre === 'string' ? GGUF_PRE_PATTERNS[pre] : undefined;
  if (pattern === undefined) throw new UnsupportedError(`${file}: key 'tokenizer.ggml.pre' is ${JSON.stringify(String(pre))}; supported: ${Object.keys(GGUF_PRE_PATTERNS).join(', ')}`);
  const tokens = metadata['tokenizer.ggml.tokens'];
  if (!Array.isArray(tokens) || !tokens.every((t): t is string => typeof t === 'string')) throw new FormatError(file, "key 'tokenizer.ggml.tokens' must be an array of strings");
  const rawMerges = metadata['tokenizer.ggml.merges'];
  if (!Array.isArray(rawMerges)) throw new FormatError(file, "key 'tokenizer.ggml.merges' must be an array of strings");
  const types = metadata['tokenizer.ggml.token_type'];
  const vocab = new Map<string, number>();
  const addedTokens: AddedToken[] = [];
  tokens.forEach((t, id) => {
    const type = Array.isArray(types) ? types[id] : undefined;
    if (type === GGUF_TOKEN_CONTROL || type === GGUF_TOKEN_USER_DEFINED) addedTokens.push({ id, content: t, special: type === GGUF_TOKEN_CONTROL });
    else vocab.set(t, id);
  });
  const merges = rawMerges.map((m, i): [string, string] => {
    if (typeof m !== 'string') throw new FormatError(file, `tokenizer.ggml.merges[${i}] is not a string`);
    const at = m.indexOf(' ', 1);
    if (at < 0) throw new FormatError(file, `tokenizer.ggml.merges[${i}] ${JSON.stringify(m)} has no separator`);
    return [m.slice(0, at), m.slice(at + 1)];
  });
  const id = (key: string): number | null => {
    const v = metadata[key];
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return Number(v);
    return null;
  };
  return new ByteLevelBpeTokenizer({
    source: file,
    vocab,
    merges,
    pattern,
    addedTokens,
    bosTokenId: id('tokenizer.ggml.bos_token_id'),
    eosTokenId: id('tokenizer.ggml.eos_token_id'),
  });
}
