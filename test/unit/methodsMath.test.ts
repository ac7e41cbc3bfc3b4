import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyClipInPlace,
  awqFakeQuantize,
  awqGroupLoss,
  awqPseudoQuantizeInPlace,
  awqScalesForRatio,
  awqSearchClip,
  awqSearchScales,
  scaleColumnsInPlace,
} from '../../src/core/methods/awq';
import { fakeQuantizeRowsAbsmaxInt8, foldSmoothing, smoothQuantScales } from '../../src/core/methods/smoothquant';
import { fakeQuantizeRowsLlmInt8, llmInt8LayerReport, llmInt8WeightBytes, planLlmInt8 } from '../../src/core/methods/llmInt8';
import { InputStatsAccumulator } from '../../src/core/methods/inputStats';
import { roundThroughF16 } from '../../src/core/methods/grids';
import { normalRng } from '../helpers/random';

const rng = normalRng;

/** Activations with a few dominant channels (the situation AWQ, SmoothQuant and LLM.int8() exist for). */
function activationsWithOutliers(tokens: number, cols: number, outliers: number[], magnitude: number, seed: number): Float32Array {
  const next = rng(seed);
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) for (let c = 0; c < cols; c++) x[t * cols + c] = next() * (outliers.includes(c) ? magnitude : 1);
  return x;
}

function statsOf(x: Float32Array, tokens: number, cols: number): InputStatsAccumulator {
  const s = new InputStatsAccumulator(cols, { gram: true, sampleRows: 256 });
  s.addRows(x, tokens);
  return s;
}

function gramOf(s: InputStatsAccumulator): Float64Array {
  assert.ok(s.gram);
  const h = s.gram.hessian();
  return h.map((v) => v / 2);
}

function outputMse(w: Float32Array, q: Float32Array, x: Float32Array, rows: number, cols: number, tokens: number): number {
  let e = 0;
  for (let t = 0; t < tokens; t++) {
    for (let r = 0; r < rows; r++) {
      let d = 0;
      for (let c = 0; c < cols; c++) d += (w[r * cols + c]! - q[r * cols + c]!) * x[t * cols + c]!;
      e += d * d;
    }
  }
  return e / (tokens * rows);
}

test('AWQ pseudo-quantizer: hand-computed group (AutoAWQ rule)', () => {
  // min -1, max 2, 2 bits: scale = 3/3 = 1, zero = -round(-1) = 1; values -> clamp(round(w) + 1, 0, 3) - 1.
  const w = Float64Array.from([-1, 0.5, 1.5, 2, 0.49, -0.6, 2.5, 1]);
  awqPseudoQuantizeInPlace(w, 2, 4, { bits: 2, groupSize: 4 });
  assert.deepEqual(Array.from(w.subarray(0, 4)), [-1, 0, 2, 2]);
  // second group: min -0.6, max 2.5: scale 3.1/3, zero = -round(-0.58..) = 1
  const scale = 3.1 / 3;
  assert.deepEqual(
    Array.from(w.subarray(4, 8)).map((v) => Math.round(v / scale)),
    [0, -1, 2, 1],
  );
});

test('AWQ scale grid: r = 0 is all ones, scales are normalised by sqrt(max * min)', () => {
  const meanAbs = Float64Array.from([1, 4, 16]);
  assert.deepEqual(Array.from(awqScalesForRatio(meanAbs, 0)), [1, 1, 1]);
  const s = awqScalesForRatio(meanAbs, 0.5); // [1, 2, 4] / sqrt(4 * 1)
  assert.deepEqual(Array.from(s), [0.5, 1, 2]);
});

test('AWQ picks r > 0 when a channel dominates, and beats round-to-nearest on the output error', () => {
  const tokens = 512;
  const cols = 64;
  const rows = 32;
  const x = activationsWithOutliers(tokens, cols, [3, 17, 40], 20, 5);
  const next = rng(6);
  const w = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  const stats = statsOf(x, tokens, cols);
  const gram = gramOf(stats);
  const config = { bits: 3, groupSize: 32 };
  const result = awqSearchScales([{ name: 'fc', weight: w, rows }], cols, stats.meanAbs(), gram, config);
  assert.ok(result.ratio > 0, `AWQ chose ratio ${result.ratio}`);
  assert.equal(result.losses.length, 20);
  assert.ok(result.losses[0]! > Math.min(...result.losses));
  // The Gram objective equals the directly computed output MSE.
  const direct = outputMse(w, awqFakeQuantize(w, rows, cols, config), x, rows, cols, tokens);
  assert.ok(Math.abs(direct - result.losses[0]!) / direct < 1e-6, `Gram loss ${result.losses[0]} != direct ${direct}`);

  const scaled = Float32Array.from(w);
  scaleColumnsInPlace(scaled, rows, cols, result.scales);
  const q = awqFakeQuantize(scaled, rows, cols, config);
  const effective = q.map((v, i) => v / result.scales[i % cols]!);
  const awq = outputMse(w, effective, x, rows, cols, tokens);
  const rtn = outputMse(w, awqFakeQuantize(w, rows, cols, config), x, rows, cols, tokens);
  assert.ok(awq < 0.8 * rtn, `AWQ output MSE ${awq} not clearly below RTN ${rtn}`);
  assert.ok(Math.abs(awq - awqGroupLoss([{ name: 'fc', weight: w, rows }], cols, gram, result.scales, config)) / awq < 1e-6);
});

test('AWQ clip search never increases the per-group error and shrinks when one weight is an outlier', () => {
  const tokens = 256;
  const cols = 32;
  const rows = 8;
  const next = rng(9);
  const x = activationsWithOutliers(tokens, cols, [], 1, 10);
  const w = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  w[5] = 1.5; // one extreme weight in row 0 stretches its grid
  const gram = gramOf(statsOf(x, tokens, cols));
  const config = { bits: 3, groupSize: 32 };
  const maxVal = awqSearchClip(w, rows, cols, gram, config);
  assert.equal(maxVal.length, rows);
  for (let r = 0; r < rows; r++) {
    let orgMax = 0;
    for (let c = 0; c < cols; c++) orgMax = Math.max(orgMax, Math.abs(w[r * cols + c]!));
    assert.ok(maxVal[r]! <= orgMax + 1e-12 && maxVal[r]! >= 0.5 * orgMax - 1e-12);
  }
  assert.ok(maxVal[0]! < 1.5, `row 0 with the outlier weight was not clipped (max ${maxVal[0]})`);
  const clipped = Float32Array.from(w);
  applyClipInPlace(clipped, rows, cols, 32, maxVal);
  const before = outputMse(w, awqFakeQuantize(w, rows, cols, config), x, rows, cols, tokens);
  const after = outputMse(w, awqFakeQuantize(clipped, rows, cols, config), x, rows, cols, tokens);
  assert.ok(after <= before * (1 + 1e-9), `clipping made it worse: ${after} > ${before}`);
});

test('SmoothQuant: hand-computed factors; folding leaves the float output unchanged; W8A8 error drops', () => {
  // act max [4, 1], weight col max [1, 4], alpha 0.5: s = [sqrt(4)/sqrt(1), sqrt(1)/sqrt(4)] = [2, 0.5]
  const s0 = smoothQuantScales([4, 1], [{ weight: Float32Array.from([1, -4, 0.5, 2]), rows: 2 }], 2, 0.5);
  assert.deepEqual(Array.from(s0), [2, 0.5]);
  assert.deepEqual(Array.from(smoothQuantScales([0, 0], [{ weight: new Float32Array(4), rows: 2 }], 2, 0.5)), [1, 1]);

  const tokens = 256;
  const cols = 64;
  const rows = 48;
  const xNormed = activationsWithOutliers(tokens, cols, [7, 30], 60, 13);
  const next = rng(14);
  const norm = Float32Array.from({ length: cols }, () => 1 + 0.1 * next());
  const weights = [0, 1].map(() => ({ weight: Float32Array.from({ length: rows * cols }, () => next() * 0.05), rows }));
  const original = weights.map((l) => Float32Array.from(l.weight));
  const input = xNormed.map((v, i) => v * norm[i % cols]!);
  const stats = statsOf(input, tokens, cols);
  const scales = smoothQuantScales(stats.maxAbs, weights, cols, 0.5);
  const smoothedNorm = Float32Array.from(norm);
  foldSmoothing(smoothedNorm, weights, cols, scales);
  const smoothedInput = xNormed.map((v, i) => v * smoothedNorm[i % cols]!);
  const w8a8Error = (x: Float32Array, w: Float32Array, reference: Float32Array): number => {
    const xq = Float32Array.from(x);
    const wq = Float32Array.from(w);
    fakeQuantizeRowsAbsmaxInt8(xq, tokens, cols);
    fakeQuantizeRowsAbsmaxInt8(wq, rows, cols);
    let e = 0;
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        let yq = 0;
        let y = 0;
        for (let c = 0; c < cols; c++) {
          yq += xq[t * cols + c]! * wq[r * cols + c]!;
          y += input[t * cols + c]! * reference[r * cols + c]!;
        }
        e += (yq - y) ** 2;
      }
    }
    return e;
  };
  for (let l = 0; l < 2; l++) {
    // Float equivalence: x/s . (W s) == x . W.
    for (let t = 0; t < 8; t++) {
      for (let r = 0; r < rows; r++) {
        let a = 0;
        let b = 0;
        for (let c = 0; c < cols; c++) {
          a += input[t * cols + c]! * original[l]![r * cols + c]!;
          b += smoothedInput[t * cols + c]! * weights[l]!.weight[r * cols + c]!;
        }
        assert.ok(Math.abs(a - b) <= 1e-4 * (1 + Math.abs(a)), `smoothing changed the output: ${a} vs ${b}`);
      }
    }
    const plain = w8a8Error(input, original[l]!, original[l]!);
    const smoothed = w8a8Error(smoothedInput, weights[l]!.weight, original[l]!);
    assert.ok(smoothed < 0.5 * plain, `layer ${l}: smoothed W8A8 error ${smoothed} not below plain ${plain}`);
  }
});

test('LLM.int8(): outlier plan, decomposition vs plain INT8 vs zeroed, memory, keep-fraction', () => {
  const plan = planLlmInt8([1, 7, 6, 5.99, 0.5, 3], 6, 0.25);
  assert.deepEqual(plan.outlierDims, [1, 2]);
  assert.deepEqual(plan.extraDims, [3]); // 25% of the 4 others = 1: the largest max|x| among them
  assert.deepEqual(Array.from(plan.keep16), [0, 1, 1, 1, 0, 0]);
  assert.equal(llmInt8WeightBytes(10, 6, 3), 10 * (3 * 2 + 3) + 40);

  // Row [0.1, 100, -0.2]: decomposed keeps 100 in fp16, the rest int8 with scale 0.2/127.
  const p2 = planLlmInt8([1, 10, 1], 6, 0);
  const row = Float32Array.from([0.1, 100.03, -0.2]);
  fakeQuantizeRowsLlmInt8(row, 1, 3, p2, 'decomposed');
  assert.equal(row[1], roundThroughF16(100.03));
  assert.ok(Math.abs(row[0]! - 0.1) < 0.2 / 127 / 2 + 1e-9);
  const plainRow = Float32Array.from([0.1, 100.03, -0.2]);
  fakeQuantizeRowsLlmInt8(plainRow, 1, 3, p2, 'plain');
  assert.equal(plainRow[0], 0, 'plain absmax INT8 flushes the small value next to an outlier');
  const zeroed = Float32Array.from([0.1, 100.03, -0.2]);
  fakeQuantizeRowsLlmInt8(zeroed, 1, 3, p2, 'outliers-zeroed');
  assert.equal(zeroed[1], 0);

  const tokens = 128;
  const cols = 64;
  const rows = 32;
  const x = activationsWithOutliers(tokens, cols, [5, 50], 12, 21);
  const stats = statsOf(x, tokens, cols);
  const layerPlan = planLlmInt8(stats.maxAbs, 6, 0);
  assert.deepEqual(layerPlan.outlierDims, [5, 50]);
  const next = rng(22);
  const w = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  const report = llmInt8LayerReport('fc', w, rows, cols, stats.sampledRows(), stats.sampleCount, layerPlan);
  assert.ok(report.relError.decomposed < report.relError.plainInt8, JSON.stringify(report.relError));
  assert.ok(report.relError.outliersZeroed > report.relError.plainInt8, 'zeroing the outliers must lose more than INT8');
  assert.ok(report.relError.fp16 < report.relError.decomposed);
  assert.ok(report.bytes.decomposed > report.bytes.plainInt8 && report.bytes.decomposed < report.bytes.fp16);
});
