/**
 * The quant card measured as the export streams (exportGguf's onTensorRows, window by window, what the
 * pipeline uses) gives the numbers of measuring each whole tensor at once (onTensor): the same f64 sums in
 * the same row order, so every metric, error-map cell and histogram count is equal, at 1 and 2 threads,
 * with windows that split tensors (and Q/K heads' permuted rows) into many blocks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { ErrorAccumulator, type ErrorMetrics } from '../../src/core/analysis/errorMetrics';
import { ggmlTypeByName } from '../../src/core/formats/gguf/ggmlTypes';
import { microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';
import { withCheckpoint, withTempDir } from '../helpers/scoped';
import { wholeTensorReports } from '../helpers/wholeTensors';

function colsOf(shape: number[]): number {
  return shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : Math.max(1, shape[0] ?? 1);
}

for (const input of [microLlamaDir, microLlamaF32Gguf]) {
  for (const threads of [1, 2]) {
    test(`${threads} thread(s), ${input.endsWith('.gguf') ? 'F32 GGUF' : 'BF16 HF'}: card metrics from streamed blocks = from whole tensors (Q8_0, Q4_0, Q4_K_M)`, async () => {
      await withTempDir(async (dir) => {
        await withCheckpoint(input, async (checkpoint) => {
          for (const target of ['Q8_0', 'Q4_0', 'Q4_K_M']) {
            const whole = new Map<string, ErrorMetrics>();
            const streamed = new Map<string, ErrorMetrics>();
            const blocks = new Map<string, number>();
            let current: { name: string; acc: ErrorAccumulator } | null = null;
            // The same blocks assembled into whole tensors, measured in one call each.
            const assembled = wholeTensorReports((r) => {
              const cols = colsOf(r.shape);
              const acc = new ErrorAccumulator(r.original.length / cols, cols, r.name);
              acc.addQuantizedRows(ggmlTypeByName(r.type)!.name, r.original, r.quantized);
              whole.set(r.name, acc.result());
            });
            await exportGguf(checkpoint, {
              target,
              outputPath: join(dir, `${target}.gguf`),
              threads,
              maxWindowElements: 1500,
              onTensorRows: (b) => {
                if (b.type === b.sourceType || b.type === 'F32') return;
                assembled(b);
                const cols = colsOf(b.shape);
                if (b.rowStart === 0) current = { name: b.name, acc: new ErrorAccumulator(b.shape.reduce((a, c) => a * c, 1) / cols, cols, b.name) };
                assert.ok(current !== null && current.name === b.name, `${b.name}: blocks of one tensor at a time`);
                current.acc.addQuantizedRows(ggmlTypeByName(b.type)!.name, b.original, b.quantized);
                blocks.set(b.name, (blocks.get(b.name) ?? 0) + 1);
                if (b.last) streamed.set(b.name, current.acc.result());
              },
            });
            assert.ok(whole.size >= 10, `${target}: quantized tensors measured (${whole.size})`);
            assert.deepEqual([...streamed.keys()].sort(), [...whole.keys()].sort(), `${target}: every tensor measured both ways`);
            for (const [name, metrics] of whole) assert.deepEqual(streamed.get(name), metrics, `${target} ${name}`);
            const split = [...blocks.values()].filter((n) => n > 1).length;
            assert.ok(split >= 10, `${target}: ${split} tensors came in more than one block`);
          }
        });
      });
    });
  }
}
