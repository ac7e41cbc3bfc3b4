/**
 * readRowsF32Into for 2-byte dtypes (BF16, F16): the stored values are read into the upper half of the
 * caller's buffer and widened in place. Every bit must equal readRowsF32's decode, for any row range, with
 * the target anywhere inside a larger buffer, and nothing outside the target may be touched.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { layoutSafetensors } from '../../src/core/formats/safetensors/writer';
import type { Checkpoint } from '../../src/core/formats/checkpoint';
import { microLlamaDir } from '../helpers/paths';
import { withCheckpoint, withTempDir } from '../helpers/scoped';

const SENTINEL = 0xdeadbeef;

/** readRowsF32Into rows [start, start + count) into a window of a larger buffer; checks bits and the sentinels around it. */
async function assertSameAsReadRows(checkpoint: Checkpoint, name: string, start: number, count: number, cols: number): Promise<void> {
  const into = checkpoint.readRowsF32Into;
  assert.ok(into !== undefined, 'OpenedCheckpoint has readRowsF32Into');
  const n = count * cols;
  const padding = 3;
  const backing = new Uint32Array(n + 2 * padding).fill(SENTINEL);
  const target = new Float32Array(backing.buffer, padding * 4, n);
  await into.call(checkpoint, name, start, count, target);
  const expected = await checkpoint.readRowsF32(name, start, count);
  assert.deepEqual(new Uint32Array(target.buffer, target.byteOffset, n), new Uint32Array(expected.buffer, expected.byteOffset, n), `${name} rows ${start}..${start + count - 1}`);
  for (let i = 0; i < padding; i++) {
    assert.equal(backing[i], SENTINEL, `${name}: word ${i} before the target kept`);
    assert.equal(backing[padding + n + i], SENTINEL, `${name}: word ${i} after the target kept`);
  }
}

test('BF16 (micro-llama safetensors): readRowsF32Into equals readRowsF32 bit for bit, whole tensors and row ranges', async () => {
  await withCheckpoint(microLlamaDir, async (checkpoint) => {
    const bf16 = checkpoint.tensors.filter((t) => t.dtype === 'BF16');
    assert.ok(bf16.length >= 10, 'micro-llama is stored in BF16');
    for (const t of bf16) {
      const rows = t.shape.length <= 1 ? 1 : t.shape[0]!;
      const cols = t.shape.reduce((a, b) => a * b, 1) / rows;
      await assertSameAsReadRows(checkpoint, t.name, 0, rows, cols);
      if (rows > 3) {
        await assertSameAsReadRows(checkpoint, t.name, 1, 1, cols);
        await assertSameAsReadRows(checkpoint, t.name, rows - 3, 3, cols);
      }
    }
  });
});

test('F16 and BF16 (every 16-bit pattern: zeros, subnormals, Inf, NaN): readRowsF32Into equals readRowsF32 bit for bit', async () => {
  await withTempDir(async (dir) => {
    const cols = 256;
    const rows = 65536 / cols;
    const specs = [
      { name: 'half', dtype: 'F16' as const, shape: [rows, cols] },
      { name: 'brain', dtype: 'BF16' as const, shape: [rows, cols] },
      // odd value counts take the one-value-at-a-time widening
      { name: 'odd', dtype: 'BF16' as const, shape: [7, 3] },
      { name: 'oddHalf', dtype: 'F16' as const, shape: [7, 3] },
    ];
    const layout = layoutSafetensors(specs);
    const data = new Uint8Array(layout.dataBytes);
    const patterns = new Uint16Array(65536);
    for (let i = 0; i < patterns.length; i++) patterns[i] = (i * 40503) & 0xffff; // every pattern once, shuffled
    for (const range of layout.ranges) data.set(new Uint8Array(patterns.buffer, 0, range.end - range.begin), range.begin);
    const file = join(dir, 'patterns.safetensors');
    await writeFile(file, Buffer.concat([layout.header, data]));
    await withCheckpoint(file, async (checkpoint) => {
      for (const name of ['half', 'brain']) {
        await assertSameAsReadRows(checkpoint, name, 0, rows, cols);
        await assertSameAsReadRows(checkpoint, name, 7, 100, cols);
        await assertSameAsReadRows(checkpoint, name, rows - 1, 1, cols);
      }
      for (const name of ['odd', 'oddHalf']) {
        await assertSameAsReadRows(checkpoint, name, 0, 7, 3);
        await assertSameAsReadRows(checkpoint, name, 2, 1, 3);
        await assertSameAsReadRows(checkpoint, name, 1, 4, 3);
      }
      // a wrong target length is refused before anything is read
      await assert.rejects(checkpoint.readRowsF32Into!('brain', 0, 2, new Float32Array(cols)), /target holds 256/);
    });
  });
});

test('readRowsF32Into on an opened .safetensors file reaches the same values as opening its folder', async () => {
  const viaFile = await openCheckpoint(join(microLlamaDir, 'model.safetensors'));
  try {
    const t = viaFile.tensors.find((e) => e.dtype === 'BF16' && e.shape.length === 2)!;
    await assertSameAsReadRows(viaFile, t.name, 2, 5, t.shape[1]!);
  } finally {
    await viaFile.close();
  }
});
