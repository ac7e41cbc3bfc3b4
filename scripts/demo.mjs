#!/usr/bin/env node
// `npm run demo`: the main job on the bundled micro model, through the real CLI (dist/cli.js):
// inspect -> analyze (calibration pass) -> quantize to Q4_K_M and Q8_0 GGUF -> eval both -> a short report.
// `npm run demo -- --large` runs the same on ../shared/models/tiny-llama when that folder is present.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const large = process.argv.includes('--large');
const tiny = resolve(root, '..', 'shared', 'models', 'tiny-llama');
if (large && !existsSync(tiny)) {
  console.error(`--large needs ${tiny} (the shared tiny-llama model); it is not there`);
  process.exit(2);
}
const model = large ? tiny : join(root, 'test', 'fixtures', 'micro-llama');
const name = large ? 'tiny-llama' : 'micro-llama';
const calib = join(root, 'test', 'fixtures', 'calib-64k.txt');
const evalText = join(root, 'test', 'fixtures', 'eval.txt');
const out = join(root, 'demo-output');
mkdirSync(out, { recursive: true });
const windows = large ? '16' : '64';

function cli(title, args, { capture = false } = {}) {
  console.log(`\n=== ${title}\n$ quantlens ${args.join(' ')}`);
  const started = Date.now();
  const r = spawnSync(process.execPath, [join(root, 'dist', 'cli.js'), ...args], {
    stdio: capture ? ['ignore', 'pipe', 'inherit'] : 'inherit',
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.status !== 0) {
    console.error(`quantlens ${args[0]} failed (exit ${r.status})`);
    process.exit(r.status ?? 1);
  }
  console.log(`(${((Date.now() - started) / 1000).toFixed(1)} s)`);
  return r.stdout;
}

cli('inspect', ['inspect', model]);
cli('analyze: calibration pass, outlier and emergent-feature dimensions', [
  'analyze', model, '--calib', calib, '--tokens', large ? '8192' : '4096', '--out', join(out, `${name}.analysis.json`),
]);
const report = [];
for (const target of ['Q4_K_M', 'Q8_0']) {
  const file = join(out, `${name}-${target}.gguf`);
  cli(`quantize to ${target}`, ['quantize', model, '--to', target, '-o', file]);
  const evalJson = JSON.parse(cli(`eval ${target}`, ['eval', file, '--text', evalText, '--windows', windows, '--json'], { capture: true }));
  const card = JSON.parse(readFileSync(`${file}.quant.json`, 'utf8'));
  report.push({ target, file, bytes: statSync(file).size, evalJson, card });
}
const baseline = JSON.parse(cli('eval the unquantized model', ['eval', model, '--text', evalText, '--windows', windows, '--json'], { capture: true }));

const firstPpl = (j) => j.rows[0].perplexity;
const basePpl = firstPpl(baseline);
console.log(`\n=== report: ${name}, perplexity on eval.txt (${windows} windows x 256 tokens)`);
console.log(`${'model'.padEnd(14)}${'size'.padStart(12)}${'ppl'.padStart(10)}${'delta %'.padStart(10)}${'mean SQNR dB'.padStart(14)}`);
console.log(`${'BF16 source'.padEnd(14)}${''.padStart(12)}${basePpl.toFixed(3).padStart(10)}${'0.00'.padStart(10)}`);
for (const r of report) {
  const ppl = firstPpl(r.evalJson);
  const sqnr = r.card.totals.meanSqnrDb;
  console.log(
    `${r.target.padEnd(14)}${`${(r.bytes / 1048576).toFixed(2)} MiB`.padStart(12)}${ppl.toFixed(3).padStart(10)}` +
      `${(((ppl - basePpl) / basePpl) * 100).toFixed(2).padStart(10)}${(typeof sqnr === 'number' ? sqnr.toFixed(2) : '-').padStart(14)}`,
  );
}
console.log(`\noutputs and quant cards in ${out}`);
