#!/usr/bin/env node
// `npm test`: typecheck, lint, build, then every test file under test/<group>/ in one node:test run.
// `npm test -- unit gpu` runs only those groups (after the same checks). Groups: unit, gpu, webview, e2e.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const ALL_GROUPS = ['unit', 'gpu', 'webview', 'e2e'];
const args = process.argv.slice(2);
const groups = args.filter((a) => ALL_GROUPS.includes(a));
const selected = groups.length > 0 ? groups : ALL_GROUPS;
const skipChecks = args.includes('--no-checks');

function run(cmd, cmdArgs) {
  const started = Date.now();
  const r = spawnSync(cmd, cmdArgs, { stdio: 'inherit', env: process.env });
  if (r.status !== 0) {
    console.error(`\n${cmd} ${cmdArgs.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
  console.log(`# ${cmd} ${cmdArgs.join(' ')}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

function testFiles(dir) {
  let out = [];
  let entries = [];
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(testFiles(p));
    else if (e.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

if (!skipChecks) {
  run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']);
  run('npx', ['tsc', '-p', 'webview/tsconfig.json', '--noEmit']);
  run('npx', ['eslint', '.']);
  run('node', ['esbuild.mjs']);
}

const files = selected.flatMap((g) => testFiles(join('test', g)));
if (files.length === 0) {
  console.error('no test files found');
  process.exit(1);
}
run('node', ['--import', 'tsx', '--test', '--test-reporter=spec', '--test-concurrency=2', ...files]);
