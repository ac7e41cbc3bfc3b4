/**
 * exportGguf's quantizeWindow hook (the quantize job passes the GPU there) on the streamed path: every
 * window of a type is offered until the hook declines that type once, then the CPU's window quantizer
 * does the rest; bytes the hook returns are the ones written (and reported to the card), split over the
 * workers' parts with threads; NaN is refused before a window is offered.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { exportGguf, type ExportGgufOptions } from '../../src/core/convert/exportGguf';
import { wholeTensorReports, type WholeTensorReport } from '../helpers/wholeTensors';
import type { GgmlTypeName } from '../../src/core/formats/gguf/ggmlTypes';
import type { Checkpoint } from '../../src/core/formats/checkpoint';
import { quantizeGgml, ggmlByteSize } from '../../src/core/quant/ggml/index';
import { microLlamaDir } from '../helpers/paths';
import { withCheckpoint, withTempDir } from '../helpers/scoped';

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');
type QuantizeWindow = NonNullable<ExportGgufOptions['quantizeWindow']>;

async function exportTo(checkpoint: Checkpoint, path: string, target: string, threads: number, quantizeWindow?: QuantizeWindow): Promise<{ file: string; reports: WholeTensorReport[] }> {
  const reports: WholeTensorReport[] = [];
  await exportGguf(checkpoint, { target, outputPath: path, threads, maxWindowElements: 3000, quantizeWindow, onTensorRows: wholeTensorReports((r) => reports.push(r)) });
  return { file: sha256(new Uint8Array(await readFile(path))), reports };
}

for (const threads of [1, 2]) {
  test(`${threads} thread(s): a hook giving quantizeGgml's bytes writes the CPU's file; a declined type is not offered again`, async () => {
    await withTempDir(async (dir) => {
      await withCheckpoint(microLlamaDir, async (checkpoint) => {
        const cpu = await exportTo(checkpoint, join(dir, 'cpu.gguf'), 'Q4_K_M', threads);
        const offered = new Map<GgmlTypeName, number>();
        const hook: QuantizeWindow = async (type, values, rows, cols) => {
          offered.set(type, (offered.get(type) ?? 0) + 1);
          if (type !== 'Q5_0') return null; // like a device that leaves this type to the CPU
          assert.equal(values.length, rows * cols);
          const out = new Uint8Array(ggmlByteSize(type, values.length));
          quantizeGgml(type, values, out);
          return out;
        };
        const hooked = await exportTo(checkpoint, join(dir, 'hooked.gguf'), 'Q4_K_M', threads, hook);
        assert.equal(hooked.file, cpu.file, 'same file whoever quantized');
        assert.ok((offered.get('Q5_0') ?? 0) > 10, `Q5_0 windows were offered (${offered.get('Q5_0')})`);
        for (const [type, count] of offered) if (type !== 'Q5_0') assert.equal(count, 1, `${type} declined once, then not offered again`);
        assert.ok(offered.size >= 2, `Q4_K_M puts micro-llama (hidden 64: K-quant fallbacks) in Q5_0 and Q8_0 (${[...offered.keys()].join(', ')})`);
        hooked.reports.forEach((r, i) => assert.equal(sha256(r.quantized), sha256(cpu.reports[i]!.quantized), `${r.name}: card bytes`));
      });
    });
  });

  test(`${threads} thread(s): the hook's bytes are what is written and reported (not the CPU's)`, async () => {
    await withTempDir(async (dir) => {
      await withCheckpoint(microLlamaDir, async (checkpoint) => {
        const marker = 0x5a;
        const hook: QuantizeWindow = async (type, values) => new Uint8Array(ggmlByteSize(type, values.length)).fill(marker);
        const path = join(dir, 'marked.gguf');
        const { reports } = await exportTo(checkpoint, path, 'Q8_0', threads, hook);
        const quantized = reports.filter((r) => r.type === 'Q8_0');
        assert.ok(quantized.length >= 10);
        for (const r of quantized) assert.ok(r.quantized.every((b) => b === marker), `${r.name}: the hook's bytes`);
        const file = new Uint8Array(await readFile(path));
        const total = quantized.reduce((s, r) => s + r.bytes, 0);
        let marked = 0;
        for (const b of file) if (b === marker) marked++;
        assert.ok(marked >= total, `${marked} marker bytes in the file for ${total} quantized bytes`);
        assert.equal(file.byteLength, (await stat(path)).size);
      });
    });
  });
}

test('NaN in a window is refused with its source index before the window is offered', async () => {
  await withTempDir(async (dir) => {
    await withCheckpoint(microLlamaDir, async (plain) => {
      const poisoned = 'model.layers.0.mlp.down_proj.weight';
      const entry = plain.tensors.find((t) => t.name === poisoned)!;
      const cols = entry.shape[1]!;
      const badIndex = 5 * cols + 17;
      const readRowsF32 = async (name: string, rowStart = 0, rowCount?: number): Promise<Float32Array> => {
        const values = await plain.readRowsF32(name, rowStart, rowCount);
        const local = badIndex - rowStart * cols;
        if (name === poisoned && local >= 0 && local < values.length) values[local] = NaN;
        return values;
      };
      const checkpoint: Checkpoint = {
        format: plain.format,
        path: plain.path,
        files: plain.files,
        metadata: plain.metadata,
        config: plain.config,
        tensors: plain.tensors,
        readRowsF32,
        readRawRows: (name, rowStart, rowCount) => plain.readRawRows(name, rowStart, rowCount),
        readRowsF32Into: undefined,
        close: async () => undefined,
      };
      let offeredNaN = false;
      const hook: QuantizeWindow = async (type, values) => {
        if (values.some((v) => Number.isNaN(v))) offeredNaN = true;
        const out = new Uint8Array(ggmlByteSize(type, values.length));
        quantizeGgml(type, values, out);
        return out;
      };
      await assert.rejects(
        exportGguf(checkpoint, { target: 'Q8_0', outputPath: join(dir, 'nan.gguf'), threads: 1, maxWindowElements: 3000, quantizeWindow: hook }),
        (e: Error) => e.message.includes(`${poisoned} has NaN at index ${badIndex} (row 5, column 17)`),
      );
      assert.equal(offeredNaN, false, 'a window with NaN never reaches the hook');
    });
  });
});
