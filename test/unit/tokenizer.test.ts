import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { UnsupportedError } from '../../src/core/errors';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { tokenizerFromGgufMetadata, tokenizerFromHfJson } from '../../src/core/model/tokenizer';
import { fixturesDir, microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';

const reference = JSON.parse(readFileSync(join(fixturesDir, 'micro-llama-reference.json'), 'utf8')) as { probe: { text: string; ids: number[] } };
const tokenizerJsonPath = join(microLlamaDir, 'tokenizer.json');
const tokenizerJson = JSON.parse(readFileSync(tokenizerJsonPath, 'utf8')) as Record<string, unknown>;
const evalText = readFileSync(join(fixturesDir, 'eval.txt'), 'utf8');

test('tokenizer.json: probe sentence ids equal the reference (HF tokenizers)', () => {
  const tok = tokenizerFromHfJson(tokenizerJson, tokenizerJsonPath);
  assert.deepEqual(tok.encode(reference.probe.text), reference.probe.ids);
  assert.equal(tok.decode(reference.probe.ids), reference.probe.text);
});

test('GGUF tokenizer.ggml.* keys give the same ids as tokenizer.json on all of eval.txt', async () => {
  const hf = tokenizerFromHfJson(tokenizerJson, tokenizerJsonPath);
  const ck = await openCheckpoint(microLlamaF32Gguf);
  try {
    const gguf = tokenizerFromGgufMetadata(ck.metadata, ck.path);
    const a = hf.encode(evalText);
    const b = gguf.encode(evalText);
    assert.ok(a.length > 30000, `eval.txt gave only ${a.length} tokens`);
    assert.deepEqual(b, a);
    assert.equal(gguf.bosTokenId, 0);
    assert.equal(gguf.eosTokenId, 1);
  } finally {
    await ck.close();
  }
});

test('ids equal llama.cpp (node-llama-cpp) on a 20k-character chunk of eval.txt and odd text', async () => {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  const model = await llama.loadModel({ modelPath: microLlamaF32Gguf });
  try {
    const tok = tokenizerFromHfJson(tokenizerJson, tokenizerJsonPath);
    const samples = [evalText.slice(0, 20000), reference.probe.text, "  leading spaces,\ttabs\n\n\nnewlines, it's don't WE'LL 12345 3.14 émigré — naïve 😀 中文 x  "];
    for (const text of samples) {
      assert.deepEqual(tok.encode(text), Array.from(model.tokenize(text)), `mismatch on ${JSON.stringify(text.slice(0, 40))}`);
    }
  } finally {
    await model.dispose();
    await llama.dispose();
  }
});

test('decode(encode(text)) round-trips, and added tokens are matched literally', () => {
  const tok = tokenizerFromHfJson(tokenizerJson, tokenizerJsonPath);
  const text = 'Zürich 😀 déjà-vu\n\tdef f(x):\n    return x ** 2  # comment';
  assert.equal(tok.decode(tok.encode(text)), text);
  const ids = tok.encode('<|bos|>hello<|eos|>');
  assert.equal(ids[0], 0);
  assert.equal(ids[ids.length - 1], 1);
  assert.deepEqual(ids.slice(1, -1), tok.encode('hello'));
});

test('unsupported tokenizers are refused, naming the field', async () => {
  assert.throws(() => tokenizerFromHfJson({ ...tokenizerJson, normalizer: { type: 'NFC' } }, 'x/tokenizer.json'), (e: unknown) => e instanceof UnsupportedError && /'normalizer'/.test(e.message));
  const model = tokenizerJson.model as Record<string, unknown>;
  assert.throws(() => tokenizerFromHfJson({ ...tokenizerJson, model: { ...model, type: 'Unigram' } }, 'x/tokenizer.json'), (e: unknown) => e instanceof UnsupportedError && /model\.type/.test(e.message));
  assert.throws(() => tokenizerFromHfJson({ ...tokenizerJson, model: { ...model, byte_fallback: true } }, 'x/tokenizer.json'), (e: unknown) => e instanceof UnsupportedError && /byte_fallback/.test(e.message));
  const ck = await openCheckpoint(microLlamaF32Gguf);
  try {
    assert.throws(() => tokenizerFromGgufMetadata({ ...ck.metadata, 'tokenizer.ggml.pre': 'deepseek-llm' }, ck.path), (e: unknown) => e instanceof UnsupportedError && /tokenizer\.ggml\.pre/.test(e.message));
    assert.throws(() => tokenizerFromGgufMetadata({ ...ck.metadata, 'tokenizer.ggml.model': 't5' }, ck.path), (e: unknown) => e instanceof UnsupportedError && /tokenizer\.ggml\.model/.test(e.message));
  } finally {
    await ck.close();
  }
});
