/**
 * The error heatmap fills in while a quantize runs: the pipeline reports each finished tensor's card
 * metrics, the job worker carries them on JobProgress.tensorResult, the backend on its progress events,
 * and LiveHeatmapFeed turns them into ErrorCellNotification params for the webview, tensor by tensor.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoreBackend } from '../../src/host/coreBackend';
import { LiveHeatmapFeed, errorCellFromResult, type QuantRunEvent } from '../../src/host/liveHeatmap';
import { parseQuantCard } from '../../src/core/quant/quantCard';
import { errorsFromQuantCard } from '../../src/protocol/viewModels';
import type { ErrorCellParams } from '../../src/protocol/webview';
import { microLlamaDir } from '../helpers/paths';
import { readFileSync } from 'node:fs';

const dir = mkdtempSync(join(tmpdir(), 'quantlens-live-heatmap-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const result = (name: string, sqnrDb: number) => ({ name, type: 'int8-channel', sqnrDb, relRmse: 10 ** (-sqnrDb / 20), maxAbsError: 0.01, bitsPerWeight: 8.25 });

test('the feed posts one cell per finished tensor of its checkpoint, with a run id per run', () => {
  const posted: ErrorCellParams[] = [];
  const feed = new LiveHeatmapFeed('/m/model', (p) => posted.push(p));
  const run = { input: '/m/model', output: '/m/out.safetensors', target: 'int8' };
  const events: QuantRunEvent[] = [
    { kind: 'progress', ...run, tensor: 'early', done: 0, total: 3, result: result('model.layers.0.self_attn.q_proj.weight', 40) }, // before 'started': ignored
    { kind: 'started', ...run },
    { kind: 'progress', ...run, tensor: 'model.layers.0.self_attn.q_proj.weight', done: 0, total: 3 },
    { kind: 'progress', ...run, tensor: 'model.layers.0.self_attn.q_proj.weight', done: 0, total: 3, result: result('model.layers.0.self_attn.q_proj.weight', 41.5) },
    { kind: 'progress', input: '/other', output: '/o.safetensors', target: 'int8', tensor: 'x', done: 0, total: 1, result: result('lm_head.weight', 20) },
    { kind: 'progress', ...run, tensor: 'lm_head.weight', done: 2, total: 3, result: result('lm_head.weight', 38) },
    { kind: 'finished', ...run },
    { kind: 'progress', ...run, tensor: 'late', done: 2, total: 3, result: result('model.norm.weight', 1) }, // after the end: ignored
    { kind: 'started', ...run },
    { kind: 'progress', ...run, tensor: 'model.layers.1.mlp.down_proj.weight', done: 1, total: 3, result: result('model.layers.1.mlp.down_proj.weight', 30) },
  ];
  for (const e of events) feed.handle(e);
  assert.deepEqual(
    posted.map((p) => [p.cell.tensor, p.cell.layer, p.cell.role, p.cell.sqnrDb, p.done, p.total, p.target]),
    [
      ['model.layers.0.self_attn.q_proj.weight', 0, 'q', 41.5, 1, 3, 'int8'],
      ['lm_head.weight', null, 'output', 38, 3, 3, 'int8'],
      ['model.layers.1.mlp.down_proj.weight', 1, 'down', 30, 2, 3, 'int8'],
    ],
  );
  assert.equal(posted[0]!.run, posted[1]!.run);
  assert.notEqual(posted[2]!.run, posted[0]!.run, 'a second run gets its own id');
  assert.equal(feed.live, true);
  assert.equal(feed.cellsOfLastRun, 1, 'counted since the last start');
});

test('a real quantize in the job worker: cells reach the feed tensor by tensor, before the run ends, equal to the card', { timeout: 120_000 }, async () => {
  const backend = new CoreBackend(() => 'cpu');
  const output = join(dir, 'micro-int8.safetensors');
  const run = { input: microLlamaDir, output, target: 'int8' };
  const log: string[] = [];
  const posted: ErrorCellParams[] = [];
  const feed = new LiveHeatmapFeed(microLlamaDir, (p) => {
    posted.push(p);
    log.push(`cell ${p.cell.tensor}`);
  });
  let ended = false;
  try {
    feed.handle({ kind: 'started', ...run });
    const outcome = await backend.quantize(
      { input: microLlamaDir, output, target: 'int8', groupSize: undefined, device: 'cpu', maxWorkerMemoryMB: 2048 },
      (event) => {
        assert.equal(ended, false);
        if (event.result === undefined) log.push(`progress ${event.tensor}`);
        feed.handle({ kind: 'progress', ...run, ...event });
      },
      new AbortController().signal,
    );
    ended = true;
    feed.handle({ kind: 'finished', ...run, output: outcome.output });
    const card = parseQuantCard(JSON.parse(readFileSync(`${outcome.output}.quant.json`, 'utf8')), 'card');
    const { errors } = errorsFromQuantCard(card, 2);
    // Every quantized tensor came as a cell, in pipeline order, with the card's numbers.
    assert.equal(posted.length, 14);
    assert.deepEqual(
      posted.map((p) => p.cell),
      errors.cells,
    );
    assert.deepEqual(posted.map((p) => p.cell), card.tensors.filter((t) => t.quantized).map((t) => errorCellFromResult(t)));
    // `done` counts the card's tensors up to and including the finished one.
    assert.deepEqual(
      posted.map((p) => `${p.done}/${p.total}`),
      card.tensors.flatMap((t, i) => (t.quantized ? [`${i + 1}/${card.tensors.length}`] : [])),
    );
    // Live, not replayed at the end: the first cell arrives before the pipeline has started on later tensors.
    const firstCell = log.findIndex((l) => l.startsWith('cell '));
    const lastQuantized = log.lastIndexOf(`progress ${posted.at(-1)!.cell.tensor}`);
    assert.ok(firstCell >= 0 && firstCell < lastQuantized, log.join('\n'));
    assert.ok(log.indexOf(`progress ${posted[1]!.cell.tensor}`) > log.indexOf(`cell ${posted[0]!.cell.tensor}`), 'cell 0 is posted before tensor 1 starts');
  } finally {
    backend.dispose();
  }
});
