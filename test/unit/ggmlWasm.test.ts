/**
 * The WebAssembly ggml quantizers (src/core/quant/ggml/wasm): the generated module is a build of the
 * current AssemblyScript source; its bytes equal llama.cpp's ggml_quantize_chunk on 2,000 random
 * super-blocks of ten distributions and on NaN / Inf / FLT_MAX / subnormal blocks, for every block type
 * (hashes in test/fixtures/oracles/ggml-random/oracle.json); and quantizing through memory the caller
 * owns (the pool's path) or in chunks gives the same bytes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixturesDir, repoRoot } from '../helpers/paths';
import { ggmlByteSize, quantizeGgml } from '../../src/core/quant/ggml/index';
import { ggmlQuantsSourceHash } from '../../src/core/quant/ggml/wasm/buildInfo';
import { GGML_QUANTS_SOURCE_SHA256 } from '../../src/core/quant/ggml/wasm/ggmlQuantsWasm';
import { createQuantMemory, ensureMemory, GgmlWasmQuantizer, quantLayout, type WasmQuantType } from '../../src/core/quant/ggml/wasm/ggmlWasm';
import { makeExtremeVectors, makeRandomVectors } from '../fixtures/oracles/ggmlRandomValues';

const TYPES: WasmQuantType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];

interface Oracle {
  inputs: Record<string, { values: number; sha256: string }>;
  outputs: Record<string, Partial<Record<WasmQuantType, { bytes: number; sha256: string }>>>;
}
const oracle = JSON.parse(readFileSync(join(fixturesDir, 'oracles', 'ggml-random', 'oracle.json'), 'utf8')) as Oracle;
const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
const asBytes = (x: Float32Array): Uint8Array => new Uint8Array(x.buffer, x.byteOffset, x.byteLength);

const inputs: Record<string, Float32Array> = { random: makeRandomVectors(2000, 7), extreme: makeExtremeVectors() };

test('the generated WebAssembly is a build of the current ggmlQuants.as, flags and asc version', () => {
  const dir = join(repoRoot, 'src', 'core', 'quant', 'ggml', 'wasm');
  const source = readFileSync(join(dir, 'ggmlQuants.as'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'node_modules', 'assemblyscript', 'package.json'), 'utf8')) as { version: string };
  assert.equal(GGML_QUANTS_SOURCE_SHA256, ggmlQuantsSourceHash(source, pkg.version), 'stale: run `npx tsx src/core/quant/ggml/wasm/build.ts`');
});

test('the oracle inputs are what the generators give', () => {
  for (const [name, x] of Object.entries(inputs)) {
    const expected = oracle.inputs[name];
    assert.ok(expected !== undefined, name);
    assert.equal(x.length, expected.values, name);
    assert.equal(sha256(asBytes(x)), expected.sha256, name);
  }
});

test('every type has a llama.cpp oracle on every input, except Q8_0 on the extreme vectors (no single C answer on NaN blocks: ggml-random/README.md)', () => {
  const missing = Object.keys(inputs).flatMap((name) => TYPES.filter((type) => oracle.outputs[name]?.[type] === undefined).map((type) => `${name}/${type}`));
  assert.deepEqual(missing, ['extreme/Q8_0']);
});

for (const [name, x] of Object.entries(inputs)) {
  for (const type of TYPES) {
    const expected = oracle.outputs[name]?.[type];
    if (expected === undefined) continue;
    test(`${type}: bytes equal llama.cpp's on the ${name} vectors`, () => {
      const ours = new Uint8Array(ggmlByteSize(type, x.length)).fill(0xa5);
      quantizeGgml(type, x, ours);
      assert.equal(ours.length, expected.bytes);
      assert.equal(sha256(ours), expected.sha256, `${type} on ${name}`);
    });
  }
}

test('quantizing in memory the caller owns (the pool path) gives the same bytes as quantize()', () => {
  const input = inputs.random!.subarray(0, 40 * 256);
  const own = GgmlWasmQuantizer.create();
  const memory = createQuantMemory();
  const worker = GgmlWasmQuantizer.create(memory);
  for (const type of TYPES) {
    const expected = new Uint8Array(ggmlByteSize(type, input.length));
    own.quantize(type, input, expected);
    const layout = quantLayout(worker.heapBase, type, input.length);
    ensureMemory(memory, layout.end);
    new Float32Array(memory.buffer, layout.input, input.length).set(input);
    worker.run(type, layout.input, layout.output, input.length / (type.endsWith('_K') ? 256 : 32));
    assert.equal(sha256(new Uint8Array(memory.buffer, layout.output, expected.length)), sha256(expected), type);
  }
});

test('an input larger than one chunk (1 M values) is quantized whole, chunk boundaries included', () => {
  const input = makeRandomVectors(4200, 3); // 1,075,200 values
  const own = GgmlWasmQuantizer.create();
  for (const type of ['Q8_0', 'Q6_K'] as const) {
    const whole = new Uint8Array(ggmlByteSize(type, input.length));
    own.quantize(type, input, whole);
    // the same values in pieces of 100 super-blocks, each well under a chunk
    const pieces = new Uint8Array(whole.length);
    const pieceValues = 100 * 256;
    for (let from = 0; from < input.length; from += pieceValues) {
      const part = input.subarray(from, Math.min(input.length, from + pieceValues));
      const bytes = new Uint8Array(ggmlByteSize(type, part.length));
      own.quantize(type, part, bytes);
      pieces.set(bytes, ggmlByteSize(type, from));
    }
    assert.equal(sha256(whole), sha256(pieces), type);
  }
});
