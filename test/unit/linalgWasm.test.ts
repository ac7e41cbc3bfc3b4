/**
 * GPTQ's float64 WebAssembly kernels (src/core/methods/wasm/denseF64.*): the generated module is a build of
 * the current AssemblyScript source; the upper Cholesky factor of H^-1 equals the scalar three-step path
 * (Cholesky, inverse, Cholesky, as gptq.py) within 1e-12 of the largest entry on well-conditioned matrices,
 * including sizes that are not a multiple of the 64-column block and ones past the 256-column chunks; a
 * non-positive pivot is reported, not thrown; the lazy batch update has the scalar loop's bits on ragged
 * shapes; GPTQ on real micro-llama / tiny-llama Hessians gives the same codes with either factor
 * (measured: none differs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { repoRoot, fixturesDir, microLlamaDir, sharedFile, tinyLlamaDir } from '../helpers/paths';
import { normalRng } from '../helpers/random';
import { capturedLayer } from '../helpers/capturedLayer';
import { denseF64SourceHash } from '../../src/core/methods/wasm/buildInfo';
import { DENSE_F64_SOURCE_SHA256 } from '../../src/core/methods/wasm/denseF64Wasm';
import { denseF64Available, lazyBatchUpdateWasm, upperCholeskyOfInverseWasm } from '../../src/core/methods/wasm/denseF64';
import { matmul, transposeSquare, tryUpperCholeskyOfInverse, tryUpperCholeskyOfInverseScalar } from '../../src/core/methods/linalg';
import { HessianAccumulator, applyLazyBatchUpdate, columnBlockOf, finishGptq, prepareGptq, quantizeColumnBlock, type GptqLayerState, type GptqTarget } from '../../src/core/methods/gptq';
import type { LinearRole } from '../../src/core/model/forward';

test('the generated WebAssembly is a build of the current denseF64.as, flags and asc version', () => {
  const source = readFileSync(join(repoRoot, 'src', 'core', 'methods', 'wasm', 'denseF64.as'), 'utf8');
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'node_modules', 'assemblyscript', 'package.json'), 'utf8')) as { version: string };
  assert.equal(DENSE_F64_SOURCE_SHA256, denseF64SourceHash(source, pkg.version), 'stale: run `npx tsx src/core/methods/wasm/build.ts`');
  assert.ok(denseF64Available(), 'the kernels run in this Node');
});

/** B B^T / k + I: symmetric positive definite with eigenvalues in about [1, 4] (condition number ~4). */
function wellConditioned(n: number, seed: number): Float64Array {
  const next = normalRng(seed);
  const k = n + 8;
  const b = Float64Array.from({ length: n * k }, () => next());
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += b[i * k + p]! * b[j * k + p]!;
      a[i * n + j] = a[j * n + i] = s / k + (i === j ? 1 : 0);
    }
  }
  return a;
}

function maxAbsDiff(x: Float64Array, y: Float64Array): number {
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i]! - y[i]!));
  return d;
}

function maxAbs(x: Float64Array): number {
  return x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

test('upper Cholesky of H^-1: WebAssembly equals the scalar three steps within 1e-12 of the largest entry, and U^T U H = I', (t) => {
  for (const n of [1, 2, 3, 63, 64, 65, 100, 130, 400]) {
    const h = wellConditioned(n, n);
    const scalar = tryUpperCholeskyOfInverseScalar(h, n);
    const fast = upperCholeskyOfInverseWasm(h, n);
    assert.ok(scalar.ok && fast !== null && fast.ok, `n=${n} factors`);
    const rel = maxAbsDiff(fast.factor, scalar.factor) / maxAbs(scalar.factor);
    t.diagnostic(`n=${n}: max |U_wasm - U_scalar| / max |U| = ${rel.toExponential(2)}`);
    assert.ok(rel < 1e-12, `n=${n}: relative difference ${rel}`);
    for (let i = 0; i < n; i++) for (let j = 0; j < i; j++) assert.equal(fast.factor[i * n + j], 0, `n=${n}: zero below the diagonal at ${i},${j}`);
    for (let i = 0; i < n; i++) assert.ok(fast.factor[i * n + i]! > 0, `n=${n}: positive diagonal`);
    // (U^T U) H = H^-1 H = I.
    const eye = matmul(matmul(transposeSquare(fast.factor, n), fast.factor, n, n, n), h, n, n, n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) assert.ok(Math.abs(eye[i * n + j]! - (i === j ? 1 : 0)) < 1e-12, `n=${n}: (U^T U H)[${i}][${j}] = ${eye[i * n + j]}`);
  }
  // The public entry point is the WebAssembly path here (same bits).
  const h = wellConditioned(70, 3);
  const viaLinalg = tryUpperCholeskyOfInverse(h, 70);
  const direct = upperCholeskyOfInverseWasm(h, 70);
  assert.ok(viaLinalg.ok && direct !== null && direct.ok);
  assert.deepEqual(viaLinalg.factor, direct.factor);
});

test('upper Cholesky of H^-1 reads only the lower triangle of H', () => {
  const n = 90;
  const h = wellConditioned(n, 5);
  const garbled = Float64Array.from(h);
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) garbled[i * n + j] = 1e6 * (i - j);
  const a = upperCholeskyOfInverseWasm(h, n);
  const b = upperCholeskyOfInverseWasm(garbled, n);
  assert.ok(a !== null && a.ok && b !== null && b.ok);
  assert.deepEqual(b.factor, a.factor);
});

test('upper Cholesky of H^-1: a non-positive or NaN pivot is reported (the last such column), not thrown', () => {
  const n = 150;
  const diagonal = (bad: Record<number, number>): Float64Array => {
    const h = new Float64Array(n * n);
    for (let i = 0; i < n; i++) h[i * n + i] = bad[i] ?? 2;
    return h;
  };
  const one = upperCholeskyOfInverseWasm(diagonal({ 17: -3 }), n);
  assert.deepEqual(one, { ok: false, failedPivot: 17, pivotValue: -3 });
  // Two bad columns: the kernels factor from the end, so they name the last; the scalar path names the first.
  const two = diagonal({ 5: 0, 120: -1 });
  assert.deepEqual(upperCholeskyOfInverseWasm(two, n), { ok: false, failedPivot: 120, pivotValue: -1 });
  assert.deepEqual(tryUpperCholeskyOfInverseScalar(two, n), { ok: false, failedPivot: 5, pivotValue: 0 });
  const nan = upperCholeskyOfInverseWasm(diagonal({ 99: Number.NaN }), n);
  assert.ok(nan !== null && !nan.ok && nan.failedPivot === 99 && Number.isNaN(nan.pivotValue));
  // Not positive definite without a single bad diagonal entry: [[1, 2], [2, 1]] inside an identity.
  const h = diagonal({});
  h[0] = h[1 * n + 1] = 1;
  h[1 * n + 0] = h[0 * n + 1] = 2;
  const indefinite = upperCholeskyOfInverseWasm(h, n);
  assert.ok(indefinite !== null && !indefinite.ok && indefinite.failedPivot === 0 && indefinite.pivotValue <= 0);
});

test('lazy batch update: the WebAssembly kernel has the scalar loop bits on ragged shapes', () => {
  const next = normalRng(11);
  for (const [rows, cols, i1, i2] of [
    [1, 9, 0, 4],
    [3, 130, 0, 128],
    [5, 133, 0, 128],
    [7, 301, 128, 256],
    [37, 300, 128, 256],
    [64, 1000, 256, 384],
    [6, 700, 0, 1],
  ] as const) {
    const w = Float64Array.from({ length: rows * cols }, () => next());
    const count = i2 - i1;
    const err1 = Float64Array.from({ length: rows * count }, () => next());
    const hinv = Float64Array.from({ length: cols * cols }, () => next());
    const expected = Float64Array.from(w);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < count; k++) {
        const e = err1[r * count + k]!;
        for (let c = i2; c < cols; c++) expected[r * cols + c]! -= e * hinv[(i1 + k) * cols + c]!;
      }
    }
    assert.ok(lazyBatchUpdateWasm(w, rows, cols, i1, i2, err1, hinv));
    assert.deepEqual(w, expected, `${rows}x${cols} [${i1}, ${i2})`);
  }
});

/** One layer's weights and the Hessians of its linears' inputs, from a forward pass on real text. */
async function capturedHessians(modelDir: string, calib: string, windows: number, layer: number): Promise<{ weights: Record<LinearRole, Float32Array>; hessians: Map<string, Float64Array> }> {
  const { weights, inputs } = await capturedLayer(modelDir, calib, windows, layer);
  const hessians = new Map<string, Float64Array>();
  for (const [kind, { x, tokens, cols }] of inputs) {
    const acc = new HessianAccumulator(cols);
    acc.addRows(x, tokens);
    hessians.set(kind, acc.hessian());
  }
  return { weights, hessians };
}

/** GPTQ of one linear with the factor prepareGptq made (WebAssembly) and with the scalar factor of the same damped H. */
function gptqBothFactors(w: Float32Array, rows: number, cols: number, h: Float64Array, target: GptqTarget, actOrder: boolean): { differing: number; total: number; factorRel: number } {
  const state = prepareGptq(w, rows, cols, h, { target, actOrder });
  assert.equal(state.dampIncreases, 0);
  // prepareGptq's damped H in processing order: dead columns get 1, then + 0.01 mean(diag).
  const hp = new Float64Array(cols * cols);
  for (let i = 0; i < cols; i++) for (let j = 0; j < cols; j++) hp[i * cols + j] = h[state.perm[i]! * cols + state.perm[j]!]!;
  let mean = 0;
  for (let c = 0; c < cols; c++) {
    if (hp[c * cols + c] === 0) hp[c * cols + c] = 1;
    mean += hp[c * cols + c]!;
  }
  for (let c = 0; c < cols; c++) hp[c * cols + c]! += (0.01 * mean) / cols;
  const scalar = tryUpperCholeskyOfInverseScalar(hp, cols);
  assert.ok(scalar.ok);
  const factorRel = maxAbsDiff(state.hinv, scalar.factor) / maxAbs(scalar.factor);
  const run = (s: GptqLayerState): Uint8Array => {
    for (let i1 = 0; i1 < cols; i1 += s.blockSize) {
      const i2 = Math.min(i1 + s.blockSize, cols);
      applyLazyBatchUpdate(s, i1, i2, quantizeColumnBlock(s, i1, i2, columnBlockOf(s, i1, i2)));
    }
    const r = finishGptq(s);
    return target.kind === 'int' ? r.codes : r.ggmlBytes;
  };
  const fresh = prepareGptq(w, rows, cols, h, { target, actOrder });
  const a = run(state);
  const b = run({ ...fresh, hinv: scalar.factor });
  let differing = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) differing++;
  return { differing, total: a.length, factorRel };
}

test('GPTQ on micro-llama layer 1 Hessians: the same codes with the WebAssembly factor as with the scalar one', async (t) => {
  const { weights, hessians } = await capturedHessians(microLlamaDir, join(fixturesDir, 'calib-64k.txt'), 8, 1);
  const cases: [LinearRole, string][] = [
    ['q', 'attn_in'],
    ['o', 'attn_out'],
    ['up', 'mlp_in'],
    ['down', 'mlp_act'],
  ];
  for (const [role, site] of cases) {
    const h = hessians.get(site);
    assert.ok(h !== undefined, site);
    const cols = Math.round(Math.sqrt(h.length));
    const rows = weights[role].length / cols;
    for (const actOrder of [false, true]) {
      const r = gptqBothFactors(weights[role], rows, cols, h, { kind: 'int', bits: 4, groupSize: 32, sym: false }, actOrder);
      t.diagnostic(`${role} ${rows}x${cols}${actOrder ? ' act-order' : ''}: factor rel diff ${r.factorRel.toExponential(2)}, codes differing ${r.differing} / ${r.total}`);
      assert.ok(r.factorRel < 1e-10, `${role}: factor relative difference ${r.factorRel}`);
      assert.equal(r.differing, 0, `${role}${actOrder ? ' act-order' : ''}: codes differ`);
    }
  }
});

const calibText = sharedFile('data/calib.txt');

test('GPTQ on tiny-llama layer 2 Hessians (384 and 1024 wide): the same codes / ggml bytes with the WebAssembly factor as with the scalar one (WebAssembly float64 is deterministic: no tolerance)', { skip: tinyLlamaDir.skip || calibText.skip }, async (t) => {
  const { weights, hessians } = await capturedHessians(tinyLlamaDir.path, calibText.path, 4, 2);
  const cases: [LinearRole, string, GptqTarget][] = [
    ['k', 'attn_in', { kind: 'int', bits: 4, groupSize: 128, sym: false }],
    ['down', 'mlp_act', { kind: 'int', bits: 3, groupSize: 128, sym: false }],
    ['down', 'mlp_act', { kind: 'ggml', type: 'Q4_K' }],
  ];
  for (const [role, site, target] of cases) {
    const h = hessians.get(site);
    assert.ok(h !== undefined, site);
    const cols = Math.round(Math.sqrt(h.length));
    const rows = weights[role].length / cols;
    const r = gptqBothFactors(weights[role], rows, cols, h, target, false);
    const label = `${role} ${rows}x${cols} ${target.kind === 'int' ? `W${target.bits}g${target.groupSize}` : target.type}`;
    t.diagnostic(`${label}: factor rel diff ${r.factorRel.toExponential(2)}, ${target.kind === 'int' ? 'codes' : 'bytes'} differing ${r.differing} / ${r.total}`);
    assert.ok(r.factorRel < 1e-10, `${label}: factor relative difference ${r.factorRel}`);
    assert.equal(r.differing, 0, `${label}: ${r.differing} of ${r.total} differ`);
  }
});
