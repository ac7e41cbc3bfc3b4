/**
 * The extension's host-side logic that needs no editor: the job queue (one live job per output path,
 * cancel while queued or running, order), default output paths, the target table and the temp-file
 * sweep. Runs without code-server; the same behaviour is exercised end to end by the suites beside it.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CancelledError } from '../../src/core/errors';
import { temporaryPathFor } from '../../src/core/io/atomicWrite';
import { JobQueue, OutputBusyError } from '../../src/host/jobQueue';
import { checkpointStem, defaultOutputPath } from '../../src/host/outputPath';
import { checkMethodTarget, findTarget, METHODS, pipelineTarget, TARGETS } from '../../src/host/targets';
import { removeOwnTempFilesSync, sweepStaleTempFiles } from '../../src/host/tempFiles';

const never = (signal: AbortSignal): Promise<never> =>
  new Promise((_, reject) => signal.addEventListener('abort', () => reject(new CancelledError()), { once: true }));

test('the job queue refuses a second live job for the same output, then accepts it once the first ends', async () => {
  const queue = new JobQueue(1);
  let release: () => void = () => undefined;
  const first = queue.enqueue({ label: 'a', outputPath: '/tmp/x/out.gguf', run: () => new Promise<string>((r) => (release = () => r('done'))) });
  assert.throws(() => queue.enqueue({ label: 'b', outputPath: '/tmp/x/../x/out.gguf', run: async () => 'b' }), OutputBusyError);
  release();
  assert.equal(await first.result, 'done');
  const again = queue.enqueue({ label: 'c', outputPath: '/tmp/x/out.gguf', run: async () => 'again' });
  assert.equal(await again.result, 'again');
});

test('jobs run one at a time in order; a queued job can be cancelled before it starts', async () => {
  const queue = new JobQueue(1);
  const started: string[] = [];
  const a = queue.enqueue({ label: 'a', outputPath: '/tmp/a', run: async ({ signal }) => { started.push('a'); return never(signal); } });
  const b = queue.enqueue({ label: 'b', outputPath: '/tmp/b', run: async () => { started.push('b'); return 'b'; } });
  const c = queue.enqueue({ label: 'c', outputPath: '/tmp/c', run: async () => { started.push('c'); return 'c'; } });
  assert.deepEqual(queue.active().map((j) => j.state), ['running', 'queued', 'queued']);
  b.cancel();
  await assert.rejects(b.result, CancelledError);
  a.cancel();
  await assert.rejects(a.result, CancelledError);
  assert.equal(await c.result, 'c');
  assert.deepEqual(started, ['a', 'c']);
  assert.deepEqual(queue.list().map((j) => j.state), ['cancelled', 'cancelled', 'succeeded']);
});

test('a failing job reports its error and does not stop the next', async () => {
  const queue = new JobQueue(1);
  const bad = queue.enqueue({ label: 'bad', outputPath: '/tmp/bad', run: async () => { throw new Error('corrupt header'); } });
  const good = queue.enqueue({ label: 'good', outputPath: '/tmp/good', run: async () => 1 });
  await assert.rejects(bad.result, /corrupt header/);
  assert.equal(await good.result, 1);
  assert.equal(queue.list().find((j) => j.label === 'bad')?.error, 'corrupt header');
});

test('progress reaches listeners and cancelAll stops everything live', async () => {
  const queue = new JobQueue(1);
  const seen: string[] = [];
  const job = queue.enqueue({
    label: 'p',
    outputPath: '/tmp/p',
    run: async ({ report, signal }) => {
      report({ message: 'tensor 1', fraction: 0.5 });
      return never(signal);
    },
  });
  job.onProgress((p) => seen.push(p.message));
  await new Promise((r) => setImmediate(r));
  assert.equal(queue.active()[0]?.progress?.message, 'tensor 1');
  assert.equal(queue.cancelAll(), 1);
  await assert.rejects(job.result, CancelledError);
  await queue.whenIdle();
  assert.deepEqual(queue.active(), []);
});

test('default outputs sit next to the input, named after the checkpoint and the target', () => {
  const int4 = findTarget('int4');
  const q8 = findTarget('gguf:Q8_0');
  assert.ok(int4 && q8);
  assert.equal(checkpointStem('/m/tiny-llama/model.safetensors'), 'tiny-llama');
  assert.equal(checkpointStem('/m/a.gguf'), 'a');
  assert.equal(defaultOutputPath('/m/tiny-llama/model.safetensors', false, q8, undefined, '${inputDir}', undefined), '/m/tiny-llama/tiny-llama-Q8_0.gguf');
  assert.equal(defaultOutputPath('/m/tiny-llama', true, int4, 64, '${inputDir}', undefined), '/m/tiny-llama-int4-g64.safetensors');
  assert.equal(defaultOutputPath('/m/a.gguf', false, int4, 32, '${workspaceFolder}/out', '/ws'), '/ws/out/a-int4-g32.safetensors');
  assert.equal(defaultOutputPath('/m/a.gguf', false, int4, 32, '${inputDir}', undefined, 'gptq'), '/m/a-gptq-int4-g32.safetensors');
});

test('every available target maps to a pipeline target; calibrated methods name the targets they write', () => {
  for (const t of TARGETS) assert.ok(pipelineTarget(t, 64).target.length > 0, t.id);
  // GPTQ: the GPTQ layout or its own blocks of any quantized GGUF type; AWQ: INT4 or quantized GGUF types; SmoothQuant: any; LLM.int8(): INT8 only.
  assert.deepEqual(checkMethodTarget('gptq', findTarget('int4')!).id, 'gptq');
  assert.equal(checkMethodTarget('gptq', findTarget('gguf:Q4_0')!).id, 'gptq');
  assert.deepEqual(checkMethodTarget('AWQ', findTarget('int4')!).id, 'awq');
  assert.equal(checkMethodTarget('awq', findTarget('gguf:Q4_K_M')!).id, 'awq');
  assert.equal(checkMethodTarget('smoothquant', findTarget('int8')!).id, 'smoothquant');
  assert.equal(checkMethodTarget('smoothquant', findTarget('gguf:Q8_0')!).id, 'smoothquant');
  assert.throws(() => checkMethodTarget('gptq', findTarget('int8')!), /GPTQ cannot write INT8/);
  assert.equal(checkMethodTarget('gptq', findTarget('gguf:Q4_K_M')!).id, 'gptq');
  assert.throws(() => checkMethodTarget('gptq', findTarget('gguf:F16')!), /GPTQ cannot write GGUF F16/);
  assert.throws(() => checkMethodTarget('awq', findTarget('gguf:F16')!), /AWQ cannot write GGUF F16/);
  assert.equal(checkMethodTarget('llm-int8', findTarget('int8')!).id, 'llm-int8');
  assert.throws(() => checkMethodTarget('llm-int8', findTarget('int4')!), /LLM\.int8\(\) cannot write INT4/);
  assert.throws(() => checkMethodTarget('hqq', findTarget('int4')!), /unknown calibrated method "hqq"/);
  for (const m of METHODS) {
    assert.equal(m.available, true, m.id);
    for (const id of m.targetIds) assert.ok(findTarget(id) !== undefined, `${m.id} -> ${id}`);
  }
  assert.deepEqual(pipelineTarget(findTarget('int4')!, 64), { target: 'int4-g128', groupSize: 64 });
  assert.deepEqual(pipelineTarget(findTarget('gguf:Q4_K_M')!, undefined), { target: 'Q4_K_M', groupSize: undefined });
});

test('temp files of this process (output, quant card, side files) and of dead writers are removed; others are kept', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'quantlens-temp-'));
  try {
    const output = join(folder, 'out.safetensors');
    const own = temporaryPathFor(output);
    // A shutdown while the quant card or quantize_config.json is being written (seen in CI).
    const ownCard = temporaryPathFor(`${output}.quant.json`);
    const ownSide = temporaryPathFor(join(folder, 'quantize_config.json'));
    const dead = join(folder, '.out.safetensors.999999999.0badc0de.tmp');
    const alive = join(folder, `.other.gguf.${process.ppid}.12345678.tmp`);
    for (const f of [own, ownCard, ownSide, dead, alive, join(folder, 'keep.txt')]) await writeFile(f, 'x');
    assert.deepEqual(await sweepStaleTempFiles(folder), [dead]);
    assert.equal(removeOwnTempFilesSync([output]), 3);
    assert.deepEqual((await readdir(folder)).sort(), [`.other.gguf.${process.ppid}.12345678.tmp`, 'keep.txt']);
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});
