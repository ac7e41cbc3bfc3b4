import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';
import { exportGguf, planGgufExport } from '../../src/core/convert/exportGguf';
import { wholeTensorReports, type WholeTensorReport } from '../helpers/wholeTensors';
import { permuteQkRows, sizeLabel, titleFromFolderName } from '../../src/core/convert/hfLlama';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { readGgufHeader, type GgufValue } from '../../src/core/formats/gguf/reader';
import { GgufStreamWriter, gguf, layoutGguf, type GgufTensorToWrite } from '../../src/core/formats/gguf/writer';
import { withFileSource } from '../../src/core/io/byteSource';
import { CancelledError, NumericError, QuantLensError, UnsupportedError } from '../../src/core/errors';
import { quantizeGgml } from '../../src/core/quant/ggml/index';
import { syntheticKv } from '../fixtures/oracles/syntheticLlama';
import { withTempDir } from '../helpers/scoped';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function plain(v: GgufValue): unknown {
  return JSON.parse(JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? String(x) : x)));
}

async function writeGguf(path: string, kv: Array<[string, GgufValue]>, tensors: Array<GgufTensorToWrite & { values: Float32Array }>): Promise<void> {
  const layout = layoutGguf({ kv, tensors });
  const handle = await open(path, 'w');
  let position = 0;
  try {
    const writer = new GgufStreamWriter({ write: async (b) => void (position += (await handle.write(b, 0, b.byteLength, position)).bytesWritten) }, layout);
    await writer.writeHeader();
    for (const t of tensors) await writer.writeTensorData(t.name, new Uint8Array(t.values.buffer, t.values.byteOffset, t.values.byteLength));
    await writer.finish();
  } finally {
    await handle.close();
  }
}

test('micro-llama HF -> F32 GGUF equals llama.cpp convert_hf_to_gguf.py: tensors, Q/K permutation, metadata, tokenizer', async () => {
  await withTempDir(async (dir) => {
    const output = join(dir, 'micro-llama-f32.gguf');
    const checkpoint = await openCheckpoint(microLlamaDir);
    try {
      await exportGguf(checkpoint, { target: 'F32', outputPath: output });
    } finally {
      await checkpoint.close();
    }
    const ours = await withFileSource(output, (s) => readGgufHeader(s));
    const theirs = await withFileSource(microLlamaF32Gguf, (s) => readGgufHeader(s));
    assert.deepEqual([...ours.kv.keys()].sort(), [...theirs.kv.keys()].sort(), 'the same metadata keys');
    for (const [key, value] of theirs.kv) assert.deepEqual(plain(ours.kv.get(key)!), plain(value), key);
    const a = new Uint8Array(await readFile(output));
    const b = new Uint8Array(await readFile(microLlamaF32Gguf));
    assert.equal(ours.tensors.length, theirs.tensors.length);
    for (const t of theirs.tensors) {
      const o = ours.tensors.find((x) => x.name === t.name);
      assert.ok(o !== undefined, `${t.name} is written`);
      assert.deepEqual(o.ne, t.ne, `${t.name} shape`);
      assert.equal(o.type.name, t.type.name);
      const mine = a.subarray(ours.dataStart + o.offset, ours.dataStart + o.offset + o.nbytes);
      const ref = b.subarray(theirs.dataStart + t.offset, theirs.dataStart + t.offset + t.nbytes);
      assert.equal(sha256(mine), sha256(ref), `${t.name}: values (and the Q/K row order) equal llama.cpp's`);
    }
  });
});

test('Q/K permutation: rows (heads, 2, d/2) become (heads, d/2, 2)', () => {
  // 2 heads of 4 rows, 1 column: HF rows [h0: a0 a1 b0 b1 | h1: ...] -> [a0 b0 a1 b1]
  const src = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
  const dst = new Float32Array(8);
  permuteQkRows(src, dst, 8, 1, 4);
  assert.deepEqual([...dst], [0, 2, 1, 3, 4, 6, 5, 7]);
});

test('general.name and size_label follow gguf-py', () => {
  assert.equal(titleFromFolderName('tiny-llama'), 'Tiny Llama');
  assert.equal(titleFromFolderName('Mistral-7B-v0.1'), 'Mistral 7B v0.1');
  assert.equal(sizeLabel(18_900_000), '19M');
  assert.equal(sizeLabel(1_150_000), '1.1M');
  assert.equal(sizeLabel(7_241_732_096), '7.2B');
});

test('an unsupported architecture is refused by name and nothing is written', async () => {
  await withTempDir(async (dir) => {
    const model = join(dir, 'model');
    await mkdir(model);
    for (const f of ['model.safetensors', 'tokenizer.json', 'tokenizer_config.json']) await copyFile(join(microLlamaDir, f), join(model, f));
    const config = JSON.parse(await readFile(join(microLlamaDir, 'config.json'), 'utf8')) as Record<string, unknown>;
    await writeFile(join(model, 'config.json'), JSON.stringify({ ...config, architectures: ['GPTNeoXForCausalLM'] }));
    const checkpoint = await openCheckpoint(model);
    try {
      await assert.rejects(exportGguf(checkpoint, { target: 'Q8_0', outputPath: join(dir, 'out.gguf') }), (e: unknown) => {
        assert.ok(e instanceof UnsupportedError);
        assert.match(e.message, /GPTNeoXForCausalLM/);
        assert.match(e.message, /LlamaForCausalLM, MistralForCausalLM/);
        return true;
      });
    } finally {
      await checkpoint.close();
    }
    assert.deepEqual((await readdir(dir)).sort(), ['model']);
  });
});

test('NaN / Inf in a tensor are refused with the tensor and the index; no file or temp file is left', async () => {
  await withTempDir(async (dir) => {
    const input = join(dir, 'bad.gguf');
    const embd = new Float32Array(262 * 256).fill(0.01);
    embd[1000] = NaN;
    const kv = syntheticKv().filter(([k]) => k !== 'llama.block_count');
    kv.push(['llama.block_count', gguf.u32(0)]);
    await writeGguf(input, kv, [
      { name: 'output_norm.weight', shape: [256], type: 'F32', values: new Float32Array(256).fill(1) },
      { name: 'token_embd.weight', shape: [262, 256], type: 'F32', values: embd },
    ]);
    const before = sha256(new Uint8Array(await readFile(input)));
    const checkpoint = await openCheckpoint(input);
    try {
      await assert.rejects(exportGguf(checkpoint, { target: 'Q8_0', outputPath: join(dir, 'out.gguf') }), (e: unknown) => {
        assert.ok(e instanceof NumericError);
        assert.match(e.message, /token_embd\.weight/);
        assert.match(e.message, /NaN at index 1000 \(row 3, column 232\)/);
        return true;
      });
    } finally {
      await checkpoint.close();
    }
    assert.deepEqual(await readdir(dir), ['bad.gguf']);
    assert.equal(sha256(new Uint8Array(await readFile(input))), before, 'the source is untouched');
  });
});

test('the output may not be the input; a non-.gguf output and an unknown target are refused', async () => {
  const checkpoint = await openCheckpoint(microLlamaF32Gguf);
  try {
    const before = sha256(new Uint8Array(await readFile(microLlamaF32Gguf)));
    await assert.rejects(exportGguf(checkpoint, { target: 'Q8_0', outputPath: microLlamaF32Gguf }), QuantLensError);
    await assert.rejects(exportGguf(checkpoint, { target: 'Q8_0', outputPath: join(tmpdir(), 'x.safetensors') }), /must end in \.gguf/);
    await assert.rejects(exportGguf(checkpoint, { target: 'Q7_K', outputPath: join(tmpdir(), 'quantlens-never.gguf') }), /unknown GGUF target Q7_K/);
    assert.equal(sha256(new Uint8Array(await readFile(microLlamaF32Gguf))), before);
  } finally {
    await checkpoint.close();
  }
});

test('a GGUF input is dequantized and requantized (with a warning), exactly as quantize(dequantize(bytes))', async () => {
  await withTempDir(async (dir) => {
    const q8 = join(dir, 'micro-q8_0.gguf');
    const hf = await openCheckpoint(microLlamaDir);
    try {
      await exportGguf(hf, { target: 'Q8_0', outputPath: q8 });
    } finally {
      await hf.close();
    }
    const q4 = join(dir, 'micro-q4_0.gguf');
    const warnings: string[] = [];
    const source = await openCheckpoint(q8);
    try {
      await exportGguf(source, { target: 'Q4_0', outputPath: q4, onWarning: (m) => warnings.push(m) });
      assert.ok(warnings.some((w) => /requantizing/.test(w)), warnings.join('\n'));
      const out = await openCheckpoint(q4);
      try {
        const name = 'blk.0.ffn_gate.weight';
        assert.equal(out.tensors.find((t) => t.name === name)?.dtype, 'Q4_0');
        const values = await source.readRowsF32(name);
        const expected = new Uint8Array((values.length / 32) * 18);
        quantizeGgml('Q4_0', values, expected);
        assert.equal(sha256(await out.readRawRows(name)), sha256(expected));
        assert.equal(out.tensors.find((t) => t.name === 'blk.0.attn_norm.weight')?.dtype, 'F32', 'norms stay F32');
        assert.equal(out.tensors.find((t) => t.name === 'output.weight')?.dtype, 'Q8_0', 'output.weight: 64 % 256 != 0 -> Q8_0, copied as is');
      } finally {
        await out.close();
      }
    } finally {
      await source.close();
    }
  });
});

test('onTensorRows reports what was written; progress counts tensors; cancellation leaves nothing behind', async () => {
  await withTempDir(async (dir) => {
    const checkpoint = await openCheckpoint(microLlamaDir);
    try {
      const reports: WholeTensorReport[] = [];
      const steps: number[] = [];
      const result = await exportGguf(checkpoint, { target: 'Q4_K_M', outputPath: join(dir, 'a.gguf'), onTensorRows: wholeTensorReports((r) => reports.push(r)) }, (step) => steps.push(step));
      assert.equal(reports.length, 21);
      assert.deepEqual(steps, Array.from({ length: 22 }, (_, i) => i));
      const q = reports.find((r) => r.name === 'blk.1.ffn_down.weight')!;
      assert.equal(q.type, result.tensors.find((t) => t.name === q.name)!.type);
      assert.equal(q.original.length, 64 * 192);
      const bytes = new Uint8Array(q.bytes);
      quantizeGgml(q.type as 'Q6_K', q.original, bytes);
      assert.deepEqual(q.quantized, bytes);

      const controller = new AbortController();
      await assert.rejects(
        exportGguf(checkpoint, { target: 'Q8_0', outputPath: join(dir, 'b.gguf') }, (step) => {
          if (step === 3) controller.abort();
        }, controller.signal),
        CancelledError,
      );
      assert.deepEqual(await readdir(dir), ['a.gguf']);
    } finally {
      await checkpoint.close();
    }
  });
});

test('planGgufExport gives the per-tensor plan and the exact file size without writing', async () => {
  await withTempDir(async (dir) => {
    const checkpoint = await openCheckpoint(microLlamaDir);
    try {
      const plan = await planGgufExport(checkpoint, { target: 'Q4_K_M' });
      const result = await exportGguf(checkpoint, { target: 'Q4_K_M', outputPath: join(dir, 'a.gguf') });
      assert.equal(plan.fileBytes, (await readFile(join(dir, 'a.gguf'))).byteLength);
      assert.deepEqual(plan.tensors.map((t) => [t.name, t.type, t.bytes]), result.tensors.map((t) => [t.name, t.type, t.bytes]));
      assert.equal(plan.fileType, 15);
      assert.ok(plan.tensors.some((t) => t.name === 'output.weight' && t.type === 'Q8_0' && t.fallback === undefined));
      assert.ok(plan.tensors.some((t) => t.name === 'blk.0.attn_q.weight' && t.type === 'Q5_0' && t.fallback !== undefined));
    } finally {
      await checkpoint.close();
    }
  });
});

test('a disk that fills up mid-write: the error says so, an older file at the output path is kept, no temp file is left', async () => {
  await withTempDir(async (dir) => {
    const output = join(dir, 'out.gguf');
    await writeFile(output, 'previous export');
    const checkpoint = await openCheckpoint(microLlamaDir);
    try {
      await assert.rejects(
        exportGguf(checkpoint, {
          target: 'Q8_0',
          outputPath: output,
          onBeforeWrite: (offset) => {
            if (offset > 500_000) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
          },
        }),
        /no space left on device/,
      );
    } finally {
      await checkpoint.close();
    }
    assert.deepEqual(await readdir(dir), ['out.gguf']);
    assert.equal(await readFile(output, 'utf8'), 'previous export');
  });
});

test('small read windows (many per tensor, Q/K windows on head boundaries) give the same file', async () => {
  await withTempDir(async (dir) => {
    const checkpoint = await openCheckpoint(microLlamaDir);
    try {
      await exportGguf(checkpoint, { target: 'Q4_K_M', outputPath: join(dir, 'big.gguf') });
      await exportGguf(checkpoint, { target: 'Q4_K_M', outputPath: join(dir, 'small.gguf'), maxWindowElements: 1000 });
      assert.equal(sha256(new Uint8Array(await readFile(join(dir, 'small.gguf')))), sha256(new Uint8Array(await readFile(join(dir, 'big.gguf')))));
    } finally {
      await checkpoint.close();
    }
  });
});
