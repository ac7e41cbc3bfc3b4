import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixturesDir } from '../helpers/paths';
import { dequantizeGgml, ggmlByteSize, GGML_CODEC_TYPES, quantizeGgml } from '../../src/core/quant/ggml/index';
import { makeEdgeCaseVectors, VECTOR_LENGTH } from '../fixtures/oracles/syntheticValues';

const vectorsDir = join(fixturesDir, 'oracles', 'ggml-vectors');

function readInput(): Float32Array {
  const bytes = readFileSync(join(vectorsDir, 'input.f32'));
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Float32Array(copy.buffer);
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

test('the committed input equals the deterministic generator', () => {
  const generated = makeEdgeCaseVectors();
  const stored = readInput();
  assert.equal(stored.length, VECTOR_LENGTH);
  assert.deepEqual(new Uint8Array(generated.buffer), new Uint8Array(stored.buffer));
});

for (const type of GGML_CODEC_TYPES) {
  if (type === 'F32') continue;
  test(`${type}: bytes equal llama.cpp's ggml_quantize_chunk on 32 edge-case super-blocks`, () => {
    const input = readInput();
    const expected = new Uint8Array(readFileSync(join(vectorsDir, `${type}.bin`)));
    const ours = new Uint8Array(ggmlByteSize(type, input.length));
    quantizeGgml(type, input, ours);
    const at = firstDifference(ours, expected);
    const blockBytes = expected.length / (type.endsWith('_K') ? 32 : type.startsWith('Q') ? 256 : 8192);
    assert.equal(at, -1, `${type}: first differing byte ${at} (block ${Math.floor(at / blockBytes)})`);
  });

  test(`${type}: dequantizing llama.cpp's bytes and ours gives the same values`, () => {
    const expected = new Uint8Array(readFileSync(join(vectorsDir, `${type}.bin`)));
    const fromTheirs = new Float32Array(VECTOR_LENGTH);
    dequantizeGgml(type, expected, fromTheirs);
    const input = readInput();
    const ours = new Uint8Array(ggmlByteSize(type, input.length));
    quantizeGgml(type, input, ours);
    const fromOurs = new Float32Array(VECTOR_LENGTH);
    dequantizeGgml(type, ours, fromOurs);
    const at = firstDifference(new Uint8Array(fromOurs.buffer), new Uint8Array(fromTheirs.buffer));
    assert.equal(at, -1, `${type}: dequantized values differ first at value ${Math.floor(at / 4)}`);
  });
}
