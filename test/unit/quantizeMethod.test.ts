import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fixturesDir, microLlamaDir } from '../helpers/paths';
import { main } from '../../src/cli/main';
import { CancelledError } from '../../src/core/errors';
import { LlamaModel } from '../../src/core/model/forward';
import { loadTokenizer, readTextFile, textWindows } from '../../src/core/methods/compare';
import { runMethodQuantize } from '../../src/core/methods/methodQuantize';
import { readResearchWeight, runQuantize } from '../../src/core/quant/pipeline';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { captureIo, withCheckpoint, withTempDir } from '../helpers/scoped';

const calibFile = join(fixturesDir, 'calib-64k.txt');
const CALIB_WINDOWS = 4;
const CTX = 256;
const LAYER0_ATTN_IN = ['q_proj', 'k_proj', 'v_proj'].map((p) => `model.layers.0.self_attn.${p}.weight`);

/** Layer 0's attn_in activations (the inputs of q/k/v) on the calibration windows, as rows of 64. */
async function layer0AttnInputs(): Promise<Float32Array[]> {
  return withCheckpoint(microLlamaDir, async (ckpt) => {
    const model = LlamaModel.fromCheckpoint(ckpt);
    const tokenizer = await loadTokenizer(ckpt);
    const windows = textWindows(tokenizer.encode(await readTextFile(calibFile, 'calibration')), CTX, CALIB_WINDOWS, 'calibration');
    const captured: Float32Array[] = [];
    await model.run(windows, () => undefined, {
      hooks: {
        onActivation: (site, x) => {
          if (site.id === 'layers.0.attn_in') captured.push(x.slice());
        },
      },
    });
    return captured;
  });
}

/** Sum over the captured rows of |x W_q^T - x W^T|^2. */
function outputError(inputs: Float32Array[], original: Float32Array, quantized: Float32Array, cols: number): number {
  const rows = original.length / cols;
  let err = 0;
  for (const x of inputs) {
    const tokens = x.length / cols;
    for (let t = 0; t < tokens; t++) {
      for (let r = 0; r < rows; r++) {
        let d = 0;
        for (let c = 0; c < cols; c++) d += x[t * cols + c]! * (quantized[r * cols + c]! - original[r * cols + c]!);
        err += d * d;
      }
    }
  }
  return err;
}

test('gptq --to int4-g32 (through the job worker): GPTQ layout with GPTQ codes (not RTN), lower layer-0 output error on the calibration text', async () => {
  await withTempDir(async (dir) => {
    const gptqOut = join(dir, 'gptq');
    const rtnOut = join(dir, 'rtn');
    const c = captureIo();
    const code = await main(['quantize', microLlamaDir, '--method', 'gptq', '--calib', calibFile, '--calib-windows', String(CALIB_WINDOWS), '--to', 'int4-g32', '-o', gptqOut], c.io);
    assert.equal(code, 0, c.err.join('\n'));
    assert.ok(c.out.some((l) => l.includes('GPTQ loss')), 'the per-site reports (from the job worker) are printed');
    assert.ok(c.err.some((l) => l.includes('calibrating gptq: layer 2 of 2')), `calibration progress on stderr: ${c.err.join(' | ')}`);
    await runQuantize({ input: microLlamaDir, target: 'int4-g32', output: rtnOut });
    const files = await readdir(gptqOut);
    for (const f of ['model.safetensors', 'quantize_config.json', 'model.safetensors.quant.json', 'config.json']) assert.ok(files.includes(f), `${f} written`);
    const card = parseQuantCard(JSON.parse(await readFile(join(gptqOut, 'model.safetensors.quant.json'), 'utf8')), 'card');
    assert.equal(card.recipe.method, 'gptq');
    assert.equal(card.recipe.groupSize, 32);
    const inputs = await layer0AttnInputs();
    assert.equal(inputs.length, CALIB_WINDOWS);
    let gptqError = 0;
    let rtnError = 0;
    await withCheckpoint(microLlamaDir, async (source) =>
      withCheckpoint(join(gptqOut, 'model.safetensors'), async (gptq) =>
        withCheckpoint(join(rtnOut, 'model.safetensors'), async (rtn) => {
          assert.ok(gptq.tensors.some((t) => t.name === 'model.layers.0.self_attn.q_proj.qweight'), 'GPTQ layout tensors');
          for (const name of LAYER0_ATTN_IN) {
            const original = await source.readRowsF32(name);
            const g = await readResearchWeight(gptq, name, 4);
            const r = await readResearchWeight(rtn, name, 4);
            assert.equal(g.length, original.length);
            let differing = 0;
            for (let i = 0; i < g.length; i++) if (g[i] !== r[i]) differing++;
            assert.ok(differing > g.length / 10, `${name}: GPTQ and RTN differ in ${differing} of ${g.length} weights`);
            gptqError += outputError(inputs, original, g, 64);
            rtnError += outputError(inputs, original, r, 64);
          }
        }),
      ),
    );
    assert.ok(gptqError < 0.9 * rtnError, `layer-0 q/k/v output error: GPTQ ${gptqError} vs RTN ${rtnError}`);
  });
});

test('awq --to int4-g32 reads back; the norms carry the inverse scales; the card records the method', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'awq.safetensors');
    const { result, run } = await runMethodQuantize({ input: microLlamaDir, target: 'int4-g32', output: out }, { method: 'awq', calib: calibFile, calibWindows: CALIB_WINDOWS });
    assert.equal(result.card.recipe.method, 'awq');
    assert.ok(run.reports.some((r) => typeof r.awqRatio === 'number' && r.awqRatio > 0), 'some site folded scales');
    await withCheckpoint(microLlamaDir, async (source) =>
      withCheckpoint(out, async (written) => {
        const normName = 'model.layers.0.input_layernorm.weight';
        const before = await source.readRowsF32(normName);
        const after = await written.readRowsF32(normName);
        assert.ok(after.some((v, i) => Math.abs(v - before[i]!) > 1e-3 * Math.abs(before[i]!)), 'the attn norm was rescaled');
        // The layer computes norm[j] * W[:, j]: the rescaling cancels, the 4-bit rounding stays.
        for (const name of LAYER0_ATTN_IN) {
          const w = await source.readRowsF32(name);
          const q = await readResearchWeight(written, name, 4);
          let num = 0;
          let den = 0;
          for (let i = 0; i < w.length; i++) {
            const c = i % 64;
            const d = q[i]! * after[c]! - w[i]! * before[c]!;
            num += d * d;
            den += (w[i]! * before[c]!) ** 2;
          }
          assert.ok(Number.isFinite(num) && num / den < 0.05, `${name}: relative error ${num / den}`);
        }
      }),
    );
  });
});

test('smoothquant --to int8: I8 weights of the smoothed layers, equivalent to the original through the norm', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'sq.safetensors');
    const c = captureIo();
    const code = await main(['quantize', microLlamaDir, '--method', 'smoothquant', '--alpha', '0.5', '--calib', calibFile, '--calib-windows', '2', '--to', 'int8', '-o', out, '--json'], c.io);
    assert.equal(code, 0, c.err.join('\n'));
    const summary = JSON.parse(c.out.join('\n')) as { method: string; reports: string[] };
    assert.equal(summary.method, 'smoothquant');
    assert.ok(summary.reports.some((l) => l.includes('SmoothQuant factors')));
    await withCheckpoint(microLlamaDir, async (source) =>
      withCheckpoint(out, async (written) => {
        assert.equal(written.tensors.find((t) => t.name === LAYER0_ATTN_IN[0])?.dtype, 'I8');
        const normName = 'model.layers.0.input_layernorm.weight';
        const before = await source.readRowsF32(normName);
        const after = await written.readRowsF32(normName);
        assert.ok(after.every((v, i) => v < before[i]! || before[i] === 0), 'SmoothQuant divides the norm by factors > 1 here');
        for (const name of LAYER0_ATTN_IN) {
          const w = await source.readRowsF32(name);
          const q = await readResearchWeight(written, name);
          let num = 0;
          let den = 0;
          for (let i = 0; i < w.length; i++) {
            const col = i % 64;
            const d = q[i]! * after[col]! - w[i]! * before[col]!;
            num += d * d;
            den += (w[i]! * before[col]!) ** 2;
          }
          assert.ok(num / den < 1e-3, `${name}: relative error ${num / den}`);
        }
      }),
    );
  });
});

test('refusals exit 2 with one line and write nothing', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'out');
    const base = ['quantize', microLlamaDir, '-o', out];
    const cases: [string[], RegExp][] = [
      [['--method', 'gptq', '--to', 'int4-g32'], /needs --calib/],
      [['--method', 'bogus', '--calib', calibFile, '--to', 'int4-g32'], /unknown --method 'bogus'/],
      [['--method', 'gptq', '--calib', calibFile, '--to', 'int8'], /GPTQ-layout target/],
      [['--method', 'awq', '--calib', calibFile, '--to', 'nf4'], /GPTQ-layout target/],
      [['--method', 'gptq', '--calib', calibFile, '--to', 'Q4_0', '--act-order'], /32 consecutive columns/],
      [['--method', 'gptq', '--calib', calibFile, '--to', 'F16'], /a float type has no grid/],
      [['--method', 'llm-int8', '--calib', calibFile, '--to', 'int4-g32'], /llm-int8 writes vector-wise INT8.*give --to int8/],
      [['--method', 'gptq', '--calib', calibFile, '--to', 'int4-g32', '--bits', '8'], /disagrees/],
      [['--method', 'awq', '--calib', calibFile, '--to', 'int4-g32', '--alpha', '0.5'], /--alpha applies to --method smoothquant/],
      [['--to', 'int8', '--alpha', '0.5'], /need --method/],
      [['--method', 'gptq', '--calib', join(dir, 'missing.txt'), '--to', 'int4-g32'], /cannot read the calibration text/],
    ];
    for (const [args, pattern] of cases) {
      const c = captureIo();
      const code = await main([...base, ...args], c.io);
      assert.equal(code, 2, `${args.join(' ')}: exit ${code}; ${c.err.join(' | ')}`);
      assert.equal(c.err.length, 1, `${args.join(' ')}: one line, got ${c.err.join(' | ')}`);
      assert.match(c.err[0]!, pattern);
      assert.equal(existsSync(out), false, `${args.join(' ')}: nothing written`);
    }
  });
});

test('cancel during calibration or during writing leaves nothing', async () => {
  for (const when of ['calibration', 'writing'] as const) {
    await withTempDir(async (dir) => {
      const out = join(dir, 'out');
      const controller = new AbortController();
      let writes = 0;
      await assert.rejects(
        runMethodQuantize(
          { input: microLlamaDir, target: 'int4-g32', output: out },
          { method: 'gptq', calib: calibFile, calibWindows: 2 },
          {
            signal: controller.signal,
            onCalibration: (done) => {
              if (when === 'calibration' && done >= 1) controller.abort();
            },
            onProgress: (p) => {
              if (when === 'writing' && p.action === 'quantize' && ++writes === 3) controller.abort();
            },
          },
        ),
        (e: unknown) => e instanceof CancelledError,
      );
      if (when === 'writing') assert.equal(writes, 3, 'the writer had started');
      assert.deepEqual(await readdir(dir), [], `${when}: nothing left in ${dir}`);
    });
  }
});
