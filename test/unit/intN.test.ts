import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { withFileSource, readBytes } from '../../src/core/io/byteSource';
import { microLlamaDir } from '../helpers/paths';
import {
  allocateIntN,
  dequantizeRowsIntN,
  fakeQuantizeRowsIntN,
  quantizeRowsIntN,
  roundHalfEven,
  type IntBits,
} from '../../src/core/quant/intN';

/** Reads every 2-D BF16 linear weight of micro-llama (test-local reader, independent of the product readers). */
async function microLlamaLinearWeights(): Promise<{ name: string; rows: number; cols: number; values: Float32Array }[]> {
  return withFileSource(join(microLlamaDir, 'model.safetensors'), async (src) => {
    const n = Number(new DataView((await readBytes(src, 0, 8)).buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(await readBytes(src, 8, n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
    const out: { name: string; rows: number; cols: number; values: Float32Array }[] = [];
    for (const [name, info] of Object.entries(header)) {
      if (name === '__metadata__' || !/\.(q|k|v|o|gate|up|down)_proj\.weight$/.test(name)) continue;
      const raw = await readBytes(src, 8 + n + info.data_offsets[0], info.data_offsets[1] - info.data_offsets[0]);
      const u16 = new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
      const u32 = new Uint32Array(u16.length);
      for (let i = 0; i < u16.length; i++) u32[i] = u16[i]! << 16;
      out.push({ name, rows: info.shape[0]!, cols: info.shape[1]!, values: new Float32Array(u32.buffer) });
    }
    return out;
  });
}

test('roundHalfEven rounds ties to even like torch.round', () => {
  const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [3.5, 4], [-0.5, -0], [-1.5, -2], [-2.5, -2], [-3.5, -4], [0.49999997, 0], [2.6, 3], [-2.6, -3], [7, 7]];
  for (const [x, want] of cases) assert.equal(roundHalfEven(x), want, `round(${x})`);
});

test('asymmetric rule on a hand-worked group: zero = round(-min/scale), ties to even', () => {
  // lo = -1, hi = 2, maxq = 3 -> scale 1, zero round(1) = 1; w/scale = 0.5 rounds to 0 (even), 1.5 to 2.
  const w = Float32Array.from([-1, 0, 0.5, 1.5, 2, -0.5, 1, 0.25]);
  const q = allocateIntN(1, 8, { bits: 2, groupSize: 8, symmetric: false });
  quantizeRowsIntN(w, q);
  assert.equal(q.scales[0], 1);
  assert.equal(q.zeros[0], 1);
  assert.deepEqual([...q.levels], [0, 1, 1, 3, 3, 1, 2, 1]);
  assert.deepEqual([...dequantizeRowsIntN(q)], [-1, 0, 0, 2, 2, 0, 1, 0]);
});

test('symmetric rule: scale = absmax / (2^(b-1) - 1), zero 2^(b-1), ties to even, never the lowest level', () => {
  const w = Float32Array.from([-7, 3.5, 7, 0.5, -2.5, 0, 1.5, -6.5]);
  const q = allocateIntN(1, 8, { bits: 4, groupSize: -1, symmetric: true });
  quantizeRowsIntN(w, q);
  assert.equal(q.scales[0], 1);
  assert.equal(q.zeros[0], 8);
  assert.deepEqual([...q.levels], [1, 12, 15, 8, 6, 8, 10, 2]);
  assert.ok(Math.min(...q.levels) >= 1);
});

test('W8 symmetric per channel equals the reference rule (absmax/127 per row, levels [-127, 127])', () => {
  const rows = 3;
  const cols = 5;
  const w = Float32Array.from([0.1, -0.2, 0.3, 1.27, -0.635, 0, 0, 0, 0, 0, 1e-30, -3e38, 2e38, 5, -5]);
  const got = fakeQuantizeRowsIntN(w, rows, cols, 8, -1, true);
  for (let r = 0; r < rows; r++) {
    let absmax = 0;
    for (let c = 0; c < cols; c++) absmax = Math.max(absmax, Math.abs(w[r * cols + c]!));
    const scale = absmax === 0 ? 1 : Math.fround(absmax / 127);
    for (let c = 0; c < cols; c++) {
      const q = Math.max(-127, Math.min(127, roundHalfEven(Math.fround(w[r * cols + c]! / scale))));
      assert.ok(got[r * cols + c] === Math.fround(q * scale), `row ${r} col ${c}`); // === : -0 and 0 are the same weight
    }
  }
  // The all-zero row stays exactly zero, the huge row keeps its extremes.
  assert.deepEqual([...got.subarray(5, 10)], [0, 0, 0, 0, 0]);
  assert.ok(Math.abs(got[11]! + 3e38) / 3e38 < 1e-6);
});

test('round trip error stays within half a step for every bit width, group and mode', () => {
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  const rows = 16;
  const cols = 96;
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(rand() * (i % 7 === 0 ? 4 : 1));
  w[17] = 40; // a single huge outlier in row 0
  for (const bits of [2, 3, 4, 8] as IntBits[]) {
    for (const groupSize of [32, 64, -1]) {
      for (const symmetric of [false, true]) {
        const q = allocateIntN(rows, cols, { bits, groupSize, symmetric });
        quantizeRowsIntN(w, q);
        const back = dequantizeRowsIntN(q);
        const gs = groupSize === -1 ? cols : groupSize;
        const groups = Math.ceil(cols / gs);
        for (let i = 0; i < w.length; i++) {
          const r = Math.floor(i / cols);
          const g = r * groups + Math.floor((i % cols) / gs);
          const step = q.scales[g]!;
          assert.ok(Math.abs(w[i]! - back[i]!) <= step / 2 + 1e-6 * step, `bits ${bits} g ${groupSize} sym ${symmetric} i ${i}: ${w[i]} -> ${back[i]} step ${step}`);
        }
      }
    }
  }
});

test('a row that is not a multiple of the group ends with a shorter group', () => {
  const w = Float32Array.from([1, 2, 3, 4, -1, -2, -3, -4, 10, -10]);
  const q = allocateIntN(1, 10, { bits: 4, groupSize: 4, symmetric: false });
  assert.equal(q.scales.length, 3);
  quantizeRowsIntN(w, q);
  assert.equal(q.scales[2], Math.fround(20 / 15));
  const back = dequantizeRowsIntN(q);
  // scale 20/15, zero round(7.5) = 8: +-7.5 round to +-8 (even), +8 clamps to level 15 -> 7 steps.
  assert.equal(q.zeros[2], 8);
  assert.equal(back[8], Math.fround(7 * Math.fround(20 / 15)));
  assert.equal(back[9], Math.fround(-8 * Math.fround(20 / 15)));
});

test('an all-zero group is exact; minZero keeps the zero point >= 1 (GPTQ v1)', () => {
  const w = Float32Array.from([0, 0, 0, 0, 0.1, 0.2, 0.3, 0.4]);
  const q = allocateIntN(1, 8, { bits: 4, groupSize: 4, symmetric: false });
  quantizeRowsIntN(w, q, 1);
  assert.deepEqual([...dequantizeRowsIntN(q).subarray(0, 4)], [0, 0, 0, 0]);
  assert.equal(q.zeros[1], 1); // would be 0 without minZero: min is 0
  quantizeRowsIntN(w, q, 0);
  assert.equal(q.zeros[1], 0);
});

test('micro-llama: every group of every linear weight holds both signs, so our range rule equals the reference min/max rule', async () => {
  const weights = await microLlamaLinearWeights();
  assert.equal(weights.length, 14);
  for (const { name, rows, cols, values } of weights) {
    for (const group of [32, 64]) {
      for (let r = 0; r < rows; r++) {
        for (let g = 0; g < cols / group; g++) {
          let lo = Infinity;
          let hi = -Infinity;
          for (let c = g * group; c < (g + 1) * group; c++) {
            lo = Math.min(lo, values[r * cols + c]!);
            hi = Math.max(hi, values[r * cols + c]!);
          }
          assert.ok(lo < 0 && hi > 0, `${name} row ${r} group ${g}`);
        }
      }
    }
    // And fake quant follows the reference formula literally (plain min/max, no zero clamp needed).
    const got = fakeQuantizeRowsIntN(values, rows, cols, 4, 64, false);
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < cols / 64; g++) {
        const slice = values.subarray(r * cols + g * 64, r * cols + (g + 1) * 64);
        const mn = Math.min(...slice);
        const mx = Math.max(...slice);
        const scale = Math.fround(Math.fround(mx - mn) / 15);
        const zero = roundHalfEven(Math.fround(-mn / scale));
        for (let c = 0; c < 64; c++) {
          const q = Math.max(0, Math.min(15, roundHalfEven(Math.fround(slice[c]! / scale)) + zero));
          assert.equal(got[r * cols + g * 64 + c], Math.fround((q - zero) * scale));
        }
      }
    }
  }
});

test('micro-llama: equal, bit for bit, to the model runtime fake quant that reproduces the reference perplexities', async () => {
  // src/core/model/fakeQuant.ts is an independent implementation of the reference rule; its
  // perplexities match micro-llama-reference.json (test/unit/perplexity.test.ts).
  const { fakeQuantizeWeight } = await import('../../src/core/model/fakeQuant');
  const settings: [bits: number, group: number, sym: boolean][] = [[8, -1, true], [4, 64, false], [4, 32, false], [3, 64, false], [2, 64, false]];
  for (const { name, rows, cols, values } of await microLlamaLinearWeights()) {
    for (const [bits, group, sym] of settings) {
      const theirs = values.slice();
      fakeQuantizeWeight(theirs, rows, cols, bits, group);
      const ours = fakeQuantizeRowsIntN(values, rows, cols, bits, group, sym);
      for (let i = 0; i < ours.length; i++) assert.ok(ours[i] === theirs[i], `${name} W${bits} g${group} at ${i}: ${ours[i]} vs ${theirs[i]}`);
    }
  }
});
