import { test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, InvalidArgumentError, UnsupportedError } from '../../src/core/errors';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { MAX_HEADER_BYTES, readSafetensorsHeader } from '../../src/core/formats/safetensors/header';
import { decodeSafetensorsToF32, SAFETENSORS_DTYPES } from '../../src/core/formats/dtypes';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { summarizeHfConfig } from '../../src/core/formats/hfConfig';
import { microLlamaDir } from '../helpers/paths';

const realPath = join(microLlamaDir, 'model.safetensors');
const realBytes = new Uint8Array(readFileSync(realPath));
const realHeaderLength = Number(new DataView(realBytes.buffer, realBytes.byteOffset).getBigUint64(0, true));
const realJson = JSON.parse(new TextDecoder().decode(realBytes.subarray(8, 8 + realHeaderLength))) as Record<string, unknown>;
const realDataSize = realBytes.byteLength - 8 - realHeaderLength;

interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  data: Uint8Array;
}

/** A safetensors file as the reference writer lays it out (JSON padded with spaces to a multiple of 8 unless `pad` is false). */
function encodeSafetensors(tensors: RawTensor[], metadata?: Record<string, string>, pad = true): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  return fileFromHeaderText(JSON.stringify(header), tensors, pad);
}

function fileFromHeaderText(text: string, tensors: RawTensor[] | number, pad = true): Uint8Array {
  let json = new TextEncoder().encode(text);
  if (pad && json.byteLength % 8 !== 0) {
    const padded = new Uint8Array(json.byteLength + (8 - (json.byteLength % 8))).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const dataSize = typeof tensors === 'number' ? tensors : tensors.reduce((s, t) => s + t.data.byteLength, 0);
  const file = new Uint8Array(8 + json.byteLength + dataSize);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  file.set(json, 8);
  if (typeof tensors !== 'number') {
    let at = 8 + json.byteLength;
    for (const t of tensors) {
      file.set(t.data, at);
      at += t.data.byteLength;
    }
  }
  return file;
}

/** The real micro-llama header, changed by `mutate`, over a zero data buffer of the real size (or `dataSize`). */
function mutatedReal(mutate: (json: Record<string, Record<string, unknown>>) => void, dataSize = realDataSize): MemoryByteSource {
  const json = structuredClone(realJson) as Record<string, Record<string, unknown>>;
  mutate(json);
  return new MemoryByteSource(fileFromHeaderText(JSON.stringify(json), dataSize), 'bad.safetensors');
}

async function rejects(source: MemoryByteSource, pattern: RegExp): Promise<void> {
  await assert.rejects(readSafetensorsHeader(source), (e: unknown) => {
    assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
    assert.match(e.message, /^bad\.safetensors: /, 'the message names the file');
    assert.match(e.message, pattern);
    return true;
  });
}

function bytesOf(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

test('micro-llama model.safetensors: header, metadata, storage order', async () => {
  const h = await readSafetensorsHeader(new MemoryByteSource(realBytes, realPath));
  assert.equal(h.tensors.length, 21);
  assert.deepEqual(h.metadata, { format: 'pt' });
  assert.equal(h.dataStart, 8 + realHeaderLength);
  assert.ok(h.tensors.every((t) => t.dtype === 'BF16'));
  for (let i = 1; i < h.tensors.length; i++) assert.equal(h.tensors[i]?.begin, h.tensors[i - 1]?.end);
  const embed = h.tensors.find((t) => t.name === 'model.embed_tokens.weight');
  assert.deepEqual(embed?.shape, [8192, 64]);
});

test('every decodable dtype decodes to the right f32 values, also from unaligned offsets', async () => {
  const cases: Array<{ dtype: string; data: Uint8Array; want: number[] }> = [
    { dtype: 'F64', data: bytesOf(new Float64Array([1.5, -2.25, 1e300])), want: [1.5, -2.25, Infinity] },
    { dtype: 'F32', data: bytesOf(new Float32Array([0.1, -0, 3e38])), want: [Math.fround(0.1), -0, Math.fround(3e38)] },
    { dtype: 'F16', data: bytesOf(new Uint16Array([0x3c00, 0xc000, 0x7bff, 0x0001, 0x7c00, 0x8000])), want: [1, -2, 65504, 2 ** -24, Infinity, -0] },
    { dtype: 'BF16', data: bytesOf(new Uint16Array([0x3f80, 0xc040, 0x0001, 0xff80])), want: [1, -3, 2 ** -133, -Infinity] },
    { dtype: 'F8_E4M3', data: new Uint8Array([0x38, 0x7e, 0x01, 0xb8, 0x00]), want: [1, 448, 2 ** -9, -1, 0] },
    { dtype: 'F8_E5M2', data: new Uint8Array([0x3c, 0x7b, 0x7c, 0x01, 0xc0]), want: [1, 57344, Infinity, 2 ** -16, -2] },
    { dtype: 'F8_E8M0', data: new Uint8Array([127, 130, 0]), want: [1, 8, 2 ** -127] },
    { dtype: 'I8', data: bytesOf(new Int8Array([-128, 127, 0])), want: [-128, 127, 0] },
    { dtype: 'U8', data: new Uint8Array([0, 255, 7]), want: [0, 255, 7] },
    { dtype: 'BOOL', data: new Uint8Array([0, 1, 2]), want: [0, 1, 1] },
    { dtype: 'I16', data: bytesOf(new Int16Array([-32768, 32767])), want: [-32768, 32767] },
    { dtype: 'U16', data: bytesOf(new Uint16Array([65535, 1])), want: [65535, 1] },
    { dtype: 'I32', data: bytesOf(new Int32Array([-2147483648, 16777217])), want: [-2147483648, 16777216] },
    { dtype: 'U32', data: bytesOf(new Uint32Array([4294967295, 3])), want: [4294967296, 3] },
    { dtype: 'I64', data: bytesOf(new BigInt64Array([-(2n ** 40n), 5n])), want: [-(2 ** 40), 5] },
    { dtype: 'U64', data: bytesOf(new BigUint64Array([2n ** 63n, 9n])), want: [2 ** 63, 9] },
  ];
  const covered = new Set(cases.map((c) => c.dtype));
  for (const d of SAFETENSORS_DTYPES) if (d.decodable) assert.ok(covered.has(d.name), `${d.name} has a decode case`);
  // Direct decoding, then from an odd byte offset (a copy is made when a typed view cannot be).
  for (const c of cases) {
    const out = new Float32Array(c.want.length);
    decodeSafetensorsToF32(c.dtype, c.data, out);
    assert.deepEqual([...out], c.want, c.dtype);
    const shifted = new Uint8Array(c.data.byteLength + 1);
    shifted.set(c.data, 1);
    const out2 = new Float32Array(c.want.length);
    decodeSafetensorsToF32(c.dtype, shifted.subarray(1), out2);
    assert.deepEqual([...out2], c.want, `${c.dtype} unaligned`);
  }
  // Through a real file whose data offsets are not aligned: 1 byte of U8 first, JSON not padded.
  const tensors: RawTensor[] = [{ name: 'a.pad', dtype: 'U8', shape: [1], data: new Uint8Array([9]) }];
  for (const c of cases) tensors.push({ name: `t.${c.dtype}`, dtype: c.dtype, shape: [c.want.length], data: c.data });
  const dir = mkdtempSync(join(tmpdir(), 'ql-st-'));
  try {
    const path = join(dir, 'dtypes.safetensors');
    writeFileSync(path, encodeSafetensors(tensors, { note: 'unaligned' }, false));
    const ckpt = await openCheckpoint(path);
    try {
      assert.deepEqual(ckpt.metadata, { note: 'unaligned' });
      for (const c of cases) {
        const entry = ckpt.tensors.find((t) => t.name === `t.${c.dtype}`);
        assert.ok(entry, c.dtype);
        assert.deepEqual([...(await ckpt.readRowsF32(entry.name))], c.want, `${c.dtype} from the file`);
      }
    } finally {
      await ckpt.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('F4, F6 and C64 are listed but refused when decoded; unknown row ranges and names are refused', async () => {
  const tensors: RawTensor[] = [
    { name: 'c', dtype: 'C64', shape: [2], data: new Uint8Array(16) },
    { name: 'f4', dtype: 'F4', shape: [2, 4], data: new Uint8Array(4) },
    { name: 'f6', dtype: 'F6_E2M3', shape: [4], data: new Uint8Array(3) },
    { name: 'w', dtype: 'F32', shape: [3, 2], data: bytesOf(new Float32Array([1, 2, 3, 4, 5, 6])) },
  ];
  const dir = mkdtempSync(join(tmpdir(), 'ql-st-'));
  try {
    const path = join(dir, 'sub.safetensors');
    writeFileSync(path, encodeSafetensors(tensors));
    const ckpt = await openCheckpoint(path);
    try {
      assert.deepEqual(
        ckpt.tensors.map((t) => [t.name, t.dtype, t.nbytes]),
        [['c', 'C64', 16], ['f4', 'F4', 4], ['f6', 'F6_E2M3', 3], ['w', 'F32', 24]],
      );
      for (const name of ['c', 'f4', 'f6']) {
        await assert.rejects(ckpt.readRowsF32(name), (e: unknown) => e instanceof UnsupportedError && /not decodable yet/.test(e.message));
      }
      assert.deepEqual([...(await ckpt.readRowsF32('w', 1, 2))], [3, 4, 5, 6]);
      assert.deepEqual([...(await ckpt.readRawRows('f4', 1, 1))], [0, 0]);
      await assert.rejects(ckpt.readRowsF32('w', 2, 2), InvalidArgumentError);
      await assert.rejects(ckpt.readRowsF32('nope'), InvalidArgumentError);
    } finally {
      await ckpt.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('header framing: too small, length above the limit or past the end, bad UTF-8, bad JSON, bad start', async () => {
  await rejects(new MemoryByteSource(realBytes.subarray(0, 7), 'bad.safetensors'), /fewer than the 8-byte header length/);
  const huge = realBytes.slice();
  new DataView(huge.buffer).setBigUint64(0, BigInt(MAX_HEADER_BYTES + 1), true);
  await rejects(new MemoryByteSource(huge, 'bad.safetensors'), /header length 100000001 is above the limit of 100000000/);
  new DataView(huge.buffer).setBigUint64(0, 2n ** 64n - 1n, true);
  await rejects(new MemoryByteSource(huge, 'bad.safetensors'), /above the limit/);
  await rejects(new MemoryByteSource(realBytes.subarray(0, 8 + realHeaderLength - 1), 'bad.safetensors'), /header length \d+ runs past the end of the file/);
  const badUtf8 = realBytes.slice();
  const nameAt = 8 + new TextDecoder().decode(realBytes.subarray(8, 8 + realHeaderLength)).indexOf('lm_head');
  badUtf8[nameAt] = 0xff;
  await rejects(new MemoryByteSource(badUtf8, 'bad.safetensors'), /header is not valid UTF-8/);
  const badJson = realBytes.slice();
  badJson[nameAt - 1] = 0x20; // the opening quote of a key
  await rejects(new MemoryByteSource(badJson, 'bad.safetensors'), /header is not valid JSON/);
  await rejects(new MemoryByteSource(fileFromHeaderText(' ' + JSON.stringify(realJson), realDataSize), 'bad.safetensors'), /does not start with '\{'/);
  await rejects(new MemoryByteSource(fileFromHeaderText('[1, 2]', 0), 'bad.safetensors'), /does not start with|not an object/);
});

test('tensor entries: wrong dtype names, bad shapes and offsets, metadata that is not strings', async () => {
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.dtype = 'BF17')), /tensor 'lm_head.weight': unknown dtype 'BF17'/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.dtype = 'bf16')), /unknown dtype 'bf16'/);
  await rejects(mutatedReal((j) => delete j['lm_head.weight']!.dtype), /missing or non-string "dtype"/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.shape = [8192, -64])), /shape entry -64/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.shape = [8192, 1.5])), /shape entry 1.5/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.shape = [8192, 32])), /tensor 'lm_head.weight': byte range \[0, 1048576\] holds 1048576 bytes but BF16 \[8192, 32\] needs 524288/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.shape = [2 ** 40, 2 ** 40])), /overflows the element count/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.data_offsets = [0, 1e300])), /not non-negative safe integers/);
  await rejects(mutatedReal((j) => (j['lm_head.weight']!.data_offsets = [0])), /must be \[begin, end\]/);
  await rejects(mutatedReal((j) => (j.__metadata__ = { format: 1 as unknown as string } as Record<string, unknown>)), /__metadata__: value of "format" is not a string/);
  await rejects(mutatedReal((j) => (j['lm_head.weight'] = 'x' as unknown as Record<string, unknown>)), /tensor entry is not a JSON object/);
});

test('overlapping, holed and reversed ranges; data that does not end at the end of the file', async () => {
  // Two tensors claiming the same bytes (the denial-of-service shape): one range is gone, the other overlaps.
  await rejects(
    mutatedReal((j) => (j['model.embed_tokens.weight']!.data_offsets = j['lm_head.weight']!.data_offsets)),
    /data_offsets \[0, 1048576\] overlap the previous tensor, which ends at 1048576|leave a hole/,
  );
  await rejects(
    mutatedReal((j) => {
      const o = j['model.norm.weight']!.data_offsets as number[];
      j['model.norm.weight']!.data_offsets = [o[0]! + 2, o[1]! + 2];
    }, realDataSize + 2),
    /tensor 'model.norm.weight': data_offsets \[\d+, \d+\] leave a hole: the previous tensor ends at \d+/,
  );
  await rejects(
    mutatedReal((j) => {
      const o = j['model.norm.weight']!.data_offsets as number[];
      j['model.norm.weight']!.data_offsets = [o[0]!, o[0]! - 2];
    }),
    /data_offsets \[\d+, \d+\] end before they begin|overlap/,
  );
  await rejects(mutatedReal(() => undefined, realDataSize - 1), /tensor data ends at byte \d+ but the file has \d+ bytes \(truncated\?\)/);
  await rejects(mutatedReal(() => undefined, realDataSize + 1), /\(trailing bytes\)/);
});

test('sharded folder: index + shards written from the micro-llama tensors read back identically; broken indexes are refused', async () => {
  const original = await openCheckpoint(join(microLlamaDir, 'model.safetensors'));
  const dir = mkdtempSync(join(tmpdir(), 'ql-shards-'));
  try {
    const all: RawTensor[] = [];
    for (const t of original.tensors) all.push({ name: t.name, dtype: t.dtype, shape: t.shape, data: await original.readRawRows(t.name) });
    const shardNames = ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors'];
    const weightMap: Record<string, string> = {};
    shardNames.forEach((shard, i) => {
      const part = all.filter((_, j) => j % 3 === i);
      for (const t of part) weightMap[t.name] = shard;
      writeFileSync(join(dir, shard), encodeSafetensors(part, { format: 'pt' }));
    });
    writeFileSync(join(dir, 'config.json'), readFileSync(join(microLlamaDir, 'config.json')));
    const writeIndex = (map: Record<string, string>): void =>
      writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 2296320 }, weight_map: map }));
    writeIndex(weightMap);

    for (const path of [dir, join(dir, 'model.safetensors.index.json')]) {
      const sharded = await openCheckpoint(path);
      try {
        assert.equal(sharded.format, 'safetensors');
        assert.equal(sharded.files.length, 3);
        assert.equal(sharded.tensors.length, original.tensors.length);
        assert.equal(summarizeHfConfig(sharded.config ?? {}).ropeTheta, 10000);
        for (const t of original.tensors) {
          const got = await sharded.readRowsF32(t.name);
          assert.deepEqual(got, await original.readRowsF32(t.name), t.name);
          assert.equal(sharded.tensors.find((e) => e.name === t.name)?.file, join(dir, weightMap[t.name] ?? ''));
        }
      } finally {
        await sharded.close();
      }
    }

    const expectFormatError = async (pattern: RegExp): Promise<void> => {
      await assert.rejects(openCheckpoint(dir), (e: unknown) => e instanceof FormatError && pattern.test(e.message));
    };
    writeIndex({ ...weightMap, 'model.extra.weight': shardNames[0] ?? '' });
    await expectFormatError(/weight_map\['model.extra.weight'\]: tensor is not in its shard model-00001-of-00003.safetensors/);
    writeIndex({ ...weightMap, 'model.extra.weight': 'model-00009-of-00009.safetensors' });
    await expectFormatError(/shard model-00009-of-00009.safetensors does not exist/);
    writeIndex({ ...weightMap, 'model.extra.weight': '../model.safetensors' });
    await expectFormatError(/must be a file name in the index's folder, not a path/);
    const moved = { ...weightMap, 'lm_head.weight': shardNames[1] ?? '' };
    writeIndex(moved);
    await expectFormatError(/weight_map says model-00002-of-00003.safetensors but the tensor is in model-00001-of-00003.safetensors/);
    // A tensor stored in two shards.
    writeIndex(weightMap);
    const first = all[0];
    assert.ok(first);
    writeFileSync(join(dir, shardNames[1] ?? ''), encodeSafetensors([...all.filter((_, j) => j % 3 === 1), { ...first }]));
    await expectFormatError(/tensor 'lm_head.weight': tensor also stored in/);
    writeFileSync(join(dir, 'model.safetensors.index.json'), '{"weight_map": ');
    await expectFormatError(/model.safetensors.index.json: not valid JSON/);
  } finally {
    await original.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a folder of safetensors files without an index opens them all; a folder without weights is refused', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-folder-'));
  try {
    writeFileSync(join(dir, 'a.safetensors'), encodeSafetensors([{ name: 'x', dtype: 'F32', shape: [2], data: bytesOf(new Float32Array([1, 2])) }]));
    writeFileSync(join(dir, 'b.safetensors'), encodeSafetensors([{ name: 'y', dtype: 'I8', shape: [1, 3], data: bytesOf(new Int8Array([-1, 0, 1])) }]));
    const ckpt = await openCheckpoint(dir);
    try {
      assert.deepEqual(ckpt.files, [join(dir, 'a.safetensors'), join(dir, 'b.safetensors')]);
      assert.deepEqual([...(await ckpt.readRowsF32('y'))], [-1, 0, 1]);
      assert.equal(ckpt.config, null);
    } finally {
      await ckpt.close();
    }
    const empty = mkdtempSync(join(tmpdir(), 'ql-empty-'));
    try {
      await assert.rejects(openCheckpoint(empty), (e: unknown) => e instanceof UnsupportedError && /no model.safetensors/.test(e.message));
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a sparse safetensors file over 4 GiB: header parsed, a tensor past 4 GiB read back', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-sparse-'));
  const path = join(dir, 'big.safetensors');
  try {
    const rowBytes = 4096;
    const rows = (4.5 * 2 ** 30) / rowBytes; // 4.5 GiB of U8
    const tail = new Float32Array([1.25, -7, 3.5e-5, 65504]);
    const header = {
      big: { dtype: 'U8', shape: [rows, rowBytes], data_offsets: [0, rows * rowBytes] },
      tail: { dtype: 'F32', shape: [4], data_offsets: [rows * rowBytes, rows * rowBytes + 16] },
    };
    const head = fileFromHeaderText(JSON.stringify(header), 0);
    const dataStart = head.byteLength;
    const fd = openSync(path, 'w');
    try {
      writeSync(fd, head, 0, head.byteLength, 0);
      const lastRow = new Uint8Array(rowBytes).map((_, i) => i % 251);
      writeSync(fd, lastRow, 0, rowBytes, dataStart + (rows - 1) * rowBytes);
      writeSync(fd, bytesOf(tail), 0, 16, dataStart + rows * rowBytes);
      ftruncateSync(fd, dataStart + rows * rowBytes + 16);
    } finally {
      closeSync(fd);
    }
    const ckpt = await openCheckpoint(path);
    try {
      const t = ckpt.tensors.find((e) => e.name === 'tail');
      assert.ok(t && t.offset > 2 ** 32, 'tail lies past 4 GiB');
      assert.deepEqual(await ckpt.readRowsF32('tail'), tail);
      const last = await ckpt.readRawRows('big', rows - 1, 1);
      assert.equal(last[250], 250);
      assert.equal(last[251], 0);
      const middle = await ckpt.readRowsF32('big', rows / 2, 1);
      assert.equal(middle.length, rowBytes);
      assert.ok(middle.every((v) => v === 0));
      // The whole 4.5 GiB tensor in one call is refused rather than allocated.
      await assert.rejects(ckpt.readRawRows('big'), InvalidArgumentError);
    } finally {
      await ckpt.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('HF config: rope_theta at the top level or in rope_parameters', () => {
  assert.equal(summarizeHfConfig({ rope_theta: 500000 }).ropeTheta, 500000);
  assert.equal(summarizeHfConfig({ rope_parameters: { rope_theta: 10000, rope_type: 'default' } }).ropeTheta, 10000);
  assert.equal(summarizeHfConfig({}).ropeTheta, null);
  const micro = JSON.parse(readFileSync(join(microLlamaDir, 'config.json'), 'utf8')) as Record<string, unknown>;
  const s = summarizeHfConfig(micro);
  assert.deepEqual([s.hiddenSize, s.numLayers, s.numHeads, s.numKvHeads, s.headDim, s.vocabSize, s.ropeTheta], [64, 2, 4, 2, 16, 8192, 10000]);
});

test('FP8 tables: E4M3 has no infinities and two NaN codes, max 448; E5M2 is IEEE-like, max 57344; both are monotonic', async () => {
  const { F8_E4M3_TO_F32, F8_E5M2_TO_F32, F8_E8M0_TO_F32 } = await import('../../src/core/numeric/float8');
  const nanCodes = (t: Float32Array): number[] => [...t.keys()].filter((i) => Number.isNaN(t[i]));
  assert.deepEqual(nanCodes(F8_E4M3_TO_F32), [0x7f, 0xff]);
  assert.equal(Math.max(...[...F8_E4M3_TO_F32].filter((v) => !Number.isNaN(v))), 448);
  assert.ok([...F8_E4M3_TO_F32].every((v) => Number.isNaN(v) || Number.isFinite(v)));
  assert.deepEqual(nanCodes(F8_E5M2_TO_F32), [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]);
  assert.equal(F8_E5M2_TO_F32[0x7c], Infinity);
  assert.equal(F8_E5M2_TO_F32[0xfc], -Infinity);
  assert.equal(F8_E5M2_TO_F32[0x7b], 57344);
  assert.deepEqual(nanCodes(F8_E8M0_TO_F32), [0xff]);
  // Positive codes increase strictly up to the NaNs/infinities, and negative codes mirror them.
  for (const [table, last] of [[F8_E4M3_TO_F32, 0x7e], [F8_E5M2_TO_F32, 0x7c]] as const) {
    for (let c = 1; c <= last; c++) assert.ok((table[c] ?? 0) > (table[c - 1] ?? 0), `code ${c}`);
    for (let c = 0; c <= last; c++) assert.equal(table[c | 0x80], -(table[c] ?? 0));
  }
  // Subnormals: the smallest step of each format.
  assert.equal(F8_E4M3_TO_F32[1], 2 ** -9);
  assert.equal(F8_E5M2_TO_F32[1], 2 ** -16);
});
