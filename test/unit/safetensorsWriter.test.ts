import { test } from 'node:test';
import assert from 'node:assert/strict';
import { link, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { assertNotSamePath, openAtomicFile, withAtomicFile, writeFileAtomic } from '../../src/core/io/atomicWrite';
import { bytesOf, layoutSafetensors, SafetensorsStreamWriter, type SafetensorsTensorSpec } from '../../src/core/formats/safetensors/writer';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { CancelledError, InvalidArgumentError, IoError } from '../../src/core/errors';
import { withTempDir } from '../helpers/scoped';

const specs: SafetensorsTensorSpec[] = [
  { name: 'a.weight', dtype: 'F32', shape: [2, 3] },
  { name: 'a.qweight', dtype: 'I32', shape: [1, 2] },
  { name: 'b.scale', dtype: 'F16', shape: [3] },
  { name: 'c.codes', dtype: 'F8_E4M3', shape: [5] },
];

test('header: 8-byte length, JSON padded with spaces to a multiple of 8, contiguous offsets, __metadata__', () => {
  const layout = layoutSafetensors(specs, { format: 'pt', quantizer: 'quantlens' });
  const n = Number(new DataView(layout.header.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  assert.equal(layout.header.byteLength, 8 + n);
  const text = new TextDecoder().decode(layout.header.subarray(8));
  assert.match(text, / *$/);
  const json = JSON.parse(text) as Record<string, { data_offsets?: number[] }>;
  assert.deepEqual(json.__metadata__, { format: 'pt', quantizer: 'quantlens' });
  assert.deepEqual(json['a.weight']!.data_offsets, [0, 24]);
  assert.deepEqual(json['a.qweight']!.data_offsets, [24, 32]);
  assert.deepEqual(json['b.scale']!.data_offsets, [32, 38]);
  assert.deepEqual(json['c.codes']!.data_offsets, [38, 43]);
  assert.equal(layout.totalBytes, 8 + n + 43);
  assert.throws(() => layoutSafetensors([specs[0]!, specs[0]!]), InvalidArgumentError);
});

test('streamed file reads back through openCheckpoint, bytes and shapes intact', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'out.safetensors');
    const f32 = Float32Array.from([1, -2, 3.5, 0, 1e-3, -7]);
    await withAtomicFile(path, async (file) => {
      const w = await SafetensorsStreamWriter.create(file, specs, { format: 'pt' });
      await w.writeTensor('a.weight', bytesOf(f32.subarray(0, 3)));
      await w.writeTensor('a.weight', bytesOf(f32.subarray(3))); // in two chunks
      await w.writeTensor('a.qweight', bytesOf(Int32Array.from([0x77777777, -1])));
      await w.writeTensor('b.scale', bytesOf(Uint16Array.from([0x3c00, 0xc000, 0x0001])));
      await w.writeTensor('c.codes', Uint8Array.from([0x7e, 0x38, 0, 0x80, 0xfe]));
      w.finish();
    });
    const ckpt = await openCheckpoint(path);
    try {
      assert.deepEqual(ckpt.tensors.map((t) => [t.name, t.dtype, t.shape]), specs.map((s) => [s.name, s.dtype, s.shape]));
      assert.deepEqual([...(await ckpt.readRowsF32('a.weight'))], [...f32]);
      assert.deepEqual([...(await ckpt.readRowsF32('b.scale'))], [1, -2, 2 ** -24]);
      assert.deepEqual([...(await ckpt.readRowsF32('c.codes'))], [448, 1, 0, -0, -448]);
      assert.deepEqual([...(await ckpt.readRawRows('a.qweight'))], [0x77, 0x77, 0x77, 0x77, 0xff, 0xff, 0xff, 0xff]);
      assert.equal(ckpt.metadata.format, 'pt');
    } finally {
      await ckpt.close();
    }
    assert.deepEqual(await readdir(dir), ['out.safetensors']);
  });
});

test('out-of-order or incomplete tensors are errors and leave nothing at the output path', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'out.safetensors');
    await assert.rejects(
      withAtomicFile(path, async (file) => {
        const w = await SafetensorsStreamWriter.create(file, specs);
        await w.writeTensor('a.qweight', new Uint8Array(8));
      }),
      InvalidArgumentError,
    );
    await assert.rejects(
      withAtomicFile(path, async (file) => {
        const w = await SafetensorsStreamWriter.create(file, specs);
        await w.writeTensor('a.weight', new Uint8Array(24));
        w.finish();
      }),
      IoError,
    );
    assert.deepEqual(await readdir(dir), []);
  });
});

test('an injected write failure (disk full) leaves no output file and no temp file; an existing output stays as it was', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'out.safetensors');
    await writeFile(path, 'previous contents');
    const failAfterHeader = (offset: number): void => {
      if (offset > 0) throw new IoError(`${path}: ENOSPC: no space left on device (injected)`);
    };
    await assert.rejects(
      withAtomicFile(
        path,
        async (file) => {
          const w = await SafetensorsStreamWriter.create(file, specs);
          await w.writeTensor('a.weight', new Uint8Array(24));
        },
        { onBeforeWrite: failAfterHeader },
      ),
      /ENOSPC/,
    );
    assert.deepEqual(await readdir(dir), ['out.safetensors']);
    assert.equal(await readFile(path, 'utf8'), 'previous contents');
  });
});

test('cancellation through AbortSignal stops the write and cleans up', async () => {
  await withTempDir(async (dir) => {
    const controller = new AbortController();
    const file = await openAtomicFile(join(dir, 'x.bin'), { signal: controller.signal });
    await file.write(new Uint8Array(10));
    controller.abort();
    await assert.rejects(file.write(new Uint8Array(10)), CancelledError);
    await file.abort();
    assert.deepEqual(await readdir(dir), []);
    await writeFileAtomic(join(dir, 'card.json'), '{}');
    assert.deepEqual(await readdir(dir), ['card.json']);
  });
});

test('assertNotSamePath refuses the input itself, a symlink to it and a hard link to it', async () => {
  await withTempDir(async (dir) => {
    const input = join(dir, 'model.safetensors');
    await writeFile(input, 'x');
    await symlink(input, join(dir, 'alias.safetensors'));
    await link(input, join(dir, 'hard.safetensors'));
    await assert.rejects(assertNotSamePath(input, input), InvalidArgumentError);
    await assert.rejects(assertNotSamePath(input, join(dir, '.', 'model.safetensors')), InvalidArgumentError);
    await assert.rejects(assertNotSamePath(input, join(dir, 'alias.safetensors')), InvalidArgumentError);
    await assert.rejects(assertNotSamePath([join(dir, 'other'), input], join(dir, 'hard.safetensors')), InvalidArgumentError);
    await assertNotSamePath(input, join(dir, 'out.safetensors'));
  });
});
