/**
 * K-quant importance-matrix paths (quantize_row_q2_K_impl ... q6_K_impl) against llama-quantize --imatrix on
 * the synthetic LLaMA (hidden 256: no K fallbacks), with the synthetic imatrix (two entries missing, so those
 * tensors take the no-weights path inside an imatrix run). Oracle and script: test/fixtures/oracles/imatrix-synthetic/.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { FormatError } from '../../src/core/errors';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { readGgufHeader } from '../../src/core/formats/gguf/reader';
import { ggmlTypeByName } from '../../src/core/formats/gguf/ggmlTypes';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { importanceWeights, quantizeRowsWithImatrix, readImatrix } from '../../src/core/methods/imatrix';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';
import { SYNTHETIC_IMATRIX_MISSING, syntheticImatrixBytes } from '../fixtures/oracles/imatrix-synthetic/syntheticImatrix';
import { fixturesDir, tinyLlamaDir } from '../helpers/paths';
import { withTempDir } from '../helpers/scoped';

export interface ImatrixOracle {
  inputSha256: string;
  imatrixSha256: string;
  outputs: Record<string, { fileBytes: number; fileSha256: string; kvKeys: string[]; tensors: Record<string, { type: string; sha256: string }> }>;
}

export const imatrixOracleDir = join(fixturesDir, 'oracles', 'imatrix-synthetic');
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

test('K-quant imatrix paths: every tensor of 14 presets equals llama-quantize --imatrix on the synthetic LLaMA', async () => {
  const oracle = JSON.parse(readFileSync(join(imatrixOracleDir, 'llama-quantize-imatrix.json'), 'utf8')) as ImatrixOracle;
  const imatrixBytes = syntheticImatrixBytes();
  assert.equal(sha256(imatrixBytes), oracle.imatrixSha256, 'the imatrix must be the one llama-quantize saw');
  const imatrix = await readImatrix(new MemoryByteSource(imatrixBytes, 'synthetic-imatrix.gguf'), 'synthetic-imatrix.gguf');
  await withTempDir(async (dir) => {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    assert.equal(sha256(new Uint8Array(readFileSync(input))), oracle.inputSha256);
    const checkpoint = await openCheckpoint(input);
    try {
      const failures: string[] = [];
      const seen = new Set<string>();
      let weighted = 0;
      for (const [preset, out] of Object.entries(oracle.outputs)) {
        for (const [name, expected] of Object.entries(out.tensors)) {
          const info = ggmlTypeByName(expected.type)!;
          if (info.name === 'F32' || name === 'token_embd.weight') continue;
          const entry = checkpoint.tensors.find((t) => t.name === name)!;
          const [rows, cols] = entry.shape as [number, number];
          const src = await checkpoint.readRowsF32(name);
          const weights = importanceWeights(imatrix, name);
          assert.equal(weights === null, (SYNTHETIC_IMATRIX_MISSING as readonly string[]).includes(name) || name === 'token_embd.weight');
          const dst = new Uint8Array(rows * (cols / info.blockSize) * info.typeSize);
          quantizeRowsWithImatrix(info.name, src, rows, cols, weights, dst);
          if (sha256(dst) !== expected.sha256) failures.push(`${preset} ${name} (${info.name}${weights === null ? ', no entry' : ''})`);
          if (weights !== null && info.name !== 'Q8_0') {
            weighted++;
            seen.add(info.name);
          }
        }
      }
      assert.deepEqual(failures, []);
      assert.deepEqual([...seen].sort(), ['Q2_K', 'Q3_K', 'Q4_0', 'Q4_1', 'Q4_K', 'Q5_0', 'Q5_1', 'Q5_K', 'Q6_K']);
      assert.ok(weighted > 150, `${weighted} weighted tensors compared`);
    } finally {
      await checkpoint.close();
    }
  }, 'quantlens-imatrix-k-');
});

test('exportGguf with the imatrix: the whole file of 14 presets equals llama-quantize --imatrix (KVs, type choice, bytes)', async () => {
  const oracle = JSON.parse(readFileSync(join(imatrixOracleDir, 'llama-quantize-imatrix.json'), 'utf8')) as ImatrixOracle;
  const imatrix = await readImatrix(new MemoryByteSource(syntheticImatrixBytes(), 'synthetic-imatrix.gguf'), 'synthetic-imatrix.gguf');
  await withTempDir(async (dir) => {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    const checkpoint = await openCheckpoint(input);
    try {
      const failures: string[] = [];
      for (const [preset, expected] of Object.entries(oracle.outputs)) {
        const output = join(dir, `${preset}.gguf`);
        // llama-quantize was given the bare file name, which it records in quantize.imatrix.file
        await exportGguf(checkpoint, { target: preset, outputPath: output, imatrix: { imatrix, file: 'synthetic-imatrix.gguf' } });
        const bytes = new Uint8Array(readFileSync(output));
        if (sha256(bytes) !== expected.fileSha256) {
          const header = await readGgufHeader(new MemoryByteSource(bytes, output));
          const keys = [...header.kv.keys()];
          const differing = header.tensors
            .filter((t) => expected.tensors[t.name]?.type !== t.type.name || expected.tensors[t.name]?.sha256 !== sha256(bytes.subarray(header.dataStart + t.offset, header.dataStart + t.offset + t.nbytes)))
            .map((t) => `${t.name}:${t.type.name}`);
          failures.push(`${preset}: keys ${JSON.stringify(keys) === JSON.stringify(expected.kvKeys) ? 'same' : 'differ'}; tensors differing: ${differing.join(', ') || 'none'}`);
        }
        await rm(output);
      }
      assert.deepEqual(failures, []);
    } finally {
      await checkpoint.close();
    }
  }, 'quantlens-imatrix-export-');
});

test('exportGguf with an imatrix entry of the wrong length: FormatError naming the imatrix file and the tensor, nothing written', async () => {
  const imatrix = await readImatrix(new MemoryByteSource(syntheticImatrixBytes(), 'synthetic-imatrix.gguf'), 'synthetic-imatrix.gguf');
  const q = imatrix.entries.get('blk.0.attn_q.weight')!;
  imatrix.entries.set('blk.0.attn_q.weight', { sums: q.sums.subarray(0, 128), counts: q.counts });
  await withTempDir(async (dir) => {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    const checkpoint = await openCheckpoint(input);
    try {
      const output = join(dir, 'out.gguf');
      await assert.rejects(
        exportGguf(checkpoint, { target: 'Q4_K_M', outputPath: output, imatrix: { imatrix, file: 'bad-imatrix.gguf' } }),
        (e: unknown) => e instanceof FormatError && e.message.includes('bad-imatrix.gguf') && e.message.includes('blk.0.attn_q.weight') && e.message.includes('128'),
      );
      assert.deepEqual(readdirSync(dir).sort(), ['synthetic-f32.gguf']);
    } finally {
      await checkpoint.close();
    }
  }, 'quantlens-imatrix-bad-');
});

test('tiny-llama (HF BF16) Q4_K_M, Q4_0 and Q2_K with our imatrix: every tensor equals llama-quantize --imatrix (K fallbacks, the Q4_0 ffn_down guard)', { skip: tinyLlamaDir.skip }, async () => {
  const folder = join(fixturesDir, 'oracles', 'imatrix-tiny-llama');
  const oracle = JSON.parse(readFileSync(join(folder, 'llama-quantize-imatrix.json'), 'utf8')) as { outputs: Record<string, { tensors: Record<string, { type: string; sha256: string }> }> };
  const imatrixPath = join(folder, 'tiny-llama-imatrix.gguf');
  const imatrix = await readImatrix(new MemoryByteSource(new Uint8Array(readFileSync(imatrixPath)), imatrixPath), imatrixPath);
  await withTempDir(async (dir) => {
    const checkpoint = await openCheckpoint(tinyLlamaDir.path);
    try {
      for (const [preset, expected] of Object.entries(oracle.outputs)) {
        const output = join(dir, `${preset}.gguf`);
        await exportGguf(checkpoint, { target: preset, outputPath: output, threads: 1, imatrix: { imatrix, file: 'tiny-llama-imatrix.gguf' } });
        const bytes = new Uint8Array(readFileSync(output));
        const header = await readGgufHeader(new MemoryByteSource(bytes, output));
        const differing = header.tensors
          .filter((t) => expected.tensors[t.name]?.type !== t.type.name || expected.tensors[t.name]?.sha256 !== sha256(bytes.subarray(header.dataStart + t.offset, header.dataStart + t.offset + t.nbytes)))
          .map((t) => `${t.name}:${t.type.name}`);
        assert.equal(header.tensors.length, Object.keys(expected.tensors).length);
        assert.deepEqual(differing, [], preset);
        if (preset === 'Q4_0') assert.equal(header.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')?.type.name, 'Q4_1');
        await rm(output);
      }
    } finally {
      await checkpoint.close();
    }
  }, 'quantlens-imatrix-tl-');
});
