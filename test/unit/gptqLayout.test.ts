import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { allocateIntN, dequantizeRowsIntN, quantizeRowsIntN, type IntBits } from '../../src/core/quant/intN';
import {
  allocateGptq,
  dequantizeGptq,
  dequantizeRowsWithF16Scales,
  f16BitsToF32,
  f32ToF16Bits,
  GPTQ_MIN_ZERO,
  packGptq,
  readGptqLinear,
  unpackGptq,
  type GptqTensors,
} from '../../src/core/quant/gptqLayout';
import { FormatError, InvalidArgumentError } from '../../src/core/errors';
import { gptqQuantizeLayer, HessianAccumulator, type GptqLayerResult } from '../../src/core/methods/gptq';
import { gptqResultToIntN } from '../../src/core/methods/quantizeWithMethod';
import { runMethodQuantize } from '../../src/core/methods/methodQuantize';
import { LINEAR_ROLES, LlamaModel, linearModuleName } from '../../src/core/model/forward';
import { readResearchWeight } from '../../src/core/quant/pipeline';
import { openDequantizedCheckpoint } from '../../src/core/quant/researchCheckpoint';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { fixturesDir, microLlamaDir } from '../helpers/paths';
import { normalRng } from '../helpers/random';
import { withCheckpoint, withTempDir } from '../helpers/scoped';

/** AutoGPTQ's QuantLinear.pack loop for one column, literally (numpy uint32 arithmetic). */
function autoGptqPackColumn(values: number[], bits: number): number[] {
  const words: number[] = new Array<number>((values.length * bits) / 32).fill(0);
  let i = 0;
  let row = 0;
  if (bits === 2 || bits === 4 || bits === 8) {
    while (row < words.length) {
      for (let j = i; j < i + 32 / bits; j++) words[row] = (words[row]! | (values[j]! << (bits * (j - i)))) >>> 0;
      i += 32 / bits;
      row += 1;
    }
    return words;
  }
  while (row < words.length) {
    for (let j = i; j < i + 10; j++) words[row] = (words[row]! | (values[j]! << (3 * (j - i)))) >>> 0;
    i += 10;
    words[row] = (words[row]! | (values[i]! << 30)) >>> 0;
    row += 1;
    words[row] = (words[row]! | ((values[i]! >> 2) & 1)) >>> 0;
    i += 1;
    for (let j = i; j < i + 10; j++) words[row] = (words[row]! | (values[j]! << (3 * (j - i) + 1))) >>> 0;
    i += 10;
    words[row] = (words[row]! | (values[i]! << 31)) >>> 0;
    row += 1;
    words[row] = (words[row]! | ((values[i]! >> 1) & 0x3)) >>> 0;
    i += 1;
    for (let j = i; j < i + 10; j++) words[row] = (words[row]! | (values[j]! << (3 * (j - i) + 2))) >>> 0;
    i += 10;
    row += 1;
  }
  return words;
}

function weights(rows: number, cols: number, seed: number): Float32Array {
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(Math.sin(i * 0.731 + seed) * (1 + (i % 5)));
  return w;
}

test('f32 -> f16 rounds to nearest even, overflows to Inf, keeps subnormals', () => {
  assert.equal(f32ToF16Bits(1), 0x3c00);
  assert.equal(f32ToF16Bits(-2), 0xc000);
  assert.equal(f32ToF16Bits(65504), 0x7bff);
  assert.equal(f32ToF16Bits(65520), 0x7c00);
  assert.equal(f32ToF16Bits(1 + 2 ** -11), 0x3c00); // tie -> even
  assert.equal(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
  assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // tie with 0 -> even
  assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002);
  for (const bits of [0x0001, 0x03ff, 0x0400, 0x3c01, 0x7bff, 0xbc00]) assert.equal(f32ToF16Bits(f16BitsToF32(bits)), bits);
});

test('4-bit qweight: input channels packed along the input dim, value j at bits 4j; matches AutoGPTQ pack', () => {
  const out = 8;
  const inF = 16;
  const q = allocateIntN(out, inF, { bits: 4, groupSize: 8, symmetric: true });
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) q.levels[o * inF + i] = (o + 3 * i) % 16;
  q.scales.fill(1);
  q.zeros.fill(8);
  const t = packGptq(q);
  assert.equal(t.qweight.length, 2 * out); // [in/8, out]
  for (let o = 0; o < out; o++) {
    const column = Array.from({ length: inF }, (_, i) => q.levels[o * inF + i]!);
    const want = autoGptqPackColumn(column, 4);
    assert.deepEqual([t.qweight[o]! >>> 0, t.qweight[out + o]! >>> 0], want, `column ${o}`);
  }
  // Symmetric zero 8 stored as 7 in every nibble: the familiar 0x77777777.
  assert.deepEqual([...t.qzeros].map((v) => v >>> 0), [0x77777777, 0x77777777]);
  assert.deepEqual([...t.gIdx], [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]);
});

test('3-bit and 2-bit streams equal AutoGPTQ packing (3-bit values straddle words)', () => {
  for (const bits of [2, 3, 8] as IntBits[]) {
    const out = 32;
    const inF = 64;
    const q = allocateIntN(out, inF, { bits, groupSize: 32, symmetric: false });
    quantizeRowsIntN(weights(out, inF, bits), q, GPTQ_MIN_ZERO);
    const t = packGptq(q);
    const wordsPerColumn = (inF * bits) / 32;
    for (let o = 0; o < out; o++) {
      const column = Array.from({ length: inF }, (_, i) => q.levels[o * inF + i]!);
      const got = Array.from({ length: wordsPerColumn }, (_, w) => t.qweight[w * out + o]! >>> 0);
      assert.deepEqual(got, autoGptqPackColumn(column, bits), `bits ${bits} column ${o}`);
    }
    // qzeros: zero - 1 along the output dim, same stream
    for (let g = 0; g < 2; g++) {
      const zerosMinusOne = Array.from({ length: out }, (_, o) => q.zeros[o * 2 + g]! - 1);
      const got = Array.from({ length: bits }, (_, w) => t.qzeros[g * bits + w]! >>> 0);
      assert.deepEqual(got, autoGptqPackColumn(zerosMinusOne, bits), `bits ${bits} qzeros group ${g}`);
    }
  }
});

test('reader adds 1 back to qzeros and reproduces the quantizer with f16 scales, for every bit width', () => {
  for (const bits of [2, 3, 4, 8] as IntBits[]) {
    for (const symmetric of [false, true]) {
      const out = 32;
      const inF = 96;
      const q = allocateIntN(out, inF, { bits, groupSize: 32, symmetric });
      quantizeRowsIntN(weights(out, inF, 7), q, GPTQ_MIN_ZERO);
      const t = packGptq(q);
      const u = unpackGptq(t);
      assert.deepEqual([...u.levels], [...q.levels]);
      assert.deepEqual([...u.zeros], [...q.zeros]);
      const f16 = { ...q, scales: Float32Array.from(q.scales, (s) => f16BitsToF32(f32ToF16Bits(s))) };
      assert.deepEqual([...dequantizeGptq(t)], [...dequantizeRowsIntN(f16)], `bits ${bits} sym ${symmetric}`);
    }
  }
});

test('a zero point of 0 cannot be stored in the v1 (zero - 1) layout: refused, and minZero avoids it', () => {
  const out = 8;
  const inF = 8;
  const w = new Float32Array(out * inF);
  for (let i = 0; i < w.length; i++) w[i] = (i % 8) * 0.1; // all >= 0: natural zero point 0
  const bad = allocateIntN(out, inF, { bits: 4, groupSize: -1, symmetric: false });
  quantizeRowsIntN(w, bad, 0);
  assert.equal(bad.zeros[0], 0);
  assert.throws(() => packGptq(bad), InvalidArgumentError);
  const good = allocateIntN(out, inF, { bits: 4, groupSize: -1, symmetric: false });
  quantizeRowsIntN(w, good, GPTQ_MIN_ZERO);
  const back = dequantizeGptq(packGptq(good));
  for (let i = 0; i < w.length; i++) assert.ok(Math.abs(back[i]! - w[i]!) <= 0.7 / 15 + 1e-4, `i ${i}: ${w[i]} -> ${back[i]}`);
});

test('unpack validates shapes and g_idx', () => {
  const q = allocateIntN(8, 8, { bits: 4, groupSize: -1, symmetric: true });
  q.scales.fill(1);
  q.zeros.fill(8);
  const t = packGptq(q);
  const broken: GptqTensors = { ...t, qweight: t.qweight.subarray(1) };
  assert.throws(() => unpackGptq(broken, 'x.safetensors'), FormatError);
  assert.throws(() => unpackGptq({ ...t, gIdx: t.gIdx.subarray(1) }), FormatError);
  assert.throws(() => packGptq(allocateIntN(4, 8, { bits: 4, groupSize: -1, symmetric: true })), InvalidArgumentError); // 4 outputs x 4 bits < 32
});

/** Token rows whose channels differ in scale (so act-order's descending diag H order is far from 0, 1, 2, ...). */
function scaledInputs(tokens: number, cols: number, seed: number): Float32Array {
  const rng = normalRng(seed);
  const scale = Float32Array.from({ length: cols }, (_, c) => 0.2 + ((c * 37) % cols) / cols);
  return Float32Array.from({ length: tokens * cols }, (_, i) => rng() * scale[i % cols]!);
}

/** What the layout must give back for a GPTQ result: (code - zero) * scale of the channel's g_idx group, the scale as f16 or f32. */
function expectedDequantized(r: GptqLayerResult, f16Scales: boolean): Float32Array {
  const out = new Float32Array(r.rows * r.cols);
  for (let row = 0; row < r.rows; row++) {
    for (let c = 0; c < r.cols; c++) {
      const g = r.gIdx[c]! * r.rows + row;
      const scale = f16Scales ? f16BitsToF32(f32ToF16Bits(r.scales[g]!)) : r.scales[g]!;
      out[row * r.cols + c] = Math.fround((r.codes[row * r.cols + c]! - r.zeros[g]!) * scale);
    }
  }
  return out;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

test('act-order: g_idx[channel] = processing position // group (AutoGPTQ desc_act); packing equals AutoGPTQ pack with it; read back = GPTQ dequantized with f16 scales, bit for bit', () => {
  for (const bits of [4, 3] as IntBits[]) {
    const rows = 32;
    const cols = 96;
    const group = 32;
    const tokens = 512;
    const acc = new HessianAccumulator(cols);
    acc.addRows(scaledInputs(tokens, cols, 3 + bits), tokens);
    const h = acc.hessian();
    const r = gptqQuantizeLayer(weights(rows, cols, bits), rows, cols, h, { target: { kind: 'int', bits, groupSize: group, sym: false }, actOrder: true });
    // AutoGPTQ: perm = argsort(diag H, descending); g_idx = [i // group for i in range(cols)][invperm].
    const perm = Array.from({ length: cols }, (_, c) => c).sort((a, b) => h[b * cols + b]! - h[a * cols + a]! || a - b);
    const gIdx = new Array<number>(cols);
    perm.forEach((c, p) => (gIdx[c] = Math.floor(p / group)));
    assert.deepEqual([...r.gIdx], gIdx, `W${bits}: g_idx`);
    assert.ok(gIdx.some((g, i) => i > 0 && g < gIdx[i - 1]!), 'act-order g_idx is not monotonic');
    // GPTQ's own dequantized weights are (code - zero) * scale of the g_idx group (its scale in f64, stored f32: 1 ulp apart).
    const viaGIdx = expectedDequantized(r, false);
    r.dequantized.forEach((v, i) => assert.ok(Math.abs(v - viaGIdx[i]!) <= Math.abs(v) * 2 ** -22, `W${bits} weight ${i}: GPTQ ${v}, codes through g_idx ${viaGIdx[i]}`));
    const codes = gptqResultToIntN(r, bits, group, false, 'layer');
    assert.deepEqual([...(codes.gIdx ?? [])], gIdx);
    const t = packGptq(codes, 'layer');
    assert.deepEqual([...t.gIdx], gIdx);
    // AutoGPTQ's QuantLinear.pack: intweight[:, i] = round((W[:, i] + zeros * scales [g_idx[i]]) / scales_f16[g_idx[i]]), then the same packing loop.
    for (let o = 0; o < rows; o++) {
      const levels: number[] = [];
      for (let i = 0; i < cols; i++) {
        const g = gIdx[i]! * rows + o;
        const scale = r.scales[g]!;
        levels.push(Math.round(Math.fround(r.dequantized[o * cols + i]! + Math.fround(r.zeros[g]! * scale)) / f16BitsToF32(f32ToF16Bits(scale))));
      }
      const words = Array.from({ length: (cols * bits) / 32 }, (_, w) => t.qweight[w * rows + o]! >>> 0);
      assert.deepEqual(words, autoGptqPackColumn(levels, bits), `W${bits} qweight column ${o}`);
    }
    const groups = cols / group;
    for (let g = 0; g < groups; g++) {
      const zerosMinusOne = Array.from({ length: rows }, (_, o) => (r.zeros[g * rows + o]! - 1) & ((1 << bits) - 1));
      const words = Array.from({ length: (rows * bits) / 32 }, (_, w) => t.qzeros[g * ((rows * bits) / 32) + w]! >>> 0);
      assert.deepEqual(words, autoGptqPackColumn(zerosMinusOne, bits), `W${bits} qzeros group ${g}`);
    }
    const expected = expectedDequantized(r, true);
    assert.ok(sameBits(dequantizeGptq(t), expected), `W${bits}: reader = GPTQ dequantized with f16 scales`);
    assert.ok(sameBits(dequantizeRowsWithF16Scales(codes), expected), `W${bits}: the writer's reconstruction for the card`);
    // Without g_idx the same codes would be read with contiguous groups: a different weight.
    assert.ok(!sameBits(dequantizeGptq({ ...t, gIdx: allocateGptq(bits, rows, cols, group).gIdx }), expected));
  }
});

test('allocateGptq refuses a g_idx that is not a partition into groups of group_size', () => {
  const good = Int32Array.from({ length: 64 }, (_, i) => (i * 7) % 2);
  assert.deepEqual([...allocateGptq(4, 8, 64, 32, 'w', good).gIdx], [...good]);
  assert.throws(() => allocateGptq(4, 8, 64, 32, 'w', good.subarray(1)), /g_idx has 63 entries, expected 64/);
  assert.throws(() => allocateGptq(4, 8, 64, 32, 'w', Int32Array.from({ length: 64 }, (_, i) => (i < 40 ? 0 : 1))), /g_idx puts 40 channels in group 0, expected 32/);
  assert.throws(() => allocateGptq(4, 8, 64, 32, 'w', Int32Array.from({ length: 64 }, (_, i) => i % 3)), InvalidArgumentError);
});

test('quantize --method gptq --act-order --to int4-g32 on micro-llama: g_idx and desc_act written; every linear reads back as GPTQ dequantized (f16 scales) bit for bit', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'gptq-act');
    const { result, run } = await runMethodQuantize(
      { input: microLlamaDir, target: 'int4-g32', output: out },
      { method: 'gptq', calib: join(fixturesDir, 'calib-64k.txt'), calibWindows: 2, actOrder: true },
    );
    const quantizeConfig = JSON.parse(await readFile(join(out, 'quantize_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(quantizeConfig.desc_act, true);
    assert.equal(quantizeConfig.group_size, 32);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
    assert.equal(config.quantization_config.desc_act, true);
    const card = parseQuantCard(JSON.parse(await readFile(result.cardPath, 'utf8')), result.cardPath);
    assert.equal(card.recipe.actOrder, true);
    const file = join(out, 'model.safetensors');
    const view = await openDequantizedCheckpoint(out);
    try {
      await withCheckpoint(file, async (written) =>
        withCheckpoint(microLlamaDir, async (source) => {
          const model = LlamaModel.fromCheckpoint(source);
          let nonMonotonic = 0;
          for (let l = 0; l < model.config.numLayers; l++) {
            for (const role of LINEAR_ROLES) {
              const name = model.linearTensorName(l, role);
              const r = run.gptqResults.get(linearModuleName(l, role))!;
              const t = await readGptqLinear(written, name.slice(0, -'.weight'.length), 4);
              assert.deepEqual([...t.gIdx], [...r.gIdx], `${name}: g_idx`);
              if (Array.from(r.gIdx).some((g, i, a) => i > 0 && g < a[i - 1]!)) nonMonotonic++;
              const expected = expectedDequantized(r, true);
              assert.ok(sameBits(await readResearchWeight(written, name, 4), expected), `${name}: read back`);
              assert.ok(sameBits(await view.readRowsF32(name), expected), `${name}: the runtime's view`);
            }
          }
          assert.ok(nonMonotonic > 0, 'act-order reordered some layer');
        }),
      );
    } finally {
      await view.close();
    }
  });
});
