/**
 * GPTQ's defining property: on the calibration inputs X it was given, its layer output error
 * ||X W^T - X Q^T||^2 is at most round-to-nearest's on the same grid (same bits, groups, zero points).
 * Checked over several seeds, shapes and input kinds (i.i.d., correlated, with outlier channels like
 * an LLM's), at W4 / W3, with and without groups and act-order, and through the Hessian accumulator
 * (so a wrong H would fail it too).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HessianAccumulator, gptqQuantizeLayer, rtnQuantizeLayer } from '../../src/core/methods/gptq';
import { normalRng } from '../helpers/random';

const rng = normalRng;

type InputKind = 'iid' | 'correlated' | 'outliers';

/** tokens x cols inputs: i.i.d. normal; a few shared factors + noise; or correlated with 2 channels 30x larger on some tokens. */
function inputs(kind: InputKind, tokens: number, cols: number, seed: number): Float32Array {
  const next = rng(seed);
  const x = new Float32Array(tokens * cols);
  if (kind === 'iid') {
    for (let i = 0; i < x.length; i++) x[i] = next();
    return x;
  }
  const factors = 6;
  const mix = Array.from({ length: factors * cols }, () => next());
  const scale = Array.from({ length: cols }, () => Math.exp(0.5 * next()));
  const outlierCols = [3 % cols, Math.floor(cols / 2) + 1];
  for (let t = 0; t < tokens; t++) {
    const f = Array.from({ length: factors }, () => next());
    const spike = kind === 'outliers' && t % 8 === 0;
    for (let c = 0; c < cols; c++) {
      let v = 0.3 * next();
      for (let k = 0; k < factors; k++) v += (f[k]! * mix[k * cols + c]!) / Math.sqrt(factors);
      v *= scale[c]!;
      if (spike && outlierCols.includes(c)) v *= 30;
      x[t * cols + c] = v;
    }
  }
  return x;
}

function weights(rows: number, cols: number, seed: number): Float32Array {
  const next = rng(seed);
  // Heavier-tailed than normal, as trained weights are: a normal times a random magnitude.
  return Float32Array.from({ length: rows * cols }, () => next() * 0.05 * Math.exp(0.5 * next()));
}

/** ||X W^T - X Q^T||^2 over all tokens and output rows, in float64. */
function outputError(w: Float32Array, q: Float32Array, x: Float32Array, rows: number, cols: number, tokens: number): number {
  const diff = new Float64Array(rows * cols);
  for (let i = 0; i < diff.length; i++) diff[i] = w[i]! - q[i]!;
  let err = 0;
  for (let t = 0; t < tokens; t++) {
    const xb = t * cols;
    for (let r = 0; r < rows; r++) {
      const db = r * cols;
      let d = 0;
      for (let c = 0; c < cols; c++) d += diff[db + c]! * x[xb + c]!;
      err += d * d;
    }
  }
  return err;
}

/**
 * Round-to-nearest with the groups given by g_idx (act-order's groups are sets of columns taken in
 * descending diag H order, not contiguous ones): the same partition, the same grid rule.
 */
function rtnWithGroupIndex(w: Float32Array, rows: number, cols: number, bits: number, gIdx: Int32Array): Float32Array {
  const groups = Math.max(...gIdx) + 1;
  const members: number[][] = Array.from({ length: groups }, () => []);
  for (let c = 0; c < cols; c++) members[gIdx[c]!]!.push(c);
  // Gather each group's columns side by side, quantize them as one contiguous group, scatter back.
  const out = new Float32Array(rows * cols);
  for (const m of members) {
    const sub = new Float32Array(rows * m.length);
    for (let r = 0; r < rows; r++) for (let k = 0; k < m.length; k++) sub[r * m.length + k] = w[r * cols + m[k]!]!;
    const q = rtnQuantizeLayer(sub, rows, m.length, bits, -1, false);
    for (let r = 0; r < rows; r++) for (let k = 0; k < m.length; k++) out[r * cols + m[k]!] = q[r * m.length + k]!;
  }
  return out;
}

/** Block sizes below the column count exercise the lazy batch updates (the reference's default is 128). */
const SHAPES: { rows: number; cols: number; tokens: number; group: number; blockSize: number }[] = [
  { rows: 16, cols: 64, tokens: 512, group: 32, blockSize: 32 },
  { rows: 24, cols: 96, tokens: 768, group: 32, blockSize: 128 },
  { rows: 12, cols: 128, tokens: 1024, group: 64, blockSize: 32 },
  { rows: 16, cols: 64, tokens: 384, group: -1, blockSize: 16 },
  { rows: 8, cols: 256, tokens: 1024, group: 128, blockSize: 128 },
];

for (const kind of ['iid', 'correlated', 'outliers'] as const) {
  test(`GPTQ output error <= RTN's on the same grid (${kind} inputs; 3 seeds x 5 shapes x W4/W3 x act-order)`, () => {
    const worst: string[] = [];
    let ratioSum = 0;
    let cases = 0;
    for (const seed of [1, 2, 3]) {
      for (const { rows, cols, tokens, group, blockSize } of SHAPES) {
        const x = inputs(kind, tokens, cols, 100 * seed + cols);
        const w = weights(rows, cols, 7 * seed + rows);
        const acc = new HessianAccumulator(cols);
        // Two uneven chunks: the accumulator must sum them as one.
        const split = Math.floor(tokens / 3);
        acc.addRows(x.subarray(0, split * cols), split);
        acc.addRows(x.subarray(split * cols), tokens - split);
        const h = acc.hessian();
        for (const bits of [4, 3]) {
          for (const actOrder of [false, true]) {
            const r = gptqQuantizeLayer(w, rows, cols, h, { target: { kind: 'int', bits, groupSize: group, sym: false }, actOrder, blockSize });
            const rtnQ = actOrder && group > 0 ? rtnWithGroupIndex(w, rows, cols, bits, r.gIdx) : rtnQuantizeLayer(w, rows, cols, bits, group, false);
            const rtn = outputError(w, rtnQ, x, rows, cols, tokens);
            const gptq = outputError(w, r.dequantized, x, rows, cols, tokens);
            ratioSum += gptq / rtn;
            cases++;
            if (!(gptq <= rtn)) worst.push(`seed ${seed} ${rows}x${cols} g${group} W${bits} act-order=${actOrder}: GPTQ ${gptq.toExponential(4)} > RTN ${rtn.toExponential(4)}`);
          }
        }
      }
    }
    assert.deepEqual(worst, [], worst.join('\n'));
    // Not just "not worse": on correlated inputs the compensation must buy a clear margin on average.
    const mean = ratioSum / cases;
    if (kind !== 'iid') assert.ok(mean < 0.8, `${kind}: mean GPTQ/RTN output-error ratio ${mean.toFixed(3)} is not clearly below 1`);
  });
}
