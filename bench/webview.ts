/**
 * Render time of the webview's views in Chromium (Debian's /usr/bin/chromium through playwright-core), on the
 * real tiny-llama dataset (test/webview/fixtures/tiny-llama.json) and on a 12,000-row tensor table.
 * A benchmark, not a timed test: it prints the median of several runs per view (QUANTLENS_BENCH_RUNS, default 5).
 * Measured: click on the view's tab -> its marks are in the DOM -> one more animation frame (painted).
 * Run from the repository root after `node esbuild.mjs`: `benchWebview()` is called by bench/main.ts.
 */
import { createServer } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, normalize } from 'node:path';
import type { AddressInfo } from 'node:net';

type Playwright = typeof import('playwright-core');

const CHROMIUM = '/usr/bin/chromium';
const RUNS = Number(process.env.QUANTLENS_BENCH_RUNS ?? 5);

interface BenchGlobals {
  __QUANTLENS_FIXTURE__?: unknown;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

export async function benchWebview(): Promise<void> {
  const root = process.cwd();
  const dist = join(root, 'dist', 'webview');
  const fixture = join(root, 'test', 'webview', 'fixtures', 'tiny-llama.json');
  if (!existsSync(CHROMIUM)) {
    console.log(`webview: skipped (${CHROMIUM} is absent)`);
    return;
  }
  if (!existsSync(join(dist, 'index.js')) || !existsSync(fixture)) {
    console.log('webview: skipped (run `node esbuild.mjs` first; the tiny-llama fixture must exist)');
    return;
  }
  // Loaded at run time so the bench bundle does not carry playwright-core.
  const { chromium } = createRequire(join(root, 'package.json'))('playwright-core') as Playwright;
  const html = `<!DOCTYPE html><html><head><meta charset="UTF-8"><link rel="stylesheet" href="/webview/index.css"></head>
<body class="vscode-dark"><div id="root"></div><script src="/webview/index.js"></script></body></html>`;
  const server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
      if (path === '/page') return void res.writeHead(200, { 'content-type': 'text/html' }).end(html);
      const rel = normalize(path.replace(/^\/webview\//, ''));
      if (!path.startsWith('/webview/') || rel.startsWith('..')) return void res.writeHead(404).end();
      try {
        res.writeHead(200, { 'content-type': rel.endsWith('.css') ? 'text/css' : 'text/javascript' }).end(await readFile(join(dist, rel)));
      } catch {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const dataset = JSON.parse(readFileSync(fixture, 'utf8')) as { overview: { tensors: { name: string; layer: number | null }[] } & Record<string, unknown> } & Record<string, unknown>;
    const layer0 = dataset.overview.tensors.filter((t) => t.layer === 0);
    const bigTable = { version: 1, overview: { ...dataset.overview, tensors: Array.from({ length: Math.ceil(12_000 / layer0.length) }, (_, l) => layer0.map((t) => ({ ...t, layer: l, name: t.name.replace('.layers.0.', `.layers.${l}.`) }))).flat() } };

    const views: [string, unknown, string][] = [
      ['overview', dataset, '.tensor-row'],
      ['outliers', dataset, '.small-multiples .multiple'],
      ['emergent', dataset, 'svg.emergent rect.cell'],
      ['errors', dataset, '.error-cell'],
      ['compare', dataset, 'circle.compare-point'],
      ['overview (12,000 tensors)', bigTable, '.tensor-row'],
    ];
    console.log(`webview render time, Chromium headless (software rendering), median of ${RUNS}: tab click -> view rendered (React + d3) -> next frame`);
    for (const [label, data, selector] of views) {
      const view = label.split(' ')[0] ?? 'overview';
      const times: number[] = [];
      for (let run = 0; run < RUNS; run++) {
        const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
        page.on('crash', () => console.log(`  (${label}: the page crashed)`));
        page.on('pageerror', (e) => console.log(`  (${label}: ${e.message})`));
        await page.addInitScript((d) => ((globalThis as unknown as BenchGlobals).__QUANTLENS_FIXTURE__ = d), data);
        await page.goto(`${origin}/page?view=${view}`);
        await page.waitForSelector('.app[data-ready="true"]');
        // Switch away and back: measures the view's own render (React + d3), not the script load.
        await page.locator('[data-tab="overview"]').click();
        // A string, not a function: tsx's keepNames would wrap inner functions in a helper the page lacks.
        const ms = (await page.evaluate(`new Promise((resolve) => {
          const other = ${JSON.stringify(view)} === 'overview' ? 'compare' : 'overview';
          document.querySelector('[data-tab="' + other + '"]')?.click();
          requestAnimationFrame(() => {
            const t0 = performance.now();
            document.querySelector('[data-tab=${JSON.stringify(view)}]')?.click();
            const poll = () => {
              if (document.querySelector(${JSON.stringify(selector)}) !== null) requestAnimationFrame(() => resolve(performance.now() - t0));
              else if (performance.now() - t0 > 10000) resolve(NaN); // the view never drew its marks
              else requestAnimationFrame(poll);
            };
            poll();
          });
        })`)) as number;
        times.push(ms);
        await page.close();
      }
      console.log(`  ${label.padEnd(28)} ${median(times).toFixed(1)} ms  (runs: ${times.map((t) => t.toFixed(0)).join(', ')})`);
    }
    const js = readFileSync(join(dist, 'index.js')).byteLength;
    const css = existsSync(join(dist, 'index.css')) ? readFileSync(join(dist, 'index.css')).byteLength : 0;
    console.log(`  bundle: index.js ${(js / 1024).toFixed(0)} KiB, index.css ${(css / 1024).toFixed(1)} KiB`);
  } finally {
    await browser.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
