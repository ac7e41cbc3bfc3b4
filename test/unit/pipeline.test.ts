import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import type { Checkpoint } from '../../src/core/formats/checkpoint';
import { planQuantize, runQuantize } from '../../src/core/quant/pipeline';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { dequantizeGptq } from '../../src/core/quant/gptqLayout';
import { dequantizeNf4Packed, DYNAMIC_CODE, NF4_CODE } from '../../src/core/quant/nf4';
import { E4M3_VALUES } from '../../src/core/quant/fp8';
import { fakeQuantizeRowsIntN } from '../../src/core/quant/intN';
import { computeErrorMetrics } from '../../src/core/analysis/errorMetrics';
import { withAtomicFile } from '../../src/core/io/atomicWrite';
import { bytesOf, SafetensorsStreamWriter } from '../../src/core/formats/safetensors/writer';
import { CancelledError, InvalidArgumentError, IoError, NumericError } from '../../src/core/errors';
import { withTempDir } from '../helpers/scoped';

const source = join(microLlamaDir, 'model.safetensors');
const Q_PROJ = 'model.layers.0.self_attn.q_proj.weight';

async function rawAs<T>(ckpt: Checkpoint, name: string, make: (b: ArrayBuffer, o: number, n: number) => T, size: number): Promise<T> {
  const raw = await ckpt.readRawRows(name);
  const copy = raw.slice();
  return make(copy.buffer, copy.byteOffset, copy.byteLength / size);
}

async function readSource(name: string): Promise<Float32Array> {
  const ckpt = await openCheckpoint(microLlamaDir);
  try {
    return await ckpt.readRowsF32(name);
  } finally {
    await ckpt.close();
  }
}

test('dry-run plan: per-tensor types, bytes and bits per weight (GPTQ int4 g32 = 5.125 bpw on a 64x64 weight)', async () => {
  const plan = await planQuantize({ input: microLlamaDir, output: '/nonexistent/out', target: 'int4-g32' });
  const q = plan.tensors.find((t) => t.name === Q_PROJ)!;
  assert.equal(q.action, 'quantize');
  assert.equal(q.type, 'gptq-int4-g32');
  // qweight 2048 B + qzeros 2 x 8 words 64 B + scales 2 x 64 f16 256 B + g_idx 256 B
  assert.equal(q.outputBytes, 2048 + 64 + 256 + 256);
  assert.equal(q.bitsPerWeight, 5.125);
  assert.deepEqual(q.outputs.map((o) => [o.name, o.dtype, o.shape]), [
    ['model.layers.0.self_attn.q_proj.qweight', 'I32', [8, 64]],
    ['model.layers.0.self_attn.q_proj.qzeros', 'I32', [2, 8]],
    ['model.layers.0.self_attn.q_proj.scales', 'F16', [2, 64]],
    ['model.layers.0.self_attn.q_proj.g_idx', 'I32', [64]],
  ]);
  for (const name of ['lm_head.weight', 'model.embed_tokens.weight', 'model.norm.weight']) assert.equal(plan.tensors.find((t) => t.name === name)!.action, 'copy');
  assert.equal(plan.tensors.filter((t) => t.action === 'quantize').length, 14);
  assert.ok(plan.totals.outputBytes < plan.totals.sourceBytes);
  assert.equal(plan.outputPath, '/nonexistent/out/model.safetensors');
  // --include-embeddings adds the embedding and lm_head matrices; norms stay copied.
  const withEmbeddings = await planQuantize({ input: microLlamaDir, output: '/nonexistent/o.safetensors', target: 'nf4', includeEmbeddings: true });
  assert.deepEqual(
    withEmbeddings.tensors.filter((t) => t.action === 'copy').map((t) => t.name),
    ['model.layers.0.input_layernorm.weight', 'model.layers.0.post_attention_layernorm.weight', 'model.layers.1.input_layernorm.weight', 'model.layers.1.post_attention_layernorm.weight', 'model.norm.weight'],
  );
  // NF4: 4 bits + one f32 absmax per 64 + the 16-entry map + 512-byte state per weight
  const head = withEmbeddings.tensors.find((t) => t.name === 'lm_head.weight')!;
  assert.equal(head.outputBytes, (8192 * 64) / 2 + (8192 * 64 / 64) * 4 + 64 + 512);
});

test('int4-g32 to a folder: GPTQ tensors read back through openCheckpoint equal the reference fake quant (f16 scales), card agrees', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'q4');
    const progress: string[] = [];
    const finished: string[] = [];
    const result = await runQuantize(
      { input: microLlamaDir, output: out, target: 'int4-g32' },
      // A tensor's second report (with `result`) says it is done: its card metrics, for live heatmaps.
      { onProgress: (p) => (p.result === undefined ? progress.push(`${p.step}/${p.total} ${p.tensor}`) : finished.push(`${p.step} ${p.result.name} ${p.result.sqnrDb}`)) },
    );
    assert.ok(progress.some((p) => p === `${progress.indexOf(p) + 1}/21 ${Q_PROJ}`), progress.join('\n'));
    assert.deepEqual((await readdir(out)).sort(), ['config.json', 'generation_config.json', 'model.safetensors', 'model.safetensors.quant.json', 'quantize_config.json', 'tokenizer.json', 'tokenizer_config.json']);
    const qc = JSON.parse(await readFile(join(out, 'quantize_config.json'), 'utf8')) as Record<string, unknown>;
    assert.deepEqual([qc.bits, qc.group_size, qc.sym, qc.desc_act, qc.checkpoint_format], [4, 32, false, false, 'gptq']);
    const config = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as { quantization_config: Record<string, unknown> };
    assert.equal(config.quantization_config.quant_method, 'gptq');
    const card = parseQuantCard(JSON.parse(await readFile(result.cardPath, 'utf8')), result.cardPath);
    assert.deepEqual(
      finished,
      card.tensors.flatMap((t, i) => (t.quantized ? [`${i + 1} ${t.name} ${t.sqnrDb}`] : [])),
    );
    assert.equal(card.source.files[0]!.sha256.length, 64);
    assert.equal(card.output.bytes, (await readFile(result.outputPath)).byteLength);

    const ckpt = await openCheckpoint(result.outputPath);
    try {
      const prefix = 'model.layers.0.self_attn.q_proj';
      const t = {
        bits: 4 as const,
        inFeatures: 64,
        outFeatures: 64,
        groupSize: 32,
        qweight: await rawAs(ckpt, `${prefix}.qweight`, (b, o, n) => new Int32Array(b, o, n), 4),
        qzeros: await rawAs(ckpt, `${prefix}.qzeros`, (b, o, n) => new Int32Array(b, o, n), 4),
        scales: await rawAs(ckpt, `${prefix}.scales`, (b, o, n) => new Uint16Array(b, o, n), 2),
        gIdx: await rawAs(ckpt, `${prefix}.g_idx`, (b, o, n) => new Int32Array(b, o, n), 4),
      };
      const back = dequantizeGptq(t, result.outputPath);
      const original = await readSource(Q_PROJ);
      // Same levels as the f32 reference fake quant; only the f16 rounding of the scale differs.
      const reference = fakeQuantizeRowsIntN(original, 64, 64, 4, 32, false);
      for (let i = 0; i < back.length; i++) assert.ok(Math.abs(back[i]! - reference[i]!) <= Math.abs(reference[i]!) * 2 ** -10 + 1e-7, `i ${i}`);
      const metrics = computeErrorMetrics(original, back, 64, 64);
      const entry = card.tensors.find((e) => e.name === Q_PROJ)!;
      assert.equal(entry.mse, metrics.mse);
      assert.equal(entry.type, 'gptq-int4-g32');
      assert.ok(entry.sqnrDb! > 15 && entry.sqnrDb! < 30, `SQNR ${entry.sqnrDb}`);
      assert.equal(entry.errorMap!.rowBands, 64);
      // copied tensors are byte-identical
      const src = await openCheckpoint(source);
      try {
        assert.deepEqual(await ckpt.readRawRows('model.norm.weight'), await src.readRawRows('model.norm.weight'));
      } finally {
        await src.close();
      }
    } finally {
      await ckpt.close();
    }
  });
});

test('nf4 with double quant, fp8 per channel, int8 and int8-zp: what the file holds reconstructs to the card metrics', async () => {
  await withTempDir(async (dir) => {
    const original = await readSource(Q_PROJ);
    const prefix = 'model.layers.0.self_attn.q_proj';
    const cases: { target: string; extra?: object; decode: (ckpt: Checkpoint) => Promise<Float32Array> }[] = [
      {
        target: 'nf4',
        extra: { doubleQuant: true },
        decode: async (ckpt) => {
          const packed = await ckpt.readRawRows(`${prefix}.weight`);
          const qabs = await ckpt.readRawRows(`${prefix}.weight.absmax`);
          const nested = await ckpt.readRowsF32(`${prefix}.weight.nested_absmax`);
          assert.deepEqual([...(await ckpt.readRowsF32(`${prefix}.weight.quant_map`))], [...NF4_CODE]);
          assert.deepEqual([...(await ckpt.readRowsF32(`${prefix}.weight.nested_quant_map`))], [...DYNAMIC_CODE]);
          const state = JSON.parse(new TextDecoder().decode(await ckpt.readRawRows(`${prefix}.weight.quant_state.bitsandbytes__nf4`))) as { nested_offset: number; blocksize: number; dtype: string; shape: number[] };
          assert.equal(state.blocksize, 64);
          assert.equal(state.dtype, 'bfloat16');
          assert.deepEqual(state.shape, [64, 64]);
          const absmax = Float32Array.from(qabs, (q, i) => Math.fround(Math.fround(DYNAMIC_CODE[q]! * nested[Math.floor(i / 256)]!) + state.nested_offset));
          return dequantizeNf4Packed(packed, absmax, 4096);
        },
      },
      {
        target: 'fp8',
        extra: { scale: 'channel' },
        decode: async (ckpt) => {
          const codes = await ckpt.readRawRows(`${prefix}.weight`);
          const scales = await ckpt.readRowsF32(`${prefix}.weight_scale`);
          assert.equal(ckpt.tensors.find((t) => t.name === `${prefix}.weight`)!.dtype, 'F8_E4M3');
          return Float32Array.from(codes, (c, i) => Math.fround(E4M3_VALUES[c]! * scales[Math.floor(i / 64)]!));
        },
      },
      {
        target: 'int8',
        decode: async (ckpt) => {
          const q = await ckpt.readRowsF32(`${prefix}.weight`);
          const scales = await ckpt.readRowsF32(`${prefix}.weight_scale`);
          return Float32Array.from(q, (v, i) => Math.fround(v * scales[Math.floor(i / 64)]!));
        },
      },
      {
        target: 'int8-zp',
        decode: async (ckpt) => {
          const q = await ckpt.readRowsF32(`${prefix}.weight`);
          const scales = await ckpt.readRowsF32(`${prefix}.weight_scale`);
          const zeros = await ckpt.readRowsF32(`${prefix}.weight_zero_point`);
          return Float32Array.from(q, (v, i) => Math.fround((v - zeros[Math.floor(i / 64)]!) * scales[Math.floor(i / 64)]!));
        },
      },
    ];
    for (const c of cases) {
      const out = join(dir, `${c.target}.safetensors`);
      const result = await runQuantize({ input: source, output: out, target: c.target, ...c.extra });
      const ckpt = await openCheckpoint(out);
      try {
        const back = await c.decode(ckpt);
        const entry = result.card.tensors.find((e) => e.name === Q_PROJ)!;
        assert.equal(entry.mse, computeErrorMetrics(original, back, 64, 64).mse, c.target);
        assert.ok(entry.cosine! > 0.98, `${c.target} cosine ${entry.cosine}`);
      } finally {
        await ckpt.close();
      }
      assert.ok((await readdir(dir)).includes(`${c.target}.safetensors.quant.json`));
    }
    // Higher precision, less error: int8 beats nf4 on SQNR.
    const card = async (t: string): Promise<number> => parseQuantCard(JSON.parse(await readFile(join(dir, `${t}.safetensors.quant.json`), 'utf8'))).totals.meanSqnrDb!;
    assert.ok((await card('int8')) > (await card('nf4')) + 10);
  });
});

test('refusals: output = input, unknown target (lists valid ones), NaN in a weight (tensor + flat index, nothing written)', async () => {
  await withTempDir(async (dir) => {
    await assert.rejects(runQuantize({ input: source, output: source, target: 'int8' }), InvalidArgumentError);
    await assert.rejects(runQuantize({ input: microLlamaDir, output: microLlamaDir, target: 'int8' }), InvalidArgumentError);
    await assert.rejects(runQuantize({ input: source, output: join(dir, 'x.safetensors'), target: 'int5' }), (e: unknown) => e instanceof InvalidArgumentError && /int4-g128.*nf4.*Q4_K_M/.test(e.message));
    await assert.rejects(runQuantize({ input: source, output: join(dir, 'x.safetensors'), target: 'nf4', groupSize: 64 }), InvalidArgumentError);

    const bad = join(dir, 'bad.safetensors');
    const w = new Float32Array(32 * 64).fill(0.5);
    w[100] = NaN;
    await withAtomicFile(bad, async (file) => {
      const writer = await SafetensorsStreamWriter.create(file, [
        { name: 'model.norm.weight', dtype: 'F32', shape: [64] },
        { name: 'model.layers.0.mlp.up_proj.weight', dtype: 'F32', shape: [32, 64] },
      ]);
      await writer.writeTensor('model.norm.weight', bytesOf(new Float32Array(64).fill(1)));
      await writer.writeTensor('model.layers.0.mlp.up_proj.weight', bytesOf(w));
      writer.finish();
    });
    await assert.rejects(
      runQuantize({ input: bad, output: join(dir, 'out.safetensors'), target: 'int4-g32' }),
      (e: unknown) => e instanceof NumericError && /up_proj\.weight: NaN at flat index 100 \(row 1, column 36\)/.test(e.message),
    );
    assert.deepEqual((await readdir(dir)).sort(), ['bad.safetensors']);

    // An Inf in a tensor that is only copied (a norm) is refused the same way.
    const badNorm = join(dir, 'bad-norm.safetensors');
    const norm = new Float32Array(64).fill(1);
    norm[5] = -Infinity;
    await withAtomicFile(badNorm, async (file) => {
      const writer = await SafetensorsStreamWriter.create(file, [{ name: 'model.norm.weight', dtype: 'F32', shape: [64] }]);
      await writer.writeTensor('model.norm.weight', bytesOf(norm));
      writer.finish();
    });
    await assert.rejects(runQuantize({ input: badNorm, output: join(dir, 'out2.safetensors'), target: 'int8' }), /model\.norm\.weight: -Infinity at flat index 5/);
    assert.deepEqual((await readdir(dir)).sort(), ['bad-norm.safetensors', 'bad.safetensors']);
  });
});

test('an injected disk error or a cancellation leaves nothing at the output path and no temp file', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'keep.txt'), 'x');
    let writes = 0;
    await assert.rejects(
      runQuantize(
        { input: source, output: join(dir, 'out.safetensors'), target: 'int8' },
        {
          onBeforeWrite: () => {
            writes += 1;
            if (writes === 5) throw new IoError('ENOSPC: no space left on device (injected)');
          },
        },
      ),
      /ENOSPC/,
    );
    assert.deepEqual(await readdir(dir), ['keep.txt']);
    const controller = new AbortController();
    await assert.rejects(
      runQuantize(
        { input: microLlamaDir, output: join(dir, 'folder'), target: 'int4-g64' },
        {
          signal: controller.signal,
          onProgress: (p) => {
            if (p.step === 6) controller.abort();
          },
        },
      ),
      CancelledError,
    );
    assert.deepEqual(await readdir(dir), ['keep.txt']); // the folder it created is removed too
  });
});

test('window by window gives the same bytes as one window per tensor, for every research target', async () => {
  await withTempDir(async (dir) => {
    // The linear weights of micro-llama (as F32) plus a norm: small enough for many runs with tiny windows.
    const linear = join(dir, 'linear.safetensors');
    const src = await openCheckpoint(source);
    try {
      const names = src.tensors.filter((t) => /proj\.weight$/.test(t.name) || t.name === 'model.norm.weight').map((t) => t.name);
      await withAtomicFile(linear, async (file) => {
        const writer = await SafetensorsStreamWriter.create(file, names.map((name) => ({ name, dtype: 'F32' as const, shape: src.tensors.find((t) => t.name === name)!.shape })));
        for (const name of names) await writer.writeTensor(name, bytesOf(await src.readRowsF32(name)));
        writer.finish();
      });
    } finally {
      await src.close();
    }
    const targets: { target: string; extra?: object }[] = [
      { target: 'int4-g32' },
      { target: 'int3-g128', extra: { groupSize: -1 } },
      { target: 'int8-g128', extra: { symmetric: true, groupSize: 48 } },
      { target: 'int8' },
      { target: 'int8-tensor' },
      { target: 'int8-zp', extra: { scale: 'tensor' } },
      { target: 'nf4', extra: { doubleQuant: true } },
      { target: 'nf4' },
      { target: 'fp8' },
      { target: 'fp8', extra: { scale: 'channel' } },
    ];
    for (const [k, t] of targets.entries()) {
      const whole = join(dir, `${k}-whole.safetensors`);
      const windowed = join(dir, `${k}-windowed.safetensors`);
      const a = await runQuantize({ input: linear, output: whole, target: t.target, ...t.extra });
      // 100 values per window: 1-row windows for 64-wide weights (nf4: 64-element aligned windows), 16 rows for 192-wide ones
      const b = await runQuantize({ input: linear, output: windowed, target: t.target, ...t.extra }, { windowElements: 100 });
      assert.ok((await readFile(whole)).equals(await readFile(windowed)), `${t.target} ${JSON.stringify(t.extra ?? {})}`);
      assert.deepEqual(a.card.tensors.map((x) => x.mse), b.card.tensors.map((x) => x.mse));
    }
    // Copied tensors in windows too (lm_head and embeddings: 8192 rows in windows of 64).
    const a = await runQuantize({ input: source, output: join(dir, 'full-whole.safetensors'), target: 'int8' });
    await runQuantize({ input: source, output: join(dir, 'full-windowed.safetensors'), target: 'int8' }, { windowElements: 4096 });
    assert.ok((await readFile(a.outputPath)).equals(await readFile(join(dir, 'full-windowed.safetensors'))));
  });
});

test('GGUF targets go through the exporter hook; the card measures every quantized tensor it reports', async () => {
  const { ggufExporter } = await import('../../src/core/convert/ggufExporter');
  await withTempDir(async (dir) => {
    const out = join(dir, 'sub', 'm.gguf'); // the folder is created
    const result = await runQuantize({ input: microLlamaDir, output: out, target: 'q8_0' }, { ggufExporter });
    const card = parseQuantCard(JSON.parse(await readFile(result.cardPath, 'utf8')));
    assert.equal(card.output.format, 'gguf');
    assert.equal(card.output.bytes, (await readFile(out)).byteLength);
    assert.equal(card.recipe.target, 'Q8_0');
    const quantized = card.tensors.filter((t) => t.quantized);
    assert.equal(quantized.length, 16); // 14 linear weights + token_embd + output
    for (const t of quantized) {
      assert.equal(t.type, 'Q8_0');
      assert.ok(t.sqnrDb! > 35, `${t.name}: ${t.sqnrDb}`);
      assert.equal(t.bitsPerWeight, 8.5);
    }
    assert.ok(card.tensors.filter((t) => !t.quantized).every((t) => t.type === 'F32' && t.shape.length === 1));
    const ckpt = await openCheckpoint(out);
    try {
      assert.equal(ckpt.format, 'gguf');
      assert.equal(ckpt.tensors.length, card.tensors.length);
    } finally {
      await ckpt.close();
    }
    // A GGUF input to a research target: a warning says names and row order stay GGUF's.
    const warnings: string[] = [];
    await runQuantize({ input: microLlamaF32Gguf, output: join(dir, 'from-gguf.safetensors'), target: 'int8' }, { onWarning: (w) => warnings.push(w) });
    assert.match(warnings.join('\n'), /is GGUF: tensors keep their GGUF names/);
    // Without an exporter the GGUF target is refused clearly; output = input is refused first.
    await assert.rejects(runQuantize({ input: microLlamaDir, output: join(dir, 'x.gguf'), target: 'Q4_K_M' }), /no GGUF exporter/);
    await assert.rejects(runQuantize({ input: microLlamaF32Gguf, output: microLlamaF32Gguf, target: 'Q8_0' }, { ggufExporter }), InvalidArgumentError);
  });
});

test('our reader (readResearchWeight) round-trips every research layout to the card metrics', async () => {
  const { readResearchWeight } = await import('../../src/core/quant/pipeline');
  await withTempDir(async (dir) => {
    const src = await openCheckpoint(source);
    const originals = new Map<string, Float32Array>();
    try {
      for (const t of src.tensors) if (/proj\.weight$/.test(t.name)) originals.set(t.name, await src.readRowsF32(t.name));
    } finally {
      await src.close();
    }
    const targets: { target: string; extra?: object }[] = [
      { target: 'int4-g128' }, // 64-wide rows: one short group; down_proj (192): 128 + 64
      { target: 'int3-g128', extra: { symmetric: true } },
      { target: 'int2-g64' },
      { target: 'int8-g128', extra: { groupSize: -1 } },
      { target: 'int8-tensor' },
      { target: 'int8-zp' },
      { target: 'nf4' },
      { target: 'nf4', extra: { doubleQuant: true } },
      { target: 'fp8', extra: { scale: 'channel' } },
      { target: 'fp8' },
    ];
    for (const [k, t] of targets.entries()) {
      const out = join(dir, `${k}.safetensors`);
      const result = await runQuantize({ input: source, output: out, target: t.target, ...t.extra });
      const ckpt = await openCheckpoint(out);
      try {
        for (const [name, original] of originals) {
          const entry = result.card.tensors.find((e) => e.name === name)!;
          const back = await readResearchWeight(ckpt, name);
          assert.equal(back.length, original.length);
          const m = computeErrorMetrics(original, back, entry.shape[0]!, entry.shape[1]!);
          assert.equal(m.mse, entry.mse, `${t.target} ${JSON.stringify(t.extra ?? {})} ${name}`);
        }
      } finally {
        await ckpt.close();
      }
    }
  });
});
