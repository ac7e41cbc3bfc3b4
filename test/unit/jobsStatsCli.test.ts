/** `quantlens stats` end to end (through main(), the job worker and the progress renderer). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { main } from '../../src/cli/main';
import type { CliIo } from '../../src/cli/cliTypes';
import { createProgressRenderer, formatProgressLine } from '../../src/cli/progress';
import { parseStatsArgs, sparkline } from '../../src/cli/commands/stats';
import { isJobResult, type JobProgress } from '../../src/protocol/jobs';
import { microLlamaDir } from '../helpers/paths';

function captureIo(isTTY: boolean): CliIo & { outLines: string[]; errLines: string[] } {
  const outLines: string[] = [];
  const errLines: string[] = [];
  return { outLines, errLines, isTTY, out: (s) => outLines.push(s), err: (s) => errLines.push(s) };
}

test('quantlens stats --json: a stats result for every tensor, progress as plain lines on stderr', async () => {
  const io = captureIo(false);
  const code = await main(['stats', microLlamaDir, '--json', '--device', 'cpu', '--bins', '16', '--top', '3'], io);
  assert.equal(code, 0, io.errLines.join('\n'));
  assert.equal(io.outLines.length, 1);
  const result: unknown = JSON.parse(io.outLines[0]!);
  assert.ok(isJobResult(result) && result.kind === 'stats');
  assert.equal(result.tensors.length, 21);
  assert.ok(result.tensors.every((t) => t.histogram.counts.length === 16 && t.topOutlierColumns.length <= 3));
  assert.equal(io.errLines.filter((l) => /^\[\s*\d+\/21\]/.test(l)).length, 21, 'one line per tensor');
  assert.match(io.errLines.at(-1)!, /^\[done\]/);
  assert.ok(io.errLines.every((l) => !l.includes('\x1b')), 'no terminal escapes when not a TTY');
});

test('quantlens stats table: one row per selected tensor and the device line', async () => {
  const io = captureIo(false);
  const code = await main(['stats', microLlamaDir, '--device', 'cpu', '--tensor', 'model.layers.0.self_attn.q_proj.weight', '--tensor', 'model.norm.weight'], io);
  assert.equal(code, 0);
  assert.match(io.outLines[0]!, /^tensor\s+dtype\s+shape/);
  assert.match(io.outLines[1]!, /^model\.layers\.0\.self_attn\.q_proj\.weight\s+BF16\s+64x64/);
  assert.match(io.outLines[2]!, /^model\.norm\.weight\s+BF16\s+64\s/);
  assert.ok(io.outLines.some((l) => /^2 tensors, .* on the CPU$/.test(l)));
});

test('quantlens stats refuses bad arguments and a missing tensor with exit code 2 and one line', async () => {
  for (const args of [['stats'], ['stats', microLlamaDir, '--device', 'tpu'], ['stats', microLlamaDir, '--bins', '0'], ['stats', microLlamaDir, '--device', 'cpu', '--tensor', 'nope']]) {
    const io = captureIo(false);
    assert.equal(await main(args, io), 2, args.join(' '));
    assert.equal(io.errLines.length, 1, io.errLines.join('\n'));
    assert.match(io.errLines[0]!, /^quantlens stats: /);
  }
  assert.throws(() => parseStatsArgs(['a', 'b']));
});

const sample = (over: Partial<JobProgress>): JobProgress => ({ jobId: 1, phase: 'compute', tensorIndex: 2, tensorCount: 10, tensorName: 'w', bytesDone: 512 * 1024, bytesTotal: 1024 * 1024, bytesPerSecond: 2 * 1024 * 1024, etaSeconds: 0.25, ...over });

test('progress line: step, bytes, percent, rate, ETA; TTY redraws in place, throttled', () => {
  assert.equal(formatProgressLine(sample({})), '[ 3/10] w (compute)  512 KiB / 1.0 MiB  50%  2.0 MiB/s  ETA 0.3 s');
  assert.equal(formatProgressLine(sample({ phase: 'done', bytesDone: 1024 * 1024 })), '[done] w  1.0 MiB / 1.0 MiB 100%  2.0 MiB/s');
  assert.match(formatProgressLine(sample({}), 10), /^#####\.\.\.\.\. \[ 3\/10\]/);
  let now = 0;
  const io = captureIo(true);
  const r = createProgressRenderer(io, () => now);
  r.update(sample({}));
  r.update(sample({ tensorIndex: 3 }));
  assert.equal(io.errLines.length, 1, 'throttled');
  now = 200;
  r.update(sample({ tensorIndex: 4 }));
  assert.equal(io.errLines.length, 2);
  assert.ok(io.errLines[1]!.startsWith('\x1b[1A\x1b[2K'), 'redrawn over the previous line');
  r.notice('no WebGPU adapter: running on the CPU');
  assert.ok(io.errLines.some((l) => l.endsWith('running on the CPU')));
});

test('sparkline: log-scaled heights, empty bins blank', () => {
  assert.equal(sparkline([0, 1, 1000, 0]), ' ▁█ ');
  assert.equal(sparkline([0, 0]), '');
});
