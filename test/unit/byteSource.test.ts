import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileByteSource, MemoryByteSource, readBytes } from '../../src/core/io/byteSource';
import { FormatError, IoError } from '../../src/core/errors';

test('FileByteSource reads beyond 4 GiB in a sparse file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ql-bs-'));
  const path = join(dir, 'sparse.bin');
  try {
    const fh = await open(path, 'w');
    const far = 5 * 1024 * 1024 * 1024 + 12345; // past 2^32
    await fh.write(Buffer.from([1, 2, 3, 4]), 0, 4, far);
    await fh.close();
    const src = await FileByteSource.open(path);
    try {
      assert.equal(src.size, far + 4);
      const got = await readBytes(src, far - 2, 6);
      assert.deepEqual([...got], [0, 0, 1, 2, 3, 4]);
      await assert.rejects(readBytes(src, far, 5), FormatError);
    } finally {
      await src.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('FileByteSource names the file when it cannot open it', async () => {
  await assert.rejects(FileByteSource.open('/nonexistent/x.safetensors'), (e: unknown) => e instanceof IoError && /x\.safetensors/.test(e.message));
});

test('MemoryByteSource rejects out-of-range and negative reads', async () => {
  const src = new MemoryByteSource(new Uint8Array([9, 8, 7]), 'mem');
  assert.deepEqual([...(await readBytes(src, 1, 2))], [8, 7]);
  await assert.rejects(readBytes(src, 2, 2), FormatError);
  await assert.rejects(readBytes(src, -1, 1), FormatError);
});

test('FileByteSource opens read-only: the source is never written', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ql-bs-'));
  const path = join(dir, 'f.bin');
  try {
    await writeFile(path, new Uint8Array([1, 2, 3]));
    const src = await FileByteSource.open(path);
    // the handle is opened with flag 'r': a write through it must fail
    const h = (src as unknown as { handle: { write(b: Uint8Array): Promise<unknown> } }).handle;
    await assert.rejects(h.write(new Uint8Array([0])));
    await src.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
