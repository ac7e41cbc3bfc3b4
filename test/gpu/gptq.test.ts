/**
 * GPTQ on WebGPU (core/gpu/gptq.ts) against the CPU path (core/methods/gptq.ts): the strided matmul
 * kernels (tiled and direct) against a float64 product on odd shapes, the device Hessian against
 * HessianAccumulator, and the GPU layer driver against gptqQuantizeLayer on micro-llama's real weights
 * with the Hessians of its real calibration inputs (every linear of both layers) and on a synthetic
 * layer whose groups span two blocks. The lazy batch update is f32 on the device and float64 on the CPU,
 * so a few codes may flip: the tests bound the fraction of differing codes and require the layer's
 * output error tr((W-Q) H (W-Q)^T) to be within 2 % of the CPU's (and below round-to-nearest's).
 * Runs on lavapipe where there is no GPU; skips only when no adapter exists.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';
import { GpuHessianAccumulator, encodeStridedMatmul, gptqQuantizeLayerGpu, type GptqMatmulVariant, type StridedMatmul } from '../../src/core/gpu/gptq';
import { createStorageBuffer, readBack } from '../../src/core/gpu/kernels';
import { HessianAccumulator, gptqQuantizeLayer, rtnQuantizeLayer, type GptqLayerResult, type GptqOptions } from '../../src/core/methods/gptq';
import { runLayerwiseCalibration, SITE_ROLES, inputWidth, outputWidth, type LayerwiseMethod } from '../../src/core/methods/calibrate';
import { linearModuleName } from '../../src/core/model/forward';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows } from '../../src/core/model/perplexity';
import { quantizeWithMethod } from '../../src/core/methods/quantizeWithMethod';
import { CancelledError, GpuUnavailableError } from '../../src/core/errors';
import { ComputeDevice } from '../../src/core/jobs/computeDevice';
import { gptqOnDevice, gptqOnLazyDevice } from '../../src/core/jobs/gptqDevice';
import { fixturesDir, microLlamaDir } from '../helpers/paths';
import { normalRng } from '../helpers/random';
import { captureIo, withCheckpoint, withTempDir } from '../helpers/scoped';
import { main } from '../../src/cli/main';
import { parseCompareArgs } from '../../src/cli/commands/compare';
import { readResearchWeight } from '../../src/core/quant/pipeline';
import { parseQuantCard } from '../../src/core/quant/quantCard';

after(releaseSharedGpu);

const VARIANTS: GptqMatmulVariant[] = ['direct', 'tiled'];

/** tr((W - Q) H (W - Q)^T): the layer's output error on the calibration inputs (times 2/n). */
function outputError(weight: Float32Array, q: Float32Array, rows: number, cols: number, h: Float64Array): number {
  let total = 0;
  const d = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) d[c] = weight[r * cols + c]! - q[r * cols + c]!;
    for (let i = 0; i < cols; i++) {
      let s = 0;
      for (let j = 0; j < cols; j++) s += h[i * cols + j]! * d[j]!;
      total += d[i]! * s;
    }
  }
  return total;
}

function differingFraction(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n / a.length;
}

/** Correlated inputs with a few large channels (as LLM activations have), rows x cols. */
function correlatedRows(tokens: number, cols: number, seed: number): Float32Array {
  const next = normalRng(seed);
  const mix = Float64Array.from({ length: 8 * cols }, () => next());
  const x = new Float32Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    const z = Array.from({ length: 8 }, () => next());
    for (let c = 0; c < cols; c++) {
      let v = 0.5 * next();
      for (let k = 0; k < 8; k++) v += z[k]! * mix[k * cols + c]! * 0.3;
      x[t * cols + c] = c % 37 === 5 ? v * 12 : v;
    }
  }
  return x;
}

function compareLayer(name: string, cpu: GptqLayerResult, gpu: GptqLayerResult, weight: Float32Array, h: Float64Array, maxCodeFlips: number): void {
  const { rows, cols } = cpu;
  const flips = cpu.codes.length > 0 ? differingFraction(cpu.codes, gpu.codes) : differingFraction(cpu.ggmlBytes, gpu.ggmlBytes);
  assert.ok(flips <= maxCodeFlips, `${name}: ${(flips * 100).toFixed(3)} % of the codes differ from the CPU's (at most ${maxCodeFlips * 100} %)`);
  const eCpu = outputError(weight, cpu.dequantized, rows, cols, h);
  const eGpu = outputError(weight, gpu.dequantized, rows, cols, h);
  assert.ok(Math.abs(eGpu - eCpu) <= 0.02 * eCpu, `${name}: output error GPU ${eGpu} vs CPU ${eCpu} (more than 2 % apart)`);
  assert.equal(gpu.dampFraction, cpu.dampFraction);
  assert.equal(gpu.deadColumns, cpu.deadColumns);
  assert.ok(Math.abs(gpu.loss - cpu.loss) <= 0.02 * cpu.loss, `${name}: loss GPU ${gpu.loss} vs CPU ${cpu.loss}`);
}

test('strided matmul kernels equal a float64 product on odd shapes, with set / add / subtract and upper tiles', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const next = normalRng(7);
  const M = 70;
  const N = 133;
  const K = 19;
  // a(m, k) = A[3 + k * 71 + m] (column access), b(k, n) = B[5 + k * 140 + n], out[2 + m * 150 + n].
  const A = Float32Array.from({ length: 3 + K * 71 }, () => next());
  const B = Float32Array.from({ length: 5 + K * 140 }, () => next());
  const O0 = Float32Array.from({ length: 2 + M * 150 }, () => next());
  const base: Omit<StridedMatmul, 'op'> = { M, N, K, aOff: 3, aRs: 1, aCs: 71, bOff: 5, bRs: 140, bCs: 1, oOff: 2, oRs: 150 };
  for (const variant of VARIANTS) {
    for (const op of ['set', 'add', 'subtract'] as const) {
      for (const upperTiles of [false, true]) {
        const a = createStorageBuffer(gpu, 'a', A.byteLength);
        const b = createStorageBuffer(gpu, 'b', B.byteLength);
        const o = createStorageBuffer(gpu, 'o', O0.byteLength);
        const u = gpu.device.createBuffer({ size: 64, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
        try {
          gpu.device.queue.writeBuffer(a, 0, A);
          gpu.device.queue.writeBuffer(b, 0, B);
          gpu.device.queue.writeBuffer(o, 0, O0);
          const encoder = gpu.device.createCommandEncoder();
          encodeStridedMatmul(gpu, encoder, variant, a, b, o, u, { ...base, op, upperTiles });
          gpu.device.queue.submit([encoder.finish()]);
          const got: Float32Array = new Float32Array(await readBack(gpu, o, O0.byteLength));
          for (let m = 0; m < M; m++) {
            for (let n = 0; n < N; n++) {
              let s = 0;
              for (let k = 0; k < K; k++) s += A[3 + k * 71 + m]! * B[5 + k * 140 + n]!;
              const idx = 2 + m * 150 + n;
              const old = O0[idx]!;
              const skipped = upperTiles && Math.floor(m / 64) > Math.floor(n / 64);
              const want = skipped ? old : op === 'set' ? s : op === 'add' ? old + s : old - s;
              assert.ok(Math.abs(got[idx]! - want) <= 1e-5 * (1 + Math.abs(want)), `${variant} ${op} upper=${upperTiles} [${m}, ${n}]: ${got[idx]} vs ${want}`);
            }
          }
          // Outside the output rows' columns nothing moved.
          assert.equal(got[0], O0[0]);
          assert.equal(got[2 + 150 - 1], O0[2 + 150 - 1]);
        } finally {
          for (const x of [a, b, o, u]) x.destroy();
        }
      }
    }
  }
});

test('device Hessian equals the CPU accumulator (several chunks and readbacks)', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const cols = 200;
  const tokens = 1500;
  const x = correlatedRows(tokens, cols, 3);
  const cpu = new HessianAccumulator(cols);
  cpu.addRows(x.subarray(0, 700 * cols), 700);
  cpu.addRows(x.subarray(700 * cols), 800);
  const want = cpu.hessian();
  let maxAbs = 0;
  for (const v of want) maxAbs = Math.max(maxAbs, Math.abs(v));
  for (const variant of VARIANTS) {
    const acc: GpuHessianAccumulator = new GpuHessianAccumulator(gpu, cols, { chunkTokens: 256, tokensPerReadback: 512, matmul: variant });
    try {
      await acc.addRows(x.subarray(0, 700 * cols), 700);
      await acc.addRows(x.subarray(700 * cols), 800);
      assert.equal(acc.tokens, tokens);
      const got = await acc.hessian();
      let worst = 0;
      for (let i = 0; i < got.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      assert.ok(worst <= 1e-5 * maxAbs, `${variant}: max |H_gpu - H_cpu| = ${worst} (max |H| ${maxAbs})`);
      for (let i = 0; i < cols; i++) for (let j = 0; j < i; j++) assert.equal(got[i * cols + j], got[j * cols + i]);
    } finally {
      acc.destroy();
    }
  }
});

interface CapturedLinear {
  name: string;
  rows: number;
  cols: number;
  weight: Float32Array;
  hessian: Float64Array;
}

/** micro-llama's linears with the Hessians of their real calibration inputs (the float model's, nothing rewritten). */
async function microLlamaLinears(): Promise<CapturedLinear[]> {
  const loaded = await loadModel(microLlamaDir);
  try {
    const ids = loaded.tokenizer.encode(readFileSync(join(fixturesDir, 'calib-64k.txt'), 'utf8'));
    const windows = makeWindows(ids, 128, 16);
    const captured: CapturedLinear[] = [];
    const method: LayerwiseMethod = {
      statsOptions: () => ({ gram: true }),
      processSite(ctx) {
        const h = ctx.stats.gram!.hessian();
        for (const role of SITE_ROLES[ctx.site]) {
          captured.push({
            name: linearModuleName(ctx.layer, role),
            rows: outputWidth(ctx.config, role),
            cols: inputWidth(ctx.config, role),
            weight: Float32Array.from(ctx.weights.linear[role]),
            hessian: h,
          });
        }
      },
    };
    await runLayerwiseCalibration(loaded.model, windows, method);
    return captured;
  } finally {
    await loaded.close();
  }
}

test('GPU GPTQ on micro-llama (real weights and Hessians): codes as the CPU driver up to rare flips, same output error', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const linears = await microLlamaLinears();
  assert.equal(linears.length, 14);
  const settings: { label: string; options: GptqOptions; flips: number }[] = [
    { label: 'W4 g32 block 32', options: { target: { kind: 'int', bits: 4, groupSize: 32, sym: false }, blockSize: 32 }, flips: 0.01 },
    { label: 'W3 g64 act-order', options: { target: { kind: 'int', bits: 3, groupSize: 64, sym: false }, blockSize: 64, actOrder: true }, flips: 0.01 },
    { label: 'Q4_0 block 64', options: { target: { kind: 'ggml', type: 'Q4_0' }, blockSize: 64 }, flips: 0.01 },
  ];
  let totalFlips = 0;
  let totalCodes = 0;
  for (const s of settings) {
    for (const lin of linears) {
      const cpu = gptqQuantizeLayer(lin.weight, lin.rows, lin.cols, lin.hessian, s.options);
      const onGpu = await gptqQuantizeLayerGpu(gpu, lin.weight, lin.rows, lin.cols, lin.hessian, s.options);
      compareLayer(`${lin.name} ${s.label}`, cpu, onGpu, lin.weight, lin.hessian, s.flips);
      if (s.options.target.kind === 'int') {
        totalFlips += differingFraction(cpu.codes, onGpu.codes) * cpu.codes.length;
        totalCodes += cpu.codes.length;
        assert.deepEqual(onGpu.gIdx, cpu.gIdx);
        // GPTQ still beats round-to-nearest on the calibration inputs.
        const rtn = rtnQuantizeLayer(lin.weight, lin.rows, lin.cols, s.options.target.bits, s.options.target.groupSize, false);
        if (s.options.actOrder !== true) {
          assert.ok(
            outputError(lin.weight, onGpu.dequantized, lin.rows, lin.cols, lin.hessian) < outputError(lin.weight, rtn, lin.rows, lin.cols, lin.hessian),
            `${lin.name} ${s.label}: GPU GPTQ not below RTN`,
          );
        }
      }
    }
  }
  console.log(`# micro-llama: ${totalFlips} of ${totalCodes} int codes differ between the GPU and CPU drivers`);
  assert.ok(totalFlips / totalCodes < 0.002, `${totalFlips} of ${totalCodes} codes differ`);
});

test('GPU GPTQ on a synthetic layer whose groups span two blocks (group 128, block 64), both kernels', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const rows = 96;
  const cols = 320;
  const acc = new HessianAccumulator(cols);
  acc.addRows(correlatedRows(4096, cols, 11), 4096);
  const h = acc.hessian();
  const next = normalRng(12);
  const weight = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  const options: GptqOptions = { target: { kind: 'int', bits: 4, groupSize: 128, sym: false }, blockSize: 64 };
  const cpu = gptqQuantizeLayer(weight, rows, cols, h, options);
  for (const matmul of VARIANTS) {
    const onGpu = await gptqQuantizeLayerGpu(gpu, weight, rows, cols, h, { ...options, matmul });
    compareLayer(`synthetic ${matmul}`, cpu, onGpu, weight, h, 0.005);
    assert.deepEqual(onGpu.scales.length, cpu.scales.length);
    assert.ok(onGpu.timing.columnBlocks > 0 && onGpu.timing.prepare > 0);
  }
});

test('GPU GPTQ cancels between columns, frees its buffers, and the device keeps working', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const rows = 64;
  const cols = 256;
  const acc = new HessianAccumulator(cols);
  acc.addRows(correlatedRows(1024, cols, 21), 1024);
  const h = acc.hessian();
  const next = normalRng(22);
  const weight = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  const controller = new AbortController();
  // Aborted once the third block starts (quantizeColumnBlock reads `aborted` once per block).
  let reads = 0;
  Object.defineProperty(controller.signal, 'aborted', { get: () => ++reads > 2 });
  const options: GptqOptions = { target: { kind: 'int', bits: 4, groupSize: 64, sym: false }, blockSize: 64 };
  await assert.rejects(gptqQuantizeLayerGpu(gpu, weight, rows, cols, h, { ...options, signal: controller.signal }), CancelledError);
  assert.equal(reads, 3);
  const again = await gptqQuantizeLayerGpu(gpu, weight, rows, cols, h, options);
  compareLayer('after cancel', gptqQuantizeLayer(weight, rows, cols, h, options), again, weight, h, 0.005);
});

test('gptqOnDevice: the GPU driver on a held device; under auto a lost device reruns the layer on the CPU, said once; under gpu it throws', async (t) => {
  const shared = await gpuOrSkip(t);
  if (shared === null) return;
  const rows = 64;
  const cols = 192;
  const acc = new HessianAccumulator(cols);
  acc.addRows(correlatedRows(1024, cols, 31), 1024);
  const h = acc.hessian();
  const next = normalRng(32);
  const weight = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  const options: GptqOptions = { target: { kind: 'int', bits: 4, groupSize: 64, sym: false }, blockSize: 64 };
  const cpu = gptqQuantizeLayer(weight, rows, cols, h, options);

  const notices: string[] = [];
  const auto = await ComputeDevice.open('auto', (m) => notices.push(m), { softwareAdapter: 'use' });
  try {
    const onAuto = gptqOnDevice(auto);
    compareLayer('auto, device held', cpu, await onAuto.run(weight, rows, cols, h, options), weight, h, 0.005);
    assert.equal(onAuto.deviceUsed(), 'gpu');
    auto.gpu!.destroy();
    const afterLoss = await onAuto.run(weight, rows, cols, h, options);
    assert.deepEqual(afterLoss.codes, cpu.codes, 'the CPU rerun gives the CPU driver codes');
    await onAuto.run(weight, rows, cols, h, options);
    assert.equal(onAuto.deviceUsed(), 'gpu+cpu');
    assert.equal(notices.length, 1, notices.join(' | '));
    assert.match(notices[0]!, /continuing on the CPU/);
  } finally {
    auto.dispose();
  }

  const required = await ComputeDevice.open('gpu', () => {});
  try {
    const onGpu = gptqOnDevice(required);
    required.gpu!.destroy();
    await assert.rejects(onGpu.run(weight, rows, cols, h, options), GpuUnavailableError);
  } finally {
    required.dispose();
  }
});

test('gptqOnLazyDevice opens its device at the first layer only, once, and disposes it', async (t) => {
  const shared = await gpuOrSkip(t);
  if (shared === null) return;
  const rows = 32;
  const cols = 128;
  const acc = new HessianAccumulator(cols);
  acc.addRows(correlatedRows(512, cols, 41), 512);
  const h = acc.hessian();
  const next = normalRng(42);
  const weight = Float32Array.from({ length: rows * cols }, () => next() * 0.05);
  const options: GptqOptions = { target: { kind: 'int', bits: 4, groupSize: 64, sym: false }, blockSize: 64 };
  let opens = 0;
  let device: ComputeDevice | null = null;
  const lazy = gptqOnLazyDevice(async () => {
    opens++;
    device = await ComputeDevice.open('gpu', () => {});
    return device;
  });
  assert.equal(lazy.deviceUsed(), 'cpu');
  lazy.dispose(); // nothing opened: nothing to release
  assert.equal(opens, 0);
  const [a, b] = await Promise.all([lazy.run(weight, rows, cols, h, options), lazy.run(weight, rows, cols, h, options)]);
  assert.equal(opens, 1);
  assert.deepEqual(a.codes, b.codes);
  assert.equal(lazy.deviceUsed(), 'gpu');
  lazy.dispose();
  assert.equal((device as ComputeDevice | null)?.gpu, null, 'disposed');
});

test('quantizeWithMethod GPTQ with its layers on the GPU (gptqOnDevice): micro-llama, the CPU codes up to rare flips', async (t) => {
  const shared = await gpuOrSkip(t);
  if (shared === null) return;
  const loaded = await loadModel(microLlamaDir);
  try {
    const ids = loaded.tokenizer.encode(readFileSync(join(fixturesDir, 'calib-64k.txt'), 'utf8'));
    const windows = makeWindows(ids, 128, 16);
    const settings = { bits: 4, groupSize: 32 };
    const cpu = await quantizeWithMethod(loaded.model, windows, 'gptq', settings, { keepGptqResults: true });
    const device = await ComputeDevice.open('gpu', () => {});
    try {
      const onDevice = gptqOnDevice(device);
      const onGpu = await quantizeWithMethod(loaded.model, windows, 'gptq', settings, { keepGptqResults: true, gptqLayer: onDevice.run });
      assert.equal(onDevice.deviceUsed(), 'gpu');
      assert.equal(onGpu.gptqResults.size, 14);
      let flips = 0;
      let codes = 0;
      for (const [name, r] of cpu.gptqResults) {
        const g = onGpu.gptqResults.get(name);
        assert.ok(g !== undefined, name);
        flips += differingFraction(r.codes, g.codes) * r.codes.length;
        codes += r.codes.length;
        assert.ok(Math.abs(g.loss - r.loss) <= 0.05 * r.loss, `${name}: loss GPU ${g.loss} vs CPU ${r.loss}`);
      }
      console.log(`# quantizeWithMethod on micro-llama: ${flips} of ${codes} codes differ between --device gpu and cpu`);
      assert.ok(flips / codes < 0.005, `${flips} of ${codes} codes differ`);
    } finally {
      device.dispose();
    }
  } finally {
    await loaded.close();
  }
});

test('quantize --method gptq --device gpu (job worker, lavapipe included): the card says gpu, the weights are the --device cpu ones up to rare flips; compare --device parses', async (t) => {
  const shared = await gpuOrSkip(t);
  if (shared === null) return;
  const calibFile = join(fixturesDir, 'calib-64k.txt');
  await withTempDir(async (dir) => {
    const outs: Record<string, string> = {};
    for (const device of ['gpu', 'cpu']) {
      const out = join(dir, device);
      const c = captureIo();
      const args = ['quantize', microLlamaDir, '--method', 'gptq', '--calib', calibFile, '--calib-windows', '4', '--to', 'int4-g32', '-o', out, '--device', device];
      assert.equal(await main(args, c.io), 0, c.err.join('\n'));
      const card = parseQuantCard(JSON.parse(await readFile(join(out, 'model.safetensors.quant.json'), 'utf8')), 'card');
      assert.equal(card.recipe.device, device);
      outs[device] = out;
    }
    await withCheckpoint(join(outs.gpu!, 'model.safetensors'), async (onGpu) =>
      withCheckpoint(join(outs.cpu!, 'model.safetensors'), async (onCpu) => {
        let differing = 0;
        let total = 0;
        for (const name of ['q_proj', 'k_proj', 'v_proj', 'o_proj'].map((p) => `model.layers.1.self_attn.${p}.weight`)) {
          const g = await readResearchWeight(onGpu, name, 4);
          const c = await readResearchWeight(onCpu, name, 4);
          for (let i = 0; i < g.length; i++) if (g[i] !== c[i]) differing++;
          total += g.length;
        }
        assert.ok(differing / total < 0.005, `${differing} of ${total} layer-1 attention weights differ between --device gpu and cpu`);
      }),
    );
  });
  const parsed = parseCompareArgs(['m', '--calib', 'c', '--eval', 'e', '--device', 'gpu']);
  assert.ok(parsed !== 'help' && parsed.device === 'gpu');
  assert.ok(parseCompareArgs(['m', '--calib', 'c', '--eval', 'e']) !== 'help');
  assert.throws(() => parseCompareArgs(['m', '--calib', 'c', '--eval', 'e', '--device', 'tpu']), /--device must be auto, gpu or cpu, got 'tpu'/);
});
