/**
 * The WebAssembly ggml quantizers (src/core/quant/ggml/wasm): the generated module is a build of the
 * current AssemblyScript source, and it gives the bytes of the step-by-step f32-emulating TS port on
 * random vectors of several distributions and on the edge-case vectors of the llama.cpp oracle, for
 * every block type; also through memory the caller owns (the pool's path) and in chunks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot } from '../helpers/paths';
import { ggmlByteSize } from '../../src/core/quant/ggml/index';
import { ggmlQuantsSourceHash } from '../../src/core/quant/ggml/wasm/buildInfo';
import { GGML_QUANTS_SOURCE_SHA256 } from '../../src/core/quant/ggml/wasm/ggmlQuantsWasm';
import { createQuantMemory, ensureMemory, GgmlWasmQuantizer, quantLayout, type WasmQuantType } from '../../src/core/quant/ggml/wasm/ggmlWasm';
import { quantizeQ4_0, quantizeQ4_1, quantizeQ5_0, quantizeQ5_1, quantizeQ8_0 } from '../../src/core/quant/ggml/legacy';
import { quantizeQ2_K } from '../../src/core/quant/ggml/q2k';
import { quantizeQ3_K } from '../../src/core/quant/ggml/q3k';
import { quantizeQ4_K, quantizeQ5_K } from '../../src/core/quant/ggml/q4kq5k';
import { quantizeQ6_K } from '../../src/core/quant/ggml/q6k';
import { gaussian, makeEdgeCaseVectors, mulberry32 } from '../fixtures/oracles/syntheticValues';

const TS_PORT: Record<WasmQuantType, (src: Float32Array, dst: Uint8Array) => void> = {
  Q8_0: quantizeQ8_0,
  Q4_0: quantizeQ4_0,
  Q4_1: quantizeQ4_1,
  Q5_0: quantizeQ5_0,
  Q5_1: quantizeQ5_1,
  Q2_K: quantizeQ2_K,
  Q3_K: quantizeQ3_K,
  Q4_K: quantizeQ4_K,
  Q5_K: quantizeQ5_K,
  Q6_K: quantizeQ6_K,
};
const TYPES = Object.keys(TS_PORT) as WasmQuantType[];

/** 256-value super-blocks, each from one of several distributions (cycled), deterministic. */
function randomVectors(superBlocks: number, seed: number): Float32Array {
  const rand = mulberry32(seed);
  const x = new Float32Array(superBlocks * 256);
  for (let b = 0; b < superBlocks; b++) {
    const kind = b % 10;
    const scale = 10 ** (rand() * 8 - 6);
    for (let i = 0; i < 256; i++) {
      const g = gaussian(rand);
      let v: number;
      switch (kind) {
        case 0: v = g * 0.02; break;
        case 1: v = (rand() * 2 - 1) * scale; break;
        case 2: v = g * scale * (rand() < 0.01 ? 60 : 1); break; // rare outliers
        case 3: v = Math.round(g * 8) / 2 * scale; break; // many exact ties
        case 4: v = rand() < 0.7 ? 0 : g; break; // sparse
        case 5: v = Math.abs(g) * scale; break; // one-signed
        case 6: v = -Math.abs(g) * scale - 1; break; // negative, min far from 0
        case 7: v = g * 1e-39; break; // subnormal
        case 8: v = (i % 16 === 0 ? 3 : 1) * scale; break; // near-constant groups
        default: v = g * 3e4; break; // large
      }
      x[b * 256 + i] = v;
    }
  }
  return x;
}

/** Blocks C has no contract for but still gives deterministic bytes: NaN, +-Inf, +-FLT_MAX, 1/d overflowing. */
function extremeVectors(): Float32Array {
  const rand = mulberry32(5);
  const specials = [NaN, Infinity, -Infinity, 3.4028234663852886e38, -3.4028234663852886e38, 1e-41, -1e-44, 0, -0];
  const x = new Float32Array(32 * 256);
  for (let b = 0; b < 32; b++) {
    for (let i = 0; i < 256; i++) {
      const special = specials[(b + i) % specials.length]!;
      x[b * 256 + i] = b % 4 === 0 ? (i % 37 === 0 ? special : gaussian(rand)) : b % 4 === 1 ? gaussian(rand) * 1e-41 : b % 4 === 2 ? special : gaussian(rand) * 1e38;
    }
  }
  return x;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return i;
  return a.length === b.length ? -1 : n;
}

test('the generated WebAssembly is a build of the current ggmlQuants.as, flags and asc version', () => {
  const dir = join(repoRoot, 'src', 'core', 'quant', 'ggml', 'wasm');
  const source = readFileSync(join(dir, 'ggmlQuants.as'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'node_modules', 'assemblyscript', 'package.json'), 'utf8')) as { version: string };
  assert.equal(GGML_QUANTS_SOURCE_SHA256, ggmlQuantsSourceHash(source, pkg.version), 'stale: run `npx tsx src/core/quant/ggml/wasm/build.ts`');
});

const wasm = GgmlWasmQuantizer.create();
const inputs: Array<[string, Float32Array]> = [
  ['random (10 distributions, 640 super-blocks)', randomVectors(640, 7)],
  ['edge cases of the llama.cpp oracle', makeEdgeCaseVectors()],
  ['NaN, Inf, FLT_MAX and subnormal blocks', extremeVectors()],
];

for (const type of TYPES) {
  for (const [what, input] of inputs) {
    test(`${type}: WebAssembly bytes equal the TS port's on ${what}`, () => {
      const expected = new Uint8Array(ggmlByteSize(type, input.length));
      TS_PORT[type](input, expected);
      const ours = new Uint8Array(expected.length).fill(0xa5);
      wasm.quantize(type, input, ours);
      const at = firstDifference(ours, expected);
      assert.equal(at, -1, `${type}: first differing byte ${at}`);
    });
  }
}

test('quantizing in memory the caller owns (the pool path) gives the same bytes as quantize()', () => {
  const input = randomVectors(40, 11);
  const memory = createQuantMemory();
  const worker = GgmlWasmQuantizer.create(memory);
  for (const type of TYPES) {
    const expected = new Uint8Array(ggmlByteSize(type, input.length));
    wasm.quantize(type, input, expected);
    const layout = quantLayout(worker.heapBase, type, input.length);
    ensureMemory(memory, layout.end);
    new Float32Array(memory.buffer, layout.input, input.length).set(input);
    worker.run(type, layout.input, layout.output, input.length / (type.endsWith('_K') ? 256 : 32));
    const got = new Uint8Array(memory.buffer, layout.output, expected.length);
    assert.equal(firstDifference(new Uint8Array(got), expected), -1, type);
  }
});

test('an input larger than one chunk (1 M values) is quantized whole', () => {
  const input = randomVectors(4200, 3); // 1,075,200 values
  for (const type of ['Q8_0', 'Q6_K'] as const) {
    const expected = new Uint8Array(ggmlByteSize(type, input.length));
    TS_PORT[type](input, expected);
    const ours = new Uint8Array(expected.length);
    wasm.quantize(type, input, ours);
    assert.equal(firstDifference(ours, expected), -1, type);
  }
});
