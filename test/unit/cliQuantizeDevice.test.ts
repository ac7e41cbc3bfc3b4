/**
 * `quantlens quantize` / `batch` --device and --threads: parsing and validation (one-line errors, exit 2),
 * shown in --help, and carried to the quantize job (the card records the device, threads give the same bytes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { microLlamaDir } from '../helpers/paths';
import { main } from '../../src/cli/main';
import { parseQuantizeArgs } from '../../src/cli/commands/quantize';
import { InvalidArgumentError } from '../../src/core/errors';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { captureIo } from '../helpers/scoped';

test('--device and --threads parse; bad values are InvalidArgumentErrors that name the flag and the value', () => {
  const p = parseQuantizeArgs(['in', '--to', 'Q8_0', '-o', 'x.gguf', '--device', 'cpu', '--threads=3']);
  assert.deepEqual([p.device, p.threads], ['cpu', 3]);
  assert.equal(parseQuantizeArgs(['in']).device, 'auto', 'auto by default');
  assert.equal(parseQuantizeArgs(['in']).threads, undefined, 'the exporter chooses by default');
  for (const bad of ['0', '-2', '1.5', 'many', '']) {
    assert.throws(() => parseQuantizeArgs(['in', '--threads', bad]), (e: unknown) => e instanceof InvalidArgumentError && e.message === `--threads ${bad}: give a positive integer`, bad);
  }
  assert.throws(() => parseQuantizeArgs(['in', '--threads']), (e: unknown) => e instanceof InvalidArgumentError && /--threads needs a value/.test(e.message));
  assert.throws(() => parseQuantizeArgs(['in', '--device', 'tpu']), (e: unknown) => e instanceof InvalidArgumentError && /--device must be auto, gpu or cpu, got 'tpu'/.test(e.message));
});

test('quantize and batch: --help lists --device and --threads; a bad value exits 2 with one line', async () => {
  for (const cmd of ['quantize', 'batch']) {
    const c = captureIo();
    assert.equal(await main([cmd, '--help'], c.io), 0);
    const help = c.out.join('\n');
    assert.match(help, /--device auto\|gpu\|cpu/, cmd);
    assert.match(help, /--threads <n>/, cmd);
    const bad = captureIo();
    assert.equal(await main([cmd, microLlamaDir, '--to', 'Q8_0', '-o', 'unused.gguf', '--threads', '0'], bad.io), 2, cmd);
    assert.deepEqual(bad.err, [`quantlens ${cmd}: --threads 0: give a positive integer`], cmd);
  }
});

test('quantize --device cpu --threads 2 writes the same file as --threads 1; the card says cpu', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ql-cli-device-'));
  try {
    const files: Buffer[] = [];
    for (const threads of ['1', '2']) {
      const out = join(dir, `t${threads}.gguf`);
      const c = captureIo();
      assert.equal(await main(['quantize', microLlamaDir, '--to', 'Q4_0', '-o', out, '--device', 'cpu', '--threads', threads], c.io), 0, c.err.join('\n'));
      files.push(await readFile(out));
      const card = parseQuantCard(JSON.parse(await readFile(`${out}.quant.json`, 'utf8')) as unknown);
      assert.equal(card.recipe.device, 'cpu');
    }
    assert.ok(files[0]!.equals(files[1]!));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
