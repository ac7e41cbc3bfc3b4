import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixturesDir, microLlamaDir } from '../helpers/paths';
import { captureIo, withCheckpoint, withTempDir } from '../helpers/scoped';
import { normalRng } from '../helpers/random';
import { main } from '../../src/cli/main';
import { FormatError, InvalidArgumentError } from '../../src/core/errors';
import { layoutSafetensors } from '../../src/core/formats/safetensors/writer';
import { LINEAR_ROLES, LlamaModel, type LinearRole } from '../../src/core/model/forward';
import { perplexity } from '../../src/core/model/perplexity';
import { loadTokenizer, readTextFile, textWindows } from '../../src/core/methods/compare';
import { SITE_ROLES, type CalibrationSite } from '../../src/core/methods/calibrate';
import { dequantizeLlmInt8, fakeQuantizeRowsLlmInt8, keptDimsOf, planFromKeptDims, planLlmInt8, quantizeRowsLlmInt8 } from '../../src/core/methods/llmInt8';
import { checkMethodRequest, llmInt8PlansFromCheckpoint, runMethodQuantize, type MethodQuantizeSpec } from '../../src/core/methods/methodQuantize';
import { evaluationOptions, llmInt8ActivationOptions, quantizeWithMethod, type MethodRun } from '../../src/core/methods/quantizeWithMethod';
import { f16BitsToF32 } from '../../src/core/quant/gptqLayout';
import { readLlmInt8Linear, readResearchWeight, runQuantize } from '../../src/core/quant/pipeline';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { dequantizedResearchView, openDequantizedCheckpoint } from '../../src/core/quant/researchCheckpoint';

const calibFile = join(fixturesDir, 'calib-64k.txt');
const evalFile = join(fixturesDir, 'eval.txt');
const CALIB_WINDOWS = 2;
// micro-llama's inputs stay below 6; threshold 2 and a kept fraction make every site keep some 16-bit dims.
const THRESHOLD = 2;
const KEEP_FRACTION = 0.05;
const SPEC: MethodQuantizeSpec = { method: 'llm-int8', calib: calibFile, calibWindows: CALIB_WINDOWS, threshold: THRESHOLD, keepFraction: KEEP_FRACTION };

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

function assertSameBits(got: Float32Array, expected: Float32Array, what: string): void {
  assert.equal(got.length, expected.length, `${what}: length`);
  const a = bitsOf(got);
  const b = bitsOf(expected);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) assert.fail(`${what}: element ${i} is ${got[i]}, expected ${expected[i]} (bits differ)`);
}

function siteOf(role: LinearRole): CalibrationSite {
  return (Object.keys(SITE_ROLES) as CalibrationSite[]).find((s) => SITE_ROLES[s].includes(role))!;
}

/** The method run on micro-llama in memory: the weights and plans `compare --methods llm-int8` evaluates. */
async function inMemoryRun(model: LlamaModel, calibIds: readonly number[]): Promise<MethodRun> {
  const windows = textWindows(calibIds, 256, CALIB_WINDOWS, 'calibration');
  return quantizeWithMethod(model, windows, 'llm-int8', { bits: 8, groupSize: 0, threshold: THRESHOLD, keepFraction: KEEP_FRACTION });
}

test('encoding: what dequantizeLlmInt8 reads back is fakeQuantizeRowsLlmInt8 bit for bit (ties, zero rows, -0, kept columns)', () => {
  const rows = 24;
  const cols = 40;
  const rng = normalRng(11);
  const w = new Float32Array(rows * cols);
  for (let i = 0; i < w.length; i++) w[i] = Math.fround(rng() * (i % 7 === 3 ? 20 : 1));
  for (let c = 0; c < cols; c++) w[5 * cols + c] = 0; // a zero row
  for (let c = 0; c < cols; c++) w[6 * cols + c] = c === 0 ? 0 : c % 2 === 0 ? -1e-9 : 1e-9; // rounds to -0 / +0
  for (let c = 0; c < cols; c++) w[7 * cols + c] = (c - 20) * 0.5; // absmax 10: steps of 10/127 hit ties
  const maxAbs = Float64Array.from({ length: cols }, (_, c) => (c % 7 === 3 ? 9 : 1 + c / 100));
  const plan = planLlmInt8(maxAbs, 6, 0.1);
  const kept = keptDimsOf(plan);
  assert.ok(kept.length > 5 && kept.length < cols / 2, `kept ${kept.length}`);
  const expected = Float32Array.from(w);
  fakeQuantizeRowsLlmInt8(expected, rows, cols, plan, 'decomposed');
  const stored = quantizeRowsLlmInt8(w, rows, cols, kept);
  assertSameBits(dequantizeLlmInt8(stored), expected, 'decomposed weights');
  // The standard part: SCB is the row absmax over the non-kept columns; CB holds round(w / (SCB / 127)).
  for (let r = 0; r < rows; r++) {
    let amax = 0;
    for (let c = 0; c < cols; c++) if (plan.keep16[c] === 0) amax = Math.max(amax, Math.abs(w[r * cols + c]!));
    assert.equal(stored.absmax[r], amax, `SCB row ${r}`);
    for (let c = 0; c < cols; c++) {
      const q = stored.codes[r * cols + c]!;
      assert.ok(q >= -127 && q <= 127);
      if (plan.keep16[c] === 0 && amax > 0) assert.ok(Math.abs(q - w[r * cols + c]! / (amax / 127)) <= 0.5 + 1e-9, `CB ${r},${c}`);
    }
    for (let j = 0; j < kept.length; j++) assert.equal(f16BitsToF32(stored.kept[r * kept.length + j]!), expected[r * cols + kept[j]!]!);
  }
  // A kept column that exceeds the row's int8 range is clamped in CB (what a loader ignoring the extras would use).
  const big = Float32Array.from([1, 100, -1, 0.5]);
  const s = quantizeRowsLlmInt8(big, 1, 4, Int32Array.from([1]));
  assert.deepEqual([...s.codes], [127, 127, -127, 64]);
  assert.throws(() => quantizeRowsLlmInt8(big, 1, 4, Int32Array.from([2, 1])), InvalidArgumentError);
  assert.throws(() => quantizeRowsLlmInt8(big, 1, 4, Int32Array.from([4])), InvalidArgumentError);
  assert.throws(() => dequantizeLlmInt8({ ...s, keptDims: Int32Array.from([3, 3]) }, 'x.safetensors'), FormatError);
});

test('quantize --method llm-int8 --to int8 on micro-llama: written -> read equals the in-memory decomposition bit for bit; layout, card', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'llm8.safetensors');
    const { result, run } = await runMethodQuantize({ input: microLlamaDir, target: 'int8', output: out }, SPEC, { keepLayersInMemory: true });
    assert.ok(run.layers !== null);
    const card = parseQuantCard(JSON.parse(await readFile(result.cardPath, 'utf8')), result.cardPath);
    assert.equal(card.recipe.method, 'llm-int8');
    assert.equal(card.recipe.threshold, THRESHOLD);
    assert.equal(card.recipe.keepFraction, KEEP_FRACTION);
    assert.equal(existsSync(join(dir, 'quantize_config.json')), false, 'no GPTQ side file');
    let keptTotal = 0;
    await withCheckpoint(microLlamaDir, async (source) =>
      withCheckpoint(out, async (written) => {
        const model = LlamaModel.fromCheckpoint(source);
        const byName = new Map(written.tensors.map((t) => [t.name, t]));
        for (let l = 0; l < model.config.numLayers; l++) {
          for (const role of LINEAR_ROLES) {
            const name = model.linearTensorName(l, role);
            const prefix = name.slice(0, -'.weight'.length);
            const plan = run.llmInt8Plans.get(`${l}.${siteOf(role)}`)!;
            const kept = keptDimsOf(plan);
            keptTotal += kept.length;
            const [rows, cols] = source.tensors.find((t) => t.name === name)!.shape as [number, number];
            // Names, dtypes, shapes.
            assert.deepEqual([byName.get(name)?.dtype, byName.get(name)?.shape], ['I8', [rows, cols]], name);
            assert.deepEqual([byName.get(`${prefix}.SCB`)?.dtype, byName.get(`${prefix}.SCB`)?.shape], ['F32', [rows]], `${prefix}.SCB`);
            assert.equal(byName.has(`${prefix}.weight_scale`), false);
            if (kept.length > 0) {
              assert.deepEqual([byName.get(`${prefix}.weight_outlier_idx`)?.dtype, byName.get(`${prefix}.weight_outlier_idx`)?.shape], ['I32', [kept.length]]);
              assert.deepEqual([byName.get(`${prefix}.weight_outlier`)?.dtype, byName.get(`${prefix}.weight_outlier`)?.shape], ['F16', [rows, kept.length]]);
            } else assert.equal(byName.has(`${prefix}.weight_outlier_idx`), false);
            const stored = await readLlmInt8Linear(written, prefix);
            assert.deepEqual([...stored.keptDims], [...kept], `${name}: kept dims`);
            // Written -> read == the weights compare evaluates, bit for bit.
            assertSameBits(await readResearchWeight(written, name), run.layers![l]!.linear[role], name);
            // The card: kept dims and bytes per weight, errors of the decomposed weights against the originals.
            assert.equal(card.recipe[`llmInt8.${prefix}.keptDims`], [...kept].join(','));
            assert.equal(card.recipe[`llmInt8.${prefix}.bytes16`], kept.length * (rows * 2 + 4));
            assert.equal(card.recipe[`llmInt8.${prefix}.bytesInt8`], rows * cols + rows * 4);
            const entry = card.tensors.find((t) => t.name === name)!;
            assert.equal(entry.type, 'llm-int8');
            const original = await source.readRowsF32(name);
            const decomposed = run.layers![l]!.linear[role];
            let se = 0;
            for (let i = 0; i < original.length; i++) se += (decomposed[i]! - original[i]!) ** 2;
            assert.ok(Math.abs(entry.mse! - se / original.length) <= 1e-6 * (se / original.length), `${name}: card mse ${entry.mse} vs ${se / original.length}`);
            assert.equal(entry.bitsPerWeight, ((rows * cols + rows * 4 + kept.length * (rows * 2 + 4)) * 8) / (rows * cols));
          }
        }
        // Norms and embeddings are copied as they were.
        assert.equal(byName.get('model.norm.weight')?.dtype, source.tensors.find((t) => t.name === 'model.norm.weight')?.dtype);
        assert.equal(byName.get('model.embed_tokens.weight')?.dtype, 'BF16');
      }),
    );
    assert.ok(keptTotal > 0, 'some dims were kept in 16 bit');
    // The writer's rows are independent: three rows per window gives the same bytes.
    const keptDims = new Map<string, Int32Array>();
    await withCheckpoint(microLlamaDir, async (source) => {
      const model = LlamaModel.fromCheckpoint(source);
      for (let l = 0; l < model.config.numLayers; l++) for (const role of LINEAR_ROLES) keptDims.set(model.linearTensorName(l, role), keptDimsOf(run.llmInt8Plans.get(`${l}.${siteOf(role)}`)!));
    });
    const windowed = join(dir, 'windowed.safetensors');
    await runQuantize({ input: microLlamaDir, target: 'int8', output: windowed }, { llmInt8: { keptDims, threshold: THRESHOLD }, windowElements: 3 * 64 });
    assert.ok(Buffer.from(await readFile(windowed)).equals(Buffer.from(await readFile(out))), 'same bytes window by window');
    // A plan for a tensor the checkpoint does not quantize is refused before anything is written.
    const stray = new Map([...keptDims, ['model.layers.9.mlp.up_proj.weight', new Int32Array(0)]]);
    await assert.rejects(runQuantize({ input: microLlamaDir, target: 'int8', output: join(dir, 'stray.safetensors') }, { llmInt8: { keptDims: stray, threshold: 6 } }), /model\.layers\.9\.mlp\.up_proj\.weight, which is not a quantized weight/);
    const missing = new Map([...keptDims].slice(1));
    await assert.rejects(runQuantize({ input: microLlamaDir, target: 'int8', output: join(dir, 'missing.safetensors') }, { llmInt8: { keptDims: missing, threshold: 6 } }), /no calibrated 16-bit dimensions for this weight/);
    await assert.rejects(runQuantize({ input: microLlamaDir, target: 'int4-g32', output: join(dir, 'int4.safetensors') }, { llmInt8: { keptDims, threshold: 6 } }), /give --to int8, not int4-g32/);
    assert.equal(existsSync(join(dir, 'stray.safetensors')) || existsSync(join(dir, 'missing.safetensors')) || existsSync(join(dir, 'int4.safetensors')), false);
  });
});

test('CLI end to end (folder): config.json quantization_config; the file evaluates to compare\'s llm-int8 perplexity (weights only, and with the recorded activation plans)', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'llm8');
    const c = captureIo();
    const args = ['quantize', microLlamaDir, '--method', 'llm-int8', '--calib', calibFile, '--calib-windows', String(CALIB_WINDOWS), '--threshold', String(THRESHOLD), '--keep-fraction', String(KEEP_FRACTION), '--to', 'int8', '-o', out, '--json'];
    const code = await main(args, c.io);
    assert.equal(code, 0, c.err.join('\n'));
    const summary = JSON.parse(c.out.join('\n')) as { method: string; reports: string[] };
    assert.equal(summary.method, 'llm-int8');
    assert.ok(summary.reports.some((l) => /outlier dims/.test(l)), 'per-layer reports printed');
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
    assert.deepEqual(config.quantization_config, { quant_method: 'bitsandbytes', load_in_8bit: true, load_in_4bit: false, llm_int8_threshold: THRESHOLD, llm_int8_skip_modules: ['lm_head'], llm_int8_has_fp16_weight: false });
    const ckpt = await openDequantizedCheckpoint(out);
    try {
      // The view hides the layout's tensors and shows float weights: the runtime runs the file as stored.
      assert.equal(ckpt.tensors.some((t) => t.name.endsWith('.SCB')), false);
      const fileModel = LlamaModel.fromCheckpoint(ckpt);
      const tokenizer = await loadTokenizer(ckpt);
      const evalWindows = textWindows(tokenizer.encode(await readTextFile(evalFile, 'eval')), 64, 4, 'eval');
      await withCheckpoint(microLlamaDir, async (source) => {
        const sourceModel = LlamaModel.fromCheckpoint(source);
        const run = await inMemoryRun(sourceModel, (await loadTokenizer(source)).encode(await readTextFile(calibFile, 'calibration')));
        const full = evaluationOptions(run);
        const weightsOnly = { hooks: { onLayerWeights: full.hooks!.onLayerWeights! } };
        const fromFile = await perplexity(fileModel, evalWindows);
        const inMemory = await perplexity(sourceModel, evalWindows, weightsOnly);
        assert.equal(fromFile.perplexity, inMemory.perplexity, 'weight-only perplexity');
        const base = await perplexity(sourceModel, evalWindows);
        assert.notEqual(fromFile.perplexity, base.perplexity, 'the file is not the float model');
        // compare's llm-int8 row also decomposes the activations; the file records the kept dims that do it.
        const raw = await withCheckpoint(join(out, 'model.safetensors'), async (stored) => llmInt8PlansFromCheckpoint(stored, fileModel));
        for (const [key, plan] of run.llmInt8Plans) assert.deepEqual([...raw.get(key)!.keep16], [...plan.keep16], key);
        const withActivations = await perplexity(fileModel, evalWindows, llmInt8ActivationOptions(raw));
        const compareRow = await perplexity(sourceModel, evalWindows, full);
        assert.equal(withActivations.perplexity, compareRow.perplexity, 'W8A8-decomposed perplexity');
      });
    } finally {
      await ckpt.close();
    }
  });
});

test('bad options exit 2 with one line and write nothing; bad specs throw InvalidArgumentError', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'out');
    const base = ['quantize', microLlamaDir, '--method', 'llm-int8', '--calib', calibFile, '-o', out];
    const cases: [string[], RegExp][] = [
      [['--to', 'int8', '--threshold', '0'], /--threshold 0: give a positive number/],
      [['--to', 'int8', '--threshold', '-1'], /--threshold -1/],
      [['--to', 'int8', '--keep-fraction', '1'], /--keep-fraction 1: give a fraction in \[0, 1\)/],
      [['--to', 'int8', '--keep-fraction', '1.5'], /--keep-fraction 1\.5/],
      [['--to', 'int8', '--keep-fraction', '-0.1'], /--keep-fraction -0\.1/],
      [['--to', 'int4-g32'], /give --to int8, not int4-g32/],
      [['--to', 'nf4'], /give --to int8, not nf4/],
      [['--to', 'Q8_0'], /give --to int8, not Q8_0/],
      [['--to', 'int8-tensor'], /give --to int8, not int8-tensor/],
      [['--to', 'int8', '--scale', 'tensor'], /--scale tensor/],
      [['--to', 'int8', '--include-embeddings'], /drop --include-embeddings/],
      [['--to', 'int8', '--act-order'], /--act-order applies to --method gptq/],
      [['--to', 'int8', '--damp', '0.1'], /--damp applies to --method gptq/],
      [['--to', 'int8', '--bits', '4'], /--bits 4 disagrees/],
    ];
    for (const [args, pattern] of cases) {
      const c = captureIo();
      const code = await main([...base, ...args], c.io);
      assert.equal(code, 2, `${args.join(' ')}: exit ${code}; ${c.err.join(' | ')}`);
      assert.equal(c.err.length, 1, `${args.join(' ')}: one line, got ${c.err.join(' | ')}`);
      assert.match(c.err[0]!, pattern, args.join(' '));
      assert.equal(existsSync(out), false, `${args.join(' ')}: nothing written`);
    }
    const request = { input: microLlamaDir, target: 'int8', output: join(dir, 'x.safetensors') };
    for (const bad of [{ threshold: 0 }, { threshold: -3 }, { threshold: Number.NaN }, { keepFraction: 1 }, { keepFraction: -0.01 }]) {
      assert.throws(() => checkMethodRequest(request, { ...SPEC, ...bad }), InvalidArgumentError, JSON.stringify(bad));
    }
    assert.equal(checkMethodRequest(request, SPEC).kind, 'research');
    assert.throws(() => checkMethodRequest(request, { method: 'smoothquant', calib: calibFile, threshold: 6 }), /--threshold and --keep-fraction apply to --method llm-int8/);
  });
});

test('reader: missing, mistyped or mis-shaped LLM.int8() tensors are FormatErrors naming the tensor; kept dims must agree within a site', async () => {
  await withTempDir(async (dir) => {
    const write = async (name: string, specs: { name: string; dtype: 'I8' | 'F32' | 'I32' | 'F16'; shape: number[] }[]): Promise<string> => {
      const layout = layoutSafetensors(specs);
      const bytes = new Uint8Array(layout.totalBytes);
      bytes.set(layout.header);
      const path = join(dir, name);
      await writeFile(path, bytes);
      return path;
    };
    const ok = [
      { name: 'l.weight', dtype: 'I8' as const, shape: [4, 8] },
      { name: 'l.SCB', dtype: 'F32' as const, shape: [4] },
      { name: 'l.weight_outlier_idx', dtype: 'I32' as const, shape: [2] },
      { name: 'l.weight_outlier', dtype: 'F16' as const, shape: [4, 2] },
    ];
    const cases: [string, typeof ok, RegExp][] = [
      ['scb-rows', [ok[0]!, { ...ok[1]!, shape: [3] }], /l\.SCB has 3 values for 4 rows/],
      ['scb-dtype', [ok[0]!, { ...ok[1]!, dtype: 'F16' }], /l\.SCB is F16, the LLM\.int8\(\) layout stores F32/],
      ['weight-dtype', [{ ...ok[0]!, dtype: 'F32' }, ok[1]!], /l\.weight is F32/],
      ['idx-alone', [ok[0]!, ok[1]!, ok[2]!], /weight_outlier_idx and weight_outlier come together/],
      ['outlier-shape', [ok[0]!, ok[1]!, ok[2]!, { ...ok[3]!, shape: [4, 3] }], /weight_outlier has shape \[4, 3\], expected \[4, 2\]/],
      // Kept dims stored as zeros: not strictly ascending.
      ['idx-values', ok, /not strictly ascending/],
    ];
    for (const [label, specs, pattern] of cases) {
      const path = await write(`${label}.safetensors`, specs);
      await withCheckpoint(path, async (ckpt) => {
        await assert.rejects(readResearchWeight(ckpt, 'l.weight'), (e: unknown) => e instanceof FormatError && pattern.test(e.message), label);
      });
    }
    // A view of a file whose layout is broken fails on open, not on the first read.
    const broken = await write('broken-view.safetensors', [{ name: 'l.qweight', dtype: 'I32', shape: [3, 8] }]);
    await withCheckpoint(broken, async (ckpt) => {
      await assert.rejects(dequantizedResearchView(ckpt), FormatError);
    });
    assert.throws(() => planFromKeptDims(8, Int32Array.from([8])), InvalidArgumentError);
  });
});

test('the dequantized view runs every research layout: F32 weights = readResearchWeight (row ranges too), layout tensors hidden, the model loads', async () => {
  await withTempDir(async (dir) => {
    const name = 'model.layers.1.mlp.down_proj.weight';
    for (const target of ['int8', 'int8-zp', 'int4-g32', 'int3-g128', 'nf4', 'fp8']) {
      const out = join(dir, target); // a folder: config.json beside the weights, for the model
      await runQuantize({ input: microLlamaDir, target, output: out, ...(target === 'int3-g128' ? { groupSize: 64 } : {}) });
      await withCheckpoint(out, async (stored) => {
        const view = await dequantizedResearchView(stored);
        const entry = view.tensors.find((t) => t.name === name);
        assert.deepEqual([entry?.dtype, entry?.shape], ['F32', [64, 192]], target);
        assert.equal(view.tensors.filter((t) => t.name === name).length, 1, `${target}: one entry`);
        assert.ok(!view.tensors.some((t) => /\.(qweight|qzeros|scales|g_idx|weight_scale|weight_zero_point|absmax|quant_map|SCB)$|quant_state/.test(t.name)), `${target}: layout tensors hidden`);
        const whole = await readResearchWeight(stored, name, target === 'int3-g128' ? 3 : 4);
        assert.ok(bitsOf(await view.readRowsF32(name)).every((v, i) => v === bitsOf(whole)[i]), `${target}: whole tensor`);
        assert.deepEqual([...(await view.readRowsF32(name, 10, 3))], [...whole.subarray(10 * 192, 13 * 192)], `${target}: rows 10..12`);
        await assert.rejects(view.readRowsF32(name, 63, 2), InvalidArgumentError);
        const model = LlamaModel.fromCheckpoint(view);
        assert.equal(model.config.numLayers, 2);
        assert.deepEqual([...(await view.readRowsF32('model.norm.weight'))], [...(await stored.readRowsF32('model.norm.weight'))], `${target}: other tensors pass through`);
        if (target === 'int4-g32') await assert.rejects(view.readRowsF32('model.layers.1.mlp.down_proj.qweight'), /part of a quantized layout/);
      });
    }
  });
});
