/**
 * Atomic output files (io/atomicWrite.ts) larger than the background-flush stride: the bytes written
 * while earlier stretches are being flushed to disk all arrive, in order, and only the final file remains.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { openAtomicFile } from '../../src/core/io/atomicWrite';
import { withTempDir } from '../helpers/scoped';

test('a 72 MiB file written in 3 MiB chunks (a flush starts after 64 MiB) is committed whole', async () => {
  await withTempDir(async (dir) => {
    const path = join(dir, 'big.bin');
    const file = await openAtomicFile(path);
    const expected = createHash('sha256');
    const chunk = new Uint8Array(3 * 1024 * 1024);
    for (let k = 0; k < 24; k++) {
      chunk.fill(k * 7 + 1);
      chunk[k] = 255 - k;
      expected.update(chunk);
      await file.write(chunk);
    }
    assert.equal(file.position, 72 * 1024 * 1024);
    await file.commit();
    const bytes = await readFile(path);
    assert.equal(bytes.byteLength, 72 * 1024 * 1024);
    assert.equal(createHash('sha256').update(bytes).digest('hex'), expected.digest('hex'));
    assert.deepEqual(await readdir(dir), ['big.bin']);
  });
});

test('aborting while a flush may be running removes the temporary file', async () => {
  await withTempDir(async (dir) => {
    const file = await openAtomicFile(join(dir, 'out.bin'));
    const chunk = new Uint8Array(33 * 1024 * 1024).fill(3);
    await file.write(chunk);
    await file.write(chunk);
    await file.abort();
    assert.deepEqual(await readdir(dir), []);
  });
});
