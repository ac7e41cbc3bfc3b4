import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { tinyLlamaDir, tinyLlamaQ4KMGguf } from '../helpers/paths';
import { hfNameOfGguf, unpermuteQkRows } from '../helpers/hfGgufNames';

/**
 * Relative RMSE (rms(dequantized - original) / rms(original)) each ggml type may show on trained weights.
 * F32 tensors (norms) were copied, so they must be exact. The bounds are about twice what an absmax
 * quantizer of that many bits gives on Gaussian-like rows; a broken dequantizer (wrong nibble order,
 * scale, sign) lands far above them.
 */
const MAX_RELATIVE_RMSE: Record<string, number> = {
  F32: 0,
  F16: 1e-3,
  Q8_0: 0.01,
  Q6_K: 0.03,
  Q5_0: 0.06,
  Q5_1: 0.06,
  Q5_K: 0.06,
  Q4_0: 0.12,
  Q4_1: 0.12,
  Q4_K: 0.12,
};

test('every tensor dequantized from tiny-llama-Q4_K_M.gguf is close to the BF16 original', { skip: tinyLlamaQ4KMGguf.skip || tinyLlamaDir.skip }, async () => {
  const gguf = await openCheckpoint(tinyLlamaQ4KMGguf.path);
  const hf = await openCheckpoint(tinyLlamaDir.path);
  try {
    const nHead = Number(gguf.metadata['llama.attention.head_count']);
    const nHeadKv = Number(gguf.metadata['llama.attention.head_count_kv']);
    const lines: string[] = [`${'tensor'.padEnd(28)} ${'type'.padEnd(5)} ${'rel. RMSE'.padStart(10)}  bound`];
    const failures: string[] = [];
    const seenTypes = new Set<string>();
    for (const t of gguf.tensors) {
      const name = hfNameOfGguf(t.name);
      let got = await gguf.readRowsF32(t.name);
      if (t.name.endsWith('attn_q.weight')) got = unpermuteQkRows(got, t.shape[0] ?? 0, t.shape[1] ?? 0, nHead);
      if (t.name.endsWith('attn_k.weight')) got = unpermuteQkRows(got, t.shape[0] ?? 0, t.shape[1] ?? 0, nHeadKv);
      const want = await hf.readRowsF32(name);
      assert.equal(got.length, want.length, `${t.name} element count`);
      let err = 0;
      let ref = 0;
      for (let i = 0; i < want.length; i++) {
        const d = (got[i] ?? 0) - (want[i] ?? 0);
        err += d * d;
        ref += (want[i] ?? 0) ** 2;
      }
      const rel = Math.sqrt(err / ref);
      const bound = MAX_RELATIVE_RMSE[t.dtype];
      assert.ok(bound !== undefined, `no bound for ${t.dtype}`);
      seenTypes.add(t.dtype);
      lines.push(`${t.name.padEnd(28)} ${t.dtype.padEnd(5)} ${rel.toExponential(3).padStart(10)}  ${bound}`);
      if (!(rel <= bound)) failures.push(`${t.name} (${t.dtype}): ${rel} > ${bound}`);
    }
    console.log(lines.join('\n'));
    assert.deepEqual(failures, []);
    // Row ranges of block-quantized tensors decode to exactly the same values as the whole tensor.
    for (const name of ['blk.0.ffn_down.weight', 'blk.1.ffn_down.weight', 'token_embd.weight', 'output.weight']) {
      const whole = await gguf.readRowsF32(name);
      const entry = gguf.tensors.find((t) => t.name === name);
      const cols = entry?.shape[1] ?? 0;
      const rows = await gguf.readRowsF32(name, 5, 7);
      assert.deepEqual(rows, whole.subarray(5 * cols, 12 * cols), `${name} rows 5..12`);
    }
    // The file mixes the K-quant and its fallbacks (hidden 384 is not a multiple of 256).
    for (const type of ['Q4_K', 'Q6_K', 'Q5_0', 'Q8_0', 'F32']) assert.ok(seenTypes.has(type), `${type} present`);
  } finally {
    await gguf.close();
    await hf.close();
  }
});
