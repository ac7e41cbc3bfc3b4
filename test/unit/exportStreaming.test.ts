/**
 * exportGguf's streamed windows when the checkpoint reads rows into a given buffer (readRowsF32Into):
 * rows go straight into the staged WebAssembly memory (split over workers with threads), Q/K rows are
 * permuted through the scratch buffer, and the file is the one the readRowsF32 path writes (micro-llama
 * HF) or llama-quantize's (synthetic F32 GGUF, oracle hashes); the card gets the same report either way.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { wholeTensorReports, type WholeTensorReport } from '../helpers/wholeTensors';
import type { Checkpoint } from '../../src/core/formats/checkpoint';
import { fixturesDir, microLlamaDir } from '../helpers/paths';
import { withCheckpoint, withTempDir } from '../helpers/scoped';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** `checkpoint` plus a readRowsF32Into that counts its calls (values from readRowsF32). */
function withReadInto(checkpoint: Checkpoint): { checkpoint: Checkpoint; calls: () => number } {
  let calls = 0;
  const wrapped = {
    format: checkpoint.format,
    path: checkpoint.path,
    files: checkpoint.files,
    metadata: checkpoint.metadata,
    config: checkpoint.config,
    tensors: checkpoint.tensors,
    gguf: checkpoint.gguf,
    readRowsF32: (name: string, rowStart?: number, rowCount?: number) => checkpoint.readRowsF32(name, rowStart, rowCount),
    readRawRows: (name: string, rowStart?: number, rowCount?: number) => checkpoint.readRawRows(name, rowStart, rowCount),
    close: () => checkpoint.close(),
    async readRowsF32Into(name: string, rowStart: number, rowCount: number, target: Float32Array): Promise<void> {
      calls++;
      const values = await checkpoint.readRowsF32(name, rowStart, rowCount);
      assert.equal(target.length, values.length, `${name}: target of the rows' size`);
      target.set(values);
    },
  };
  return { checkpoint: wrapped, calls: () => calls };
}

for (const threads of [1, 2]) {
  test(`${threads} thread(s): micro-llama HF -> Q8_0 / Q4_0 / Q4_K_M through readRowsF32Into (Q/K permuted) = through readRowsF32, card reports too`, async () => {
    await withTempDir(async (dir) => {
      await withCheckpoint(microLlamaDir, async (plain) => {
        const into = withReadInto(plain);
        for (const target of ['Q8_0', 'Q4_0', 'Q4_K_M']) {
          const reports: Record<'plain' | 'into', WholeTensorReport[]> = { plain: [], into: [] };
          const a = join(dir, `plain-${target}.gguf`);
          const b = join(dir, `into-${target}.gguf`);
          await exportGguf(plain, { target, outputPath: a, threads, maxWindowElements: 3000, onTensorRows: wholeTensorReports((r) => reports.plain.push(r)) });
          await exportGguf(into.checkpoint, { target, outputPath: b, threads, maxWindowElements: 3000, onTensorRows: wholeTensorReports((r) => reports.into.push(r)) });
          assert.equal(sha256(new Uint8Array(await readFile(b))), sha256(new Uint8Array(await readFile(a))), target);
          assert.equal(reports.into.length, reports.plain.length);
          reports.plain.forEach((r, i) => {
            const s = reports.into[i]!;
            assert.equal(s.name, r.name);
            assert.equal(sha256(s.quantized), sha256(r.quantized), `${target} ${r.name} bytes`);
            assert.equal(sha256(new Uint8Array(s.original.buffer, s.original.byteOffset, s.original.byteLength)), sha256(new Uint8Array(r.original.buffer, r.original.byteOffset, r.original.byteLength)), `${target} ${r.name} values`);
          });
        }
        assert.ok(into.calls() > 20, `readRowsF32Into was used (${into.calls()} calls)`);
      });
    });
  });
}

test('synthetic F32 GGUF through readRowsF32Into, 2 threads, small windows: llama-quantize bytes', async () => {
  const oracle = JSON.parse(await readFile(join(fixturesDir, 'oracles', 'llama-quantize-synthetic.json'), 'utf8')) as { outputs: Record<string, { target: string; pure: boolean; fileSha256: string }> };
  await withTempDir(async (dir) => {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    await withCheckpoint(input, async (plain) => {
      const into = withReadInto(plain);
      for (const name of ['Q8_0', 'Q4_0']) {
        const expected = oracle.outputs[name];
        assert.ok(expected !== undefined, name);
        const output = join(dir, `${name}.gguf`);
        await exportGguf(into.checkpoint, { target: expected.target, pure: expected.pure, outputPath: output, threads: 2, maxWindowElements: 3000 });
        assert.equal(sha256(new Uint8Array(await readFile(output))), expected.fileSha256, name);
      }
      assert.ok(into.calls() > 0);
    });
  });
});
