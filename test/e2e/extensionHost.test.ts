/**
 * Layer (a): the mocha suite in test/e2e/hostSuite runs inside code-server's real extension host, once
 * in a trusted workspace and once in a restricted one. The suite is bundled with esbuild into a temp
 * folder; the workbench loads this repo as the development extension and the suite as extensionTestsPath;
 * VS Code reports the outcome through window.codeAutomationExit (0 = every test passed).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as esbuild from 'esbuild';
import { repoRoot, microLlamaF32Gguf } from '../helpers/paths';
import { e2eSkipReason, launchBrowser, makeWorkspace, startCodeServer, workbenchUrl } from './harness/codeServer';

const skip = e2eSkipReason();
let suiteDir = '';

before(async () => {
  if (skip) return;
  suiteDir = await mkdtemp(join(tmpdir(), 'quantlens-e2e-suite-'));
  await esbuild.build({
    entryPoints: [join(repoRoot, 'test', 'e2e', 'hostSuite', 'index.ts')],
    outfile: join(suiteDir, 'index.js'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['vscode'],
    // mocha 12 is ESM at its entry; its CommonJS build bundles cleanly.
    alias: { mocha: join(repoRoot, 'node_modules', 'mocha', 'lib', 'mocha.cjs') },
    logLevel: 'error',
  });
});

after(async () => {
  if (suiteDir) await rm(suiteDir, { recursive: true, force: true });
});

/** A corrupt checkpoint: a safetensors header length that runs past the end of the file. */
const CORRUPT = Uint8Array.from([0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22]);

async function runSuite(trusted: boolean): Promise<{ exitCode: number; log: string[]; report: string }> {
  const workspace = await makeWorkspace({ 'micro-llama-f32.gguf': microLlamaF32Gguf, 'corrupt.safetensors': CORRUPT });
  const server = await startCodeServer({ workspace, trusted });
  const browser = await launchBrowser();
  const log: string[] = [];
  try {
    const exitCode = new Promise<number>((resolve) => {
      void browser.page.exposeFunction('codeAutomationExit', (code: number) => resolve(code));
    });
    browser.page.on('console', (message) => log.push(message.text()));
    await browser.page.goto(workbenchUrl(server, join(suiteDir, 'index.js')));
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exitCode,
      new Promise<number>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no codeAutomationExit within 240 s:\n${log.join('\n')}\n${server.output()}`)), 240_000);
      }),
    ]).finally(() => clearTimeout(timer));
    const report = await readFile(join(workspace, '..', 'host-suite-report.txt'), 'utf8').catch(() => '(no report written)');
    return { exitCode: code, log, report };
  } finally {
    await browser.close();
    await server.stop();
    await rm(join(workspace, '..'), { recursive: true, force: true });
  }
}


test('extension host suite in a trusted workspace', { skip, timeout: 300_000 }, async () => {
  const { exitCode, report } = await runSuite(true);
  console.log(report);
  assert.equal(exitCode, 0, `extension-host tests failed:\n${report}`);
  assert.match(report, /QUANTLENS_E2E_RESULT failures=0/, 'the suite ran and reported');
});

test('extension host suite in a restricted (untrusted) workspace', { skip, timeout: 300_000 }, async () => {
  const { exitCode, report } = await runSuite(false);
  console.log(report);
  assert.equal(exitCode, 0, `extension-host tests failed:\n${report}`);
  assert.match(report, /QUANTLENS_E2E_RESULT failures=0/, 'the suite ran and reported');
});
