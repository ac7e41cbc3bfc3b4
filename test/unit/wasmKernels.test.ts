import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidArgumentError } from '../../src/core/errors';
import { addInPlace, applyRope, causalAttention, rmsNorm, ropeTables, swiglu } from '../../src/core/model/kernels';
import {
  applyRopeRows,
  attentionByMatmul,
  attentionScratch,
  headNll,
  logSumExpRows,
  matmul,
  matmulKernelKind,
  matmulResident,
  matmulResidentAdd,
  matmulResidentShared,
  matmulSwiglu,
  residentWeight,
  rmsNormRows,
  swigluF32,
  trimWasmHeap,
  vectorExp,
} from '../../src/core/model/wasmMatmul';
import { windowNll } from '../../src/core/model/perplexity';

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** |got - f64 product| against the f32 accumulation bound: ~ sqrt(inner) ulps of sum |x||w|. */
function assertProductClose(got: Float32Array, x: Float32Array, w: Float32Array, rows: number, inner: number, outs: number, label: string): void {
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outs; o++) {
      let exact = 0;
      let magnitude = 0;
      for (let k = 0; k < inner; k++) {
        exact += x[t * inner + k]! * w[o * inner + k]!;
        magnitude += Math.abs(x[t * inner + k]! * w[o * inner + k]!);
      }
      const bound = 4 * Math.sqrt(inner) * 2 ** -24 * magnitude + 1e-30;
      const diff = Math.abs(got[t * outs + o]! - exact);
      if (!(diff <= bound)) assert.fail(`${label} [${t}, ${o}]: ${got[t * outs + o]} vs ${exact} (|diff| ${diff} > ${bound})`);
    }
  }
}

test('the matmul kernel is SIMD here (relaxed-madd or mul-add), not the JS fallback', () => {
  assert.ok(['relaxed-madd', 'mul-add'].includes(matmulKernelKind()), matmulKernelKind());
});

test('tiled matmul: odd rows, tiles with remainders in rows and outs, inner above the tile width', () => {
  // inner 1028 -> 4112-byte rows: x tiles of 124 rows, w tiles of 3 panels (24 outputs); 255 rows (124 + 124 + 7:
  // a 3-row remainder block) and 100 outs (12 full panels + 4 in a zero-padded one) leave remainders in both.
  for (const [rows, inner, outs] of [
    [255, 1028, 100],
    [1, 384, 8],
    [7, 4, 4],
  ] as const) {
    const x = values(rows * inner, rows + inner);
    const w = values(outs * inner, outs * 7 + 1);
    const got = new Float32Array(rows * outs).fill(NaN);
    matmul(x, w, got, rows, inner, outs);
    assertProductClose(got, x, w, rows, inner, outs, `matmul ${rows}x${inner}x${outs}`);
  }
});

/**
 * The panel kernel's documented accumulation, emulated in JS: each output one f32 running sum over k
 * in order from +0, one rounding per step where the kernel is relaxed-madd (the exact product
 * x*w of two f32 fits an f64; the f64 sum is then rounded to f32), two (product, then sum) for mul-add.
 */
function sequentialF32Product(x: Float32Array, w: Float32Array, rows: number, inner: number, outs: number, fused: boolean): Float32Array {
  const out = new Float32Array(rows * outs);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outs; o++) {
      let acc = 0;
      for (let k = 0; k < inner; k++) {
        const a = x[t * inner + k]!;
        const b = w[o * inner + k]!;
        acc = fused ? Math.fround(acc + a * b) : Math.fround(acc + Math.fround(a * b));
      }
      out[t * outs + o] = acc;
    }
  }
  return out;
}

test('panel kernel on odd shapes: within f32 accumulation error of the f64 product, and bit for bit the documented in-order f32 sum', () => {
  // rows 1-3 and 5-7 (every remainder block), outs below, across and past a panel of 8, inner 1, odd, and past a tile.
  const fused = matmulKernelKind() === 'relaxed-madd';
  for (const [rows, inner, outs] of [
    [1, 1, 1],
    [2, 3, 9],
    [3, 5, 7],
    [5, 67, 13],
    [6, 2, 8],
    [7, 1029, 17],
    [13, 384, 40],
  ] as const) {
    const x = values(rows * inner, rows * 31 + inner);
    const w = values(outs * inner, outs * 17 + 3);
    const got = new Float32Array(rows * outs).fill(NaN);
    matmul(x, w, got, rows, inner, outs);
    assertProductClose(got, x, w, rows, inner, outs, `matmul ${rows}x${inner}x${outs}`);
    assert.deepEqual(got, sequentialF32Product(x, w, rows, inner, outs, fused), `matmul ${rows}x${inner}x${outs}: not the in-order f32 sum`);
    const resident = residentWeight(w, outs, inner);
    try {
      const again = new Float32Array(rows * outs).fill(NaN);
      matmulResident(x, resident, again, rows);
      assert.deepEqual(again, got, `matmulResident ${rows}x${inner}x${outs}`);
      const shared = [new Float32Array(rows * outs).fill(NaN), new Float32Array(rows * outs).fill(NaN)];
      matmulResidentShared(x, [resident, resident], shared, rows);
      for (const one of shared) assert.deepEqual(one, got, `matmulResidentShared ${rows}x${inner}x${outs}`);
    } finally {
      resident.release();
    }
  }
});

test('rmsNormRows gives kernels.rmsNorm bit for bit; matmulResidentAdd gives matmulResident + addInPlace + rmsNorm', () => {
  for (const [rows, width] of [
    [5, 384],
    [3, 12],
    [2, 6], // not a multiple of 4: the JS loop
  ] as const) {
    const x = Float32Array.from(values(rows * width, width), (z) => z * 7);
    const weight = values(width, width + 1);
    const expected = new Float32Array(rows * width);
    rmsNorm(x, weight, expected, rows, width, 1e-5);
    const got = new Float32Array(rows * width).fill(NaN);
    rmsNormRows(x, weight, got, rows, width, 1e-5);
    assert.deepEqual(got, expected, `rmsNormRows ${rows}x${width}`);
  }
  for (const outs of [16, 12]) {
    // 12 outputs are not whole panels: the matmulResident + addInPlace + rmsNormRows path.
    matmulResidentAddCase(9, 20, outs);
  }
});

function matmulResidentAddCase(rows: number, inner: number, outs: number): void {
  const x = values(rows * inner, 50);
  const w = residentWeight(values(outs * inner, 51), outs, inner);
  try {
    const residual = Float32Array.from(values(rows * outs, 52), (z) => z * 3);
    const normWeight = values(outs, 53);
    const projected = new Float32Array(rows * outs);
    matmulResident(x, w, projected, rows);
    const expected = residual.slice();
    addInPlace(expected, projected, rows * outs);
    const expectedNormed = new Float32Array(rows * outs);
    rmsNorm(expected, normWeight, expectedNormed, rows, outs, 1e-6);
    const got = residual.slice();
    const normed = new Float32Array(rows * outs).fill(NaN);
    matmulResidentAdd(x, w, got, rows, { weight: normWeight, eps: 1e-6, out: normed });
    assert.deepEqual(got, expected);
    assert.deepEqual(normed, expectedNormed);
    const addOnly = residual.slice();
    matmulResidentAdd(x, w, addOnly, rows);
    assert.deepEqual(addOnly, expected);
  } finally {
    w.release();
  }
}

test('applyRopeRows gives kernels.applyRope bit for bit (signed zeros included), both layouts, with a position offset and the JS fallback', () => {
  for (const layout of ['half', 'interleaved'] as const) {
    for (const [rows, heads, headDim, offset] of [
      [37, 6, 64, 0],
      [5, 3, 16, 11],
      [4, 2, 6, 2], // head size not a multiple of 8: the JS loop
    ] as const) {
      const tables = ropeTables(rows + offset, headDim, 10000);
      const x = Float32Array.from(values(rows * heads * headDim, rows * headDim), (z) => z * 5);
      x[0] = -0;
      x[headDim / 2] = 0;
      const expected = x.slice();
      applyRope(expected, rows, heads, headDim, tables, layout, offset);
      const got = x.slice();
      applyRopeRows(got, rows, heads, headDim, tables, layout, offset);
      for (let i = 0; i < got.length; i++) {
        if (!Object.is(got[i], expected[i])) assert.fail(`${layout} ${rows}x${heads}x${headDim} offset ${offset} [${i}]: ${got[i]} vs ${expected[i]}`);
      }
    }
  }
});

test('resident weights: same products as matmul, a snapshot of the source, refused after release', () => {
  const rows = 33;
  const inner = 384;
  const outs = 128;
  const x = values(rows * inner, 3);
  const w1 = values(outs * inner, 4);
  const w2 = values(inner * inner, 5);
  const r1 = residentWeight(w1, outs, inner);
  const r2 = residentWeight(w2, inner, inner);
  try {
    const expected = new Float32Array(rows * outs);
    matmul(x, w1, expected, rows, inner, outs);
    // A plain matmul between uses must not overwrite the resident region.
    const scratch = new Float32Array(rows * inner);
    matmul(x, w2, scratch, rows, inner, inner);
    const got = new Float32Array(rows * outs).fill(NaN);
    matmulResident(x, r1, got, rows);
    assert.deepEqual(got, expected);
    const got2 = new Float32Array(rows * inner).fill(NaN);
    matmulResident(x, r2, got2, rows);
    assert.deepEqual(got2, scratch);
    // Values are copied at residentWeight time.
    w1.fill(0);
    matmulResident(x, r1, got, rows);
    assert.deepEqual(got, expected);
  } finally {
    r1.release();
    r2.release();
  }
  assert.throws(() => matmulResident(x, r1, new Float32Array(rows * outs), rows), InvalidArgumentError);
  assert.throws(() => residentWeight(new Float32Array(10), 4, 4), InvalidArgumentError);
});

test('vector exp is within 1 ulp of the f32-rounded Math.exp over [-87, 88]; exp(0) = 1', () => {
  const n = 40_000;
  const x = Float32Array.from({ length: n }, (_, i) => -87 + (175 * i) / (n - 1));
  x[0] = 0;
  const got = new Float32Array(n);
  vectorExp(x, got);
  assert.equal(got[0], 1);
  let worst = 0;
  for (let i = 0; i < n; i++) {
    const want = Math.fround(Math.exp(x[i]!));
    const ulp = 2 ** (Math.floor(Math.log2(want)) - 23);
    worst = Math.max(worst, Math.abs(got[i]! - want) / ulp);
  }
  assert.ok(worst <= 1, `worst error ${worst} ulp`);
});

test('SwiGLU kernel equals the f64 JS SwiGLU within f32 rounding (and the remainder past a multiple of 4)', () => {
  const count = 4099;
  const gate = Float32Array.from(values(count, 9), (g) => g * 30);
  const up = values(count, 10);
  const expected = gate.slice();
  swiglu(expected, up, count);
  const got = gate.slice();
  swigluF32(got, up, count);
  for (let i = 0; i < count; i++) {
    assert.ok(Math.abs(got[i]! - expected[i]!) <= 3e-7 * Math.abs(expected[i]!) + 1e-37, `[${i}] gate ${gate[i]}: ${got[i]} vs ${expected[i]}`);
  }
});

test('attention in the wasm heap (causal tiles, softmax kernel) equals the triangular reference loop', () => {
  for (const [rows, heads, kvHeads, d] of [
    [256, 6, 2, 64], // tiny-llama's shape
    [36, 4, 4, 8], // last query tile of 4 rows
    [20, 2, 1, 4],
    [13, 3, 1, 12], // rows and head size not multiples of the 8-wide panels (padded keys and dimensions)
    [6, 2, 2, 3],
  ] as const) {
    const q = Float32Array.from(values(rows * heads * d, rows), (z) => z * 3);
    const k = Float32Array.from(values(rows * kvHeads * d, rows + 1), (z) => z * 3);
    const v = values(rows * kvHeads * d, rows + 2);
    const expected = new Float32Array(rows * heads * d);
    causalAttention(q, k, v, expected, rows, heads, kvHeads, d, new Float64Array(rows));
    const got = new Float32Array(rows * heads * d).fill(NaN);
    attentionByMatmul(q, k, v, got, rows, heads, kvHeads, d, attentionScratch(rows, d));
    for (let i = 0; i < got.length; i++) assert.ok(Math.abs(got[i]! - expected[i]!) < 2e-6, `(${rows},${heads},${kvHeads},${d}) [${i}] ${got[i]} vs ${expected[i]}`);
  }
});

test('logSumExpRows equals the f64 log-sum-exp within 1e-6 (vocab rows, and the JS path for cols not a multiple of 4)', () => {
  for (const [rows, cols] of [
    [9, 8192],
    [3, 10],
  ] as const) {
    const x = Float32Array.from(values(rows * cols, cols), (z) => z * 12);
    x[5] = 40; // one dominant logit
    const got = new Float64Array(rows).fill(NaN);
    logSumExpRows(x, rows, cols, got);
    for (let t = 0; t < rows; t++) {
      let max = -Infinity;
      for (let j = 0; j < cols; j++) max = Math.max(max, x[t * cols + j]!);
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(x[t * cols + j]! - max);
      const want = Math.log(sum) + max;
      assert.ok(Math.abs(got[t]! - want) < 1e-6, `${rows}x${cols} row ${t}: ${got[t]} vs ${want}`);
    }
  }
});

test('trimWasmHeap keeps a heap that holds live resident weights, and after a drop the kernels rebuild', () => {
  const rows = 6;
  const inner = 64;
  const outs = 16;
  const x = values(rows * inner, 21);
  const w = values(outs * inner, 22);
  const expected = new Float32Array(rows * outs);
  matmul(x, w, expected, rows, inner, outs);
  const resident = residentWeight(w, outs, inner);
  try {
    trimWasmHeap(0); // refused: a resident weight is live
    const got = new Float32Array(rows * outs).fill(NaN);
    matmulResident(x, resident, got, rows);
    assert.deepEqual(got, expected);
  } finally {
    resident.release();
  }
  trimWasmHeap(0); // dropped
  const again = new Float32Array(rows * outs).fill(NaN);
  matmul(x, w, again, rows, inner, outs);
  assert.deepEqual(again, expected);
  assert.throws(() => matmulResident(x, resident, again, rows), InvalidArgumentError);
});

test('headNll: the same sum of -log softmax at the targets as windowNll over matmulResident logits (bit for bit), across a chunk boundary; bad targets refused', () => {
  headNllCase(1000);
  // A vocabulary that is not whole panels (nor a multiple of 4): the chunked matmulResident + logSumExpRows path.
  headNllCase(1001);
});

function headNllCase(vocab: number): void {
  const inner = 64, rows = 131;
  const x = values(rows * inner, 11);
  const head = residentWeight(values(vocab * inner, 12), vocab, inner);
  try {
    const ids = Int32Array.from({ length: rows + 1 }, (_, i) => (i * 7919 + 3) % vocab);
    // windowNll scores rows t < rows of a window of rows + 1 tokens against ids[t + 1].
    const logits = new Float32Array((rows + 1) * vocab);
    const xWindow = new Float32Array((rows + 1) * inner);
    xWindow.set(x);
    matmulResident(xWindow, head, logits, rows + 1);
    const expected = windowNll(logits, rows + 1, vocab, ids);
    assert.equal(headNll(x, head, rows, ids.subarray(1)), expected);
    // A few rows only (one partial chunk).
    assert.equal(headNll(x, head, 3, ids.subarray(1)), windowNll(logits.subarray(0, 4 * vocab), 4, vocab, ids.subarray(0, 4)));
    assert.throws(() => headNll(x, head, 2, Int32Array.of(5, vocab)), (e: unknown) => e instanceof InvalidArgumentError && new RegExp(`outside the vocabulary \\(${vocab}\\)`).test(e.message));
    assert.throws(() => headNll(x, head, 4, Int32Array.of(1, 2, 3)), (e: unknown) => e instanceof InvalidArgumentError && /4 rows but 3 targets/.test(e.message));
  } finally {
    head.release();
  }
}

test('matmulResidentShared and matmulSwiglu give the bits of separate matmulResident calls and swigluF32', () => {
  const rows = 37, inner = 48;
  const x = values(rows * inner, 21);
  const weights = [8, 16, 4].map((outs, i) => residentWeight(values(outs * inner, 30 + i), outs, inner));
  try {
    const shared = weights.map((w) => new Float32Array(rows * w.outs));
    matmulResidentShared(x, weights, shared, rows);
    weights.forEach((w, i) => {
      const alone = new Float32Array(rows * w.outs);
      matmulResident(x, w, alone, rows);
      assert.deepEqual(shared[i], alone);
    });
    // 16 outputs: both products and SwiGLU in the heap; 4 (not a whole panel): the separate calls.
    for (const [gate, width] of [[weights[1]!, 16], [weights[2]!, 4]] as const) {
      const up = residentWeight(values(width * inner, 40), width, inner);
      try {
        const act = new Float32Array(rows * width);
        matmulSwiglu(x, gate, up, act, rows);
        const g = new Float32Array(rows * width);
        const u = new Float32Array(rows * width);
        matmulResident(x, gate, g, rows);
        matmulResident(x, up, u, rows);
        swigluF32(g, u, rows * width);
        assert.deepEqual(act, g);
      } finally {
        up.release();
      }
    }
  } finally {
    for (const w of weights) w.release();
  }
});
