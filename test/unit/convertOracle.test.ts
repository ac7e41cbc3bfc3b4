/**
 * Byte oracles for the whole export path (type choice + quantizers + GGUF layout + metadata):
 * - a synthetic LLaMA-shaped F32 GGUF, rebuilt here, against the files llama-quantize made from it
 *   (hashes in test/fixtures/oracles/llama-quantize-synthetic.json: 16 presets and 5 --pure runs);
 * - ../shared/models/tiny-llama (HF, BF16) against ../shared/models/gguf/tiny-llama-Q4_K_M.gguf, which
 *   llama.cpp converted and quantized (hidden size 384: many K-quant fallbacks).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { differingTensors, sha256, type Oracle, type OracleOutput } from '../helpers/ggufOracle';
import { fixturesDir, tinyLlamaDir, tinyLlamaQ4KMGguf } from '../helpers/paths';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { readGgufHeader } from '../../src/core/formats/gguf/reader';
import { withFileSource } from '../../src/core/io/byteSource';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';

/** This oracle's outputs also name llama-quantize's target and whether it ran with --pure. */
interface PresetOutput extends OracleOutput {
  target: string;
  pure: boolean;
}

test('synthetic LLaMA: every preset and --pure run is byte-identical to llama-quantize', async () => {
  const oracle = JSON.parse(await readFile(join(fixturesDir, 'oracles', 'llama-quantize-synthetic.json'), 'utf8')) as Oracle<PresetOutput>;
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-oracle-'));
  try {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    const inputBytes = new Uint8Array(await readFile(input));
    assert.equal(inputBytes.byteLength, oracle.inputBytes);
    assert.equal(sha256(inputBytes), oracle.inputSha256, 'the synthetic input must be the one llama-quantize saw');
    const checkpoint = await openCheckpoint(input);
    try {
      const failures: string[] = [];
      for (const [name, expected] of Object.entries(oracle.outputs)) {
        const output = join(dir, `${name}.gguf`);
        const result = await exportGguf(checkpoint, { target: expected.target, pure: expected.pure, outputPath: output });
        const bytes = new Uint8Array(await readFile(output));
        assert.equal(result.bytes, bytes.byteLength);
        if (bytes.byteLength !== expected.fileBytes || sha256(bytes) !== expected.fileSha256) {
          failures.push(`${name}: ${bytes.byteLength} bytes vs ${expected.fileBytes}; tensors differing: ${(await differingTensors(output, expected)).join(', ') || 'none (metadata differs)'}`);
        }
        await rm(output);
      }
      assert.deepEqual(failures, []);
    } finally {
      await checkpoint.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('tiny-llama (HF BF16) -> Q4_K_M equals llama.cpp\'s convert + llama-quantize file byte for byte', { skip: tinyLlamaDir.skip || tinyLlamaQ4KMGguf.skip }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-oracle-'));
  try {
    const output = join(dir, 'tiny-llama-Q4_K_M.gguf');
    const checkpoint = await openCheckpoint(tinyLlamaDir.path);
    const warnings: string[] = [];
    try {
      await exportGguf(checkpoint, { target: 'Q4_K_M', outputPath: output, onWarning: (m) => warnings.push(m) });
    } finally {
      await checkpoint.close();
    }
    const ours = await withFileSource(output, (s) => readGgufHeader(s));
    const theirs = await withFileSource(tinyLlamaQ4KMGguf.path, (s) => readGgufHeader(s));
    assert.deepEqual([...ours.kv.keys()], [...theirs.kv.keys()], 'same metadata keys in the same order');
    assert.deepEqual(
      ours.tensors.map((t) => `${t.name}:${t.type.name}`),
      theirs.tensors.map((t) => `${t.name}:${t.type.name}`),
      'same tensors, order and per-tensor types (fallbacks included)',
    );
    const a = new Uint8Array(await readFile(output));
    const b = new Uint8Array(await readFile(tinyLlamaQ4KMGguf.path));
    for (const t of theirs.tensors) {
      const o = ours.tensors.find((x) => x.name === t.name)!;
      const mine = a.subarray(ours.dataStart + o.offset, ours.dataStart + o.offset + o.nbytes);
      const ref = b.subarray(theirs.dataStart + t.offset, theirs.dataStart + t.offset + t.nbytes);
      assert.ok(sha256(mine) === sha256(ref), `${t.name} (${t.type.name}): bytes differ`);
    }
    assert.equal(sha256(a), sha256(b), 'the whole file is identical');
    assert.ok(warnings.some((w) => w.includes('token_embd.weight') && w.includes('Q5_0')), 'the K-quant fallbacks are reported');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
