/**
 * The same extension-host suite (test/e2e/hostSuite) in a desktop VS Code, through @vscode/test-electron.
 * For people with internet: test-electron downloads VS Code on first use, so CI (offline) runs the suite
 * in code-server instead (test/e2e/extensionHost.test.ts). Not a *.test.ts file: `npm test` skips it.
 *
 *   node esbuild.mjs && node --import tsx test/e2e/runDesktop.ts [--untrusted]
 */
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTests } from '@vscode/test-electron';
import * as esbuild from 'esbuild';
import { microLlamaF32Gguf, repoRoot } from '../helpers/paths';

async function main(): Promise<void> {
  const untrusted = process.argv.includes('--untrusted');
  const scratch = await mkdtemp(join(tmpdir(), 'quantlens-desktop-'));
  try {
    const suite = join(scratch, 'suite', 'index.js');
    await esbuild.build({
      entryPoints: [join(repoRoot, 'test', 'e2e', 'hostSuite', 'index.ts')],
      outfile: suite,
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      external: ['vscode'],
      alias: { mocha: join(repoRoot, 'node_modules', 'mocha', 'lib', 'mocha.cjs') },
      logLevel: 'error',
    });
    const workspace = join(scratch, 'micro-llama');
    await cp(join(repoRoot, 'test', 'fixtures', 'micro-llama'), workspace, { recursive: true });
    await cp(microLlamaF32Gguf, join(workspace, 'micro-llama-f32.gguf'));
    // A safetensors header length that runs past the end of the file.
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(workspace, 'corrupt.safetensors'), Uint8Array.from([0xff, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0x22]));
    const exitCode = await runTests({
      version: '1.100.3',
      extensionDevelopmentPath: repoRoot,
      extensionTestsPath: suite,
      launchArgs: [workspace, '--disable-extensions', '--user-data-dir', join(scratch, 'user-data'), ...(untrusted ? [] : ['--disable-workspace-trust'])],
    });
    process.exitCode = exitCode;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
