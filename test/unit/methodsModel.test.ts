import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel } from '../../src/core/model/forward';
import { perplexity } from '../../src/core/model/perplexity';
import { compareMethods, loadTokenizer, textWindows } from '../../src/core/methods/compare';
import { evaluationOptions, formatSiteReports, quantizeWithMethod } from '../../src/core/methods/quantizeWithMethod';
import { CancelledError, InvalidArgumentError } from '../../src/core/errors';
import { fixturesDir, microLlamaDir } from '../helpers/paths';

async function setup(): Promise<{ model: LlamaModel; calib: Int32Array[]; evalWindows: Int32Array[]; close: () => Promise<void> }> {
  const checkpoint = await openCheckpoint(microLlamaDir);
  const model = LlamaModel.fromCheckpoint(checkpoint);
  const tokenizer = await loadTokenizer(checkpoint);
  const calibIds = tokenizer.encode(readFileSync(join(fixturesDir, 'calib-64k.txt'), 'utf8'));
  const evalIds = tokenizer.encode(readFileSync(join(fixturesDir, 'eval.txt'), 'utf8'));
  return { model, calib: textWindows(calibIds, 256, 16, 'calibration'), evalWindows: textWindows(evalIds, 256, 8, 'evaluation'), close: () => checkpoint.close() };
}

test('micro-llama: SmoothQuant folding without quantization leaves the logits unchanged', async () => {
  const { model, calib, evalWindows, close } = await setup();
  try {
    const windows = evalWindows.slice(0, 2);
    const collect = async (options: Parameters<LlamaModel['run']>[2]): Promise<Float32Array[]> => {
      const out: Float32Array[] = [];
      await model.run(windows, (_w, logits) => out.push(Float32Array.from(logits)), options);
      return out;
    };
    const base = await collect({});
    const run = await quantizeWithMethod(model, calib, 'smoothquant', { bits: 8, groupSize: -1, alpha: 0.5, smoothOnly: true });
    const smoothScales = run.reports.filter((r) => r.smoothScale !== undefined);
    assert.equal(smoothScales.length, 4, 'two smoothed sites per layer');
    assert.ok(smoothScales.some((r) => r.smoothScale!.max / r.smoothScale!.min > 1.5), 'the factors are not trivial');
    const smoothed = await collect(evaluationOptions(run));
    let maxDiff = 0;
    let maxAbs = 0;
    for (let w = 0; w < base.length; w++) {
      for (let i = 0; i < base[w]!.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(base[w]![i]! - smoothed[w]![i]!));
        maxAbs = Math.max(maxAbs, Math.abs(base[w]![i]!));
      }
    }
    assert.ok(maxDiff < 1e-3 * maxAbs, `logits moved by ${maxDiff} (max |logit| ${maxAbs})`);
  } finally {
    await close();
  }
});

test('micro-llama W2 g64: GPTQ and AWQ each beat round-to-nearest; SmoothQuant W8A8 no worse than plain W8A8; LLM.int8() reports', async () => {
  const { model, calib, evalWindows, close } = await setup();
  try {
    const result = await compareMethods(model, [], [], {
      methods: [],
      bits: [],
      groupSize: 32,
      ctx: 128,
      calibWindows: 1,
      evalWindows: 1,
    }).catch((e: unknown) => e);
    assert.ok(result instanceof InvalidArgumentError, 'empty texts are refused');

    const ppl = async (method: 'rtn' | 'gptq' | 'awq' | 'smoothquant' | 'rtn-a8' | 'llm-int8', bits: number, group: number): Promise<number> => {
      const run = await quantizeWithMethod(model, calib, method, { bits, groupSize: group });
      return (await perplexity(model, evalWindows, evaluationOptions(run))).perplexity;
    };
    const fp = (await perplexity(model, evalWindows)).perplexity;
    // W2 g64 separates the methods clearly on this small model and short calibration (W3/W4 figures: bench/README).
    const rtn = await ppl('rtn', 2, 64);
    const gptq = await ppl('gptq', 2, 64);
    const awq = await ppl('awq', 2, 64);
    assert.ok(rtn > fp, `W2 RTN ${rtn} vs FP ${fp}`);
    assert.ok(gptq < 0.9 * rtn, `GPTQ ${gptq} not clearly below RTN ${rtn}`);
    assert.ok(awq < 0.9 * rtn, `AWQ ${awq} not clearly below RTN ${rtn}`);
    const plainW8A8 = await ppl('rtn-a8', 8, -1);
    const smooth = await ppl('smoothquant', 8, -1);
    assert.ok(smooth <= plainW8A8 * 1.002, `SmoothQuant W8A8 ${smooth} worse than plain W8A8 ${plainW8A8}`);

    const int8 = await quantizeWithMethod(model, calib, 'llm-int8', { bits: 8, groupSize: -1, threshold: 2.5 });
    const reports = int8.reports.flatMap((r) => r.llmInt8 ?? []);
    assert.equal(reports.length, 14, 'one report per linear layer');
    assert.ok(reports.some((r) => r.outlierDims.length > 0), 'with threshold 2.5 some dims of micro-llama stay 16-bit');
    for (const r of reports) assert.ok(r.relError.decomposed <= r.relError.plainInt8 + 1e-9, `${r.name}: ${JSON.stringify(r.relError)}`);
    const lines = formatSiteReports(int8);
    assert.equal(lines.length, 14);
    assert.ok(lines.every((l) => /outlier dims.*bytes.*decomposed/.test(l)), lines[0]);
    const int8Ppl = (await perplexity(model, evalWindows, evaluationOptions(int8))).perplexity;
    assert.ok(Math.abs(int8Ppl - fp) / fp < 0.02, `LLM.int8() ppl ${int8Ppl} vs FP ${fp}`);
    const zeroed = await quantizeWithMethod(model, calib, 'llm-int8-zeroed', { bits: 8, groupSize: -1, threshold: 2.5 });
    const zeroedPpl = (await perplexity(model, evalWindows, evaluationOptions(zeroed))).perplexity;
    assert.ok(zeroedPpl > int8Ppl * 1.05, `zeroing the outlier dims (${zeroedPpl}) must cost more than keeping them (${int8Ppl})`);
    console.log(JSON.stringify({ fp, rtn, gptq, awq, plainW8A8, smooth, int8Ppl, zeroedPpl }));
  } finally {
    await close();
  }
});

test('micro-llama: calibration too short for the Hessian, bad group, cancel in the middle of a layer', async () => {
  const { model, calib, close } = await setup();
  try {
    const short = [calib[0]!.subarray(0, 32)];
    await assert.rejects(
      quantizeWithMethod(model, short, 'gptq', { bits: 4, groupSize: 32 }),
      (e: unknown) => e instanceof InvalidArgumentError && /covers 32 tokens.*needs at least 64/.test(e.message),
    );
    const shortCalib = calib.slice(0, 4).map((w) => w.subarray(0, 64));
    const warned = await quantizeWithMethod(model, shortCalib, 'gptq', { bits: 4, groupSize: 32 });
    assert.ok(warned.warnings.some((w) => /256 calibration tokens for 192-column/.test(w)), warned.warnings.join('\n'));
    await assert.rejects(quantizeWithMethod(model, calib, 'gptq', { bits: 4, groupSize: 48 }), InvalidArgumentError);
    const controller = new AbortController();
    await assert.rejects(
      quantizeWithMethod(model, shortCalib, 'gptq', { bits: 4, groupSize: 32 }, { signal: controller.signal, onProgress: (done) => done === 1 && controller.abort() }),
      CancelledError,
    );
    // Abort while the first layer is being calibrated: checked per window, per site and per AWQ grid step.
    const inLayer = new AbortController();
    const run = quantizeWithMethod(model, shortCalib, 'awq', { bits: 4, groupSize: 32 }, { signal: inLayer.signal });
    setImmediate(() => inLayer.abort());
    await assert.rejects(run, CancelledError);
  } finally {
    await close();
  }
});

test('micro-llama: the method checkpoint wrapper reads the rewritten weights (what writers quantize) and evaluates the same', async () => {
  const { checkpointWithMethodWeights } = await import('../../src/core/methods/methodCheckpoint');
  const checkpoint = await openCheckpoint(microLlamaDir);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint);
    const ids = tokenizer.encode(readFileSync(join(fixturesDir, 'calib-64k.txt'), 'utf8'));
    const calib = textWindows(ids, 128, 2, 'calibration');
    const evalWindows = textWindows(tokenizer.encode(readFileSync(join(fixturesDir, 'eval.txt'), 'utf8')), 128, 2, 'evaluation');
    const run = await quantizeWithMethod(model, calib, 'awq', { bits: 4, groupSize: 64 });
    const wrapped = checkpointWithMethodWeights(checkpoint, model, run);
    const norm = await wrapped.readRowsF32('model.layers.0.input_layernorm.weight');
    assert.deepEqual(norm, run.layers![0]!.attnNorm);
    assert.notDeepEqual(norm, await checkpoint.readRowsF32('model.layers.0.input_layernorm.weight'), 'AWQ folded its scales into the norm');
    assert.deepEqual(await wrapped.readRowsF32('model.layers.1.mlp.down_proj.weight', 3, 2), run.layers![1]!.linear.down.slice(3 * 192, 5 * 192));
    assert.equal(wrapped.tensors.find((t) => t.name === 'model.layers.1.mlp.down_proj.weight')?.dtype, 'F32');
    assert.deepEqual(await wrapped.readRowsF32('model.embed_tokens.weight', 0, 1), await checkpoint.readRowsF32('model.embed_tokens.weight', 0, 1));
    const viaHooks = await perplexity(model, evalWindows, evaluationOptions(run));
    const viaWrapper = await perplexity(LlamaModel.fromCheckpoint(wrapped), evalWindows);
    assert.equal(viaWrapper.perplexity, viaHooks.perplexity);
  } finally {
    await checkpoint.close();
  }
});

test('micro-llama: a spilled run reads back through the method checkpoint as the in-memory run; a dropped or disposed run is refused', async () => {
  const { checkpointWithMethodWeights } = await import('../../src/core/methods/methodCheckpoint');
  const { disposeMethodRun } = await import('../../src/core/methods/quantizeWithMethod');
  const { tmpdir } = await import('node:os');
  const { existsSync } = await import('node:fs');
  const checkpoint = await openCheckpoint(microLlamaDir);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint);
    const calib = textWindows(tokenizer.encode(readFileSync(join(fixturesDir, 'calib-64k.txt'), 'utf8')), 128, 2, 'calibration');
    const settings = { bits: 4, groupSize: 64 };
    const inMemory = await quantizeWithMethod(model, calib, 'awq', settings);
    const spillPath = join(tmpdir(), `.methods-model-test.${process.pid}.tmp`);
    const spilled = await quantizeWithMethod(model, calib, 'awq', settings, { layers: { spillPath } });
    try {
      assert.equal(spilled.layers, null);
      assert.ok(existsSync(spillPath));
      const a = checkpointWithMethodWeights(checkpoint, model, inMemory);
      const b = checkpointWithMethodWeights(checkpoint, model, spilled);
      for (const name of ['model.layers.0.input_layernorm.weight', 'model.layers.1.post_attention_layernorm.weight', 'model.layers.0.self_attn.k_proj.weight', 'model.layers.1.mlp.down_proj.weight']) {
        assert.deepEqual(await b.readRowsF32(name), await a.readRowsF32(name), name);
        assert.deepEqual(await b.readRawRows(name, 0, 1), await a.readRawRows(name, 0, 1), `${name} raw row 0`);
      }
      await assert.rejects(b.readRowsF32('model.layers.1.mlp.down_proj.weight', 60, 5), InvalidArgumentError);
    } finally {
      await disposeMethodRun(spilled);
    }
    assert.equal(existsSync(spillPath), false, 'disposed: the spill file is gone');
    assert.throws(() => checkpointWithMethodWeights(checkpoint, model, spilled), InvalidArgumentError);
    const dropped = await quantizeWithMethod(model, calib, 'smoothquant', { bits: 8, groupSize: 0 }, { layers: 'discard' });
    assert.throws(() => checkpointWithMethodWeights(checkpoint, model, dropped), /not kept/);
  } finally {
    await checkpoint.close();
  }
});
