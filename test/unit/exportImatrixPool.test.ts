/**
 * llama-quantize --imatrix through the window quantizer: importance-weighted tensors stream like the others
 * (on the pool's workers with threads, rows split between them, weights copied beside each part). The whole
 * file of 14 presets must still equal llama-quantize --imatrix (test/fixtures/oracles/imatrix-synthetic),
 * at 1 and 2 threads with windows small enough to split every tensor. From a BF16 GGUF (no imatrix oracle
 * for one), rows staged as BF16 and widened on the workers must give the bytes of the same values read as f32.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { readImatrix } from '../../src/core/methods/imatrix';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';
import { syntheticImatrixBytes } from '../fixtures/oracles/imatrix-synthetic/syntheticImatrix';
import { fixturesDir } from '../helpers/paths';
import { withCheckpoint, withTempDir } from '../helpers/scoped';

/** The part of test/fixtures/oracles/imatrix-synthetic/llama-quantize-imatrix.json used here. */
interface ImatrixOracle {
  outputs: Record<string, { fileSha256: string }>;
}

const imatrixOracleDir = join(fixturesDir, 'oracles', 'imatrix-synthetic');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

for (const threads of [1, 2]) {
  test(`exportGguf --imatrix, ${threads} thread(s), small windows: 14 presets equal llama-quantize --imatrix file for file`, async () => {
    const oracle = JSON.parse(readFileSync(join(imatrixOracleDir, 'llama-quantize-imatrix.json'), 'utf8')) as ImatrixOracle;
    const imatrix = await readImatrix(new MemoryByteSource(syntheticImatrixBytes(), 'synthetic-imatrix.gguf'), 'synthetic-imatrix.gguf');
    await withTempDir(async (dir) => {
      const input = join(dir, 'synthetic-f32.gguf');
      await writeSyntheticInput(input);
      const failures: string[] = [];
      await withCheckpoint(input, async (checkpoint) => {
        for (const [preset, expected] of Object.entries(oracle.outputs)) {
          const output = join(dir, `${preset}.gguf`);
          await exportGguf(checkpoint, { target: preset, outputPath: output, threads, maxWindowElements: 3000, imatrix: { imatrix, file: 'synthetic-imatrix.gguf' } });
          if (sha256(new Uint8Array(readFileSync(output))) !== expected.fileSha256) failures.push(preset);
          await rm(output);
        }
      });
      assert.deepEqual(failures, []);
    });
  });
}

test('exportGguf --imatrix from a BF16 GGUF, 2 threads: rows staged as BF16 and widened on the workers give the bytes of the same values read as f32', async () => {
  const imatrix = await readImatrix(new MemoryByteSource(syntheticImatrixBytes(), 'synthetic-imatrix.gguf'), 'synthetic-imatrix.gguf');
  await withTempDir(async (dir) => {
    const f32 = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(f32);
    const bf16 = join(dir, 'synthetic-bf16.gguf');
    await withCheckpoint(f32, (c) => exportGguf(c, { target: 'BF16', outputPath: bf16, threads: 1 }));
    for (const preset of ['Q4_0', 'Q4_K_M', 'Q2_K', 'Q6_K']) {
      const viaBf16 = join(dir, `bf16-${preset}.gguf`);
      const viaF32 = join(dir, `f32-${preset}.gguf`);
      await withCheckpoint(bf16, async (checkpoint) => {
        let staged = 0;
        const read = checkpoint.readRowsBf16Into!;
        checkpoint.readRowsBf16Into = async (name, rowStart, rowCount, target) => {
          const done = await read.call(checkpoint, name, rowStart, rowCount, target);
          if (done) staged++;
          return done;
        };
        await exportGguf(checkpoint, { target: preset, outputPath: viaBf16, threads: 2, maxWindowElements: 3000, imatrix: { imatrix, file: 'synthetic-imatrix.gguf' } });
        assert.ok(staged > 50, `${preset}: rows were staged as BF16 (${staged})`);
        checkpoint.readRowsBf16Into = undefined;
        await exportGguf(checkpoint, { target: preset, outputPath: viaF32, threads: 1, imatrix: { imatrix, file: 'synthetic-imatrix.gguf' } });
      });
      assert.equal(sha256(new Uint8Array(readFileSync(viaBf16))), sha256(new Uint8Array(readFileSync(viaF32))), preset);
    }
  });
});
