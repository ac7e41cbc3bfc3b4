/**
 * `quantlens imatrix` and `quantlens quantize / batch --imatrix`, end to end through the CLI and the job
 * worker: the imatrix our runtime computes (against llama-imatrix's on the same text), the files it
 * writes, bad input, and quantized bytes against llama-quantize --imatrix (micro-llama Q4_0 / Q5_1
 * tensors from test/fixtures/oracles/imatrix; the synthetic LLaMA's K types from imatrix-synthetic).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { main } from '../../src/cli/main';
import { readGgufHeader } from '../../src/core/formats/gguf/reader';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { importanceWeights, readImatrix } from '../../src/core/methods/imatrix';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { isQuantizeJobSpec } from '../../src/protocol/jobs';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';
import { syntheticImatrixBytes } from '../fixtures/oracles/imatrix-synthetic/syntheticImatrix';
import { fixturesDir, microLlamaDir, microLlamaF32Gguf, tinyLlamaDir } from '../helpers/paths';
import { runImatrix } from '../../src/cli/commands/imatrix';
import { CancelledError } from '../../src/core/errors';
import { captureIo, withTempDir } from '../helpers/scoped';

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const microOracleDir = join(fixturesDir, 'oracles', 'imatrix');
const syntheticOracleDir = join(fixturesDir, 'oracles', 'imatrix-synthetic');

async function readFileImatrix(path: string): ReturnType<typeof readImatrix> {
  return readImatrix(new MemoryByteSource(new Uint8Array(readFileSync(path)), path), path);
}

test('quantlens imatrix: GGUF and .dat files from the calibration text, close to llama-imatrix on the same text', async () => {
  await withTempDir(async (dir) => {
    // what llama-imatrix saw for the oracle: the first 20,000 bytes of calib-64k.txt, 8 chunks of 128
    const calib = join(dir, 'calib20k.txt');
    writeFileSync(calib, readFileSync(join(fixturesDir, 'calib-64k.txt')).subarray(0, 20000));
    const c = captureIo();
    const out = join(dir, 'im.gguf');
    assert.equal(await main(['imatrix', microLlamaDir, '--calib', calib, '-o', out, '--ctx', '128', '--chunks', '8', '--json'], c.io), 0, c.err.join('\n'));
    const summary = JSON.parse(c.out.join('\n')) as { entries: number; chunks: number; chunkSize: number; format: string };
    assert.deepEqual([summary.entries, summary.chunks, summary.chunkSize, summary.format], [14, 8, 128, 'gguf']);
    const ours = await readFileImatrix(out);
    assert.deepEqual([ours.chunkCount, ours.chunkSize, ours.datasets], [8, 128, [calib]]);
    const theirs = await readFileImatrix(join(microOracleDir, 'micro-llama-imatrix.gguf'));
    for (const name of theirs.entries.keys()) {
      const a = importanceWeights(ours, name)!;
      const b = importanceWeights(theirs, name)!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < b.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += b[i]! ** 2;
      }
      assert.ok(Math.sqrt(num / den) < 0.02, `${name}: relative difference ${Math.sqrt(num / den)}`);
    }
    const dat = join(dir, 'im.dat');
    const d = captureIo();
    assert.equal(await main(['imatrix', microLlamaDir, '--calib', calib, '-o', dat, '--ctx', '128', '--chunks', '8'], d.io), 0, d.err.join('\n'));
    assert.match(d.out.join('\n'), /wrote .*im\.dat \(legacy, 14 entries\): 8 chunks of 128 tokens/);
    assert.ok(d.err.some((l) => l === 'chunk 8/8'));
    const legacy = await readFileImatrix(dat);
    assert.equal(legacy.isLegacy, true);
    for (const name of ours.entries.keys()) {
      const a = importanceWeights(ours, name)!;
      const b = importanceWeights(legacy, name)!;
      for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= 1e-6 * Math.abs(a[i]!), `${name}[${i}]`);
    }
    assert.deepEqual((await readdir(dir)).sort(), ['calib20k.txt', 'im.dat', 'im.gguf']);
  }, 'quantlens-cli-imatrix-');
});

test('quantlens imatrix: bad input is refused naming the file (empty / non-UTF-8 calibration, missing model, output = input, too little text)', async () => {
  await withTempDir(async (dir) => {
    const empty = join(dir, 'empty.txt');
    writeFileSync(empty, '');
    const binary = join(dir, 'binary.txt');
    writeFileSync(binary, Buffer.from([0x68, 0x69, 0xff, 0xfe, 0x80]));
    const short = join(dir, 'short.txt');
    writeFileSync(short, 'just a few words');
    const cases: Array<[string[], RegExp]> = [
      [['imatrix', microLlamaDir, '--calib', empty, '-o', join(dir, 'a.gguf')], /empty\.txt: the text file is empty/],
      [['imatrix', microLlamaDir, '--calib', binary, '-o', join(dir, 'a.gguf')], /binary\.txt: the text file is not valid UTF-8/],
      [['imatrix', join(dir, 'no-such-model'), '--calib', short, '-o', join(dir, 'a.gguf')], /no-such-model/],
      [['imatrix', microLlamaF32Gguf, '--calib', short, '-o', microLlamaF32Gguf], /refusing to overwrite the source/],
      [['imatrix', microLlamaDir, '--calib', short, '-o', join(dir, 'a.gguf')], /short\.txt: \d+ tokens do not fill one chunk of 512/],
      [['imatrix', microLlamaDir, '--calib', short, '-o', join(dir, 'a.bin')], /a\.bin: the output must end in \.gguf .* or \.dat/],
      [['imatrix', microLlamaDir, '--calib', short], /-o <out\.gguf\|out\.dat> is required/],
    ];
    for (const [args, message] of cases) {
      const c = captureIo();
      assert.equal(await main(args, c.io), 2, `${args.join(' ')}: ${c.err.join('\n')}`);
      assert.match(c.err.join('\n'), message);
    }
    assert.deepEqual((await readdir(dir)).sort(), ['binary.txt', 'empty.txt', 'short.txt']);
  }, 'quantlens-cli-imatrix-bad-');
});

interface MicroManifest {
  types: Record<string, { file: string; tensors: { name: string; offset: number; nbytes: number }[] }>;
}

test('quantize --imatrix (micro-llama HF folder -> Q4_0, Q5_1): tensors equal llama-quantize --imatrix; the card and the KVs record the imatrix', async () => {
  const manifest = JSON.parse(readFileSync(join(microOracleDir, 'manifest.json'), 'utf8')) as MicroManifest;
  const imatrixPath = join(microOracleDir, 'micro-llama-imatrix.gguf');
  await withTempDir(async (dir) => {
    for (const type of ['Q4_0', 'Q5_1']) {
      const out = join(dir, `m-${type}.gguf`);
      const c = captureIo();
      assert.equal(await main(['quantize', microLlamaDir, '--to', type, '-o', out, '--imatrix', imatrixPath, '--json'], c.io), 0, c.err.join('\n'));
      const bytes = new Uint8Array(readFileSync(out));
      const header = await readGgufHeader(new MemoryByteSource(bytes, out));
      const kv = (k: string): unknown => {
        const v = header.kv.get(k);
        return v !== undefined && v.type !== 'ARRAY' ? v.value : undefined;
      };
      assert.deepEqual([kv('quantize.imatrix.file'), kv('quantize.imatrix.dataset'), kv('quantize.imatrix.entries_count'), kv('quantize.imatrix.chunks_count')], [imatrixPath, 'calib20k.txt', 14, 8]);
      const oracle = new Uint8Array(readFileSync(join(microOracleDir, manifest.types[type]!.file)));
      for (const t of manifest.types[type]!.tensors) {
        const ours = header.tensors.find((x) => x.name === t.name)!;
        assert.equal(ours.type.name, type);
        assert.equal(sha256(bytes.subarray(header.dataStart + ours.offset, header.dataStart + ours.offset + ours.nbytes)), sha256(oracle.subarray(t.offset, t.offset + t.nbytes)), `${type} ${t.name}`);
      }
      const summary = JSON.parse(c.out.join('\n')) as { card: string };
      const card = parseQuantCard(JSON.parse(readFileSync(summary.card, 'utf8')));
      assert.equal(card.recipe.imatrix, imatrixPath);
      assert.equal(card.recipe.imatrixSha256, sha256(new Uint8Array(readFileSync(imatrixPath))));
      assert.equal(card.recipe.device, 'cpu');
    }
  }, 'quantlens-cli-imatrix-q-');
});

test('quantize --imatrix (synthetic LLaMA, K presets): every tensor equals llama-quantize --imatrix; batch --imatrix too', async () => {
  const oracle = JSON.parse(readFileSync(join(syntheticOracleDir, 'llama-quantize-imatrix.json'), 'utf8')) as {
    outputs: Record<string, { kvKeys: string[]; tensors: Record<string, { type: string; sha256: string }> }>;
  };
  await withTempDir(async (dir) => {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    const imatrixPath = join(dir, 'synthetic-imatrix.gguf');
    writeFileSync(imatrixPath, syntheticImatrixBytes());
    const check = async (path: string, preset: string): Promise<void> => {
      const bytes = new Uint8Array(readFileSync(path));
      const header = await readGgufHeader(new MemoryByteSource(bytes, path));
      const expected = oracle.outputs[preset]!;
      assert.deepEqual([...header.kv.keys()], expected.kvKeys, `${preset}: KV keys`);
      for (const t of header.tensors) {
        const want = expected.tensors[t.name]!;
        assert.equal(`${t.type.name} ${sha256(bytes.subarray(header.dataStart + t.offset, header.dataStart + t.offset + t.nbytes))}`, `${want.type} ${want.sha256}`, `${preset} ${t.name}`);
      }
    };
    const c = captureIo();
    const out = join(dir, 'q4km.gguf');
    assert.equal(await main(['quantize', input, '--to', 'Q4_K_M', '-o', out, '--imatrix', imatrixPath, '--device', 'auto'], c.io), 0, c.err.join('\n'));
    await check(out, 'Q4_K_M');
    const b = captureIo();
    assert.equal(await main(['batch', input, '--to', 'Q2_K,Q6_K', '-o', dir, '--imatrix', imatrixPath, '--json'], b.io), 0, b.err.join('\n'));
    await check(join(dir, 'synthetic-f32-Q2_K.gguf'), 'Q2_K');
    await check(join(dir, 'synthetic-f32-Q6_K.gguf'), 'Q6_K');
  }, 'quantlens-cli-imatrix-k-');
});

test('quantize --imatrix refusals: --device gpu, a research target, --method, and an entry whose length does not match the tensor (FormatError naming file and tensor, nothing written)', async () => {
  await withTempDir(async (dir) => {
    const input = join(dir, 'synthetic-f32.gguf');
    await writeSyntheticInput(input);
    const microImatrix = join(microOracleDir, 'micro-llama-imatrix.gguf');
    const cases: Array<[string[], RegExp]> = [
      [['quantize', input, '--to', 'Q4_K_M', '-o', join(dir, 'a.gguf'), '--imatrix', microImatrix, '--device', 'gpu'], /GPU kernels run llama\.cpp's _ref quantizers only/],
      [['quantize', input, '--to', 'int8', '-o', join(dir, 'a.safetensors'), '--imatrix', microImatrix], /applies to GGUF targets .* not int8/],
      [['quantize', microLlamaDir, '--to', 'Q4_0', '-o', join(dir, 'a.gguf'), '--imatrix', microImatrix, '--method', 'awq', '--calib', join(fixturesDir, 'calib-64k.txt')], /not combined with --method awq/],
      // micro-llama's entries have 64 / 192 values; the synthetic model's rows are 256 / 512 wide
      [['quantize', input, '--to', 'Q4_K_M', '-o', join(dir, 'a.gguf'), '--imatrix', microImatrix], /micro-llama-imatrix\.gguf.*blk\.0\.attn_k\.weight|blk\.0\.attn_k\.weight.*micro-llama-imatrix\.gguf/],
      [['quantize', input, '--to', 'Q4_K_M', '-o', join(dir, 'a.gguf'), '--imatrix', join(dir, 'missing.gguf')], /missing\.gguf/],
    ];
    for (const [args, message] of cases) {
      const c = captureIo();
      assert.equal(await main(args, c.io), 2, `${args.join(' ')}: ${c.err.join('\n')}`);
      assert.match(c.err.join('\n'), message);
    }
    assert.deepEqual(await readdir(dir), ['synthetic-f32.gguf']);
  }, 'quantlens-cli-imatrix-refuse-');
});

test('the quantize job spec carries an optional imatrix path, validated as a non-empty string', () => {
  const base = { kind: 'quantize', request: { input: 'in', target: 'Q4_K_M', output: 'out.gguf' } };
  assert.equal(isQuantizeJobSpec(base), true);
  assert.equal(isQuantizeJobSpec({ ...base, imatrix: 'im.gguf' }), true);
  assert.equal(isQuantizeJobSpec({ ...base, imatrix: '' }), false);
  assert.equal(isQuantizeJobSpec({ ...base, imatrix: 3 }), false);
});

test('quantize --dry-run --imatrix shows the imatrix plan: the Q4_0 preset puts blk.0.ffn_down (first n_layer/8) in Q4_1 on tiny-llama', { skip: tinyLlamaDir.skip }, async () => {
  const imatrixPath = join(fixturesDir, 'oracles', 'imatrix-tiny-llama', 'tiny-llama-imatrix.gguf');
  const plan = async (extra: string[]): Promise<Map<string, string>> => {
    const c = captureIo();
    assert.equal(await main(['quantize', tinyLlamaDir.path, '--to', 'Q4_0', '-o', 'never-written.gguf', '--dry-run', '--json', ...extra], c.io), 0, c.err.join('\n'));
    const parsed = JSON.parse(c.out.join('\n')) as { tensors: { name: string; type: string }[] };
    return new Map(parsed.tensors.map((t) => [t.name, t.type]));
  };
  const withImatrix = await plan(['--imatrix', imatrixPath]);
  const without = await plan([]);
  assert.equal(withImatrix.get('blk.0.ffn_down.weight'), 'Q4_1');
  assert.equal(withImatrix.get('blk.1.ffn_down.weight'), 'Q4_0');
  assert.equal(without.get('blk.0.ffn_down.weight'), 'Q4_0');
});

test('quantlens imatrix cancelled before the pass ends: CancelledError, nothing written', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'im.gguf');
    const controller = new AbortController();
    controller.abort();
    const c = captureIo();
    await assert.rejects(runImatrix([microLlamaDir, '--calib', join(fixturesDir, 'calib-64k.txt'), '-o', out, '--ctx', '128', '--chunks', '4'], c.io, controller.signal), CancelledError);
    assert.deepEqual(await readdir(dir), []);
  }, 'quantlens-cli-imatrix-cancel-');
});
