/**
 * The pure adapters behind the webview's view models (src/protocol/viewModels.ts), against values computed
 * by hand or independently here, and the dataset guard. No browser needed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  activationHistogramsFromAnalysis,
  classifyTensorName,
  comparisonFromCompareResult,
  errorsFromQuantCard,
  estimateTargetSizes,
  outlierMapFromAnalysis,
  shareBeyond,
  summarizeValues,
  tensorRow,
} from '../../src/protocol/viewModels';
import { checkDataset, WEBVIEW_PROTOCOL_VERSION, type WebviewDataset } from '../../src/protocol/webview';
import { ANALYSIS_REPORT_VERSION, type AnalysisReport } from '../../src/protocol/analysis';
import { fixturesDir } from './harness';

test('classifyTensorName: HF and GGUF names to layer + role', () => {
  assert.deepEqual(classifyTensorName('model.layers.3.self_attn.q_proj.weight'), { layer: 3, role: 'q' });
  assert.deepEqual(classifyTensorName('model.layers.11.mlp.down_proj.weight'), { layer: 11, role: 'down' });
  assert.deepEqual(classifyTensorName('model.layers.0.post_attention_layernorm.weight'), { layer: 0, role: 'ffn_norm' });
  assert.deepEqual(classifyTensorName('model.embed_tokens.weight'), { layer: null, role: 'embed' });
  assert.deepEqual(classifyTensorName('lm_head.weight'), { layer: null, role: 'output' });
  assert.deepEqual(classifyTensorName('model.norm.weight'), { layer: null, role: 'norm' });
  assert.deepEqual(classifyTensorName('blk.7.attn_k.weight'), { layer: 7, role: 'k' });
  assert.deepEqual(classifyTensorName('blk.7.ffn_gate.weight'), { layer: 7, role: 'gate' });
  assert.deepEqual(classifyTensorName('token_embd.weight'), { layer: null, role: 'embed' });
  assert.deepEqual(classifyTensorName('output.weight'), { layer: null, role: 'output' });
  assert.deepEqual(classifyTensorName('output_norm.weight'), { layer: null, role: 'norm' });
});

test('summarizeValues: moments, kurtosis, p99.9, exact exceedance, symmetric bins', () => {
  // 1000 values: 998 of +-1 (alternating) and two of +-10: mean 0.
  const values = new Float32Array(1000);
  for (let i = 0; i < 998; i++) values[i] = i % 2 === 0 ? 1 : -1;
  values[998] = 10;
  values[999] = -10;
  const s = summarizeValues(values, { id: 'x', label: 'x', source: 'weights', layer: 0, role: 'q', unit: 'value', bins: 10, thresholds: [0.5, 1, 5, 10, 11] });
  const m2 = (998 + 200) / 1000;
  const m4 = (998 + 20000) / 1000;
  assert.ok(Math.abs(s.std - Math.sqrt(m2)) < 1e-9);
  assert.ok(Math.abs((s.kurtosis ?? 0) - (m4 / (m2 * m2) - 3)) < 1e-9);
  assert.equal(s.absmax, 10);
  assert.equal(s.p999, 10); // index floor(0.999 * 999) = 998 of the sorted |x|: the first of the two 10s
  assert.deepEqual(s.exceedance.shares, [1, 1, 0.002, 0.002, 0]);
  assert.equal(s.edges.length, 11);
  assert.equal(s.edges[0], -10);
  assert.equal(s.edges[10], 10);
  assert.equal(s.counts.reduce((a, b) => a + b, 0), 1000);
  assert.equal(s.counts[0], 1); // -10
  assert.equal(s.counts[9], 1); // +10 falls in the last bin, not past it
  // unit 'std': thresholds are in multiples of the std.
  const z = summarizeValues(values, { id: 'x', label: 'x', source: 'weights', layer: 0, role: 'q', unit: 'std', bins: 10, thresholds: [6] });
  assert.ok(Math.abs(z.std - 1) < 1e-9);
  assert.ok(Math.abs(z.absmax - 10 / Math.sqrt(m2)) < 1e-5);
  assert.deepEqual(z.exceedance.shares, [0.002]);
});

test('shareBeyond: exact at grid points, monotone between, zero past absmax', () => {
  const summary = { absmax: 8, exceedance: { thresholds: [1, 2, 4, 8], shares: [0.5, 0.1, 0.01, 0.001] } };
  assert.equal(shareBeyond(summary, 2), 0.1);
  assert.equal(shareBeyond(summary, 0.5), 0.5);
  const mid = shareBeyond(summary, 3);
  assert.ok(mid < 0.1 && mid > 0.01);
  assert.ok(Math.abs(mid - Math.sqrt(0.1 * 0.01)) < 1e-12); // log-linear halfway
  assert.equal(shareBeyond(summary, 9), 0);
});

test('errorsFromQuantCard: heatmap cells and downsampled block maps from a quant card', () => {
  const map = (rows: number, cols: number, f: (r: number, c: number) => number) => ({ rowBands: rows, colBands: cols, values: Array.from({ length: rows * cols }, (_, i) => f(Math.floor(i / cols), i % cols)) });
  const card = {
    recipe: { target: 'int4-g128' },
    tensors: [
      { name: 'model.embed_tokens.weight', shape: [8, 4], type: 'gptq-int4-g128', quantized: true, bitsPerWeight: 4.25, relRmse: 0.1, sqnrDb: 20, maxAbsError: 0.02, errorMap: map(8, 4, (r) => r) },
      {
        name: 'model.layers.1.mlp.down_proj.weight',
        shape: [4, 4],
        type: 'gptq-int4-g128',
        quantized: true,
        bitsPerWeight: 4.25,
        relRmse: 0,
        sqnrDb: null,
        maxAbsError: 0,
        errorMap: map(4, 4, () => 0),
        errorHistogram: { range: 0.5, counts: Array.from({ length: 64 }, (_, i) => (i === 32 ? 16 : 0)), zeros: 16 },
      },
      { name: 'model.layers.1.input_layernorm.weight', shape: [4], type: 'BF16', quantized: false, bitsPerWeight: 16, relRmse: null, sqnrDb: null, maxAbsError: null, errorMap: null },
    ],
  };
  const { errors, blockMaps } = errorsFromQuantCard(card, 2, { downsample: 2 });
  assert.equal(errors.target, 'int4-g128');
  assert.deepEqual(errors.roles, ['embed', 'down']);
  assert.deepEqual(
    errors.cells.map((c) => [c.tensor, c.layer, c.role, c.sqnrDb]),
    [
      ['model.embed_tokens.weight', null, 'embed', 20],
      ['model.layers.1.mlp.down_proj.weight', 1, 'down', null],
    ],
  );
  // The card's element-wise error histogram goes with the block map: 65 edges over [-range, range]; a card without one gives none.
  const down = blockMaps.find((m) => m.tensor === 'model.layers.1.mlp.down_proj.weight');
  assert.equal(down?.errorHistogram?.edges.length, 65);
  assert.deepEqual([down?.errorHistogram?.edges[0], down?.errorHistogram?.edges[32], down?.errorHistogram?.edges[64]], [-0.5, 0, 0.5]);
  assert.equal(down?.errorHistogram?.counts[32], 16);
  assert.equal(down?.errorHistogram?.zeros, 16);
  const embed = blockMaps.find((m) => m.tensor === 'model.embed_tokens.weight');
  assert.equal(embed?.errorHistogram, undefined);
  assert.ok(embed !== undefined);
  assert.equal(embed.rows, 4);
  assert.equal(embed.cols, 2);
  assert.equal(embed.metric, 'mse');
  // Row bands r = 0..7 averaged in pairs: (0+1)/2, (2+3)/2, ...
  assert.deepEqual(embed.values, [0.5, 0.5, 2.5, 2.5, 4.5, 4.5, 6.5, 6.5]);
  assert.equal(embed.rowsPerCell, 2);
  // relative: the values are stored in units of their mean, and scale gives them back.
  const relative = errorsFromQuantCard(card, 2, { downsample: 2, relative: true }).blockMaps.find((m) => m.tensor === 'model.embed_tokens.weight');
  assert.equal(relative?.scale, 3.5);
  assert.deepEqual(
    relative?.values.map((v) => v * (relative.scale ?? 1)),
    embed.values,
  );
});

test('comparisonFromCompareResult: bits per parameter from bytes, FP16 baseline first', () => {
  const table = comparisonFromCompareResult(
    {
      baseline: { ppl: 40, bytes: 2000 },
      rows: [{ method: 'gptq', bits: 4, group: 128, ppl: 42, bytes: 600, seconds: 3 }],
      skipped: [{ method: 'llm-int8', bits: 4, reason: 'LLM.int8() is an 8-bit method' }],
      calibration: { windows: 2, ctx: 128, tokens: 256 },
      evaluation: { windows: 2, ctx: 128, tokens: 256 },
    },
    1000,
    { calibration: 'c.txt', evaluation: 'e.txt' },
  );
  assert.equal(table.baseline.bitsPerWeight, 16);
  assert.equal(table.rows[0]?.bitsPerWeight, 4.8);
  assert.match(table.evalDescription, /e\.txt \(2 windows of 128 tokens\).*not run: llm-int8 W4/);
});

test('estimateTargetSizes: 2-D tensors at bits per weight, 1-D as stored', () => {
  const rows = [tensorRow({ name: 'model.layers.0.self_attn.q_proj.weight', dtype: 'BF16', shape: [64, 64], nbytes: 8192 }), tensorRow({ name: 'model.norm.weight', dtype: 'BF16', shape: [64], nbytes: 128 })];
  const sizes = estimateTargetSizes(rows);
  assert.equal(sizes.find((s) => s.target === 'FP16')?.bytes, 8192 + 128);
  assert.equal(sizes.find((s) => s.target === 'Q8_0')?.bytes, (4096 * 8.5) / 8 + 128);
});

test('outlierMapFromAnalysis / activationHistogramsFromAnalysis: a hand-made report', () => {
  const site = (layer: number, absmax: number[], counts: number[]) => ({
    id: `layers.${layer}.attn_in`,
    kind: 'attn_in' as const,
    layer,
    consumers: [`model.layers.${layer}.self_attn.q_proj`],
    channels: 3,
    tokens: 100,
    absmax,
    meanAbs: absmax.map((a) => a / 4),
    countAtLeastThreshold: counts,
    outlierDims: counts.flatMap((c, d) => (c > 0 ? [d] : [])),
    standoutDims: [],
    medianAbsmax: 1,
    histogram: { edges: [0.5, 1, 2, 4, 8], counts: [100, 100, 60, 30], belowFirst: 5, aboveLast: 5 },
  });
  const report: AnalysisReport = {
    version: ANALYSIS_REPORT_VERSION,
    model: 'm',
    calibrationFile: 'c',
    tokens: 100,
    windows: 1,
    windowTokens: 100,
    threshold: 6,
    layers: 2,
    hidden: 3,
    criteria: { minLayerShare: 0.25, minTokenShare: 0.06, awqProtectFraction: 0.01, standoutFactor: 2, minStandoutLayerShare: 0.5 },
    sites: [site(1, [1, 9, 2], [0, 10, 0]), site(0, [1, 7, 3], [0, 8, 0])],
    systematic: [{ kind: 'attn_in', dim: 1, layerShare: 1, layers: [0, 1], tokenShare: 0.09, maxAbs: 9 }],
    recurringStandouts: [{ kind: 'attn_in', dim: 2, layers: [0, 1], layerShare: 1, meanRatio: 2.5, maxAbs: 3 }],
    weights: [
      { linear: 'model.layers.0.self_attn.q_proj', site: 'layers.0.attn_in', inputChannels: 3, weightAbsmax: [0.1, 0.5, 0.2], awqProtected: [1] },
      { linear: 'model.layers.1.self_attn.q_proj', site: 'layers.1.attn_in', inputChannels: 3, weightAbsmax: [0.1, 0.3, 0.2], awqProtected: [1] },
    ],
  };
  const map = outlierMapFromAnalysis(report, 'attn_in', 1);
  assert.equal(map.id, 'attn_in@6');
  assert.equal(map.layers, 2);
  assert.equal(map.dims, 3);
  assert.deepEqual(map.magnitude, [1, 7, 3, 1, 9, 2]); // sorted by layer
  assert.deepEqual(map.tokenShare, [0, 0.08, 0, 0, 0.1, 0]);
  assert.deepEqual(map.systematic, [{ dim: 1, layerShare: 1, tokenShare: 0.09, maxMagnitude: 9 }]);
  assert.deepEqual(map.standouts, [{ dim: 2, layerShare: 1, meanRatio: 2.5, maxMagnitude: 3 }]);
  assert.deepEqual(map.details.map((d) => d.dim).sort(), [1, 2]); // systematic, standout (the strongest is dim 1 again)
  const detail = map.details.find((d) => d.dim === 1);
  assert.deepEqual(detail?.magnitudeByLayer, [7, 9]);
  assert.deepEqual(
    detail?.readers.map((r) => [r.tensor, r.columnAbsMax, r.medianColumnAbsMax, r.awqProtected]),
    [
      ['model.layers.0.self_attn.q_proj', 0.5, 0.2, true],
      ['model.layers.1.self_attn.q_proj', 0.3, 0.2, true],
    ],
  );
  const [h] = activationHistogramsFromAnalysis(report);
  assert.ok(h !== undefined);
  assert.equal(h.count, 300);
  assert.equal(h.xScale, 'log');
  // share of |x| >= 4 = (30 + 5) / 300, exact at an edge.
  assert.equal(shareBeyond(h, 4), 35 / 300);
  assert.equal(h.kurtosis, null);
});

test('checkDataset: accepts the committed fixtures, refuses malformed parts with a reason', () => {
  for (const name of ['micro-llama.json', 'tiny-llama.json']) {
    const checked = checkDataset(JSON.parse(readFileSync(join(fixturesDir, name), 'utf8')) as unknown);
    assert.equal(checked.ok, true, checked.ok ? name : `${name}: ${checked.reason}`);
  }
  assert.deepEqual(checkDataset({ version: 99 }), { ok: false, reason: `dataset version 99 is not ${WEBVIEW_PROTOCOL_VERSION}` });
  const badHistogram = { version: WEBVIEW_PROTOCOL_VERSION, histograms: [{ id: 'a', label: 'a', edges: [0, 1], counts: [1, 2], exceedance: { thresholds: [], shares: [] } }] };
  assert.equal(checkDataset(badHistogram).ok, false);
  const badMap: WebviewDataset = { version: WEBVIEW_PROTOCOL_VERSION, blockMaps: [{ tensor: 't', target: 'T', metric: 'mse', rows: 65, cols: 1, rowsPerCell: 1, colsPerCell: 1, values: new Array<number>(65).fill(0) }] };
  assert.equal(checkDataset(badMap).ok, false);
});
