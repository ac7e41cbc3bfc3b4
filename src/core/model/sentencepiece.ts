/**
 * SentencePiece BPE tokenizers: the `tokenizer.model` reader (protobuf ModelProto) and the encoder of
 * sentencepiece's bpe_model.cc (the same algorithm as llama.cpp's llm_tokenizer_spm), also built from a
 * GGUF's `tokenizer.ggml.model = "llama"` keys.
 *
 * Encoding: normalize (identity rules only: dummy-prefix "▁", spaces -> "▁"), split into characters
 * (user-defined pieces stay whole and never merge), then repeatedly merge the adjacent pair whose
 * concatenation is a piece with the highest score, leftmost on ties; what is left that is not a piece
 * becomes its UTF-8 bytes as <0xXX> pieces (byte_fallback) or the unknown id.
 */
import { FormatError, UnsupportedError } from '../errors';
import type { MetadataValue } from '../formats/checkpoint';
import { readBytes, withFileSource } from '../io/byteSource';
import type { Tokenizer } from './tokenizer';
import { parseHfMerges } from './hfMerges';

/** sentencepiece's ModelProto.SentencePiece.Type (the same numbers as llama.cpp's token types). */
export const PIECE_TYPE = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** TrainerSpec.ModelType. */
const MODEL_TYPE_NAMES: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };
const MODEL_TYPE_BPE = 2;

export interface SentencePiece {
  piece: string;
  score: number;
  type: number;
}

export interface SentencePieceModel {
  /** Where it came from, for messages. */
  source: string;
  pieces: SentencePiece[];
  modelType: number;
  byteFallback: boolean;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
  treatWhitespaceAsSuffix: boolean;
  normalizerName: string;
  /** Length of normalizer_spec.precompiled_charsmap: non-empty means normalization rules we do not run. */
  charsmapBytes: number;
  unkId: number;
  bosId: number;
  eosId: number;
  padId: number;
}

/** A model file is a few MB at most (Llama-2: 0.5 MB, 256k-piece models: ~5 MB). */
const MAX_MODEL_BYTES = 64 * 1024 * 1024;

/**
 * Protobuf wire-format reader for just the ModelProto fields we use. Hand-written rather than a
 * protobuf dependency: ~100 lines, no code generation, and every field it reads is validated here.
 */
class ProtoReader {
  private pos: number;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly file: string,
    start = 0,
    private readonly end = bytes.length,
  ) {
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  private fail(defect: string): never {
    throw new FormatError(this.file, `not a SentencePiece model: ${defect}`, `byte ${this.pos}`);
  }

  /** Unsigned varint as a bigint (int32 fields such as pad_id = -1 arrive as 10-byte varints). */
  varintBig(): bigint {
    let value = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) this.fail('varint runs past the end of its message');
      const b = this.bytes[this.pos++]!;
      value |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return value;
    }
    return this.fail('varint longer than 10 bytes');
  }

  /** Unsigned varint that must fit a safe integer (tags, lengths, enums). */
  varint(): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) this.fail('varint runs past the end of its message');
      const b = this.bytes[this.pos++]!;
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return value;
      scale *= 128;
    }
    return this.fail('varint too large for a length or tag');
  }

  int32(): number {
    return Number(BigInt.asIntN(32, this.varintBig()));
  }

  bool(): boolean {
    return this.varintBig() !== 0n;
  }

  float(): number {
    if (this.pos + 4 > this.end) this.fail('fixed32 runs past the end of its message');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  /** A length-delimited field's [start, end). */
  span(): [number, number] {
    const length = this.varint();
    const start = this.pos;
    if (start + length > this.end) this.fail(`length-delimited field of ${length} bytes runs past the end of its message`);
    this.pos = start + length;
    return [start, start + length];
  }

  string(): string {
    const [s, e] = this.span();
    return new TextDecoder('utf-8', { fatal: false }).decode(this.bytes.subarray(s, e));
  }

  sub(): ProtoReader {
    const [s, e] = this.span();
    return new ProtoReader(this.bytes, this.file, s, e);
  }

  tag(): { field: number; wire: number } {
    const key = this.varint();
    const field = Math.floor(key / 8);
    if (field === 0) this.fail('field number 0');
    return { field, wire: key % 8 };
  }

  skip(wire: number): void {
    if (wire === 0) this.varintBig();
    else if (wire === 1) this.advance(8);
    else if (wire === 2) this.span();
    else if (wire === 5) this.advance(4);
    else this.fail(`wire type ${wire} (groups are not used by ModelProto)`);
  }

  expect(wire: number, expected: number, field: string): void {
    if (wire !== expected) this.fail(`field ${field} has wire type ${wire}, expected ${expected}`);
  }

  private advance(n: number): void {
    if (this.pos + n > this.end) this.fail('fixed-size field runs past the end of its message');
    this.pos += n;
  }
}

/** Parses ModelProto bytes (sentencepiece_model.proto): pieces, trainer_spec, normalizer_spec. */
export function parseSentencePieceModel(bytes: Uint8Array, file: string): SentencePieceModel {
  const model: SentencePieceModel = {
    source: file,
    pieces: [],
    // proto2 defaults from sentencepiece_model.proto
    modelType: 1,
    byteFallback: false,
    addDummyPrefix: true,
    removeExtraWhitespaces: true,
    escapeWhitespaces: true,
    treatWhitespaceAsSuffix: false,
    normalizerName: '',
    charsmapBytes: 0,
    unkId: 0,
    bosId: 1,
    eosId: 2,
    padId: -1,
  };
  let sawTrainerSpec = false;
  const r = new ProtoReader(bytes, file);
  while (!r.done) {
    const { field, wire } = r.tag();
    if (field === 1) {
      r.expect(wire, 2, 'pieces');
      const p = r.sub();
      const piece: SentencePiece = { piece: '', score: 0, type: PIECE_TYPE.NORMAL };
      let sawPiece = false;
      while (!p.done) {
        const t = p.tag();
        if (t.field === 1) {
          p.expect(t.wire, 2, 'pieces.piece');
          piece.piece = p.string();
          sawPiece = true;
        } else if (t.field === 2) {
          p.expect(t.wire, 5, 'pieces.score');
          piece.score = p.float();
        } else if (t.field === 3) {
          p.expect(t.wire, 0, 'pieces.type');
          piece.type = p.varint();
          if (piece.type < 1 || piece.type > 6) throw new FormatError(file, `piece ${model.pieces.length} has type ${piece.type} (1..6 expected)`);
        } else p.skip(t.wire);
      }
      if (!sawPiece) throw new FormatError(file, `piece ${model.pieces.length} has no text`);
      model.pieces.push(piece);
    } else if (field === 2) {
      r.expect(wire, 2, 'trainer_spec');
      sawTrainerSpec = true;
      const t = r.sub();
      while (!t.done) {
        const f = t.tag();
        if (f.field === 3) model.modelType = (t.expect(f.wire, 0, 'trainer_spec.model_type'), t.varint());
        else if (f.field === 24) model.treatWhitespaceAsSuffix = (t.expect(f.wire, 0, 'trainer_spec.treat_whitespace_as_suffix'), t.bool());
        else if (f.field === 35) model.byteFallback = (t.expect(f.wire, 0, 'trainer_spec.byte_fallback'), t.bool());
        else if (f.field === 40) model.unkId = (t.expect(f.wire, 0, 'trainer_spec.unk_id'), t.int32());
        else if (f.field === 41) model.bosId = (t.expect(f.wire, 0, 'trainer_spec.bos_id'), t.int32());
        else if (f.field === 42) model.eosId = (t.expect(f.wire, 0, 'trainer_spec.eos_id'), t.int32());
        else if (f.field === 43) model.padId = (t.expect(f.wire, 0, 'trainer_spec.pad_id'), t.int32());
        else t.skip(f.wire);
      }
    } else if (field === 3) {
      r.expect(wire, 2, 'normalizer_spec');
      const n = r.sub();
      while (!n.done) {
        const f = n.tag();
        if (f.field === 1) model.normalizerName = (n.expect(f.wire, 2, 'normalizer_spec.name'), n.string());
        else if (f.field === 2) {
          n.expect(f.wire, 2, 'normalizer_spec.precompiled_charsmap');
          const [s, e] = n.span();
          model.charsmapBytes = e - s;
        } else if (f.field === 3) model.addDummyPrefix = (n.expect(f.wire, 0, 'normalizer_spec.add_dummy_prefix'), n.bool());
        else if (f.field === 4) model.removeExtraWhitespaces = (n.expect(f.wire, 0, 'normalizer_spec.remove_extra_whitespaces'), n.bool());
        else if (f.field === 5) model.escapeWhitespaces = (n.expect(f.wire, 0, 'normalizer_spec.escape_whitespaces'), n.bool());
        else n.skip(f.wire);
      }
    } else r.skip(wire);
  }
  if (model.pieces.length === 0) throw new FormatError(file, 'not a SentencePiece model: no pieces');
  if (!sawTrainerSpec) throw new FormatError(file, 'not a SentencePiece model: no trainer_spec');
  for (const [name, id] of [['unk_id', model.unkId], ['bos_id', model.bosId], ['eos_id', model.eosId], ['pad_id', model.padId]] as const) {
    if (id < -1 || id >= model.pieces.length) throw new FormatError(file, `trainer_spec.${name} = ${id} is outside the ${model.pieces.length} pieces`);
  }
  return model;
}

/** Reads and parses a tokenizer.model file (small; read whole through a ByteSource). */
export async function readSentencePieceModel(path: string): Promise<SentencePieceModel> {
  return withFileSource(path, async (source) => {
    if (source.size > MAX_MODEL_BYTES) throw new FormatError(path, `${source.size} bytes is too large for a SentencePiece model`);
    return parseSentencePieceModel(await readBytes(source, 0, source.size), path);
  });
}

/** Refuses what the encoder below does not implement, naming the field. */
function checkSupported(model: SentencePieceModel): void {
  const file = model.source;
  if (model.modelType !== MODEL_TYPE_BPE) {
    throw new UnsupportedError(`${file}: trainer_spec.model_type is ${MODEL_TYPE_NAMES[model.modelType] ?? String(model.modelType)}; only SentencePiece BPE models are supported`);
  }
  if (model.charsmapBytes > 0) {
    throw new UnsupportedError(`${file}: normalizer_spec.precompiled_charsmap is set (normalizer '${model.normalizerName}'); only the identity normalizer is supported`);
  }
  if (model.removeExtraWhitespaces) throw new UnsupportedError(`${file}: normalizer_spec.remove_extra_whitespaces is true; not supported (Llama-style models set it false)`);
  if (!model.escapeWhitespaces) throw new UnsupportedError(`${file}: normalizer_spec.escape_whitespaces is false; not supported`);
  if (model.treatWhitespaceAsSuffix) throw new UnsupportedError(`${file}: trainer_spec.treat_whitespace_as_suffix is true; not supported`);
}

const SPACE_SYMBOL = '\u2581';

interface Symbol {
  start: number;
  end: number;
  prev: number;
  next: number;
  /** User-defined piece: never merged. */
  frozen: boolean;
}

interface PairCandidate {
  left: number;
  right: number;
  score: number;
  length: number;
}

/** Max-heap on score, then the leftmost pair (sentencepiece's SymbolPairComparator). */
class PairQueue {
  private readonly items: PairCandidate[] = [];

  get size(): number {
    return this.items.length;
  }

  private before(a: PairCandidate, b: PairCandidate): boolean {
    return a.score !== b.score ? a.score > b.score : a.left < b.left;
  }

  push(item: PairCandidate): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }

  pop(): PairCandidate | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (top === undefined || last === undefined || items.length === 0) return top;
    items[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < items.length && this.before(items[l]!, items[best]!)) best = l;
      if (r < items.length && this.before(items[r]!, items[best]!)) best = r;
      if (best === i) break;
      [items[i], items[best]] = [items[best]!, items[i]!];
      i = best;
    }
    return top;
  }
}

export interface SentencePieceTokenizerOptions {
  bosTokenId?: number | null;
  eosTokenId?: number | null;
  /**
   * Hugging Face BPE merges (tokenizer.json) in rank order: when given, a pair merges only if it is one of
   * these, lowest rank first (leftmost among equal ranks), instead of by the merged piece's score.
   */
  merges?: Array<[string, string]>;
  /** Tokens matched literally in the text before normalization (tokenizer.json added_tokens). */
  addedTokens?: Array<{ id: number; content: string }>;
  /**
   * Where "▁" is prepended: 'every-segment' (sentencepiece's dummy prefix, HF's Prepend normalizer: each
   * text segment between added tokens), 'first-unless-space' (HF Metaspace prepend_scheme first: the
   * segment at offset 0 only, and not when it already starts with "▁"), 'every-unless-space' (Metaspace
   * always), 'none'. Default from the model.
   */
  spacePrefix?: SpacePrefix;
}

export type SpacePrefix = 'every-segment' | 'every-unless-space' | 'first-unless-space' | 'none';

export class SentencePieceTokenizer implements Tokenizer {
  readonly source: string;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly unkTokenId: number;
  readonly addDummyPrefix: boolean;
  readonly spacePrefix: SpacePrefix;
  readonly byteFallback: boolean;
  /** Merge ranks keyed `left \u0001 right` (HF tokenizer.json), or null for sentencepiece's score order. */
  private readonly mergeRank: Map<string, number> | null;
  private readonly added: Array<{ id: number; content: string }>;
  private readonly pieces: SentencePiece[];
  /** Pieces that merges may produce (sentencepiece's pieces_: normal, user-defined, unused). */
  private readonly mergeable = new Map<string, number>();
  private readonly userDefined: string[];
  private readonly byteIds: Array<number | undefined>;

  constructor(model: SentencePieceModel, options: SentencePieceTokenizerOptions = {}) {
    checkSupported(model);
    this.source = model.source;
    this.pieces = model.pieces;
    this.vocabSize = model.pieces.length;
    this.addDummyPrefix = model.addDummyPrefix;
    this.spacePrefix = options.spacePrefix ?? (model.addDummyPrefix ? 'every-segment' : 'none');
    this.mergeRank = null;
    if (options.merges !== undefined) {
      const ranks = new Map<string, number>();
      options.merges.forEach(([l, r], rank) => {
        const key = `${l}\u0001${r}`;
        if (!ranks.has(key)) ranks.set(key, rank);
      });
      this.mergeRank = ranks;
    }
    // Longest first, so that an added token that is a prefix of another does not win.
    this.added = [...(options.addedTokens ?? [])].filter((a) => a.content.length > 0).sort((a, b) => b.content.length - a.content.length);
    this.byteFallback = model.byteFallback;
    this.unkTokenId = model.unkId;
    if (model.unkId < 0 || model.unkId >= model.pieces.length) throw new FormatError(model.source, `unk_id ${model.unkId} is outside the ${model.pieces.length} pieces`);
    const orNull = (id: number): number | null => (id >= 0 ? id : null);
    this.bosTokenId = options.bosTokenId !== undefined ? options.bosTokenId : orNull(model.bosId);
    this.eosTokenId = options.eosTokenId !== undefined ? options.eosTokenId : orNull(model.eosId);
    const userDefined: string[] = [];
    this.byteIds = new Array<number | undefined>(256);
    model.pieces.forEach((p, id) => {
      if (p.type === PIECE_TYPE.NORMAL || p.type === PIECE_TYPE.USER_DEFINED || p.type === PIECE_TYPE.UNUSED) {
        if (!this.mergeable.has(p.piece)) this.mergeable.set(p.piece, id);
      }
      if (p.type === PIECE_TYPE.USER_DEFINED && p.piece.length > 0) userDefined.push(p.piece);
      if (p.type === PIECE_TYPE.BYTE) {
        const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(p.piece);
        if (m === null) throw new FormatError(model.source, `byte piece ${id} is ${JSON.stringify(p.piece)}, not <0xXX>`);
        this.byteIds[parseInt(m[1]!, 16)] ??= id;
      }
    });
    // Longest first: sentencepiece's prefix matcher takes the longest user-defined piece.
    this.userDefined = userDefined.sort((a, b) => b.length - a.length);
  }

  /** Token ids of `text` as sentencepiece's encode gives them (no BOS/EOS). */
  encode(text: string): number[] {
    const ids: number[] = [];
    let start = 0;
    // Added tokens (tokenizer.json only) match literally anywhere; the text between them is encoded apart.
    while (start < text.length) {
      let best: { at: number; id: number; length: number } | null = null;
      for (const a of this.added) {
        const at = text.indexOf(a.content, start);
        if (at >= 0 && (best === null || at < best.at)) best = { at, id: a.id, length: a.content.length };
      }
      const end = best === null ? text.length : best.at;
      if (end > start) this.encodeSegment(text.slice(start, end), start === 0, ids);
      if (best === null) break;
      ids.push(best.id);
      start = best.at + best.length;
    }
    return ids;
  }

  private encodeSegment(text: string, atStart: boolean, ids: number[]): void {
    // Identity normalizer: every ' ' becomes "▁", then the dummy prefix.
    const escaped = text.replaceAll(' ', SPACE_SYMBOL);
    const prefix =
      this.spacePrefix === 'every-segment' ||
      (this.spacePrefix === 'every-unless-space' && !escaped.startsWith(SPACE_SYMBOL)) ||
      (this.spacePrefix === 'first-unless-space' && atStart && !escaped.startsWith(SPACE_SYMBOL));
    const normalized = (prefix ? SPACE_SYMBOL : '') + escaped;
    const symbols = this.splitCharacters(normalized);
    const queue = new PairQueue();
    /** Pieces of type UNUSED that merges produced: split back into their two halves at the end. */
    const reverseMerge = new Map<string, [string, string]>();
    const slice = (s: Symbol): string => normalized.slice(s.start, s.end);
    const consider = (left: number, right: number): void => {
      if (left < 0 || right < 0) return;
      const l = symbols[left]!;
      const r = symbols[right]!;
      if (l.frozen || r.frozen) return;
      const piece = normalized.slice(l.start, r.end);
      const id = this.mergeable.get(piece);
      if (id === undefined) return;
      const p = this.pieces[id]!;
      if (this.mergeRank !== null) {
        // HF BPE: only listed merges, lowest rank first (a higher score pops first).
        const rank = this.mergeRank.get(`${slice(l)}\u0001${slice(r)}`);
        if (rank !== undefined) queue.push({ left, right, score: -rank, length: r.end - l.start });
        return;
      }
      queue.push({ left, right, score: p.score, length: r.end - l.start });
      if (p.type === PIECE_TYPE.UNUSED) reverseMerge.set(piece, [slice(l), slice(r)]);
    };
    for (let i = 1; i < symbols.length; i++) consider(i - 1, i);
    while (queue.size > 0) {
      const top = queue.pop()!;
      const l = symbols[top.left]!;
      const r = symbols[top.right]!;
      // Stale candidate: one side was merged away since it was queued.
      if (l.end === l.start || r.end === r.start || l.next !== top.right || r.end - l.start !== top.length) continue;
      l.end = r.end;
      r.start = r.end;
      l.next = r.next;
      if (r.next >= 0) symbols[r.next]!.prev = top.left;
      consider(l.prev, top.left);
      consider(top.left, l.next);
    }
    const emit = (piece: string): void => {
      const id = this.mergeable.get(piece);
      if (id !== undefined && this.pieces[id]!.type !== PIECE_TYPE.UNUSED) {
        ids.push(id);
        return;
      }
      const halves = reverseMerge.get(piece);
      if (halves !== undefined) {
        emit(halves[0]);
        emit(halves[1]);
        return;
      }
      if (!this.byteFallback) {
        ids.push(this.unkTokenId);
        return;
      }
      for (const b of new TextEncoder().encode(piece)) ids.push(this.byteIds[b] ?? this.unkTokenId);
    };
    for (let i = 0; i >= 0 && i < symbols.length; i = symbols[i]!.next) emit(slice(symbols[i]!));
  }

  /** Characters (code points), except that user-defined pieces are matched whole. */
  private splitCharacters(text: string): Symbol[] {
    const symbols: Symbol[] = [];
    let at = 0;
    while (at < text.length) {
      let end = -1;
      let frozen = false;
      for (const u of this.userDefined) {
        if (text.startsWith(u, at)) {
          end = at + u.length;
          frozen = true;
          break;
        }
      }
      if (end < 0) end = at + (text.codePointAt(at)! > 0xffff ? 2 : 1);
      const index = symbols.length;
      symbols.push({ start: at, end, prev: index - 1, next: end < text.length ? index + 1 : -1, frozen });
      at = end;
    }
    return symbols;
  }

  /** Text of `ids`: byte pieces as bytes, "▁" as spaces, the dummy prefix dropped, control pieces empty. */
  decode(ids: readonly number[]): string {
    const bytes: number[] = [];
    const encoder = new TextEncoder();
    for (const id of ids) {
      const p = this.pieces[id];
      if (p === undefined) throw new FormatError(this.source, `token id ${id} is outside the vocabulary`);
      if (p.type === PIECE_TYPE.CONTROL) continue;
      if (p.type === PIECE_TYPE.BYTE) {
        bytes.push(parseInt(p.piece.slice(3, 5), 16));
        continue;
      }
      for (const b of encoder.encode(p.piece.replaceAll(SPACE_SYMBOL, ' '))) bytes.push(b);
    }
    const text = new TextDecoder('utf-8', { fatal: false }).decode(new Uint8Array(bytes));
    return this.addDummyPrefix && text.startsWith(' ') ? text.slice(1) : text;
  }
}

/**
 * The tokenizer of a GGUF written with `tokenizer.ggml.model = "llama"` (llama.cpp's SPM vocabulary):
 * tokens, scores and token types as convert_hf_to_gguf's _create_vocab_sentencepiece writes them.
 * llama.cpp always falls back to byte pieces and normalizes with the identity rules.
 */
export function sentencePieceTokenizerFromGguf(metadata: Record<string, MetadataValue>, file: string): SentencePieceTokenizer {
  const tokens = metadata['tokenizer.ggml.tokens'];
  if (!Array.isArray(tokens) || !tokens.every((t): t is string => typeof t === 'string')) throw new FormatError(file, "key 'tokenizer.ggml.tokens' must be an array of strings");
  // llama.cpp reads scores and token types only when present (score 0, NORMAL otherwise).
  const scores = metadata['tokenizer.ggml.scores'];
  if (scores !== undefined && (!Array.isArray(scores) || scores.length !== tokens.length || !scores.every((s): s is number => typeof s === 'number'))) {
    throw new FormatError(file, "key 'tokenizer.ggml.scores' must be an array of numbers, one per token");
  }
  const types = metadata['tokenizer.ggml.token_type'];
  if (types !== undefined && (!Array.isArray(types) || types.length !== tokens.length || !types.every((t): t is number => typeof t === 'number'))) {
    throw new FormatError(file, "key 'tokenizer.ggml.token_type' must be an array of integers, one per token");
  }
  const id = (key: string, fallback: number | null): number | null => {
    const v = metadata[key];
    if (typeof v === 'number') return v;
    if (typeof v === 'bigint') return Number(v);
    return fallback;
  };
  const unk = id('tokenizer.ggml.unknown_token_id', 0) ?? 0;
  const addSpacePrefix = metadata['tokenizer.ggml.add_space_prefix'];
  const pieces = tokens.map((piece, i): SentencePiece => {
    const type = types === undefined ? PIECE_TYPE.NORMAL : types[i]!;
    if (!Number.isInteger(type) || type < 1 || type > 6) throw new FormatError(file, `tokenizer.ggml.token_type[${i}] is ${type} (1..6 expected)`);
    return { piece, score: scores === undefined ? 0 : scores[i]!, type };
  });
  // llama.cpp defaults for the SPM vocabulary: unk 0, bos 1, eos 2, add_space_prefix true.
  const model: SentencePieceModel = {
    source: file,
    pieces,
    modelType: MODEL_TYPE_BPE,
    byteFallback: true,
    addDummyPrefix: typeof addSpacePrefix === 'boolean' ? addSpacePrefix : true,
    removeExtraWhitespaces: false,
    escapeWhitespaces: true,
    treatWhitespaceAsSuffix: false,
    normalizerName: 'identity',
    charsmapBytes: 0,
    unkId: unk,
    bosId: -1,
    eosId: -1,
    padId: -1,
  };
  return new SentencePieceTokenizer(model, { bosTokenId: id('tokenizer.ggml.bos_token_id', 1), eosTokenId: id('tokenizer.ggml.eos_token_id', 2) });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Whether a tokenizer.json is a SentencePiece-style (Llama) BPE: Metaspace pre-tokenizer or Prepend/Replace "▁" normalizer. */
export function isSentencePieceStyleHfJson(raw: Record<string, unknown>): boolean {
  const pre = raw.pre_tokenizer;
  if (isRecord(pre) && pre.type === 'Metaspace') return true;
  const normalizer = raw.normalizer;
  const parts = isRecord(normalizer) ? (normalizer.type === 'Sequence' && Array.isArray(normalizer.normalizers) ? (normalizer.normalizers as unknown[]) : [normalizer]) : [];
  return parts.some((n) => isRecord(n) && (n.type === 'Prepend' || (n.type === 'Replace' && n.content === SPACE_SYMBOL)));
}

/**
 * A Llama-style tokenizer.json (model BPE with merges, usually byte_fallback; spaces to "▁" by a Replace
 * normalizer or the Metaspace pre-tokenizer; "▁" prefix by a Prepend normalizer or Metaspace's
 * prepend_scheme) as the SentencePiece encoder with HF's merge-rank order. Refuses other shapes naming the field.
 */
export function sentencePieceTokenizerFromHfJson(raw: Record<string, unknown>, file: string, special?: { bosTokenId: number | null; eosTokenId: number | null }): SentencePieceTokenizer {
  const model = raw.model;
  if (!isRecord(model) || model.type !== 'BPE') throw new UnsupportedError(`${file}: field 'model.type' is ${JSON.stringify(isRecord(model) ? model.type : undefined)}; only BPE is supported`);
  if (model.ignore_merges === true) throw new UnsupportedError(`${file}: field 'model.ignore_merges' is true; not supported for SentencePiece-style BPE`);
  if (model.dropout !== null && model.dropout !== undefined) throw new UnsupportedError(`${file}: field 'model.dropout' is set; BPE dropout is not supported`);
  for (const f of ['continuing_subword_prefix', 'end_of_word_suffix'] as const) {
    if (model[f] !== null && model[f] !== undefined && model[f] !== '') throw new UnsupportedError(`${file}: field 'model.${f}' is not supported`);
  }
  // Normalizer: null, or Prepend("▁") and/or Replace(" " -> "▁"), alone or in a Sequence.
  let prepend = false;
  let replacesSpaces = false;
  const normalizer = raw.normalizer;
  if (normalizer !== null && normalizer !== undefined) {
    const parts = isRecord(normalizer) && normalizer.type === 'Sequence' && Array.isArray(normalizer.normalizers) ? (normalizer.normalizers as unknown[]) : [normalizer];
    for (const n of parts) {
      if (isRecord(n) && n.type === 'Prepend' && n.prepend === SPACE_SYMBOL) prepend = true;
      else if (isRecord(n) && n.type === 'Replace' && isRecord(n.pattern) && n.pattern.String === ' ' && n.content === SPACE_SYMBOL) replacesSpaces = true;
      else throw new UnsupportedError(`${file}: field 'normalizer' has a ${JSON.stringify(isRecord(n) ? n.type : n)} step; SentencePiece-style tokenizers support only Prepend("▁") and Replace(" ", "▁")`);
    }
  }
  let spacePrefix: SpacePrefix = prepend ? 'every-segment' : 'none';
  const pre = raw.pre_tokenizer;
  if (pre !== null && pre !== undefined) {
    if (!isRecord(pre) || pre.type !== 'Metaspace') throw new UnsupportedError(`${file}: field 'pre_tokenizer' of type ${JSON.stringify(isRecord(pre) ? pre.type : pre)} is not supported with a SentencePiece-style BPE (Metaspace or none)`);
    if (pre.replacement !== undefined && pre.replacement !== SPACE_SYMBOL) throw new UnsupportedError(`${file}: field 'pre_tokenizer.replacement' is ${JSON.stringify(pre.replacement)}; only "▁" is supported`);
    if (pre.split === true) throw new UnsupportedError(`${file}: field 'pre_tokenizer.split' is true; only Metaspace without splitting (as Llama's converter writes it) is supported`);
    replacesSpaces = true;
    const scheme = pre.prepend_scheme ?? (pre.add_prefix_space === false ? 'never' : 'always');
    if (scheme === 'first') spacePrefix = prepend ? 'every-segment' : 'first-unless-space';
    else if (scheme === 'always') spacePrefix = prepend ? 'every-segment' : 'every-unless-space';
    else if (scheme !== 'never') throw new UnsupportedError(`${file}: field 'pre_tokenizer.prepend_scheme' is ${JSON.stringify(scheme)}; supported: first, always, never`);
  }
  if (!replacesSpaces) throw new UnsupportedError(`${file}: neither the normalizer nor the pre-tokenizer turns spaces into "▁"; not a SentencePiece-style tokenizer this version supports`);
  if (!isRecord(model.vocab)) throw new FormatError(file, "field 'model.vocab' must be an object");
  const byteFallback = model.byte_fallback === true;
  const pieces: SentencePiece[] = [];
  for (const [piece, id] of Object.entries(model.vocab)) {
    if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw new FormatError(file, `vocab entry ${JSON.stringify(piece)} has id ${JSON.stringify(id)}`);
    const type = byteFallback && /^<0x[0-9A-F]{2}>$/.test(piece) ? PIECE_TYPE.BYTE : PIECE_TYPE.NORMAL;
    pieces[id] = { piece, score: 0, type };
  }
  const addedTokens: Array<{ id: number; content: string }> = [];
  if (Array.isArray(raw.added_tokens)) {
    for (const a of raw.added_tokens as unknown[]) {
      if (!isRecord(a) || typeof a.id !== 'number' || !Number.isSafeInteger(a.id) || a.id < 0 || typeof a.content !== 'string') throw new FormatError(file, "an entry of 'added_tokens' is not {id, content}");
      addedTokens.push({ id: a.id, content: a.content });
      pieces[a.id] = { piece: a.content, score: 0, type: a.special === true ? PIECE_TYPE.CONTROL : PIECE_TYPE.USER_DEFINED };
    }
  }
  for (let i = 0; i < pieces.length; i++) if (pieces[i] === undefined) throw new FormatError(file, `no vocab entry or added token has id ${i}`);
  let unkId = 0;
  if (typeof model.unk_token === 'string') {
    const id = pieces.findIndex((p) => p.piece === model.unk_token);
    if (id < 0) throw new FormatError(file, `model.unk_token ${JSON.stringify(model.unk_token)} is not in the vocabulary`);
    pieces[id] = { ...pieces[id]!, type: PIECE_TYPE.UNKNOWN };
    unkId = id;
  }
  const merges = parseHfMerges(model.merges, file);
  const spm: SentencePieceModel = {
    source: file,
    pieces,
    modelType: MODEL_TYPE_BPE,
    byteFallback,
    addDummyPrefix: spacePrefix !== 'none',
    removeExtraWhitespaces: false,
    escapeWhitespaces: true,
    treatWhitespaceAsSuffix: false,
    normalizerName: 'identity',
    charsmapBytes: 0,
    unkId,
    bosId: -1,
    eosId: -1,
    padId: -1,
  };
  return new SentencePieceTokenizer(spm, { bosTokenId: special?.bosTokenId ?? null, eosTokenId: special?.eosTokenId ?? null, merges, addedTokens, spacePrefix });
}
