import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FormatError, QuantLensError, UnsupportedError } from '../../src/core/errors';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { readGgufHeader, ggufNumber, ggufNumberArray, ggufShape, ggufString, ggufStringArray, type GgufHeader, type GgufValue } from '../../src/core/formats/gguf/reader';
import { encodeGgufHeader, encodeOptionsFromHeader, type EncodeGgufOptions, type EncodedTensorInfo } from '../../src/core/formats/gguf/encodeHeader';
import { GGML_TYPES, ggmlTypeByName } from '../../src/core/formats/gguf/ggmlTypes';
import { microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';
import { hfNameOfGguf, unpermuteQkRows } from '../helpers/hfGgufNames';

// The real file, read once (4.8 MB): tests build their bad files from its header.
const realBytes = new Uint8Array(readFileSync(microLlamaF32Gguf));
let realHeaderCache: GgufHeader | undefined;
async function realHeader(): Promise<GgufHeader> {
  realHeaderCache ??= await readGgufHeader(new MemoryByteSource(realBytes, 'micro-llama-f32.gguf'));
  return realHeaderCache;
}

/** A file from encoder options, with `dataBytes` of zeros after the header (default: what the real tensors need). */
function build(options: EncodeGgufOptions, dataBytes?: number): MemoryByteSource {
  const { bytes } = encodeGgufHeader(options);
  const data = dataBytes ?? realBytes.byteLength - 272128;
  const file = new Uint8Array(bytes.byteLength + data);
  file.set(bytes);
  return new MemoryByteSource(file, 'bad.gguf');
}

async function realOptions(): Promise<EncodeGgufOptions> {
  return encodeOptionsFromHeader(await realHeader());
}

async function rejects(source: MemoryByteSource, pattern: RegExp, errorClass: abstract new (...args: never[]) => QuantLensError = FormatError): Promise<void> {
  await assert.rejects(readGgufHeader(source), (e: unknown) => {
    assert.ok(e instanceof errorClass, `expected ${errorClass.name}, got ${String(e)}`);
    assert.match((e as Error).message, /bad\.gguf/, 'the message names the file');
    assert.match((e as Error).message, pattern);
    return true;
  });
}

function withTensor(options: EncodeGgufOptions, index: number, change: Partial<EncodedTensorInfo>): EncodeGgufOptions {
  return { ...options, tensors: options.tensors.map((t, i) => (i === index ? { ...t, ...change } : t)) };
}

test('micro-llama-f32.gguf: header as llama.cpp wrote it', async () => {
  const h = await realHeader();
  assert.equal(h.version, 3);
  assert.equal(h.alignment, 32);
  assert.equal(h.tensors.length, 21);
  assert.equal(h.kv.get('general.architecture')?.type, 'STRING');
  const tokens = h.kv.get('tokenizer.ggml.tokens');
  assert.ok(tokens?.type === 'ARRAY' && tokens.elementType === 'STRING');
  assert.equal(tokens.values.length, 8192);
  assert.equal(tokens.values[0], '<|bos|>');
  const merges = h.kv.get('tokenizer.ggml.merges');
  assert.ok(merges?.type === 'ARRAY' && merges.values.length === 7934);
  const q = h.tensors.find((t) => t.name === 'blk.0.attn_q.weight');
  assert.deepEqual(q?.ne, [64, 64]);
  const k = h.tensors.find((t) => t.name === 'blk.0.attn_k.weight');
  assert.deepEqual(k && ggufShape(k), [32, 64], 'shape is row-major, the reverse of ne');
  // Our encoder reproduces llama.cpp's header byte for byte: reader and encoder agree on the layout.
  const encoded = encodeGgufHeader(encodeOptionsFromHeader(h));
  assert.equal(encoded.dataStart, h.dataStart);
  assert.deepEqual(encoded.bytes, realBytes.subarray(0, h.dataStart));
});

function metaNumber(h: GgufHeader, key: string): number {
  const v = h.kv.get(key);
  assert.ok(v !== undefined && v.type !== 'ARRAY' && typeof v.value === 'number', `${key} missing`);
  return v.value;
}

test('every micro-llama tensor from the F32 GGUF equals the BF16 safetensors value widened to f32, exactly', async () => {
  const gguf = await openCheckpoint(microLlamaF32Gguf);
  const hf = await openCheckpoint(microLlamaDir);
  try {
    assert.ok(gguf.gguf);
    const nHead = metaNumber(gguf.gguf, 'llama.attention.head_count');
    const nHeadKv = metaNumber(gguf.gguf, 'llama.attention.head_count_kv');
    assert.equal(gguf.tensors.length, hf.tensors.length);
    for (const t of gguf.tensors) {
      const hfName = hfNameOfGguf(t.name);
      const hfEntry = hf.tensors.find((e) => e.name === hfName);
      assert.ok(hfEntry, `${hfName} in safetensors`);
      assert.deepEqual(t.shape, hfEntry.shape, `${t.name} shape`);
      let fromGguf = await gguf.readRowsF32(t.name);
      if (t.name.endsWith('attn_q.weight')) fromGguf = unpermuteQkRows(fromGguf, t.shape[0] ?? 0, t.shape[1] ?? 0, nHead);
      if (t.name.endsWith('attn_k.weight')) fromGguf = unpermuteQkRows(fromGguf, t.shape[0] ?? 0, t.shape[1] ?? 0, nHeadKv);
      const fromHf = await hf.readRowsF32(hfName);
      const a = new Uint32Array(fromGguf.buffer, fromGguf.byteOffset, fromGguf.length);
      const b = new Uint32Array(fromHf.buffer, fromHf.byteOffset, fromHf.length);
      let mismatches = 0;
      for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) mismatches++;
      assert.equal(mismatches, 0, `${t.name}: ${mismatches} of ${a.length} values differ from ${hfName}`);
    }
    // Without undoing the permutation the Q rows do not match: the check above can fail.
    const q = await gguf.readRowsF32('blk.0.attn_q.weight');
    const hq = await hf.readRowsF32('model.layers.0.self_attn.q_proj.weight');
    assert.notDeepEqual(q, hq);
    // A row range reads exactly those rows.
    const rows = await gguf.readRowsF32('token_embd.weight', 100, 3);
    const all = await gguf.readRowsF32('token_embd.weight');
    assert.deepEqual(rows, all.subarray(100 * 64, 103 * 64));
  } finally {
    await gguf.close();
    await hf.close();
  }
});

test('GGUF v2 is read like v3; v1 is refused clearly; other versions are refused', async () => {
  const options = await realOptions();
  const v2 = await readGgufHeader(build({ ...options, version: 2 }));
  assert.equal(v2.version, 2);
  assert.equal(v2.tensors.length, 21);
  await rejects(build({ ...options, version: 1 }), /version 1 is no longer supported/, UnsupportedError);
  await rejects(build({ ...options, version: 4 }), /version 4 is newer/, UnsupportedError);
  await rejects(build({ ...options, version: 0 }), /bad GGUF version 0/);
  await rejects(build({ ...options, version: 0x03000000 }), /other byte order/);
});

test('every KV value type round-trips, nested arrays included; u64 stays bigint', async () => {
  const kv: Array<[string, GgufValue]> = [
    ['t.u8', { type: 'UINT8', value: 255 }],
    ['t.i8', { type: 'INT8', value: -128 }],
    ['t.u16', { type: 'UINT16', value: 65535 }],
    ['t.i16', { type: 'INT16', value: -32768 }],
    ['t.u32', { type: 'UINT32', value: 4294967295 }],
    ['t.i32', { type: 'INT32', value: -2147483648 }],
    ['t.f32', { type: 'FLOAT32', value: Math.fround(0.1) }],
    ['t.bool', { type: 'BOOL', value: true }],
    ['t.str', { type: 'STRING', value: 'héllo ✓ 🙂' }],
    ['t.u64', { type: 'UINT64', value: 18446744073709551615n }],
    ['t.i64', { type: 'INT64', value: -9223372036854775808n }],
    ['t.f64', { type: 'FLOAT64', value: 0.1 }],
    ['t.arr.i32', { type: 'ARRAY', elementType: 'INT32', values: [1, -2, 3] }],
    ['t.arr.str', { type: 'ARRAY', elementType: 'STRING', values: ['a', '', 'ccc'] }],
    ['t.arr.u64', { type: 'ARRAY', elementType: 'UINT64', values: [1n, 2n ** 60n] }],
    ['t.arr.bool', { type: 'ARRAY', elementType: 'BOOL', values: [true, false] }],
    ['t.arr.empty', { type: 'ARRAY', elementType: 'FLOAT32', values: [] }],
    [
      't.arr.nested',
      {
        type: 'ARRAY',
        elementType: 'ARRAY',
        values: [
          { type: 'ARRAY', elementType: 'UINT8', values: [1, 2] },
          { type: 'ARRAY', elementType: 'STRING', values: ['x'] },
          { type: 'ARRAY', elementType: 'ARRAY', values: [{ type: 'ARRAY', elementType: 'FLOAT64', values: [1.5] }] },
        ],
      },
    ],
  ];
  const h = await readGgufHeader(build({ kv, tensors: [] }, 0));
  assert.deepEqual([...h.kv], kv);
  assert.equal(h.tensors.length, 0);
});

test('all ggml types are listed with the right sizes; types we cannot decode say "not decodable yet"', async () => {
  const tensors: EncodedTensorInfo[] = [];
  let offset = 0;
  const expected: Array<{ name: string; nbytes: number }> = [];
  for (const t of GGML_TYPES) {
    const ne0 = t.blockSize * 2;
    const nbytes = 2 * 3 * t.typeSize;
    tensors.push({ name: `t.${t.name}`, ne: [ne0, 3], typeId: t.id, offset });
    expected.push({ name: `t.${t.name}`, nbytes });
    offset += Math.ceil(nbytes / 32) * 32;
  }
  const source = build({ kv: [['general.architecture', { type: 'STRING', value: 'llama' }]], tensors }, offset);
  const h = await readGgufHeader(source);
  assert.deepEqual(
    h.tensors.map((t) => ({ name: t.name, nbytes: t.nbytes })),
    expected,
  );
  // Through openCheckpoint: IQ2_XXS is listed, and decoding it is refused with a typed error.
  const { writeFileSync, mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'ql-gguf-'));
  try {
    const path = join(dir, 'types.gguf');
    const bytes = new Uint8Array(source.size);
    await source.read(0, bytes);
    writeFileSync(path, bytes);
    const ckpt = await openCheckpoint(path);
    try {
      const iq = ckpt.tensors.find((t) => t.name === 't.IQ2_XXS');
      assert.equal(iq?.dtype, 'IQ2_XXS');
      assert.deepEqual(iq?.shape, [3, 512]);
      assert.equal(iq?.nbytes, 2 * 3 * 66);
      await assert.rejects(ckpt.readRowsF32('t.IQ2_XXS'), (e: unknown) => e instanceof UnsupportedError && /IQ2_XXS is not decodable yet/.test(e.message));
      await assert.rejects(ckpt.readRowsF32('t.MXFP4'), /MXFP4 is not decodable yet/);
      const raw = await ckpt.readRawRows('t.IQ2_XXS', 1, 1);
      assert.equal(raw.byteLength, 2 * 66, 'raw rows of undecodable types are still readable');
      const q8 = await ckpt.readRowsF32('t.Q8_0');
      assert.equal(q8.length, 3 * 64);
    } finally {
      await ckpt.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bad magic, truncation and absurd counts', async () => {
  const bytes = realBytes.slice();
  bytes[0] = 0x47;
  bytes[3] = 0x47; // "GGUG"
  await rejects(new MemoryByteSource(bytes, 'bad.gguf'), /bad magic "GGUG"/);
  await rejects(new MemoryByteSource(realBytes.subarray(0, 3), 'bad.gguf'), /too small|ends before/);
  await rejects(new MemoryByteSource(realBytes.subarray(0, 100_000), 'bad.gguf'), /ends before|exceeds|left/);
  const options = await realOptions();
  await rejects(build({ ...options, tensorCount: 2n ** 63n }), /tensor count 9223372036854775808 is above the limit/);
  await rejects(build({ ...options, kvCount: 999_999 }), /cannot fit/);
  await rejects(build({ ...options, kvCount: 2n ** 64n - 1n }), /KV count .* above the limit/);
});

test('absurd string and array lengths are refused before allocating', async () => {
  const options = await realOptions();
  const encoded = encodeGgufHeader(options);
  // The first KV key length is the third u64 field (after the two counts).
  const keyLengthAt = encoded.u64Fields[2] ?? 0;
  const file = new Uint8Array(realBytes);
  new DataView(file.buffer).setBigUint64(keyLengthAt, 2n ** 40n, true);
  await rejects(new MemoryByteSource(file, 'bad.gguf'), /string length 1099511627776 is above the limit/);
  new DataView(file.buffer).setBigUint64(keyLengthAt, 10_000_000n, true);
  await rejects(new MemoryByteSource(file, 'bad.gguf'), /string length 10000000 exceeds the .* bytes left/);
  // The tokens array count, set huge.
  const h = await realHeader();
  const kv = [...h.kv];
  const tokensIndex = kv.findIndex(([k]) => k === 'tokenizer.ggml.tokens');
  assert.ok(tokensIndex >= 0);
  const fileWithArray = new Uint8Array(realBytes);
  const tokensCountAt = findArrayCountOffset(encoded, kv, tokensIndex);
  new DataView(fileWithArray.buffer).setBigUint64(tokensCountAt, 2n ** 62n, true);
  await rejects(new MemoryByteSource(fileWithArray, 'bad.gguf'), /array length of 'tokenizer.ggml.tokens' 4611686018427387904 is above the limit/);
  new DataView(fileWithArray.buffer).setBigUint64(tokensCountAt, 8_000_000n, true);
  await rejects(new MemoryByteSource(fileWithArray, 'bad.gguf'), /array length 8000000 of STRING needs at least 64000000 bytes/);
  // A value type that does not exist.
  await rejects(corruptValueType(), /invalid GGUF value type 13/);
});

/** The offset of the element count of the array at kv index `kvIndex`: re-encode the prefix and measure. */
function findArrayCountOffset(full: { u64Fields: number[] }, kv: Array<[string, GgufValue]>, kvIndex: number): number {
  const prefix = encodeGgufHeader({ kv: kv.slice(0, kvIndex), tensors: [], tensorCount: 21, alignment: 1 });
  // Prefix ends where the key of kv[kvIndex] starts: key length (u64) + key + u32 type + u32 element type, then the count.
  const key = kv[kvIndex]?.[0] ?? '';
  const at = prefix.bytes.byteLength + 8 + Buffer.byteLength(key) + 4 + 4;
  assert.ok(full.u64Fields.includes(at), 'computed offset is a u64 field');
  return at;
}

function corruptValueType(): MemoryByteSource {
  const { bytes } = encodeGgufHeader({ kv: [['x', { type: 'UINT8', value: 1 }]], tensors: [], alignment: 1 });
  // The value type u32 sits after magic, version, two counts, key length and the 1-byte key.
  new DataView(bytes.buffer).setUint32(4 + 4 + 8 + 8 + 8 + 1, 13, true);
  return new MemoryByteSource(bytes, 'bad.gguf');
}

test('empty and duplicate keys, bad general.alignment', async () => {
  const options = await realOptions();
  const kv = [...options.kv];
  const first = kv[0];
  assert.ok(first);
  await rejects(build({ ...options, kv: [...kv, first] }), /duplicate key 'general.architecture'/);
  await rejects(build({ ...options, kv: [['', { type: 'UINT8', value: 0 }], ...kv] }), /key of KV pair 0 is empty/);
  await rejects(build({ ...options, kv: [...kv, ['general.alignment', { type: 'UINT32', value: 48 }]] }), /alignment 48 is not a power of two/);
  await rejects(build({ ...options, kv: [...kv, ['general.alignment', { type: 'UINT64', value: 32n }]] }), /general.alignment must be UINT32/);
  // A legal alignment of 512 with offsets laid out for 32 is refused at the first tensor after a 256-byte norm.
  await rejects(build({ ...options, kv: [...kv, ['general.alignment', { type: 'UINT32', value: 512 }]], alignment: 512 }), /tensor 'blk.0.ffn_down.weight': offset \d+ is not the expected \d+/);
  // The same alignment with offsets padded to it is accepted.
  let offset = 0;
  const padded = options.tensors.map((t) => {
    const info = { ...t, offset };
    const h = realHeaderCache?.tensors.find((x) => x.name === t.name);
    offset += Math.ceil((h?.nbytes ?? 0) / 512) * 512;
    return info;
  });
  const ok = await readGgufHeader(build({ ...options, kv: [...kv, ['general.alignment', { type: 'UINT32', value: 512 }]], tensors: padded, alignment: 512 }, offset));
  assert.equal(ok.alignment, 512);
  assert.equal(ok.dataStart % 512, 0);
});

test('tensor infos: n_dims > 4, dims overflow, unknown type, block size, long and duplicate names, misaligned offsets, data past the end', async () => {
  const options = await realOptions();
  const q8 = ggmlTypeByName('Q8_0');
  assert.ok(q8);
  await rejects(build(withTensor(options, 3, { ne: [64, 1, 1, 1, 1], nDims: 5 })), /n_dims 5 is more than 4/);
  await rejects(build(withTensor(options, 3, { ne: [2n ** 62n, 2n ** 62n] })), /not a valid dimension|overflow/);
  await rejects(build(withTensor(options, 3, { ne: [2n ** 30n, 2n ** 30n, 2n ** 30n] })), /overflow the element count/);
  await rejects(build(withTensor(options, 3, { typeId: 4 })), /unknown ggml type id 4/);
  await rejects(build(withTensor(options, 3, { typeId: 99 })), /unknown ggml type id 99/);
  await rejects(build(withTensor(options, 3, { typeId: q8.id })), /ne\[0\] = 64 is not a multiple|offset/);
  await rejects(build(withTensor(options, 2, { typeId: q8.id, ne: [48] })), /ne\[0\] = 48 is not a multiple of the Q8_0 block size 32/);
  await rejects(build(withTensor(options, 3, { name: 'x'.repeat(64) })), /name of tensor 3 is 64 bytes long; names must be shorter than 64/);
  const secondName = options.tensors[1]?.name;
  await rejects(build(withTensor(options, 3, { name: secondName })), /tensor 'token_embd.weight': duplicate tensor name/);
  const t4 = options.tensors[4];
  assert.ok(t4);
  await rejects(build(withTensor(options, 4, { offset: Number(t4.offset) + 16 })), /tensor 'blk.0.ffn_gate.weight': offset \d+ is not the expected \d+/);
  await rejects(build(withTensor(options, 4, { offset: Number(t4.offset) - 32 })), /is not the expected/);
  await rejects(build(options, realBytes.byteLength - 272128 - 1), /tensor 'output_norm.weight': data .* runs past the end of the file/);
  await rejects(build(withTensor(options, 20, { offset: 2n ** 60n })), /tensor 'output_norm.weight': offset 1152921504606846976/);
});

test('typed KV accessors for the runtime: tokenizer arrays and hyperparameters, wrong types refused', async () => {
  const h = await realHeader();
  assert.equal(ggufString(h, 'tokenizer.ggml.model'), 'gpt2');
  assert.equal(ggufNumber(h, 'llama.embedding_length'), 64);
  assert.equal(ggufNumber(h, 'llama.attention.layer_norm_rms_epsilon'), Math.fround(1e-5));
  assert.equal(ggufStringArray(h, 'tokenizer.ggml.tokens')?.length, 8192);
  assert.equal(ggufStringArray(h, 'tokenizer.ggml.merges')?.[0], 'Ġ Ġ');
  assert.deepEqual(ggufNumberArray(h, 'tokenizer.ggml.token_type')?.slice(0, 3), [3, 3, 1]);
  assert.equal(ggufString(h, 'no.such.key'), undefined);
  assert.throws(() => ggufString(h, 'llama.block_count'), (e: unknown) => e instanceof FormatError && /key 'llama.block_count': expected STRING, found UINT32/.test(e.message));
  assert.throws(() => ggufNumberArray(h, 'tokenizer.ggml.tokens'), /expected ARRAY of numbers, found ARRAY of STRING/);
});
