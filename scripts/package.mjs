#!/usr/bin/env node
// `npm run package [-- <target> ...]`: one platform-specific VSIX per target with @vscode/vsce, each
// holding only its own Dawn binary (node_modules/webgpu/dist/<platform>). Builds the bundles in
// production mode first; prints each VSIX's size. Output: dist-vsix/quant-lens-<version>-<target>.vsix.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** vsce target -> the webgpu package's Dawn folder for it. */
const DAWN_FOLDER = {
  'linux-x64': 'linux-x64',
  'linux-arm64': 'linux-arm64',
  'darwin-x64': 'darwin-universal',
  'darwin-arm64': 'darwin-universal',
  'win32-x64': 'win32-x64',
  'win32-arm64': 'win32-arm64',
};

const requested = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const targets = requested.length > 0 ? requested : Object.keys(DAWN_FOLDER);
for (const t of targets) {
  if (!(t in DAWN_FOLDER)) {
    console.error(`unknown target ${t}; valid: ${Object.keys(DAWN_FOLDER).join(', ')}`);
    process.exit(2);
  }
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`${cmd} ${args.join(' ')} failed (exit ${r.status ?? r.signal})`);
    process.exit(r.status ?? 1);
  }
}

run('node', ['esbuild.mjs', '--production']);
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
const baseIgnore = readFileSync('.vscodeignore', 'utf8');
const scratch = mkdtempSync(join(tmpdir(), 'quantlens-package-'));
mkdirSync('dist-vsix', { recursive: true });
const license = existsSync('LICENSE') || existsSync('LICENSE.md') ? [] : ['--skip-license'];
try {
  for (const target of targets) {
    const dawn = `node_modules/webgpu/dist/${DAWN_FOLDER[target]}`;
    if (!existsSync(dawn)) {
      console.error(`${dawn} is missing: the webgpu package in node_modules does not carry ${target}`);
      process.exit(1);
    }
    const ignoreFile = join(scratch, `${target}.vscodeignore`);
    writeFileSync(ignoreFile, `${baseIgnore}\n!${dawn}/**\n`);
    const out = join('dist-vsix', `${pkg.name}-${pkg.version}-${target}.vsix`);
    run('npx', ['vsce', 'package', '--target', target, '--ignoreFile', ignoreFile, '--out', out, '--allow-missing-repository', '--no-rewrite-relative-links', ...license]);
    const bytes = statSync(out).size;
    console.log(`${out}: ${(bytes / 1024 / 1024).toFixed(2)} MiB (${bytes} bytes)`);
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
