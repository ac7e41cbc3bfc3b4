import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { main } from '../../src/cli/main';
import { parseCompareArgs } from '../../src/cli/commands/compare';
import { InvalidArgumentError } from '../../src/core/errors';
import { fixturesDir, microLlamaDir } from '../helpers/paths';

async function runCli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await main(args, { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: false });
  return { code, out, err };
}

test('compare: argument parsing and refusals', () => {
  const parsed = parseCompareArgs(['m', '--calib', 'c.txt', '--eval', 'e.txt']);
  assert.notEqual(parsed, 'help');
  if (parsed === 'help') return;
  assert.deepEqual(parsed.methods, ['rtn', 'awq', 'gptq', 'smoothquant', 'llm-int8']);
  assert.deepEqual(parsed.bits, [4, 8]);
  assert.equal(parsed.group, 128);
  assert.throws(() => parseCompareArgs(['m', '--calib', 'c', '--eval', 'e', '--methods', 'rtn,foo']), /unknown method 'foo'/);
  assert.throws(() => parseCompareArgs(['m', '--calib', 'c', '--eval', 'e', '--bits', '9']), InvalidArgumentError);
  assert.throws(() => parseCompareArgs(['m', '--eval', 'e']), /--calib/);
  assert.equal(parseCompareArgs(['--help']), 'help');
});

test('quantlens compare --json on micro-llama: baseline and one row per method x bits, llm-int8 only at 8 bits', async () => {
  const r = await runCli([
    'compare',
    microLlamaDir,
    '--calib',
    join(fixturesDir, 'calib-64k.txt'),
    '--eval',
    join(fixturesDir, 'eval.txt'),
    '--methods',
    'rtn,gptq,llm-int8',
    '--bits',
    '8,4',
    '--group',
    '64',
    '--ctx',
    '128',
    '--calib-windows',
    '2',
    '--eval-windows',
    '1',
    '--json',
  ]);
  assert.equal(r.code, 0, r.err.join('\n'));
  assert.equal(r.out.length, 1);
  const json = JSON.parse(r.out[0]!) as { baseline: { ppl: number }; rows: { method: string; bits: number; group: number; ppl: number; bytes: number; seconds: number }[] };
  assert.ok(json.baseline.ppl > 1);
  assert.deepEqual(
    json.rows.map((row) => `${row.method}/${row.bits}/${row.group}`),
    ['rtn/8/-1', 'gptq/8/64', 'llm-int8/8/-1', 'rtn/4/64', 'gptq/4/64'],
  );
  for (const row of json.rows) {
    assert.ok(Number.isFinite(row.ppl) && row.ppl > 1);
    assert.ok(row.bytes > 0 && row.seconds >= 0);
  }
  const w4 = json.rows.find((row) => row.method === 'rtn' && row.bits === 4)!;
  const w8 = json.rows.find((row) => row.method === 'rtn' && row.bits === 8)!;
  assert.ok(w4.bytes < w8.bytes);

  const bad = await runCli(['compare', microLlamaDir, '--calib', join(fixturesDir, 'nope.txt'), '--eval', join(fixturesDir, 'eval.txt')]);
  assert.equal(bad.code, 2);
  assert.match(bad.err.join('\n'), /nope\.txt/);
});
