/**
 * SentencePiece BPE against sentencepiece 0.2.2 itself: spm-llama-oracle.json holds its ids and pieces
 * for probe strings and 4,000 characters of eval.txt (test/fixtures/README.md says how it was made).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturesDir } from '../helpers/paths';
import { parseSentencePieceModel, PIECE_TYPE, readSentencePieceModel, SentencePieceTokenizer, type SentencePieceModel } from '../../src/core/model/sentencepiece';
import { tokenizerFromGgufMetadata, tokenizerFromHfJson } from '../../src/core/model/tokenizer';
import { loadModel } from '../../src/core/model/loadModel';
import { sentencePieceTokenizerKvs, readLlamaHparams } from '../../src/core/convert/hfLlama';
import { FormatError, UnsupportedError } from '../../src/core/errors';
import type { MetadataValue } from '../../src/core/formats/checkpoint';
import type { GgufValue } from '../../src/core/formats/gguf/reader';

const spmDir = join(fixturesDir, 'spm-llama');
const modelPath = join(spmDir, 'tokenizer.model');
interface Probe {
  text: string;
  sentencepiece: number[];
  pieces: string[];
}
const oracle = JSON.parse(readFileSync(join(fixturesDir, 'spm-llama-oracle.json'), 'utf8')) as { vocab_size: number; scores_first: number[]; probes: Probe[] };

test('tokenizer.model: pieces, scores, types and the Llama-2 trainer / normalizer settings are read', async () => {
  const model = await readSentencePieceModel(modelPath);
  assert.equal(model.pieces.length, oracle.vocab_size);
  assert.deepEqual(model.pieces.slice(0, 16).map((p) => p.score), oracle.scores_first);
  assert.deepEqual(model.pieces.slice(0, 4).map((p) => [p.piece, p.type]), [['<unk>', PIECE_TYPE.UNKNOWN], ['<s>', PIECE_TYPE.CONTROL], ['</s>', PIECE_TYPE.CONTROL], ['<0x00>', PIECE_TYPE.BYTE]]);
  assert.equal(model.pieces.filter((p) => p.type === PIECE_TYPE.BYTE).length, 256);
  assert.equal(model.modelType, 2, 'BPE');
  assert.equal(model.byteFallback, true);
  assert.equal(model.addDummyPrefix, true);
  assert.equal(model.removeExtraWhitespaces, false);
  assert.equal(model.normalizerName, 'identity');
  assert.deepEqual([model.unkId, model.bosId, model.eosId, model.padId], [0, 1, 2, -1]);
  // BPE scores fall with merge order: every normal piece after the first has a score at most its predecessor's.
  const normal = model.pieces.filter((p) => p.type === PIECE_TYPE.NORMAL);
  assert.ok(normal.length > 300 && normal.every((p, i) => i === 0 || p.score <= normal[i - 1]!.score));
});

test("ids and pieces equal sentencepiece's for every probe and the eval.txt excerpt", async () => {
  const model = await readSentencePieceModel(modelPath);
  const tokenizer = new SentencePieceTokenizer(model);
  assert.equal(oracle.probes.length, 13);
  for (const probe of oracle.probes) {
    const ids = tokenizer.encode(probe.text);
    assert.deepEqual(ids, probe.sentencepiece, `ids of ${JSON.stringify(probe.text.slice(0, 40))}`);
    assert.deepEqual(ids.map((id) => model.pieces[id]!.piece), probe.pieces, `pieces of ${JSON.stringify(probe.text.slice(0, 40))}`);
    // Decoding gives the text back, except that a literal "▁" in the input decodes as a space (as in sentencepiece).
    assert.equal(tokenizer.decode(ids), probe.text.replaceAll('\u2581', ' '));
  }
  assert.ok(oracle.probes.at(-1)!.sentencepiece.length > 1500, 'the eval excerpt is long');
});

test('a HF folder with tokenizer.model and no tokenizer.json loads with the SentencePiece tokenizer', async () => {
  const loaded = await loadModel(spmDir);
  try {
    assert.ok(loaded.tokenizer instanceof SentencePieceTokenizer);
    assert.equal(loaded.tokenizer.bosTokenId, 1);
    assert.equal(loaded.tokenizer.eosTokenId, 2);
    const probe = oracle.probes[1]!;
    assert.deepEqual(loaded.tokenizer.encode(probe.text), probe.sentencepiece);
  } finally {
    await loaded.close();
  }
});

/** GgufValue -> what the GGUF reader hands to tokenizerFromGgufMetadata. */
function metadataOf(kv: Array<[string, GgufValue]>): Record<string, MetadataValue> {
  const out: Record<string, MetadataValue> = {};
  for (const [key, value] of kv) out[key] = value.type === 'ARRAY' ? (value.values as MetadataValue[]) : (value.value as MetadataValue);
  return out;
}

test('GGUF vocabulary as convert_hf_to_gguf writes it (model llama, scores, types 1/2/3/6, bos/eos from config.json) and read back gives the same ids', async () => {
  const model = await readSentencePieceModel(modelPath);
  const config = JSON.parse(readFileSync(join(spmDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const tokenizerConfig = JSON.parse(readFileSync(join(spmDir, 'tokenizer_config.json'), 'utf8')) as unknown;
  const hp = readLlamaHparams(config, spmDir);
  const { kv, tokens } = sentencePieceTokenizerKvs(model, { tokenizerConfig, tokenizerJson: null, addedTokens: null, config }, hp, modelPath);
  // tokenizer_config.json has add_prefix_space null and no add_bos_token: neither key is written, and with
  // no tokenizer.json the special ids come from config.json (bos 1, eos 2; it names no unk id).
  assert.deepEqual(kv.map(([k]) => k), [
    'tokenizer.ggml.model',
    'tokenizer.ggml.pre',
    'tokenizer.ggml.tokens',
    'tokenizer.ggml.scores',
    'tokenizer.ggml.token_type',
    'tokenizer.ggml.bos_token_id',
    'tokenizer.ggml.eos_token_id',
  ]);
  const metadata = metadataOf(kv);
  assert.equal(metadata['tokenizer.ggml.model'], 'llama');
  assert.equal(metadata['tokenizer.ggml.pre'], 'default');
  assert.deepEqual(tokens, model.pieces.map((p) => p.piece));
  const types = metadata['tokenizer.ggml.token_type'] as number[];
  assert.deepEqual(types.slice(0, 4), [2, 3, 3, 6]);
  assert.deepEqual([...new Set(types)].sort(), [1, 2, 3, 6]);
  assert.equal(metadata['tokenizer.ggml.bos_token_id'], 1);
  assert.equal(metadata['tokenizer.ggml.eos_token_id'], 2);
  const fromGguf = tokenizerFromGgufMetadata(metadata, 'spm.gguf');
  for (const probe of oracle.probes) assert.deepEqual(fromGguf.encode(probe.text), probe.sentencepiece);
  // add_space_prefix false (as a tokenizer_config add_prefix_space false writes it) drops the dummy prefix.
  const noPrefix = sentencePieceTokenizerKvs(model, { tokenizerConfig: { add_prefix_space: false }, tokenizerJson: null, addedTokens: null, config }, hp, modelPath);
  assert.equal(noPrefix.kv[0]![0], 'tokenizer.ggml.add_space_prefix');
  const noPrefixTokenizer = tokenizerFromGgufMetadata(metadataOf(noPrefix.kv), 'spm.gguf');
  assert.equal(model.pieces[noPrefixTokenizer.encode('the')[0]!]!.piece.startsWith('\u2581'), false);
  assert.equal(model.pieces[fromGguf.encode('the')[0]!]!.piece, '\u2581the');
});

/** Minimal protobuf writer for building ModelProto variants in tests. */
function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}
function field(no: number, wire: number, payload: number[]): number[] {
  return [...varint(no * 8 + wire), ...(wire === 2 ? varint(payload.length) : []), ...payload];
}
function str(s: string): number[] {
  return [...new TextEncoder().encode(s)];
}
function piece(text: string, type: number, score = 0): number[] {
  const f = new Uint8Array(new Float32Array([score]).buffer);
  return field(1, 2, [...field(1, 2, str(text)), ...field(2, 5, [...f]), ...field(3, 0, varint(type))]);
}
function modelBytes(trainer: number[], normalizer: number[]): Uint8Array {
  const pieces = [...piece('<unk>', 2), ...piece('<s>', 3), ...piece('</s>', 3), ...piece('a', 1, -1), ...piece('b', 1, -2), ...piece('ab', 1, -0.5)];
  return new Uint8Array([...pieces, ...field(2, 2, trainer), ...field(3, 2, normalizer)]);
}
const BPE_TRAINER = field(3, 0, [2]);
const IDENTITY = [...field(1, 2, str('identity')), ...field(4, 0, [0])];

test('a hand-built model: pad_id -1 as a 10-byte varint, merges by score, unknown characters -> unk without byte fallback', () => {
  // pad_id = -1 is written by protobuf as ten bytes ff ff ff ff ff ff ff ff ff 01.
  const trainer = [...field(3, 0, [2]), ...field(43, 0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])];
  const model = parseSentencePieceModel(modelBytes(trainer, [...IDENTITY, ...field(3, 0, [0])]), 'hand.model');
  assert.equal(model.padId, -1);
  assert.equal(model.addDummyPrefix, false);
  const tokenizer = new SentencePieceTokenizer(model);
  assert.deepEqual(tokenizer.encode('abba'), [5, 4, 3]);
  assert.deepEqual(tokenizer.encode('ac'), [3, 0]);
});

test('a hand-built model: user-defined pieces are matched whole and never merged; an UNUSED merge result is split back (bpe_model.cc rev_merge)', () => {
  const pieces = [
    ...piece('<unk>', 2),
    ...piece('<s>', 3),
    ...piece('</s>', 3),
    ...piece('a', 1, -1),
    ...piece('b', 1, -2),
    ...piece('ab', 5, -0.1),
    ...piece('abb', 1, -0.2),
    ...piece('<x>', 4),
    ...piece('<', 1, -3),
    ...piece('x', 1, -4),
    ...piece('<x', 1, -0.3),
  ];
  const model = parseSentencePieceModel(new Uint8Array([...pieces, ...field(2, 2, BPE_TRAINER), ...field(3, 2, [...IDENTITY, ...field(3, 0, [0])])]), 'hand.model');
  const tokenizer = new SentencePieceTokenizer(model);
  // "ab" (UNUSED, best score) merges first; "abb" then merges on top of it; a lone "ab" is split into a, b.
  assert.deepEqual(tokenizer.encode('abb'), [6]);
  assert.deepEqual(tokenizer.encode('ab'), [3, 4]);
  // "<x>" is user-defined: one symbol, so "<x" (a better-scored piece) cannot form across it.
  assert.deepEqual(tokenizer.encode('a<x>b'), [3, 7, 4]);
  assert.deepEqual(tokenizer.encode('<xa'), [10, 3]);
});

test('bad tokenizer.model bytes are a FormatError naming the file', async () => {
  const good = readFileSync(modelPath);
  const cases: Array<[string, Uint8Array]> = [
    ['truncated', good.subarray(0, Math.floor(good.length / 2))],
    ['text', new TextEncoder().encode('{"model": {"type": "BPE"}}\n')],
    ['empty', new Uint8Array(0)],
    ['group wire type', new Uint8Array([0x0b, 0x0c])],
    ['no trainer spec', new Uint8Array(piece('<unk>', 2))],
    ['piece type 9', new Uint8Array([...piece('<unk>', 9), ...field(2, 2, BPE_TRAINER)])],
  ];
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-spm-'));
  try {
    for (const [name, bytes] of cases) {
      const path = join(dir, `${name.replaceAll(' ', '-')}.model`);
      await writeFile(path, bytes);
      await assert.rejects(readSentencePieceModel(path), (e: unknown) => {
        assert.ok(e instanceof FormatError, `${name}: ${String(e)}`);
        assert.ok(e.message.includes(path), `${name}: ${e.message}`);
        return true;
      });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('what the encoder does not implement is refused with UnsupportedError naming the field', () => {
  const refuse = (model: SentencePieceModel, fieldName: string): void => {
    assert.throws(() => new SentencePieceTokenizer(model), (e: unknown) => e instanceof UnsupportedError && e.message.includes('hand.model') && e.message.includes(fieldName));
  };
  refuse(parseSentencePieceModel(modelBytes(field(3, 0, [1]), IDENTITY), 'hand.model'), 'model_type is UNIGRAM');
  refuse(parseSentencePieceModel(modelBytes(BPE_TRAINER, [...field(1, 2, str('nmt_nfkc')), ...field(2, 2, [1, 2, 3, 4]), ...field(4, 0, [0])]), 'hand.model'), 'precompiled_charsmap');
  refuse(parseSentencePieceModel(modelBytes(BPE_TRAINER, field(1, 2, str('identity'))), 'hand.model'), 'remove_extra_whitespaces');
  refuse(parseSentencePieceModel(modelBytes([...BPE_TRAINER, ...field(24, 0, [1])], IDENTITY), 'hand.model'), 'treat_whitespace_as_suffix');
});

/**
 * A Llama tokenizer.json written from tokenizer.model the way transformers' LlamaConverter does (vocab =
 * pieces in id order, merges from SentencePieceExtractor: every split of a piece into two pieces, ordered
 * by the merged piece's score, then longer left part). DERIVED, not an oracle: no HF tokenizers output
 * is stored for this model (transformers 5.17 wrote an empty tokenizer.json), so the expectation is
 * sentencepiece's ids plus what the HF pipeline is documented to do around added tokens and Metaspace.
 */
function llamaTokenizerJson(model: SentencePieceModel, legacy: boolean): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  model.pieces.forEach((p, id) => (vocab[p.piece] = id));
  const local: Array<{ l: string; r: string; score: number }> = [];
  for (const p of model.pieces) {
    const chars = Array.from(p.piece);
    const splits: Array<{ l: string; r: string; score: number }> = [];
    for (let i = 1; i < chars.length; i++) {
      const l = chars.slice(0, i).join('');
      const r = chars.slice(i).join('');
      if (l in vocab && r in vocab) splits.push({ l, r, score: p.score });
    }
    splits.sort((a, b) => vocab[a.l]! - vocab[b.l]! || vocab[a.r]! - vocab[b.r]!);
    local.push(...splits);
  }
  // Python's sorted(..., key=(score, len(l), len(r)), reverse=True) is stable: ties keep their order.
  const merges = local
    .map((m, i) => ({ ...m, i }))
    .sort((a, b) => b.score - a.score || Array.from(b.l).length - Array.from(a.l).length || Array.from(b.r).length - Array.from(a.r).length || a.i - b.i)
    .map((m) => [m.l, m.r]);
  const special = [0, 1, 2].map((id) => ({ id, content: model.pieces[id]!.piece, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }));
  return {
    version: '1.0',
    added_tokens: special,
    normalizer: legacy ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] } : null,
    pre_tokenizer: legacy ? null : { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: false },
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, ignore_merges: false, vocab, merges },
  };
}

test('Llama-style tokenizer.json (legacy Prepend/Replace normalizer, and Metaspace prepend_scheme first) built from tokenizer.model [derived]', async () => {
  const model = await readSentencePieceModel(modelPath);
  const spm = new SentencePieceTokenizer(model);
  const special = { bosTokenId: 1, eosTokenId: 2 };
  const legacy = tokenizerFromHfJson(llamaTokenizerJson(model, true), 'legacy/tokenizer.json', special);
  const metaspace = tokenizerFromHfJson(llamaTokenizerJson(model, false), 'metaspace/tokenizer.json', special);
  assert.ok(legacy instanceof SentencePieceTokenizer && metaspace instanceof SentencePieceTokenizer);
  const specialProbe = '<s> not a special token </s>';
  for (const probe of oracle.probes) {
    const label = JSON.stringify(probe.text.slice(0, 30));
    if (probe.text === specialProbe) {
      // HF matches added tokens in the text; the legacy Prepend normalizer runs on each segment between them,
      // Metaspace "first" prepends only at offset 0.
      assert.deepEqual(legacy.encode(probe.text), [1, ...spm.encode(' not a special token '), 2]);
      assert.deepEqual(metaspace.encode(probe.text), [1, ...spm.encode('not a special token '), 2]);
      continue;
    }
    assert.deepEqual(legacy.encode(probe.text), probe.sentencepiece, `legacy ${label}`);
    // Metaspace does not prepend "▁" to text that already starts with one (a space or a literal "▁").
    const startsWithSpace = probe.text.startsWith(' ') || probe.text.startsWith('\u2581');
    const expected = !startsWithSpace ? probe.sentencepiece : probe.text.length > 1 ? spm.encode(probe.text.slice(1)) : [model.pieces.findIndex((p) => p.piece === '\u2581')];
    assert.deepEqual(metaspace.encode(probe.text), expected, `metaspace ${label}`);
  }
  // Shapes not implemented are refused, naming the field.
  const bad = llamaTokenizerJson(model, false);
  assert.throws(() => tokenizerFromHfJson({ ...bad, pre_tokenizer: { type: 'Metaspace', replacement: '\u2581', prepend_scheme: 'first', split: true } }, 'x/tokenizer.json'), (e: unknown) => e instanceof UnsupportedError && /pre_tokenizer\.split/.test(e.message));
  assert.throws(() => tokenizerFromHfJson({ ...bad, normalizer: { type: 'NFKC' } }, 'x/tokenizer.json'), (e: unknown) => e instanceof UnsupportedError && /'normalizer'/.test(e.message));
});
