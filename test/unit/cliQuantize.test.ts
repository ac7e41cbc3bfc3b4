import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { microLlamaDir } from '../helpers/paths';
import { main } from '../../src/cli/main';
import { parseQuantizeArgs } from '../../src/cli/commands/quantize';
import { inputStem } from '../../src/cli/commands/batch';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { captureIo, withTempDir } from '../helpers/scoped';

test('argument parsing: --group -1 is a value, --opt=value works, unknown options are refused', () => {
  const p = parseQuantizeArgs(['in', '--to', 'int4-g128', '--group', '-1', '--sym', '-o', 'out', '--scale=channel']);
  assert.deepEqual([p.positional, p.target, p.groupSize, p.symmetric, p.output, p.scale], [['in'], 'int4-g128', -1, true, 'out', 'channel']);
  assert.throws(() => parseQuantizeArgs(['in', '--group', '0']));
  assert.throws(() => parseQuantizeArgs(['in', '--frobnicate']));
  assert.throws(() => parseQuantizeArgs(['in', '--to']));
  assert.equal(inputStem('/a/b/micro-llama/'), 'micro-llama');
  assert.equal(inputStem('x/model.safetensors'), 'model');
});

test('quantize --dry-run prints the plan and writes nothing', async () => {
  await withTempDir(async (dir) => {
    const c = captureIo();
    const code = await main(['quantize', microLlamaDir, '--to', 'int4-g64', '-o', join(dir, 'out'), '--dry-run'], c.io);
    assert.equal(code, 0, c.err.join('\n'));
    const text = c.out.join('\n');
    assert.match(text, /model\.layers\.0\.self_attn\.q_proj\.weight\s+\[64, 64\]\s+BF16\s+gptq-int4-g64\s+2\.41 KiB\s+4\.813/); // 2048 + 32 + 128 + 256 bytes
    assert.match(text, /lm_head\.weight .* copy BF16 .* 16\.000/);
    assert.match(text, /14 of 21 tensors quantized/);
    assert.deepEqual(await readdir(dir), []);
  });
});

test('quantize writes the output and card, progress lines on stderr, --json summary on stdout', async () => {
  await withTempDir(async (dir) => {
    const c = captureIo();
    const out = join(dir, 'm.safetensors');
    const code = await main(['quantize', join(microLlamaDir, 'model.safetensors'), '--to', 'fp8', '-o', out, '--json'], c.io);
    assert.equal(code, 0, c.err.join('\n'));
    assert.ok(c.err.some((l) => /^\[\s*\d+\/21\] model\.layers\.1\.mlp\.up_proj\.weight \(compute\)\s{2}.* \d+%/.test(l)), c.err.join('\n'));
    const summary = JSON.parse(c.out.join('\n')) as { output: string; card: string; bitsPerWeight: number; meanSqnrDb: number };
    assert.equal(summary.output, out);
    const card = parseQuantCard(JSON.parse(await readFile(summary.card, 'utf8')));
    assert.equal(card.recipe.target, 'fp8');
    assert.ok(summary.meanSqnrDb > 25, `fp8 SQNR ${summary.meanSqnrDb}`);
    assert.deepEqual((await readdir(dir)).sort(), ['m.safetensors', 'm.safetensors.quant.json']);
  });
});

test('quantize refuses an unknown target (exit 2, lists the valid ones) and output = input', async () => {
  const c = captureIo();
  assert.equal(await main(['quantize', microLlamaDir, '--to', 'int7', '-o', '/tmp/x'], c.io), 2);
  assert.match(c.err.join('\n'), /unknown target 'int7'; valid targets: int8, int8-tensor, .*nf4, fp8, F32, .*Q4_K_M/);
  const model = join(microLlamaDir, 'model.safetensors');
  assert.equal(await main(['quantize', model, '--to', 'int8', '-o', model], c.io), 2);
  assert.match(c.err.join('\n'), /refusing to overwrite the source/);
});

test('batch: inputs x targets, a failing item does not stop the others, summary table, exit 2', async () => {
  await withTempDir(async (dir) => {
    const c = captureIo();
    const missing = join(dir, 'missing.safetensors');
    const code = await main(['batch', microLlamaDir, missing, '--to', 'int8,nf4', '-o', dir], c.io);
    assert.equal(code, 2);
    const table = c.out.join('\n');
    assert.match(table, /^input\s+target\s+before\s+after\s+bpw\s+SQNR dB\s+seconds\s+status/);
    const lines = c.out.slice(2);
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /micro-llama\s+int8\s+2\.\d+ MiB\s+\d.* ok$/);
    assert.match(lines[1]!, /micro-llama\s+nf4 .* ok$/);
    assert.match(lines[2]!, /missing\.safetensors\s+int8 .*FAILED: .*missing\.safetensors/);
    assert.ok(c.err.some((l) => l.startsWith('failed: ') && l.includes('nf4')));
    assert.deepEqual((await readdir(dir)).sort(), ['micro-llama-int8', 'micro-llama-nf4']);
    assert.ok((await readdir(join(dir, 'micro-llama-nf4'))).includes('model.safetensors.quant.json'));
  });
});

test('quantize to a GGUF type goes through the exporter and writes its card', async () => {
  await withTempDir(async (dir) => {
    const c = captureIo();
    const out = join(dir, 'm.gguf');
    const code = await main(['quantize', microLlamaDir, '--to', 'Q8_0', '-o', out], c.io);
    assert.equal(code, 0, c.err.join('\n'));
    assert.match(c.out.join('\n'), /wrote .*m\.gguf .*\nquant card .*m\.gguf\.quant\.json: mean SQNR 4\d\.\d\d dB over 16 quantized tensors/);
    assert.deepEqual((await readdir(dir)).sort(), ['m.gguf', 'm.gguf.quant.json']);
  });
});

test('quantize --dry-run for a GGUF target prints the exporter plan; its file size is what quantize writes', async () => {
  await withTempDir(async (dir) => {
    const out = join(dir, 'm.gguf');
    const plan = captureIo();
    assert.equal(await main(['quantize', microLlamaDir, '--to', 'Q4_K_M', '-o', out, '--dry-run'], plan.io), 0, plan.err.join('\n'));
    const text = plan.out.join('\n');
    assert.match(text, /blk\.0\.attn_q\.weight\s+\[64, 64\]\s+BF16\s+Q5_0 \(fallback\)/);
    assert.match(text, /fallback blk\.1\.attn_v\.weight: row length 64 is not a multiple of 256 \(required by Q6_K\): falling back to Q8_0/);
    const bytes = Number(/\((\d+) bytes\)/.exec(text)?.[1]);
    assert.deepEqual(await readdir(dir), []);
    const run = captureIo();
    assert.equal(await main(['quantize', microLlamaDir, '--to', 'Q4_K_M', '-o', out], run.io), 0, run.err.join('\n'));
    assert.equal((await readFile(out)).byteLength, bytes);
  });
});
