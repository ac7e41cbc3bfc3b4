import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { microLlamaDir } from '../helpers/paths';
import { runQuantize } from '../../src/core/quant/pipeline';
import { meanSqnr, parseQuantCard, QUANT_CARD_SCHEMA, sha256File, type QuantCardTensor } from '../../src/core/quant/quantCard';
import { FormatError } from '../../src/core/errors';
import { TOOL_VERSION } from '../../src/core/version';

test('a card written by the pipeline parses back; sha256, version, recipe and totals are right', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ql-card-'));
  try {
    const source = join(microLlamaDir, 'model.safetensors');
    const result = await runQuantize({ input: source, output: join(dir, 'o.safetensors'), target: 'int4-g64', symmetric: true });
    const raw: unknown = JSON.parse(await readFile(result.cardPath, 'utf8'));
    const card = parseQuantCard(raw, result.cardPath);
    assert.deepEqual(card, result.card);
    assert.equal(card.schema, QUANT_CARD_SCHEMA);
    assert.equal(card.tool.version, TOOL_VERSION);
    assert.equal(card.source.files[0]!.sha256, createHash('sha256').update(await readFile(source)).digest('hex'));
    assert.deepEqual([card.recipe.target, card.recipe.bits, card.recipe.groupSize, card.recipe.symmetric], ['int4-g64', 4, 64, true]);
    assert.equal(card.tensors.length, 21);
    assert.equal(card.tensors.filter((t) => t.quantized).length, 14);
    assert.equal(card.totals.quantizedParameters, card.tensors.filter((t) => t.quantized).reduce((s, t) => s + t.shape[0]! * t.shape[1]!, 0));
    assert.equal(card.totals.meanSqnrDb, meanSqnr(card.tensors));
    assert.equal(card.output.bytes, (await readFile(result.outputPath)).byteLength);
    for (const t of card.tensors.filter((x) => x.quantized)) {
      assert.equal(t.type, 'gptq-int4-g64-sym');
      assert.ok(t.errorMap !== null && t.errorMap.rowBands <= 64 && t.errorMap.colBands <= 64);
      // The element-wise error histogram: every element once, over a range that holds max |error|.
      const h = t.errorHistogram;
      assert.ok(h !== undefined && h !== null, t.name);
      assert.equal(h.counts.reduce((a, b) => a + b, 0), t.shape[0]! * t.shape[1]!);
      assert.ok(h.range >= t.maxAbsError! && h.range <= t.maxAbsError! * 1.125 + 1e-12, `${t.name}: range ${h.range}, max ${t.maxAbsError}`);
    }
    for (const t of card.tensors.filter((x) => !x.quantized)) assert.equal(t.errorHistogram, null);
    assert.equal(await sha256File(source), card.source.files[0]!.sha256);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('parseQuantCard rejects malformed cards, naming the field', () => {
  const tensor: QuantCardTensor = { name: 'w', shape: [2, 2], sourceType: 'F32', type: 'int8-channel', quantized: true, bitsPerWeight: 8, mse: 0.1, relRmse: 0.1, sqnrDb: 20, maxAbsError: 0.3, cosine: 0.99, errorMap: { rowBands: 2, colBands: 2, values: [0, 0.1, 0.2, 0.1] } };
  const good = {
    schema: QUANT_CARD_SCHEMA,
    tool: { name: 'quantlens', version: '0.1.0' },
    createdAt: '2026-01-01T00:00:00Z',
    source: { path: 'in', format: 'safetensors', files: [{ path: 'in', bytes: 10, sha256: 'a'.repeat(64) }] },
    output: { path: 'out', format: 'safetensors', bytes: 5 },
    recipe: { target: 'int8', bits: 8, groupSize: null },
    totals: { parameters: 4, quantizedParameters: 4, sourceBytes: 16, outputBytes: 5, bitsPerWeight: 10, meanSqnrDb: 20 },
    tensors: [tensor],
  };
  assert.equal(parseQuantCard(good).tensors[0]!.name, 'w');
  const broken = (patch: (c: typeof good) => unknown, where: RegExp): void => {
    const copy = JSON.parse(JSON.stringify(good)) as typeof good;
    const value = patch(copy) ?? copy;
    assert.throws(() => parseQuantCard(value, 'c.json'), (e: unknown) => e instanceof FormatError && where.test(e.message), where.source);
  };
  broken((c) => ({ ...c, schema: 'other/1' }), /c\.json: schema/);
  broken((c) => void (c.source.files[0]!.sha256 = 'xyz'), /source\.files\[0\]\.sha256/);
  broken((c) => void (c.tensors[0]!.errorMap!.values = [1, 2, 3]), /tensors\[0\]\.errorMap\.values: expected 4 values/);
  broken((c) => void (c.tensors[0]!.mse = 'big' as unknown as number), /tensors\[0\]\.mse/);
  broken((c) => void (c.output.format = 'onnx' as 'safetensors'), /output\.format/);
  broken((c) => void ((c.recipe as Record<string, unknown>).nested = { a: 1 }), /recipe\.nested/);
  broken(() => [good], /card: expected an object/);
  broken((c) => void (c.totals.parameters = -1), /totals\.parameters/);
  // Cards written before the error histogram existed still parse (the key stays absent); a malformed one does not.
  assert.equal('errorHistogram' in parseQuantCard(good).tensors[0]!, false);
  const withHistogram = JSON.parse(JSON.stringify(good)) as typeof good;
  withHistogram.tensors[0]!.errorHistogram = { range: 0.5, counts: Array.from({ length: 64 }, (_, i) => (i === 31 || i === 32 ? 2 : 0)), zeros: 1 };
  assert.deepEqual(parseQuantCard(withHistogram).tensors[0]!.errorHistogram, withHistogram.tensors[0]!.errorHistogram);
  broken((c) => void (c.tensors[0]!.errorHistogram = { range: 0.5, counts: [1, 2, 3], zeros: 0 }), /tensors\[0\]\.errorHistogram\.counts: expected 64 counts/);
  broken((c) => void (c.tensors[0]!.errorHistogram = { range: -1, counts: new Array<number>(64).fill(0), zeros: 0 }), /tensors\[0\]\.errorHistogram\.range/);
  broken((c) => void (c.tensors[0]!.errorHistogram = { range: 1, counts: new Array<number>(64).fill(0.5), zeros: 0 }), /tensors\[0\]\.errorHistogram\.counts\[0\]/);
  broken((c) => void (c.tensors[0]!.errorHistogram = { range: 1, counts: new Array<number>(64).fill(1), zeros: 0 }), /errorHistogram\.counts: expected counts adding up to the 4 elements of the tensor, got 64/);
  broken((c) => void (c.tensors[0]!.errorHistogram = { range: 0.5, counts: Array.from({ length: 64 }, (_, i) => (i === 31 || i === 32 ? 2 : 0)), zeros: 3 }), /errorHistogram\.zeros/);
});
