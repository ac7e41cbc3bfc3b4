import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GgufStreamWriter, ggmlTensorBytes, layoutGguf, type ByteSink, type GgufTensorToWrite } from '../../src/core/formats/gguf/writer';
import { readGgufHeader, type GgufValue } from '../../src/core/formats/gguf/reader';
import { MemoryByteSource } from '../../src/core/io/byteSource';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { FormatError, InvalidArgumentError } from '../../src/core/errors';

class MemorySink implements ByteSink {
  chunks: Uint8Array[] = [];
  async write(bytes: Uint8Array): Promise<void> {
    this.chunks.push(bytes.slice());
  }
  bytes(): Uint8Array {
    const total = this.chunks.reduce((s, c) => s + c.byteLength, 0);
    const out = new Uint8Array(total);
    let o = 0;
    for (const c of this.chunks) {
      out.set(c, o);
      o += c.byteLength;
    }
    return out;
  }
}

const EVERY_KV: Array<[string, GgufValue]> = [
  ['t.u8', { type: 'UINT8', value: 250 }],
  ['t.i8', { type: 'INT8', value: -5 }],
  ['t.u16', { type: 'UINT16', value: 65000 }],
  ['t.i16', { type: 'INT16', value: -3000 }],
  ['t.u32', { type: 'UINT32', value: 4000000000 }],
  ['t.i32', { type: 'INT32', value: -2000000000 }],
  ['t.f32', { type: 'FLOAT32', value: 0.5 }],
  ['t.bool', { type: 'BOOL', value: true }],
  ['t.str', { type: 'STRING', value: 'héllo ✓' }],
  ['t.u64', { type: 'UINT64', value: 2n ** 63n + 5n }],
  ['t.i64', { type: 'INT64', value: -(2n ** 62n) }],
  ['t.f64', { type: 'FLOAT64', value: Math.PI }],
  ['t.arr_i32', { type: 'ARRAY', elementType: 'INT32', values: [1, -2, 3] }],
  ['t.arr_str', { type: 'ARRAY', elementType: 'STRING', values: ['a', '', 'Ġt'] }],
  ['t.arr_nested', { type: 'ARRAY', elementType: 'ARRAY', values: [{ type: 'ARRAY', elementType: 'UINT8', values: [1, 2] }] }],
];

async function writeAll(layoutInput: Parameters<typeof layoutGguf>[0], data: Map<string, Uint8Array>, chunk = 7): Promise<Uint8Array> {
  const layout = layoutGguf(layoutInput);
  const sink = new MemorySink();
  const writer = new GgufStreamWriter(sink, layout);
  await writer.writeHeader();
  for (const t of layout.tensors) {
    const bytes = data.get(t.name)!;
    for (let o = 0; o < bytes.byteLength; o += chunk) await writer.writeTensorData(t.name, bytes.subarray(o, Math.min(o + chunk, bytes.byteLength)));
  }
  await writer.finish();
  const out = sink.bytes();
  assert.equal(out.byteLength, layout.fileSize);
  return out;
}

test('KVs of every type, arrays included, read back equal; tensor offsets are aligned and padded with zeros', async () => {
  const f = Float32Array.from([1, 2, 3, 4, 5]);
  const q = new Uint8Array(34).fill(7);
  const tensors: GgufTensorToWrite[] = [
    { name: 'a', shape: [5], type: 'F32' },
    { name: 'b', shape: [1, 32], type: 'Q8_0' },
  ];
  const bytes = await writeAll({ kv: EVERY_KV, tensors }, new Map([['a', new Uint8Array(f.buffer)], ['b', q]]));
  const header = await readGgufHeader(new MemoryByteSource(bytes, 'mem.gguf'));
  assert.equal(header.version, 3);
  assert.deepEqual([...header.kv.keys()], EVERY_KV.map(([k]) => k));
  for (const [k, v] of EVERY_KV) {
    const got = header.kv.get(k)!;
    if (v.type === 'FLOAT32') assert.equal(got.type === 'FLOAT32' && got.value, v.value);
    else assert.deepEqual(got, v, k);
  }
  assert.equal(header.dataStart % 32, 0);
  assert.deepEqual(header.tensors.map((t) => [t.name, t.offset, t.nbytes, t.ne]), [['a', 0, 20, [5]], ['b', 32, 34, [32, 1]]]);
  assert.deepEqual([...bytes.subarray(header.dataStart + 20, header.dataStart + 32)], new Array<number>(12).fill(0), 'padding is zeros');
  assert.deepEqual(bytes.subarray(header.dataStart + 32, header.dataStart + 66), q);
  assert.equal(bytes.byteLength, header.dataStart + 32 + 64, 'the last tensor is padded too, as gguf.cpp does');
});

test('general.alignment is honoured for the data section and every offset', async () => {
  const kv: Array<[string, GgufValue]> = [['general.alignment', { type: 'UINT32', value: 64 }]];
  const tensors: GgufTensorToWrite[] = [
    { name: 'x', shape: [3], type: 'F32' },
    { name: 'y', shape: [3], type: 'F32' },
  ];
  const bytes = await writeAll({ kv, tensors }, new Map([['x', new Uint8Array(12)], ['y', new Uint8Array(12).fill(1)]]));
  const header = await readGgufHeader(new MemoryByteSource(bytes, 'mem.gguf'));
  assert.equal(header.alignment, 64);
  assert.equal(header.dataStart % 64, 0);
  assert.deepEqual(header.tensors.map((t) => t.offset), [0, 64]);
  assert.throws(() => layoutGguf({ kv: [['general.alignment', { type: 'UINT32', value: 48 }]], tensors: [] }), FormatError);
});

test('the layout refuses what llama.cpp would refuse', () => {
  const ok: GgufTensorToWrite = { name: 'w', shape: [2, 32], type: 'Q4_0' };
  assert.throws(() => layoutGguf({ kv: [], tensors: [ok, ok] }), /duplicate tensor name/);
  assert.throws(() => layoutGguf({ kv: [], tensors: [{ ...ok, name: 'n'.repeat(64) }] }), /64 bytes or longer/);
  assert.throws(() => layoutGguf({ kv: [], tensors: [{ ...ok, shape: [2, 48] }] }), InvalidArgumentError);
  assert.throws(() => layoutGguf({ kv: [], tensors: [{ ...ok, shape: [1, 1, 1, 1, 32] }] }), /1 to 4 dimensions/);
  assert.throws(() => layoutGguf({ kv: [], tensors: [{ ...ok, shape: [0, 32] }] }), /bad shape/);
  assert.throws(() => layoutGguf({ kv: [['k', { type: 'UINT8', value: 1 }], ['k', { type: 'UINT8', value: 2 }]], tensors: [] }), /duplicate metadata key/);
  assert.equal(ggmlTensorBytes('w', [3, 256], 'Q4_K'), 3 * 144);
});

test('the stream writer enforces order, sizes and completeness', async () => {
  const layout = layoutGguf({ kv: [], tensors: [{ name: 'a', shape: [4], type: 'F32' }, { name: 'b', shape: [4], type: 'F32' }] });
  const writer = new GgufStreamWriter(new MemorySink(), layout);
  await assert.rejects(writer.writeTensorData('a', new Uint8Array(16)), /header before tensor data/);
  await writer.writeHeader();
  await assert.rejects(writer.writeTensorData('b', new Uint8Array(16)), /layout order; expected a/);
  await assert.rejects(writer.writeTensorData('a', new Uint8Array(17)), /17 bytes given, the tensor has 16/);
  await writer.writeTensorData('a', new Uint8Array(16));
  await writer.writeTensorData('b', new Uint8Array(8));
  await assert.rejects(writer.finish(), /b: only 8 of 16 bytes/);
});

test('a written file opens as a checkpoint and its values read back', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-writer-'));
  try {
    const path = join(dir, 'w.gguf');
    const values = Float32Array.from({ length: 64 }, (_, i) => i / 8 - 4);
    const layout = layoutGguf({
      kv: [['general.architecture', { type: 'STRING', value: 'llama' }]],
      tensors: [{ name: 'm.weight', shape: [2, 32], type: 'F32' }],
    });
    const handle = await open(path, 'w');
    let position = 0;
    const writer = new GgufStreamWriter({ write: async (b) => void (position += (await handle.write(b, 0, b.byteLength, position)).bytesWritten) }, layout);
    await writer.writeHeader();
    await writer.writeTensorData('m.weight', new Uint8Array(values.buffer));
    await writer.finish();
    await handle.close();
    assert.equal((await readFile(path)).byteLength, layout.fileSize);
    const checkpoint = await openCheckpoint(path);
    try {
      assert.deepEqual(checkpoint.tensors.map((t) => [t.name, t.dtype, t.shape]), [['m.weight', 'F32', [2, 32]]]);
      assert.deepEqual(await checkpoint.readRowsF32('m.weight', 1, 1), values.subarray(32));
    } finally {
      await checkpoint.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
