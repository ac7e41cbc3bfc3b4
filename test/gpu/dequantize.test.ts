/**
 * GPU dequantization vs the CPU port (value-exact) and the block-error map vs errors computed on the
 * host (sum of squares within 1e-5 relative, max |error| exactly), on llama.cpp's own bytes for the
 * oracle vectors (all ten types, K types included), on the tensors of llama.cpp's tiny-llama Q4_K_M
 * file and on tiny-llama weights.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GPU_DEQUANT_TYPES, dequantizeOnGpu, isGpuDequantType, summarizeBlockErrors, type GpuDequantType } from '../../src/core/gpu/dequantize';
import { dequantizeGgml, quantizeGgml } from '../../src/core/quant/ggml/index';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { CancelledError, InvalidArgumentError } from '../../src/core/errors';
import { fixturesDir, tinyLlamaDir, tinyLlamaQ4KMGguf } from '../helpers/paths';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

after(releaseSharedGpu);

const types = Object.keys(GPU_DEQUANT_TYPES) as GpuDequantType[];
const oracleDir = join(fixturesDir, 'ggml-oracle');

function oracleInput(): Float32Array {
  const b = readFileSync(join(oracleDir, 'vectors.f32'));
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/**
 * Bit for bit (signed zeros included), except that any NaN equals any NaN: 0 * Inf (a block whose f16
 * scale overflowed, as the oracle has) gives a NaN whose sign and payload the hardware chooses
 * (x86: 0xffc00000, NVIDIA: 0x7fffffff).
 */
function assertSameValues(got: Float32Array, want: Float32Array, what: string): void {
  assert.equal(got.length, want.length, what);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < got.length; i++) {
    if (g[i] === w[i] || (Number.isNaN(got[i]) && Number.isNaN(want[i]))) continue;
    assert.fail(`${what}: value ${i} is ${got[i]} (0x${g[i]!.toString(16)}), the CPU gives ${want[i]} (0x${w[i]!.toString(16)})`);
  }
}

function checkMap(values: Float32Array, reference: Float32Array, squared: Float32Array, maxAbs: Float32Array, what: string): void {
  for (let b = 0; b < squared.length; b++) {
    let sum = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const e = values[b * 32 + j]! - reference[b * 32 + j]!;
      sum += e * e;
      max = Math.max(max, Math.abs(Math.fround(e)));
    }
    if (!Number.isFinite(sum)) {
      // A block whose f16 scale overflowed (the oracle has one): Inf * 0 gives NaN on both sides.
      assert.ok(!Number.isFinite(squared[b]!), `${what} block ${b}: ${squared[b]} vs ${sum}`);
      continue;
    }
    assert.ok(Math.abs(squared[b]! - sum) <= 1e-5 * sum + 1e-30, `${what} block ${b}: ${squared[b]} vs ${sum}`);
    assert.equal(maxAbs[b], Math.fround(max), `${what} block ${b} max`);
  }
}

test('GPU dequantize of llama.cpp bytes equals the CPU dequantizer value for value; block errors agree', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const x = oracleInput();
  for (const type of types) {
    const bytes = new Uint8Array(readFileSync(join(oracleDir, `vectors.${type}.bin`)));
    const cpu = new Float32Array(x.length);
    dequantizeGgml(type, bytes, cpu);
    const got = new Float32Array(x.length);
    const map = await dequantizeOnGpu(gpu, type, bytes, got, { reference: x, maxChunkBytes: 8192 });
    assertSameValues(got, cpu, type);
    assert.ok(map !== null);
    checkMap(cpu, x, map.blockSquaredError, map.blockMaxAbsError, type);
  }
});

test('tiny-llama: SQNR from the GPU block map matches the host computation, and falls with fewer bits', { skip: tinyLlamaDir.skip }, async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const checkpoint = await openCheckpoint(tinyLlamaDir.path);
  try {
    const x = await checkpoint.readRowsF32('model.layers.2.mlp.gate_proj.weight');
    const sqnr: Record<string, number> = {};
    for (const type of types) {
      const q = new Uint8Array((x.length / GPU_DEQUANT_TYPES[type].blockElements) * GPU_DEQUANT_TYPES[type].blockBytes);
      quantizeGgml(type, x, q);
      const cpu = new Float32Array(x.length);
      dequantizeGgml(type, q, cpu);
      const got = new Float32Array(x.length);
      const map = (await dequantizeOnGpu(gpu, type, q, got, { reference: x }))!;
      assertSameValues(got, cpu, type);
      const summary = summarizeBlockErrors(map, x);
      let err = 0;
      let sig = 0;
      for (let i = 0; i < x.length; i++) {
        err += (cpu[i]! - x[i]!) ** 2;
        sig += x[i]! ** 2;
      }
      assert.ok(Math.abs(summary.sqnrDb - 10 * Math.log10(sig / err)) < 1e-3, `${type} SQNR`);
      sqnr[type] = summary.sqnrDb;
    }
    assert.ok(sqnr.Q8_0! > sqnr.Q5_1! && sqnr.Q5_1! > sqnr.Q4_1! && sqnr.Q5_0! > sqnr.Q4_0!, JSON.stringify(sqnr));
    assert.ok(sqnr.Q6_K! > sqnr.Q5_K! && sqnr.Q5_K! > sqnr.Q4_K! && sqnr.Q4_K! > sqnr.Q3_K! && sqnr.Q3_K! > sqnr.Q2_K!, JSON.stringify(sqnr));
  } finally {
    await checkpoint.close();
  }
});

test('llama.cpp\'s tiny-llama Q4_K_M: every quantized tensor decodes on the GPU to the CPU dequantizer\'s values bit for bit', { skip: tinyLlamaQ4KMGguf.skip }, async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const checkpoint = await openCheckpoint(tinyLlamaQ4KMGguf.path);
  try {
    const seen = new Map<string, number>();
    for (const tensor of checkpoint.tensors) {
      const type = tensor.dtype;
      if (!isGpuDequantType(type)) continue;
      const bytes = await checkpoint.readRawRows(tensor.name);
      const count = tensor.shape.reduce((a, b) => a * b, 1);
      const cpu = new Float32Array(count);
      dequantizeGgml(type, bytes, cpu);
      const got = new Float32Array(count);
      await dequantizeOnGpu(gpu, type, bytes, got, { label: tensor.name });
      assertSameValues(got, cpu, `${tensor.name} (${type})`);
      seen.set(type, (seen.get(type) ?? 0) + 1);
    }
    // The file mixes K types and the 32-value fallbacks (hidden size 384).
    for (const type of ['Q4_K', 'Q6_K']) assert.ok((seen.get(type) ?? 0) > 0, `no ${type} tensor in the file: ${JSON.stringify([...seen])}`);
  } finally {
    await checkpoint.close();
  }
});

test('dequantize: wrong sizes refused, empty input fine, cancellation honoured', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  await assert.rejects(dequantizeOnGpu(gpu, 'Q4_0', new Uint8Array(17), new Float32Array(32)), InvalidArgumentError);
  await assert.rejects(dequantizeOnGpu(gpu, 'Q4_0', new Uint8Array(18), new Float32Array(32), { reference: new Float32Array(31) }), InvalidArgumentError);
  assert.equal(await dequantizeOnGpu(gpu, 'Q8_0', new Uint8Array(0), new Float32Array(0)), null);
  await assert.rejects(dequantizeOnGpu(gpu, 'Q4_K', new Uint8Array(144), new Float32Array(32)), InvalidArgumentError, 'K types decode whole super-blocks');
  await assert.rejects(dequantizeOnGpu(gpu, 'Q6_K', new Uint8Array(209), new Float32Array(256)), InvalidArgumentError);
  const controller = new AbortController();
  const x = oracleInput();
  const bytes = new Uint8Array(readFileSync(join(oracleDir, 'vectors.Q8_0.bin')));
  await assert.rejects(
    dequantizeOnGpu(gpu, 'Q8_0', bytes, new Float32Array(x.length), { signal: controller.signal, maxChunkBytes: 4096, onPhase: (p, c) => p === 'readback' && c === 1 && controller.abort() }),
    CancelledError,
  );
});
