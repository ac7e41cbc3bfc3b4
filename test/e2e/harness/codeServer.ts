/**
 * Runs a real VS Code for the end-to-end tests: code-server 4.100.3 (VS Code 1.100.3, a real Node
 * extension host) from .cache/code-server (scripts/install-code-server.sh), driven by playwright-core
 * with Debian's Chromium. Everything lives in a temp folder; nothing is written into the repo.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { repoRoot } from '../../helpers/paths';

export const codeServerBin = join(repoRoot, '.cache', 'code-server', 'node_modules', '.bin', 'code-server');
export const chromiumPath = '/usr/bin/chromium';
export const screenshotDir = join(repoRoot, 'test-output', 'e2e');

/**
 * Why the e2e tests cannot run here, or false. Outside CI they skip (printing why); with CI=true a
 * missing code-server or Chromium is a failure, not a skip.
 */
export function e2eSkipReason(): string | false {
  const missing: string[] = [];
  if (!existsSync(codeServerBin)) missing.push('code-server (run: bash scripts/install-code-server.sh)');
  if (!existsSync(chromiumPath)) missing.push(`${chromiumPath} (apt-get install chromium)`);
  if (!existsSync(join(repoRoot, 'dist', 'extension.js'))) missing.push('dist/extension.js (run: node esbuild.mjs)');
  if (missing.length === 0) return false;
  const reason = `end-to-end tests need ${missing.join(', ')}`;
  if (process.env.CI === 'true') throw new Error(`${reason}; CI must have them`);
  console.log(`# skipping: ${reason}`);
  return reason;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A temp copy of the micro-llama fixture folder, plus extra files (name -> source path or bytes). */
export async function makeWorkspace(extra: Record<string, string | Uint8Array> = {}): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'quantlens-e2e-ws-'));
  const workspace = join(root, 'micro-llama');
  await cp(join(repoRoot, 'test', 'fixtures', 'micro-llama'), workspace, { recursive: true });
  for (const [name, content] of Object.entries(extra)) {
    if (typeof content === 'string') await cp(content, join(workspace, name));
    else await writeFile(join(workspace, name), content);
  }
  return workspace;
}

export interface CodeServerSession {
  url: string;
  port: number;
  workspace: string;
  process: ChildProcess;
  output(): string;
  /** Stops code-server (SIGTERM to its process group, SIGKILL after a grace period) and removes its data. */
  stop(): Promise<void>;
}

export interface StartOptions {
  workspace: string;
  /** false: workspace trust stays enabled and the folder opens in restricted mode. */
  trusted: boolean;
  env?: Record<string, string>;
}

export async function startCodeServer(options: StartOptions): Promise<CodeServerSession> {
  const home = await mkdtemp(join(tmpdir(), 'quantlens-e2e-cs-'));
  const dataDir = join(home, 'data');
  await mkdir(join(dataDir, 'User'), { recursive: true });
  const settings: Record<string, unknown> = {
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'telemetry.telemetryLevel': 'off',
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'security.workspace.trust.startupPrompt': 'never',
    'security.workspace.trust.banner': 'never',
    'workbench.enableExperiments': false,
    'git.enabled': false,
    'window.restoreWindows': 'none',
    // WebGPU on lavapipe (CPU-only CI) spends most of a short run compiling kernels; the GPU path has its own tests.
    'quantlens.device': 'cpu',
  };
  await writeFile(join(dataDir, 'User', 'settings.json'), JSON.stringify(settings, null, 2));
  await writeFile(join(home, 'config.yaml'), 'auth: none\ncert: false\n');
  const port = await freePort();
  const args = [
    '--config', join(home, 'config.yaml'),
    '--bind-addr', `127.0.0.1:${port}`,
    '--auth', 'none',
    '--user-data-dir', dataDir,
    '--extensions-dir', join(home, 'extensions'),
    '--disable-telemetry',
    '--disable-update-check',
    '--disable-getting-started-override',
    ...(options.trusted ? ['--disable-workspace-trust'] : []),
    options.workspace,
  ];
  const child = spawn(codeServerBin, args, {
    cwd: home,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EXTENSIONS_GALLERY: '{}', HOME: home, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp', ...options.env },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`code-server exited with ${child.exitCode}:\n${output}`);
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`code-server did not answer /healthz within 60 s:\n${output}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  let stopped = false;
  return {
    url,
    port,
    workspace: options.workspace,
    process: child,
    output: () => output,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      if (child.exitCode === null && child.pid !== undefined) {
        const exited = new Promise<void>((r) => child.once('exit', () => r()));
        try {
          process.kill(-child.pid, 'SIGTERM');
        } catch {
          // already gone
        }
        const timer = setTimeout(() => {
          try {
            if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }, 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** The workbench URL that loads this repo as an unpacked extension (and, optionally, a test suite). */
export function workbenchUrl(session: CodeServerSession, extensionTestsPath?: string): string {
  const remote = (path: string): string => `vscode-remote://127.0.0.1:${session.port}${path}`;
  const payload: [string, string][] = [['extensionDevelopmentPath', remote(repoRoot)]];
  if (extensionTestsPath) payload.push(['extensionTestsPath', remote(extensionTestsPath)]);
  return `${session.url}/?folder=${encodeURIComponent(session.workspace)}&payload=${encodeURIComponent(JSON.stringify(payload))}`;
}

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  close(): Promise<void>;
}

export async function launchBrowser(): Promise<BrowserSession> {
  const profile = await mkdtemp(join(tmpdir(), 'quantlens-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  return {
    context,
    page,
    close: async () => {
      await context.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}
