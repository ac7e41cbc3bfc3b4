/**
 * Worker-thread quantization (quant/ggml/quantPool.ts, exportGguf `threads`) gives llama-quantize's bytes:
 * the synthetic LLaMA GGUF exported with 2 and 3 worker threads and small windows (many windows per
 * tensor, so reads overlap quantization and slices end mid-tensor) against the llama-quantize hashes in
 * test/fixtures/oracles/llama-quantize-synthetic.json; and the pool alone against quantizeGgml.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturesDir } from '../helpers/paths';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { ggmlByteSize, quantizeGgml } from '../../src/core/quant/ggml/index';
import { QuantizePool } from '../../src/core/quant/ggml/quantPool';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

interface OracleOutput {
  target: string;
  pure: boolean;
  fileBytes: number;
  fileSha256: string;
}

test('exportGguf on worker threads, small windows: Q4_K_M, Q8_0, Q4_0, Q6_K, Q2_K byte-identical to llama-quantize', async () => {
  const oracle = JSON.parse(await readFile(join(fixturesDir, 'oracles', 'llama-quantize-synthetic.json'), 'utf8')) as { outputs: Record<string, OracleOutput> };
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-pool-'));
  try {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    const checkpoint = await openCheckpoint(input);
    try {
      for (const [name, threads] of [['Q4_K_M', 2], ['Q8_0', 3], ['Q4_0', 2], ['Q6_K', 3], ['Q2_K', 2]] as const) {
        const expected = oracle.outputs[name];
        assert.ok(expected !== undefined, `oracle has ${name}`);
        const output = join(dir, `${name}.gguf`);
        await exportGguf(checkpoint, { target: expected.target, pure: expected.pure, outputPath: output, threads, maxWindowElements: 3000 });
        const bytes = new Uint8Array(await readFile(output));
        assert.equal(bytes.byteLength, expected.fileBytes, `${name} size`);
        assert.equal(sha256(bytes), expected.fileSha256, `${name} with ${threads} threads`);
        await rm(output);
      }
    } finally {
      await checkpoint.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('QuantizePool.quantizeRows equals quantizeGgml, rows split unevenly, input reusable at once', async () => {
  const pool = QuantizePool.create(3);
  assert.ok(pool !== null, 'the worker script is found from source');
  try {
    const cols = 512;
    const rows = 7; // 3 + 2 + 2 rows over the workers
    const values = new Float32Array(rows * cols);
    let s = 99;
    for (let i = 0; i < values.length; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      values[i] = (s / 2 ** 32 - 0.5) * (i % 97 === 0 ? 3 : 0.1);
    }
    for (const type of ['Q4_K', 'Q8_0', 'Q5_K'] as const) {
      const rowBytes = ggmlByteSize(type, cols);
      const want = new Uint8Array(rows * rowBytes);
      quantizeGgml(type, values, want);
      const copy = values.slice();
      const pending = pool.quantizeRows(type, copy, rows, cols, rowBytes);
      copy.fill(0); // the pool copied its input before returning
      assert.equal(sha256(await pending), sha256(want), type);
    }
  } finally {
    await pool.close();
  }
  assert.equal(QuantizePool.create(1), null, 'one thread quantizes inline');
});

test('QuantizePool: windows in flight together each get their own memory (lanes), bytes in order', async () => {
  const pool = QuantizePool.create(2);
  assert.ok(pool !== null);
  try {
    const cols = 256;
    const make = (seed: number, rows: number): Float32Array => {
      const v = new Float32Array(rows * cols);
      let s = seed;
      for (let i = 0; i < v.length; i++) {
        s = (s * 1103515245 + 12345) >>> 0;
        v[i] = (s / 2 ** 32 - 0.5) * 0.2;
      }
      return v;
    };
    const type = 'Q6_K';
    const rowBytes = ggmlByteSize(type, cols);
    const windows = [make(1, 9), make(2, 5), make(3, 12)];
    const shared = new Float32Array(12 * cols);
    // the same input buffer overwritten between calls, three windows outstanding at once
    const pending = windows.map((w) => {
      shared.set(w);
      return pool.quantizeRows(type, shared, w.length / cols, cols, rowBytes);
    });
    const got = await Promise.all(pending);
    windows.forEach((w, k) => {
      const want = new Uint8Array((w.length / cols) * rowBytes);
      quantizeGgml(type, w, want);
      assert.equal(sha256(got[k]!), sha256(want), `window ${k}`);
    });
  } finally {
    await pool.close();
  }
});
