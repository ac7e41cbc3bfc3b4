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
}

export class SentencePieceTokenizer implements Tokenizer {
  readonly source: string;
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
  readonly unkTokenId: number;
  readonly addDummyPrefix: boolean;
  readonly byteFallback: boolean;
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
    this.byteFallback = model.byteFallback;
    this.unkTokenId = model.unkId;
    if (model.unkId < 0 || model.pieces[model.unkId]?.type !== PIECE_TYPE.UNKNOWN) {
      throw new FormatError(model.source, `unk_id ${model.unkId} does not name an UNKNOWN piece`);
    }
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
    if (text.length === 0) return [];
    // Identity normalizer: dummy prefix, then every ' ' becomes "▁".
    const normalized = (this.addDummyPrefix ? SPACE_SYMBOL : '') + text.replaceAll(' ', SPACE_SYMBOL);
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
    const ids: number[] = [];
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
    return ids;
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
  const scores = metadata['tokenizer.ggml.scores'];
  if (!Array.isArray(scores) || scores.length !== tokens.length || !scores.every((s): s is number => typeof s === 'number')) {
    throw new FormatError(file, "key 'tokenizer.ggml.scores' must be an array of numbers, one per token");
  }
  const types = metadata['tokenizer.ggml.token_type'];
  if (!Array.isArray(types) || types.length !== tokens.length || !types.every((t): t is number => typeof t === 'number')) {
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
    const type = types[i]!;
    if (!Number.isInteger(type) || type < 1 || type > 6) throw new FormatError(file, `tokenizer.ggml.token_type[${i}] is ${type} (1..6 expected)`);
    return { piece, score: scores[i]!, type };
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
