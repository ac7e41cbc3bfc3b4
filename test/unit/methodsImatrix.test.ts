import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel } from '../../src/core/model/forward';
import { loadTokenizer, textWindows } from '../../src/core/methods/compare';
import { computeImatrix, encodeImatrixGguf, encodeImatrixLegacy, importanceWeights, quantizeRowsWithImatrix, readImatrix } from '../../src/core/methods/imatrix';
import { FormatError, UnsupportedError } from '../../src/core/errors';
import { fixturesDir, microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';

const oracleDir = join(fixturesDir, 'oracles', 'imatrix');

interface OracleManifest {
  types: Record<string, { file: string; tensors: { name: string; type: string; shape: number[]; offset: number; nbytes: number }[] }>;
}

function source(file: string): MemoryByteSource {
  return new MemoryByteSource(new Uint8Array(readFileSync(join(oracleDir, file))), file);
}

test('imatrix GGUF file from llama-imatrix: read, and written back byte for byte', async () => {
  const bytes = new Uint8Array(readFileSync(join(oracleDir, 'micro-llama-imatrix.gguf')));
  const im = await readImatrix(source('micro-llama-imatrix.gguf'), 'micro-llama-imatrix.gguf');
  assert.equal(im.isLegacy, false);
  assert.equal(im.entries.size, 14);
  assert.deepEqual(im.datasets, ['calib20k.txt']);
  assert.equal(im.chunkCount, 8);
  assert.equal(im.chunkSize, 128);
  const q = im.entries.get('blk.0.attn_q.weight');
  assert.ok(q);
  assert.equal(q.sums.length, 64);
  assert.deepEqual(q.counts, [1024]);
  assert.equal(im.entries.get('blk.1.ffn_down.weight')?.sums.length, 192);
  assert.deepEqual(encodeImatrixGguf(im), bytes);
});

test('legacy .dat from llama-imatrix: same weights as the GGUF file; our legacy writer gives the same bytes', async () => {
  const gguf = await readImatrix(source('micro-llama-imatrix.gguf'), 'gguf');
  const dat = await readImatrix(source('micro-llama-imatrix.dat'), 'dat');
  assert.equal(dat.isLegacy, true);
  assert.equal(dat.entries.size, 14);
  assert.equal(dat.chunkCount, 8);
  for (const name of gguf.entries.keys()) {
    const a = importanceWeights(gguf, name)!;
    const b = importanceWeights(dat, name)!;
    for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-6 * Math.abs(a[i]!), `${name}[${i}]: ${a[i]} vs ${b[i]}`);
  }
  assert.deepEqual(encodeImatrixLegacy(gguf), new Uint8Array(readFileSync(join(oracleDir, 'micro-llama-imatrix.dat'))));
  await assert.rejects(readImatrix(new MemoryByteSource(new Uint8Array([1, 0, 0, 0, 200, 0, 0, 0]), 'bad.dat'), 'bad.dat'), FormatError);
});

test('Q4_0 / Q4_1 / Q5_0 / Q5_1 with the importance matrix: bytes equal llama-quantize --imatrix', async () => {
  const manifest = JSON.parse(readFileSync(join(oracleDir, 'manifest.json'), 'utf8')) as OracleManifest;
  const im = await readImatrix(source('micro-llama-imatrix.gguf'), 'gguf');
  const checkpoint = await openCheckpoint(microLlamaF32Gguf);
  try {
    for (const [type, entry] of Object.entries(manifest.types)) {
      const oracle = new Uint8Array(readFileSync(join(oracleDir, entry.file)));
      let compared = 0;
      for (const t of entry.tensors) {
        assert.equal(t.type, type);
        const [rows, cols] = t.shape as [number, number];
        const src = await checkpoint.readRowsF32(t.name);
        const weights = importanceWeights(im, t.name);
        assert.ok(weights, `no imatrix entry for ${t.name}`);
        const dst = new Uint8Array(t.nbytes);
        quantizeRowsWithImatrix(type, src, rows, cols, weights, dst);
        const expected = oracle.subarray(t.offset, t.offset + t.nbytes);
        let firstDiff = -1;
        for (let i = 0; i < dst.length && firstDiff < 0; i++) if (dst[i] !== expected[i]) firstDiff = i;
        assert.equal(firstDiff, -1, `${type} ${t.name}: first differing byte ${firstDiff}`);
        // The importance matrix matters: the plain _ref path gives other bytes.
        const plain = new Uint8Array(t.nbytes);
        quantizeRowsWithImatrix(type, src, rows, cols, null, plain);
        assert.notDeepEqual(plain, expected, `${type} ${t.name}: the imatrix changed nothing`);
        compared++;
      }
      assert.equal(compared, 14);
    }
  } finally {
    await checkpoint.close();
  }
  // IQ types need their grids (not ported): refused, naming the type
  assert.throws(() => quantizeRowsWithImatrix('IQ4_XS', new Float32Array(256), 1, 256, new Float32Array(256), new Uint8Array(136)), UnsupportedError);
});

test('imatrix computed by our runtime on the same text agrees with llama-imatrix', async () => {
  const checkpoint = await openCheckpoint(microLlamaDir);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint);
    const text = readFileSync(join(fixturesDir, 'calib-64k.txt')).subarray(0, 20000).toString('utf8');
    const windows = textWindows(tokenizer.encode(text), 128, 8, 'calibration');
    const ours = await computeImatrix(model, windows, 'calib20k.txt');
    const theirs = await readImatrix(source('micro-llama-imatrix.gguf'), 'gguf');
    assert.deepEqual([...ours.entries.keys()].sort(), [...theirs.entries.keys()].sort());
    const bytes = encodeImatrixGguf(ours);
    const back = await readImatrix(new MemoryByteSource(bytes, 'ours.gguf'), 'ours.gguf');
    assert.equal(back.entries.size, 14);
    let worst = 0;
    for (const name of theirs.entries.keys()) {
      assert.deepEqual(ours.entries.get(name)!.counts, theirs.entries.get(name)!.counts, name);
      const a = importanceWeights(ours, name)!;
      const b = importanceWeights(theirs, name)!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += b[i]! ** 2;
      }
      worst = Math.max(worst, Math.sqrt(num / den));
    }
    assert.ok(worst < 0.02, `relative difference up to ${worst}`);
  } finally {
    await checkpoint.close();
  }
});
