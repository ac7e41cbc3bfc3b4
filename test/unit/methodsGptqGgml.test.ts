/**
 * GPTQ error compensation into ggml blocks (src/core/methods/gptqGgml.ts), every type llama.cpp's presets use:
 * - without error spread (a diagonal Hessian) GPTQ's blocks are byte for byte the `_ref` quantizer's
 *   (quantizeGgml, itself byte-identical to llama-quantize): this pins each type's layout and rounding;
 * - GPTQ's dequantized weights are bit for bit ggml's dequantize_row_* of the blocks it wrote;
 * - with real Hessians GPTQ's layer output error is below round-to-nearest's (the plain `_ref` blocks),
 *   per type, on correlated random inputs and on real activations (micro-llama; tiny-llama's 1024-column
 *   down_proj for the K types, whose 256-value super-blocks micro-llama's 64 / 192 columns cannot fill).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { InvalidArgumentError, NumericError } from '../../src/core/errors';
import { HessianAccumulator, gptqQuantizeLayer } from '../../src/core/methods/gptq';
import { GPTQ_GGML_TYPES, ggmlBlockShape, type GptqGgmlType } from '../../src/core/methods/gptqGgml';
import type { LinearRole } from '../../src/core/model/forward';
import { dequantizeGgml, quantizeGgml } from '../../src/core/quant/ggml/index';
import { fixturesDir, microLlamaDir, sharedFile, tinyLlamaDir } from '../helpers/paths';
import { normalRng } from '../helpers/random';
import { capturedLayer } from '../helpers/capturedLayer';

const K_TYPES: readonly GptqGgmlType[] = ['Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];
const SMALL_TYPES: readonly GptqGgmlType[] = GPTQ_GGML_TYPES.filter((t) => !K_TYPES.includes(t));

function rtnBytes(type: GptqGgmlType, w: Float32Array): Uint8Array {
  const shape = ggmlBlockShape(type);
  const bytes = new Uint8Array((w.length / shape.values) * shape.bytes);
  quantizeGgml(type, w, bytes);
  return bytes;
}

function dequantized(type: GptqGgmlType, bytes: Uint8Array, values: number): Float32Array {
  const out = new Float32Array(values);
  dequantizeGgml(type, bytes, out);
  return out;
}

/** Index of the first value whose f32 bits differ (so -0 vs 0 counts), or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < ua.length; i++) if (ua[i] !== ub[i]) return i;
  return a.length === b.length ? -1 : Math.min(a.length, b.length);
}

/** sum over rows of (w - q)^T H (w - q): the layer output error ||X W^T - X Q^T||^2 up to the factor 2/n. */
function outputError(w: Float32Array, q: Float32Array, h: Float64Array, rows: number, cols: number): number {
  const d = new Float64Array(cols);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = w[r * cols + c]! - q[r * cols + c]!;
    for (let i = 0; i < cols; i++) {
      let s = 0;
      const hRow = i * cols;
      for (let j = 0; j < cols; j++) s += h[hRow + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}

/** Weights with the cases the `_ref` quantizers branch on: zero blocks, constant blocks, one-signed blocks, outliers, ties. */
function awkwardWeights(rows: number, cols: number, seed: number): Float32Array {
  const next = normalRng(seed);
  const w = Float32Array.from({ length: rows * cols }, () => 0.05 * next());
  for (let c = 0; c < 256; c++) w[1 * cols + c] = 0; // a whole zero super-block (Q6_K's memset branch, K sub-block d == 0)
  for (let c = 0; c < 16; c++) w[2 * cols + 256 + c] = 0; // one zero 16-value sub-block
  for (let c = 32; c < 64; c++) w[2 * cols + c] = 0.0125; // a constant 32-value block
  for (let c = 64; c < 128; c++) w[3 * cols + c] = Math.abs(w[3 * cols + c]!) + 0.01; // all positive (min > 0)
  for (let c = 128; c < 160; c++) w[3 * cols + c] = -Math.abs(w[3 * cols + c]!) - 0.01; // all negative
  w[0 * cols + 300] = 1.5; // an outlier
  w[4 * cols + 7] = -2.25;
  for (let c = 320; c < 352; c++) w[5 * cols + c] = (c - 336) * 0.0078125; // exact grid points: ties in x/d
  return w;
}

test('GPTQ into ggml blocks with a diagonal Hessian (no error spread) writes exactly the _ref quantizer bytes, every type', () => {
  const rows = 6;
  const cols = 512;
  const w = awkwardWeights(rows, cols, 41);
  const next = normalRng(42);
  const h = new Float64Array(cols * cols);
  for (let c = 0; c < cols; c++) h[c * cols + c] = 0.5 + Math.abs(next());
  for (const type of GPTQ_GGML_TYPES) {
    const expected = rtnBytes(type, w);
    for (const blockSize of [256, 512]) {
      const g = gptqQuantizeLayer(w, rows, cols, h, { target: { kind: 'ggml', type }, blockSize });
      assert.equal(g.ggmlBytes.byteLength, expected.byteLength, `${type}: byte count`);
      let firstDiff = -1;
      for (let i = 0; i < expected.length && firstDiff < 0; i++) if (g.ggmlBytes[i] !== expected[i]) firstDiff = i;
      assert.equal(firstDiff, -1, `${type} blockSize ${blockSize}: first byte differing from quantize_row_${type.toLowerCase()}_ref at ${firstDiff}`);
      const diff = firstBitDifference(g.dequantized, dequantized(type, expected, rows * cols));
      assert.equal(diff, -1, `${type}: GPTQ's values are ggml's dequantized values (first difference at ${diff})`);
    }
  }
});

/** Tokens x cols activations with a few shared factors and uneven column scales (correlated, as real ones). */
function correlatedActivations(tokens: number, cols: number, seed: number): Float32Array {
  const next = normalRng(seed);
  const factors = 6;
  const mix = Array.from({ length: factors * cols }, () => next());
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    const f = Array.from({ length: factors }, () => next());
    for (let c = 0; c < cols; c++) {
      let v = 0.3 * next();
      for (let k = 0; k < factors; k++) v += f[k]! * mix[k * cols + c]!;
      x[t * cols + c] = v * (1 + (c % 5));
    }
  }
  return x;
}

function hessianOf(x: Float32Array, tokens: number, cols: number): Float64Array {
  const acc = new HessianAccumulator(cols);
  acc.addRows(x, tokens);
  return acc.hessian();
}

/** GPTQ into `type` vs the `_ref` blocks of the same weights: GPTQ's values decode from its bytes, and its output error is lower. */
function assertGptqBeatsRtn(type: GptqGgmlType, w: Float32Array, rows: number, cols: number, h: Float64Array, label: string, note?: (line: string) => void): void {
  const g = gptqQuantizeLayer(w, rows, cols, h, { target: { kind: 'ggml', type } });
  const diff = firstBitDifference(g.dequantized, dequantized(type, g.ggmlBytes, rows * cols));
  assert.equal(diff, -1, `${label} ${type}: GPTQ's values are ggml's dequantized values of its blocks (first difference at ${diff})`);
  const rtn = dequantized(type, rtnBytes(type, w), rows * cols);
  const eRtn = outputError(w, rtn, h, rows, cols);
  const eGptq = outputError(w, g.dequantized, h, rows, cols);
  note?.(`${label} ${type}: output error GPTQ / RTN = ${(eGptq / eRtn).toFixed(3)}`);
  assert.ok(eGptq < eRtn, `${label} ${type}: GPTQ output error ${eGptq} not below RTN ${eRtn}`);
}

test('GPTQ into ggml blocks, correlated random inputs: decodes to its values and beats the _ref blocks on the output error, every type', (t) => {
  const rows = 16;
  const cols = 512;
  const tokens = 2048;
  const h = hessianOf(correlatedActivations(tokens, cols, 51), tokens, cols);
  const next = normalRng(52);
  const w = Float32Array.from({ length: rows * cols }, () => 0.05 * next());
  for (const type of GPTQ_GGML_TYPES) assertGptqBeatsRtn(type, w, rows, cols, h, 'random', (l) => t.diagnostic(l));
});

test('GPTQ into the 32-value ggml blocks on micro-llama activations (q / o / down of layer 1): beats the _ref blocks on the output error', async (t) => {
  const { weights, inputs, model } = await capturedLayer(microLlamaDir, join(fixturesDir, 'calib-64k.txt'), 8, 1);
  const cases: [LinearRole, string][] = [
    ['q', 'attn_in'],
    ['o', 'attn_out'],
    ['down', 'mlp_act'],
  ];
  for (const [role, site] of cases) {
    const input = inputs.get(site);
    assert.ok(input !== undefined, `captured ${site}`);
    const w = weights[role];
    const rows = w.length / input.cols;
    assert.ok(Number.isInteger(rows) && rows > 0, `${role}: ${w.length} weights over ${input.cols} columns`);
    const h = hessianOf(input.x, input.tokens, input.cols);
    for (const type of SMALL_TYPES) assertGptqBeatsRtn(type, w, rows, input.cols, h, `micro-llama layer 1 ${role}`, (l) => t.diagnostic(l));
  }
  assert.equal(model.config.hiddenSize, 64);
});

const tinyLlama = tinyLlamaDir;
const calibText = sharedFile('data/calib.txt');

test('GPTQ into every ggml block type on tiny-llama down_proj activations (two 256-column K super-blocks of its 1024 inputs): beats the _ref blocks', { skip: tinyLlama.skip || calibText.skip }, async (t) => {
  // 8 x 256 = 2048 tokens of calibration text through the float model; layer 3's down_proj (384 x 1024): its
  // first 96 rows and 512 input columns (two super-blocks; the leading block of H is those columns' Hessian).
  const { weights, inputs } = await capturedLayer(tinyLlama.path, calibText.path, 8, 3);
  const input = inputs.get('mlp_act');
  assert.ok(input !== undefined && input.cols === 1024);
  const rows = 96;
  const cols = 512;
  const w = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) w.set(weights.down.subarray(r * input.cols, r * input.cols + cols), r * cols);
  const full = hessianOf(input.x, input.tokens, input.cols);
  const h = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) h.set(full.subarray(i * input.cols, i * input.cols + cols), i * cols);
  for (const type of GPTQ_GGML_TYPES) assertGptqBeatsRtn(type, w, rows, cols, h, 'tiny-llama layer 3 down', (l) => t.diagnostic(l));
});

test('GPTQ into ggml blocks: refuses what the block layout cannot take', () => {
  const cols = 384;
  const w = new Float32Array(2 * cols).fill(0.1);
  const h = new Float64Array(cols * cols);
  for (let c = 0; c < cols; c++) h[c * cols + c] = 1;
  assert.throws(() => gptqQuantizeLayer(w, 2, cols, h, { target: { kind: 'ggml', type: 'Q4_K' } }), (e: unknown) => e instanceof InvalidArgumentError && /384 columns are not a multiple of its block of 256/.test(e.message));
  const w512 = new Float32Array(2 * 512).fill(0.1);
  const h512 = new Float64Array(512 * 512);
  for (let c = 0; c < 512; c++) h512[c * 512 + c] = 1;
  assert.throws(() => gptqQuantizeLayer(w512, 2, 512, h512, { target: { kind: 'ggml', type: 'Q6_K' }, blockSize: 128 }), /block size 128 is not a multiple of 256/);
  assert.throws(() => gptqQuantizeLayer(w512, 2, 512, h512, { target: { kind: 'ggml', type: 'Q5_1' }, actOrder: true }), /act-order/);
  const withNaN = new Float32Array(2 * 512).fill(0.1);
  withNaN[512 + 300] = Number.NaN;
  assert.throws(() => gptqQuantizeLayer(withNaN, 2, 512, h512, { target: { kind: 'ggml', type: 'Q4_K' } }), (e: unknown) => e instanceof NumericError && /row 1, column 300 is NaN/.test(e.message));
  // The K types' default lazy-batch block is one super-block; the 32-value types keep the reference's 128.
  assert.equal(gptqQuantizeLayer(w512, 2, 512, h512, { target: { kind: 'ggml', type: 'Q3_K' } }).ggmlBytes.byteLength, 2 * 2 * 110);
  assert.equal(gptqQuantizeLayer(w, 2, cols, h, { target: { kind: 'ggml', type: 'Q5_0' } }).ggmlBytes.byteLength, 2 * 12 * 22);
});
