/**
 * Serves the built webview (dist/webview) and a test page with the VS Code API stand-in on 127.0.0.1, and
 * launches Debian's Chromium through playwright-core. The page is the same shell the extension uses
 * (#root + index.css + index.js), plus the theme's CSS variables and the fixture to load.
 */
import { createServer, type Server } from 'node:http';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, normalize } from 'node:path';
import { spawnSync } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser, type Page } from 'playwright-core';
import { repoRoot } from '../helpers/paths';
import { THEMES, themeStyle, type ThemeName } from './themes';

export const CHROMIUM_PATH = '/usr/bin/chromium';
export const chromiumSkip: string | false = existsSync(CHROMIUM_PATH) ? false : `${CHROMIUM_PATH} is absent (install Debian's chromium package to run the browser tests)`;

export const webviewDist = join(repoRoot, 'dist', 'webview');
export const fixturesDir = join(repoRoot, 'test', 'webview', 'fixtures');
export const screenshotDir = join(repoRoot, 'test-output', 'webview');

/** Builds the bundles when dist/webview is missing (a fresh clone running only this group). */
export function ensureBuilt(): void {
  if (existsSync(join(webviewDist, 'index.js'))) return;
  const r = spawnSync(process.execPath, [join(repoRoot, 'esbuild.mjs')], { cwd: repoRoot, stdio: 'inherit' });
  if (r.status !== 0) throw new Error('node esbuild.mjs failed');
}

const CONTENT_TYPES: Record<string, string> = { '.js': 'text/javascript', '.css': 'text/css', '.json': 'application/json', '.map': 'application/json', '.html': 'text/html' };

export function pageHtml(theme: ThemeName, view?: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="UTF-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<style>${themeStyle(theme)}</style>
<link rel="stylesheet" href="/webview/index.css">
<title>Quant Lens (test page)</title>
</head>
<body class="${THEMES[theme].bodyClass}">
<div id="root"${view !== undefined ? ` data-view="${view}"` : ''}></div>
<script src="/webview/index.js"></script>
</body>
</html>`;
}

export interface Harness {
  origin: string;
  browser: Browser;
  /** Opens the test page with a fixture (file name in test/webview/fixtures) or an inline dataset. */
  open(options: { fixture?: string; dataset?: unknown; theme?: ThemeName; view?: string; width?: number; height?: number }): Promise<Page>;
  close(): Promise<void>;
}

export async function startHarness(): Promise<Harness> {
  ensureBuilt();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1');
      try {
        if (url.pathname === '/favicon.ico') {
          res.writeHead(204).end();
          return;
        }
        if (url.pathname === '/page') {
          const theme = (url.searchParams.get('theme') ?? 'dark') as ThemeName;
          const view = url.searchParams.get('shellView') ?? undefined;
          res.writeHead(200, { 'content-type': 'text/html' }).end(pageHtml(theme in THEMES ? theme : 'dark', view));
          return;
        }
        const [base, prefix] = url.pathname.startsWith('/webview/') ? [webviewDist, '/webview/'] : url.pathname.startsWith('/fixtures/') ? [fixturesDir, '/fixtures/'] : [null, ''];
        const rel = normalize(url.pathname.slice(prefix.length));
        if (base === null || rel.startsWith('..')) {
          res.writeHead(404).end();
          return;
        }
        const body = await readFile(join(base, rel));
        const ext = rel.slice(rel.lastIndexOf('.'));
        res.writeHead(200, { 'content-type': CONTENT_TYPES[ext] ?? 'application/octet-stream' }).end(body);
      } catch {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    origin,
    browser,
    async open({ fixture, dataset, theme = 'dark', view, width = 1280, height = 900 }) {
      const page = await browser.newPage({ viewport: { width, height } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      errorsByPage.set(page, errors);
      if (dataset !== undefined) await page.addInitScript((d) => ((globalThis as unknown as PageGlobals).__QUANTLENS_FIXTURE__ = d), dataset);
      const params = new URLSearchParams({ theme });
      if (fixture !== undefined) params.set('fixture', `/fixtures/${fixture}`);
      if (view !== undefined) params.set('view', view);
      await page.goto(`${origin}/page?${params.toString()}`);
      await page.waitForSelector('.app[data-ready="true"]', { timeout: 20_000 });
      return page;
    },
    async close() {
      await browser.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const errorsByPage = new WeakMap<Page, string[]>();

/** Uncaught exceptions and console errors of a page opened by the harness. */
export function pageErrors(page: Page): string[] {
  return errorsByPage.get(page) ?? [];
}

/**
 * What the tests touch inside the page (this tsconfig has no DOM lib): cast `globalThis` to it inside
 * page.evaluate callbacks, which run in the browser.
 */
export interface PageGlobals {
  document: {
    querySelector(selector: string): { textContent: string | null; getAttribute(name: string): string | null } | null;
    querySelectorAll(selector: string): { length: number };
  };
  __QUANTLENS_FIXTURE__?: unknown;
  __QUANTLENS_POSTED__?: unknown[];
  __QUANTLENS_HOST__?: { notify(method: string, params: unknown): void };
}
