/**
 * A BF16 GGUF as input (the quantize issue's "same BF16 input" for llama-quantize and us): rows are read as
 * stored (Checkpoint.readRowsBf16Into) and widened in WebAssembly where they are quantized, on this thread
 * or on the pool's workers.
 * - Oracle: the synthetic LLaMA (test/fixtures/oracles/syntheticLlama.ts) exported to BF16 is the file
 *   llama-quantize writes for BF16 (llama-quantize-synthetic.json); llama-quantize quantized THAT file into
 *   10 presets (llama-quantize-synthetic-bf16.json, see the oracles README). Our exports of it must be
 *   those files, at 1 and 2 threads, with windows small enough to split tensors and cross tensor boundaries.
 * - The values the quant card is shown are the f32 of the stored BF16 (u16 << 16), as readRowsF32 gives.
 * - A NaN stored in a BF16 tensor is refused with its index, row and column, from either part of a window.
 * - The WebAssembly widening equals u16 << 16 for every 16-bit pattern, in place, at lengths off the SIMD width.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { differingTensors, sha256, type Oracle } from '../helpers/ggufOracle';
import { fixturesDir, microLlamaDir } from '../helpers/paths';
import { withCheckpoint, withTempDir } from '../helpers/scoped';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';
import { exportGguf } from '../../src/core/convert/exportGguf';
import type { Checkpoint } from '../../src/core/formats/checkpoint';
import { readGgufHeader } from '../../src/core/formats/gguf/reader';
import { withFileSource } from '../../src/core/io/byteSource';
import { NumericError } from '../../src/core/errors';
import { ensureMemory, GgmlWasmQuantizer } from '../../src/core/quant/ggml/wasm/ggmlWasm';


/** Counts the checkpoint's readRowsBf16Into calls that staged BF16 rows (the path under test). */
function countBf16Reads(checkpoint: Checkpoint): () => number {
  const original = checkpoint.readRowsBf16Into;
  assert.ok(original !== undefined, 'an opened checkpoint reads BF16 rows as stored');
  let staged = 0;
  checkpoint.readRowsBf16Into = async (name, rowStart, rowCount, target) => {
    const done = await original.call(checkpoint, name, rowStart, rowCount, target);
    if (done) staged++;
    return done;
  };
  return () => staged;
}

/** The synthetic LLaMA as the BF16 GGUF llama-quantize read for the oracle (its hash checked). */
async function writeBf16Input(dir: string, oracle: Oracle): Promise<string> {
  const f32 = join(dir, 'synthetic-f32.gguf');
  await writeSyntheticInput(f32);
  const bf16 = join(dir, 'synthetic-bf16.gguf');
  await withCheckpoint(f32, (c) => exportGguf(c, { target: 'BF16', outputPath: bf16, threads: 1 }));
  const bytes = new Uint8Array(await readFile(bf16));
  assert.equal(bytes.byteLength, oracle.inputBytes);
  assert.equal(sha256(bytes), oracle.inputSha256, 'the BF16 input must be the one llama-quantize read');
  return bf16;
}

async function readOracle(): Promise<Oracle> {
  return JSON.parse(await readFile(join(fixturesDir, 'oracles', 'llama-quantize-synthetic-bf16.json'), 'utf8')) as Oracle;
}

for (const threads of [1, 2]) {
  test(`BF16 GGUF input, ${threads} thread(s), small windows: 10 presets byte-identical to llama-quantize from the same BF16 file`, async () => {
    const oracle = await readOracle();
    await withTempDir(async (dir) => {
      const input = await writeBf16Input(dir, oracle);
      const failures: string[] = [];
      await withCheckpoint(input, async (checkpoint) => {
        const staged = countBf16Reads(checkpoint);
        for (const [target, expected] of Object.entries(oracle.outputs)) {
          const out = join(dir, `ours-${target}.gguf`);
          await exportGguf(checkpoint, { target, outputPath: out, threads, maxWindowElements: 3000 });
          const bytes = new Uint8Array(await readFile(out));
          if (bytes.byteLength !== expected.fileBytes || sha256(bytes) !== expected.fileSha256) failures.push(`${target}: ${(await differingTensors(out, expected)).join(', ') || 'header differs'}`);
        }
        assert.ok(staged() > 100, `rows were staged as BF16 and widened where quantized (${staged()} reads)`);
      });
      assert.deepEqual(failures, []);
    });
  });
}

test('BF16 GGUF input, 2 threads: the quant card is shown the f32 of the stored BF16, as readRowsF32 reads it', async () => {
  const oracle = await readOracle();
  await withTempDir(async (dir) => {
    const input = await writeBf16Input(dir, oracle);
    await withCheckpoint(input, async (checkpoint) => {
      const seen = new Map<string, Float32Array>();
      await exportGguf(checkpoint, {
        target: 'Q4_K_M',
        outputPath: join(dir, 'card.gguf'),
        threads: 2,
        maxWindowElements: 3000,
        onTensorRows: (rows) => {
          const cols = rows.shape.length > 1 ? rows.shape.slice(1).reduce((a, b) => a * b, 1) : (rows.shape[0] ?? 1);
          const all = seen.get(rows.name) ?? new Float32Array(rows.shape.reduce((a, b) => a * b, 1));
          all.set(rows.original, rows.rowStart * cols);
          seen.set(rows.name, all);
        },
      });
      let compared = 0;
      for (const t of checkpoint.tensors) {
        const reported = seen.get(t.name);
        assert.ok(reported !== undefined, `${t.name} was reported`);
        const expected = await checkpoint.readRowsF32(t.name);
        assert.ok(Buffer.from(reported.buffer).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength)), `${t.name}: reported values are the stored ones`);
        if (t.dtype === 'BF16') compared++;
      }
      assert.ok(compared >= 10, `${compared} BF16 tensors compared`);
    });
  });
});

for (const threads of [1, 2]) {
  for (const target of ['Q8_0', 'Q4_K_M']) {
    test(`a NaN stored in a BF16 GGUF tensor is refused with its index, row and column (${target}, ${threads} thread(s))`, async () => {
      const oracle = await readOracle();
      await withTempDir(async (dir) => {
        const input = await writeBf16Input(dir, oracle);
        const header = await withFileSource(input, (s) => readGgufHeader(s));
        const tensor = header.tensors.find((t) => t.name === 'blk.1.ffn_up.weight');
        assert.ok(tensor !== undefined && tensor.type.name === 'BF16');
        const cols = Number(tensor.ne[0]);
        // row 9 of an 11-row window: in the second worker's part with 2 threads
        const row = 9;
        const column = 17;
        const bytes = new Uint8Array(await readFile(input));
        new DataView(bytes.buffer).setUint16(header.dataStart + tensor.offset + (row * cols + column) * 2, 0x7fc0, true);
        const poisoned = join(dir, 'nan-bf16.gguf');
        await writeFile(poisoned, bytes);
        const output = join(dir, 'nan.gguf');
        await withCheckpoint(poisoned, (checkpoint) =>
          assert.rejects(
            exportGguf(checkpoint, { target, outputPath: output, threads, maxWindowElements: 3000 }),
            (e: Error) => e instanceof NumericError && e.message.includes(`tensor blk.1.ffn_up.weight has NaN at index ${row * cols + column} (row ${row}, column ${column})`),
          ),
        );
        await assert.rejects(readFile(output), /ENOENT/, 'nothing is left at the output path');
      });
    });
  }
}

test('micro-llama (HF BF16, Q/K permuted as 2-byte rows): the BF16 path writes the bytes of the f32 path, 1 and 2 threads', async () => {
  await withTempDir(async (dir) => {
    for (const threads of [1, 2]) {
      for (const target of ['Q8_0', 'Q4_0', 'Q4_K_M']) {
        const viaBf16 = join(dir, `bf16-${target}-${threads}.gguf`);
        const viaF32 = join(dir, `f32-${target}-${threads}.gguf`);
        await withCheckpoint(microLlamaDir, async (checkpoint) => {
          const staged = countBf16Reads(checkpoint);
          await exportGguf(checkpoint, { target, outputPath: viaBf16, threads, maxWindowElements: 3000 });
          assert.ok(staged() > 20, `the BF16 path was taken (${staged()} reads)`);
          // the same checkpoint without the BF16 read: rows widened on this thread
          checkpoint.readRowsBf16Into = undefined;
          await exportGguf(checkpoint, { target, outputPath: viaF32, threads, maxWindowElements: 3000 });
        });
        assert.equal(sha256(new Uint8Array(await readFile(viaBf16))), sha256(new Uint8Array(await readFile(viaF32))), `${target}, ${threads} thread(s)`);
      }
    }
  });
});

test('widenBf16 (WebAssembly SIMD, in place): every 16-bit pattern becomes u16 << 16, at lengths off the 8-value width', () => {
  const quantizer = GgmlWasmQuantizer.create();
  const at = (quantizer.heapBase + 63) & ~63;
  for (const n of [65536, 65536 + 7, 9, 1]) {
    ensureMemory(quantizer.memory, at + n * 4 + 64);
    const f32 = new Uint32Array(quantizer.memory.buffer, at, n);
    const sentinel = new Uint32Array(quantizer.memory.buffer, at + n * 4, 4);
    sentinel.fill(0xdeadbeef);
    f32.fill(0x12345678);
    const stored = new Uint16Array(quantizer.memory.buffer, at + n * 2, n);
    for (let i = 0; i < n; i++) stored[i] = (i * 40503 + 17) & 0xffff;
    quantizer.widenBf16InPlace(at, n);
    for (let i = 0; i < n; i++) {
      const expected = (((i * 40503 + 17) & 0xffff) << 16) >>> 0;
      if (f32[i] !== expected) assert.fail(`n = ${n}: value ${i} widened to ${f32[i]!.toString(16)}, expected ${expected.toString(16)}`);
    }
    assert.deepEqual([...sentinel], [0xdeadbeef, 0xdeadbeef, 0xdeadbeef, 0xdeadbeef], 'nothing past the values is written');
  }
});
