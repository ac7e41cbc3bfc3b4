/**
 * The extension-host test runner: what @vscode/test-electron would load as extensionTestsPath on a
 * desktop, and what test/e2e/extensionHost.test.ts loads into code-server. Bundled by the e2e test
 * with esbuild into one CommonJS file (mocha included). Reports through the spec reporter (the
 * browser console) and by rejecting when a test fails, which VS Code turns into codeAutomationExit(1).
 */
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Mocha from 'mocha';
import * as vscode from 'vscode';
import { registerExtensionTests } from './extensionSuite';

export async function run(): Promise<void> {
  const mocha = new Mocha({ ui: 'tdd', timeout: 60_000, color: false, reporter: 'spec' });
  const grep = process.env.QUANTLENS_E2E_GREP;
  if (grep) mocha.grep(grep);
  // The suite is bundled, not loaded from files: give it mocha's tdd globals the way addFile would.
  mocha.suite.emit('pre-require', globalThis, 'extensionSuite', mocha);
  registerExtensionTests();
  const lines: string[] = [];
  const failures = await new Promise<number>((resolve) => {
    const runner = mocha.run(resolve);
    runner.on('pass', (t) => lines.push(`ok ${t.fullTitle()} (${t.duration ?? 0} ms)`));
    runner.on('fail', (t, error: unknown) => lines.push(`FAILED ${t.fullTitle()}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`));
  });
  lines.push(`QUANTLENS_E2E_RESULT failures=${failures}`);
  console.log(lines.join('\n'));
  // The driver reads this report from beside the (temp) workspace: the browser console mangles formatting.
  const workspace = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  if (workspace) writeFileSync(join(dirname(workspace), 'host-suite-report.txt'), lines.join('\n') + '\n');
  if (failures > 0) throw new Error(`${failures} extension-host test(s) failed`);
}
