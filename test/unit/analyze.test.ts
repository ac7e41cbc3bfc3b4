import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CancelledError, InvalidArgumentError } from '../../src/core/errors';
import { awqProtectedChannels, findRecurringStandouts, findSystematicOutliers, standoutChannels } from '../../src/core/analysis/emergentFeatures';
import { analyzeModel } from '../../src/core/model/analyzeModel';
import { readTextFile } from '../../src/core/model/calibration';
import { loadModel } from '../../src/core/model/loadModel';
import { runAnalyze } from '../../src/cli/commands/analyze';
import { runEval, type EvalReport } from '../../src/cli/commands/eval';
import type { ActivationSiteKind, ActivationSiteStats, AnalysisReport } from '../../src/protocol/analysis';
import type { CliIo } from '../../src/cli/cliTypes';
import { fixturesDir, microLlamaDir, sharedFile, tinyLlamaDir } from '../helpers/paths';

function site(kind: ActivationSiteKind, layer: number, tokens: number, counts: number[], absmax: number[]): ActivationSiteStats {
  return {
    id: `layers.${layer}.${kind}`,
    kind,
    layer,
    consumers: [],
    channels: counts.length,
    tokens,
    absmax,
    meanAbs: absmax.map((a) => a / 4),
    countAtLeastThreshold: counts,
    outlierDims: [],
    standoutDims: [],
    medianAbsmax: 0,
    histogram: { edges: [], counts: [], belowFirst: 0, aboveLast: 0 },
  };
}

function captureIo(): CliIo & { lines: string[]; errors: string[] } {
  const lines: string[] = [];
  const errors: string[] = [];
  return { lines, errors, out: (s) => lines.push(s), err: (s) => errors.push(s), isTTY: false };
}

test('LLM.int8() criteria: >= 25% of layers and >= 6% of tokens, per site family', () => {
  // 8 layers, 4 dims, 100 tokens. dim 1: 10% of tokens in layers 0..2 (3/8 = 37.5%) -> systematic.
  // dim 2: 5% of tokens in every layer -> not (token share). dim 3: 50% of tokens in 1 layer -> not (layers).
  const sites = Array.from({ length: 8 }, (_, l) => site('attn_in', l, 100, [0, l < 3 ? 10 : 0, 5, l === 4 ? 50 : 0], [1, 9, 7, 8]));
  const found = findSystematicOutliers(sites);
  assert.deepEqual(
    found.map((f) => [f.kind, f.dim, f.layers, f.layerShare, Number(f.tokenShare.toFixed(12))]),
    [['attn_in', 1, [0, 1, 2], 3 / 8, 0.1]],
  );
  assert.equal(findSystematicOutliers(sites, 0.25, 0.05).length, 2);
});

test('recurring standouts: absmax >= 2x the site median in >= half the layers; AWQ picks the top 1% by mean |x|', () => {
  assert.deepEqual(standoutChannels([1, 1, 1, 1, 2, 5, 1.9]), [4, 5]);
  const sites = Array.from({ length: 4 }, (_, l) => site('mlp_in', l, 10, [0, 0, 0, 0, 0], [1, 1, l < 2 ? 3 : 1, 1, l < 1 ? 4 : 1]));
  const found = findRecurringStandouts(sites);
  assert.deepEqual(
    found.map((f) => [f.dim, f.layers, f.meanRatio]),
    [[2, [0, 1], 3]],
  );
  assert.deepEqual(awqProtectedChannels([0.1, 0.5, 0.2, 0.5]), [1]);
  assert.deepEqual(awqProtectedChannels(Array.from({ length: 384 }, (_, j) => (j === 7 ? 3 : j === 300 ? 2 : 1))).slice(0, 2), [7, 300]);
  assert.equal(awqProtectedChannels(Array.from({ length: 384 }, () => 1)).length, 4);
});

test('tiny-llama: the analysis finds the few attention-input channels that stand out across layers, the same on two texts', { skip: tinyLlamaDir.skip || sharedFile('data/calib.txt').skip }, async () => {
  const lm = await loadModel(tinyLlamaDir.path);
  try {
    const reports: AnalysisReport[] = [];
    for (const file of [sharedFile('data/calib.txt').path, join(fixturesDir, 'eval.txt')]) {
      const text = await readTextFile(file);
      reports.push(await analyzeModel(lm.model, lm.tokenizer, text, { tokens: 1024, modelName: 'tiny-llama', calibrationFile: file }));
    }
    const dimsOf = (r: AnalysisReport, minShare: number): number[] =>
      r.recurringStandouts.filter((s) => s.kind === 'attn_in' && s.layerShare >= minShare).map((s) => s.dim).sort((a, b) => a - b);
    const [a, b] = reports.map((r) => dimsOf(r, 0.5));
    const union = [...new Set([...a!, ...b!])];
    const common = a!.filter((d) => b!.includes(d));
    assert.ok(union.length >= 1 && union.length <= 5, `attention-input standouts: calib ${a!.join(', ')}; eval ${b!.join(', ')}`);
    // The same channels on calibration and evaluation text: a model property, not the text's (one channel
    // right at the 50%-of-layers line may tip either way).
    assert.ok(common.length >= 1 && common.length >= union.length - 1, `calib ${a!.join(', ')} vs eval ${b!.join(', ')}`);
    const report = reports[0]!;
    assert.equal(report.layers, 8);
    assert.equal(report.sites.length, 8 * 5 + 1);
    for (const s of report.recurringStandouts.filter((x) => x.kind === 'attn_in')) {
      assert.ok(s.layerShare >= 0.5 && s.meanRatio >= 2, JSON.stringify(s));
      for (const layer of s.layers) {
        const stats = report.sites.find((x) => x.id === `layers.${layer}.attn_in`)!;
        assert.ok(stats.consumers.includes(`model.layers.${layer}.self_attn.q_proj`));
        // Among the top 5 channels of that layer, out of 384.
        const rank = stats.absmax.filter((v) => v > stats.absmax[s.dim]!).length;
        assert.ok(rank < 5, `dim ${s.dim} ranks ${rank} in layer ${layer}`);
      }
    }
    // The weight view covers every linear layer; AWQ protects 1% (4 of 384 inputs, 11 of 1024).
    assert.equal(report.weights.length, 8 * 7);
    const q0 = report.weights.find((w) => w.linear === 'model.layers.0.self_attn.q_proj')!;
    assert.equal(q0.awqProtected.length, 4);
    assert.equal(q0.weightAbsmax.length, 384);
    assert.equal(report.weights.find((w) => w.linear === 'model.layers.0.mlp.down_proj')!.awqProtected.length, 11);
  } finally {
    await lm.close();
  }
});

test('quantlens analyze --json on micro-llama: the report the outlier explorer reads', async () => {
  const io = captureIo();
  const dir = await mkdtemp(join(tmpdir(), 'ql-analyze-'));
  try {
    const out = join(dir, 'report.json');
    assert.equal(await runAnalyze([microLlamaDir, '--calib', join(fixturesDir, 'calib-64k.txt'), '--tokens', '512', '--json', '--out', out], io), 0);
    const report = JSON.parse(io.lines.join('\n')) as AnalysisReport;
    assert.deepEqual(JSON.parse(await readFile(out, 'utf8')), report);
    assert.equal(report.version, 1);
    assert.equal(report.tokens, 512);
    assert.deepEqual(
      report.sites.map((s) => s.id),
      ['layers.0.attn_in', 'layers.0.attn_out', 'layers.0.mlp_in', 'layers.0.mlp_act', 'layers.0.residual', 'layers.1.attn_in', 'layers.1.attn_out', 'layers.1.mlp_in', 'layers.1.mlp_act', 'layers.1.residual', 'final_norm'],
    );
    for (const s of report.sites) {
      assert.equal(s.absmax.length, s.channels);
      assert.equal(s.tokens, 512);
      const binned = s.histogram.counts.reduce((x, y) => x + y, 0) + s.histogram.belowFirst + s.histogram.aboveLast;
      assert.equal(binned, s.tokens * s.channels, `${s.id}: every value lands in one bin`);
    }
    // The lm_head input of micro-llama has values >= 6 (reference act_stats: every channel).
    assert.ok(report.sites.at(-1)!.outlierDims.length > 0);
    const text = captureIo();
    assert.equal(await runAnalyze([microLlamaDir, '--calib', join(fixturesDir, 'calib-64k.txt'), '--tokens', '256'], text), 0);
    assert.ok(text.lines.some((l) => l.startsWith('systematic outlier dims')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('quantlens eval --json: baseline, simulated settings and deltas', async () => {
  const io = captureIo();
  assert.equal(await runEval([microLlamaDir, '--text', join(fixturesDir, 'eval.txt'), '--windows', '2', '--quant', 'W2,KV4', '--json'], io), 0);
  const report = JSON.parse(io.lines.join('\n')) as EvalReport;
  assert.deepEqual(report.rows.map((r) => r.setting), ['FP16', 'W2g64', 'KV4']);
  assert.equal(report.rows[0]!.deltaVsBaseline, 0);
  assert.ok(report.rows[1]!.perplexity > report.rows[0]!.perplexity * 1.5, 'W2 breaks the model');
  await assert.rejects(runEval([microLlamaDir, '--text', join(fixturesDir, 'eval.txt'), '--ctx', '1024'], captureIo()), (e: unknown) => e instanceof InvalidArgumentError && /max_position_embeddings/.test(e.message));
});

test('bad input: empty or non-UTF-8 calibration text, context too long, cancel during the pass', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ql-bad-'));
  try {
    const empty = join(dir, 'empty.txt');
    const latin1 = join(dir, 'latin1.txt');
    await writeFile(empty, '');
    await writeFile(latin1, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6e, 0x61, 0xef, 0x76, 0x65])); // "café naïve" in Latin-1
    await assert.rejects(runAnalyze([microLlamaDir, '--calib', empty], captureIo()), (e: unknown) => e instanceof InvalidArgumentError && /empty/.test(e.message) && e.message.includes(empty));
    await assert.rejects(runAnalyze([microLlamaDir, '--calib', latin1], captureIo()), (e: unknown) => e instanceof InvalidArgumentError && /not valid UTF-8/.test(e.message));
    await assert.rejects(runAnalyze([microLlamaDir, '--calib', join(fixturesDir, 'calib-64k.txt'), '--ctx', '600'], captureIo()), (e: unknown) => e instanceof InvalidArgumentError && /max_position_embeddings \(512\)/.test(e.message));
    const lm = await loadModel(microLlamaDir);
    try {
      const controller = new AbortController();
      await assert.rejects(
        analyzeModel(lm.model, lm.tokenizer, await readTextFile(join(fixturesDir, 'calib-64k.txt')), {
          tokens: 1024,
          modelName: 'm',
          calibrationFile: 'c',
          signal: controller.signal,
          onProgress: () => controller.abort(),
        }),
        CancelledError,
      );
    } finally {
      await lm.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
