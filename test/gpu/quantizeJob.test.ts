/**
 * The real quantize job (what `quantlens quantize` / `batch` and the extension run) on the GPU path:
 * GGUF outputs byte-identical to the CPU path and to llama-quantize (synthetic LLaMA hashes, and
 * ../shared's tiny-llama Q4_K_M when present), the card saying which device ran, an adapter lost
 * mid-job falling back to the CPU once under auto (same bytes) and failing cleanly under gpu, and auto
 * leaving a software renderer for the (faster) CPU path.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JobRunner } from '../../src/core/jobs/jobRunner';
import { isSoftwareAdapter } from '../../src/core/jobs/computeDevice';
import { QuantLensError } from '../../src/core/errors';
import type { QuantizeJobSpec } from '../../src/protocol/jobs';
import { fixturesDir, microLlamaDir, tinyLlamaDir, tinyLlamaQ4KMGguf } from '../helpers/paths';
import { writeSyntheticInput } from '../fixtures/oracles/syntheticLlama';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

let dir = '';
let runner: JobRunner | null = null;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'quantlens-gpuquantize-'));
  runner = await JobRunner.start();
});
after(async () => {
  await runner?.dispose();
  await releaseSharedGpu();
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

function job(input: string, target: string, output: string, device: QuantizeJobSpec['device'], extra: Partial<QuantizeJobSpec> = {}): QuantizeJobSpec {
  return { kind: 'quantize', request: { input, output, target }, device, ...extra };
}

test('quantize job on micro-llama: Q4_K_M and Q8_0 from the GPU equal the CPU files byte for byte; the card names the device', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  for (const target of ['Q4_K_M', 'Q8_0']) {
    const gpuOut = join(dir, `micro-gpu-${target}.gguf`);
    const cpuOut = join(dir, `micro-cpu-${target}.gguf`);
    const notices: string[] = [];
    const g = await runner!.run(job(microLlamaDir, target, gpuOut, 'gpu'), { onNotice: (m) => notices.push(m) });
    const c = await runner!.run(job(microLlamaDir, target, cpuOut, 'cpu'));
    assert.deepEqual(notices.filter((m) => /GPU|CPU/.test(m)), [], 'no fallback notice on a working GPU');
    assert.equal(g.result.card.recipe.device, 'gpu', target);
    assert.equal(c.result.card.recipe.device, 'cpu', target);
    assert.ok(readFileSync(gpuOut).equals(readFileSync(cpuOut)), `${target}: GPU and CPU files differ`);
    // Same bytes, so the same measured error in the card.
    assert.deepEqual(g.result.card.tensors, c.result.card.tensors);
    assert.ok(g.result.card.tensors.some((x) => x.quantized), `${target}: something was quantized`);
  }
});

test('quantize job on the GPU: synthetic LLaMA to Q4_K_M, Q8_0, Q5_1, Q2_K and Q6_K hashes equal llama-quantize\'s', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const oracle = JSON.parse(readFileSync(join(fixturesDir, 'oracles', 'llama-quantize-synthetic.json'), 'utf8')) as { inputSha256: string; outputs: Record<string, { target: string; pure: boolean; fileSha256: string }> };
  const input = join(dir, 'synthetic-f32.gguf');
  await writeSyntheticInput(input);
  assert.equal(sha256(readFileSync(input)), oracle.inputSha256, 'the synthetic input must be the one llama-quantize saw');
  for (const name of ['Q4_K_M', 'Q8_0', 'Q5_1', 'Q2_K', 'Q6_K']) {
    const expected = oracle.outputs[name]!;
    const output = join(dir, `synthetic-${name}.gguf`);
    const r = await runner!.run(job(input, expected.target, output, 'gpu'));
    assert.equal(r.result.card.recipe.device, 'gpu');
    assert.equal(sha256(readFileSync(output)), expected.fileSha256, `${name}: the GPU-quantized file differs from llama-quantize's`);
    rmSync(output);
  }
});

test('quantize job, research targets: INT8 and INT8 zero-point (channel, tensor), GPTQ int4 g32, NF4 (double quant), FP8 from the GPU equal the CPU files; the card names the device', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const cases: Array<[string, Partial<QuantizeJobSpec['request']>]> = [
    ['int8', {}],
    ['int8', { scale: 'tensor' }],
    ['int8-zp', {}],
    ['int8-zp', { scale: 'tensor' }],
    ['int4-g32', {}],
    ['nf4', { doubleQuant: true }],
    ['fp8', {}],
    ['fp8', { scale: 'channel' }],
  ];
  for (const [target, options] of cases) {
    const name = `${target}${options.scale ?? ''}${options.doubleQuant === true ? '-dq' : ''}`;
    const files: Buffer[] = [];
    for (const device of ['gpu', 'cpu'] as const) {
      const out = join(dir, `research-${name}-${device}.safetensors`);
      const r = await runner!.run({ kind: 'quantize', request: { input: microLlamaDir, output: out, target, ...options }, device });
      assert.equal(r.result.card.recipe.device, device, name);
      files.push(readFileSync(out));
    }
    assert.ok(files[0]!.equals(files[1]!), `${name}: GPU and CPU files differ`);
  }
});

test('quantize job, auto: the GPU lost at the second window hands over to the CPU once, same bytes, card says gpu+cpu', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const cpuOut = join(dir, 'lost-cpu.gguf');
  const autoOut = join(dir, 'lost-auto.gguf');
  await runner!.run(job(microLlamaDir, 'Q4_K_M', cpuOut, 'cpu'));
  const notices: string[] = [];
  const r = await runner!.run(job(microLlamaDir, 'Q4_K_M', autoOut, 'auto', { testFaults: { loseGpuAtTensor: 1, useSoftwareAdapter: true } }), { onNotice: (m) => notices.push(m) });
  assert.equal(notices.filter((m) => /continuing on the CPU/.test(m)).length, 1, `one fallback notice: ${JSON.stringify(notices)}`);
  assert.equal(r.result.card.recipe.device, 'gpu+cpu');
  assert.ok(readFileSync(autoOut).equals(readFileSync(cpuOut)));
});

test('quantize job, auto: a software renderer (lavapipe) is left for the CPU path, said once; a hardware adapter is used', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const out = join(dir, 'auto-default.gguf');
  const notices: string[] = [];
  const r = await runner!.run(job(microLlamaDir, 'Q8_0', out, undefined), { onNotice: (m) => notices.push(m) });
  const software = isSoftwareAdapter(gpu.description);
  assert.equal(r.result.card.recipe.device, software ? 'cpu' : 'gpu', gpu.description);
  assert.equal(notices.filter((m) => /software renderer/.test(m)).length, software ? 1 : 0, JSON.stringify(notices));
});

test('quantize job on the GPU: a cancel during the upload of a window ends in CancelledError, nothing at the output, no temp file', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const input = join(dir, 'cancel-input.gguf');
  await writeSyntheticInput(input);
  const out = join(dir, 'cancelled-gpu.gguf');
  const controller = new AbortController();
  let uploads = 0;
  await assert.rejects(
    runner!.run(job(input, 'Q4_K_M', out, 'gpu'), {
      signal: controller.signal,
      onProgress: (p) => {
        if (p.phase === 'upload' && ++uploads === 3) controller.abort();
      },
    }),
    (e: unknown) => e instanceof QuantLensError && e.code === 'CANCELLED',
  );
  assert.ok(uploads >= 3, 'the GPU path reported its upload phase');
  assert.equal(existsSync(out), false);
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('cancelled-gpu')), []);
  // The next job gets a fresh device.
  const again = await runner!.run(job(microLlamaDir, 'Q8_0', join(dir, 'after-cancel.gguf'), 'gpu'));
  assert.equal(again.result.card.recipe.device, 'gpu');
});

test('quantize job, gpu: the GPU lost mid-job fails with GpuUnavailableError and leaves no output', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const out = join(dir, 'lost-gpu.gguf');
  await assert.rejects(runner!.run(job(microLlamaDir, 'Q8_0', out, 'gpu', { testFaults: { loseGpuAtTensor: 1 } })), (e: unknown) => e instanceof QuantLensError && e.code === 'GPU_UNAVAILABLE');
  assert.equal(existsSync(out), false);
  assert.equal(existsSync(`${out}.quant.json`), false);
});

test('quantize job on the GPU: ../shared tiny-llama (HF BF16) -> Q4_K_M equals llama.cpp\'s file byte for byte', { skip: tinyLlamaDir.skip || tinyLlamaQ4KMGguf.skip }, async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const out = join(dir, 'tiny-llama-Q4_K_M.gguf');
  const r = await runner!.run(job(tinyLlamaDir.path, 'Q4_K_M', out, 'gpu'));
  assert.equal(r.result.card.recipe.device, 'gpu');
  assert.equal(sha256(readFileSync(out)), sha256(readFileSync(tinyLlamaQ4KMGguf.path)));
});
