/**
 * The webview in a real browser (Debian's Chromium through playwright-core), loaded with the REAL analysis
 * output of tiny-llama (test/webview/fixtures/tiny-llama.json, made by scripts/make-webview-fixtures.ts):
 * each view draws the marks the data calls for, interactions update what they should, and screenshots of
 * every view in light and dark themes land in test-output/webview/.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { checkDataset, type WebviewDataset, type TensorRow } from '../../src/protocol/webview';
import { shareBeyond } from '../../src/protocol/viewModels';
import { chromiumSkip, fixturesDir, pageErrors, screenshotDir, startHarness, type Harness, type PageGlobals } from './harness';

const skip = chromiumSkip;
const tiny = JSON.parse(readFileSync(join(fixturesDir, 'tiny-llama.json'), 'utf8')) as WebviewDataset;

let harness: Harness | undefined;
before(async () => {
  if (skip !== false) return;
  harness = await startHarness();
  await mkdir(screenshotDir, { recursive: true });
});
after(async () => {
  await harness?.close();
});

function h(): Harness {
  if (harness === undefined) throw new Error('harness not started');
  return harness;
}

async function posted(page: Page): Promise<unknown[]> {
  return page.evaluate(() => (globalThis as unknown as PageGlobals).__QUANTLENS_POSTED__ ?? []);
}

test('the committed fixture is a valid dataset of tiny-llama', { skip }, () => {
  const checked = checkDataset(tiny);
  assert.equal(checked.ok, true, checked.ok ? '' : checked.reason);
  assert.equal(tiny.overview?.name, 'tiny-llama');
  assert.equal(tiny.overview?.layers, 8);
  assert.equal(tiny.overview?.tensors.length, 75);
  assert.ok(Math.abs((tiny.overview?.parameterCount ?? 0) - 18.9e6) < 0.1e6);
});

test('handshake: the webview posts ready first, then renders the overview from the dataset', { skip }, async () => {
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark' });
  const messages = await posted(page);
  assert.deepEqual(messages[0], { kind: 'ready' });
  assert.equal(await page.locator('[data-stat="parameters"]').textContent(), '18.9M');
  assert.deepEqual(pageErrors(page), []);
  await page.close();
});

test('overview: virtualised, searchable, sortable, grouped tensor table', { skip }, async () => {
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'overview' });
  const scroller = page.locator('.table-scroll');
  // 75 tensors + 9 group headers (model + 8 layers).
  assert.equal(await scroller.getAttribute('data-total-rows'), String(75 + 9));
  const rendered = await page.locator('.tensor-row').count();
  assert.ok(rendered < 75, `only visible rows are in the DOM, got ${rendered}`);
  await page.locator('[data-control="tensor-filter"] input').fill('q_proj');
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('.count')?.getAttribute('data-count') === '8');
  assert.equal(await page.locator('.tensor-row').count(), 8);
  await page.locator('[data-control="tensor-filter"] input').fill('');
  await page.locator('[data-sort="params"]').click(); // params, descending, still grouped by layer
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('[data-sort="params"]')?.getAttribute('aria-sort') === 'descending');
  const first = await page.locator('.group-row').first().textContent();
  assert.match(first ?? '', /^model/);
  const names = await page.locator('.tensor-row').evaluateAll((rows) => rows.slice(0, 2).map((r) => r.getAttribute('data-tensor')));
  assert.deepEqual(new Set(names), new Set(['model.embed_tokens.weight', 'lm_head.weight']));
  await page.close();
});

test('overview: 12,000 tensors stay virtualised and scroll to the last row', { skip }, async () => {
  const base = tiny.overview;
  assert.ok(base !== undefined);
  // A 1,334-layer model built from tiny-llama's real layer-0 rows (renamed per layer): a UI load test.
  const layer0 = base.tensors.filter((r) => r.layer === 0);
  const tensors: TensorRow[] = [];
  for (let l = 0; l < Math.ceil(12_000 / layer0.length); l++) for (const r of layer0) tensors.push({ ...r, layer: l, name: r.name.replace('.layers.0.', `.layers.${l}.`) });
  assert.ok(tensors.length >= 10_000);
  const dataset: WebviewDataset = { version: 1, overview: { ...base, layers: tensors.length / layer0.length, tensors } };
  const page = await h().open({ dataset, theme: 'dark', view: 'overview' });
  assert.ok((await page.locator('.table-row').count()) < 60);
  const started = Date.now();
  for (let i = 1; i <= 20; i++) await page.locator('.table-scroll').evaluate((el, f) => (el.scrollTop = el.scrollHeight * f), i / 20);
  const lastLayer = tensors.length / layer0.length - 1;
  await page.waitForSelector(`.tensor-row[data-tensor="model.layers.${lastLayer}.post_attention_layernorm.weight"]`);
  assert.ok((await page.locator('.table-row').count()) < 60);
  console.log(`# scrolled 12,000-row table through 20 positions in ${Date.now() - started} ms`);
  await page.close();
});

test('outliers: bars = bins, threshold drives the share beyond, small multiples down the layers', { skip }, async () => {
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'outliers' });
  const q0 = tiny.histograms?.find((x) => x.label === 'model.layers.0.self_attn.q_proj.weight');
  assert.ok(q0 !== undefined);
  const main = page.locator('[data-role="main-histogram"] svg');
  assert.equal(await main.getAttribute('data-bins'), String(q0.counts.length));
  assert.equal(await main.locator('rect.bar').count(), q0.counts.length);
  // The bars carry the data's counts in order.
  const counts = await main.locator('rect.bar').evaluateAll((bars) => bars.map((b) => Number(b.getAttribute('data-count'))));
  assert.deepEqual(counts, q0.counts);
  const shareText = async (): Promise<string> => (await page.locator('[data-stat="share-beyond"]').textContent()) ?? '';
  const expected = (t: number): string => {
    const s = shareBeyond(q0, t);
    return s === 0 ? '0 %' : s < 1e-4 ? `${(s * 100).toExponential(1)} %` : `${(s * 100).toPrecision(3)} %`;
  };
  assert.equal(await shareText(), expected(6));
  await page.locator('[data-control="threshold"] input').fill('3');
  await page.locator('[data-control="threshold"] input').press('Enter');
  await page.waitForFunction((want) => (globalThis as unknown as PageGlobals).document.querySelector('[data-stat="share-beyond"]')?.textContent === want, expected(3));
  assert.notEqual(expected(3), expected(6));
  // Threshold lines at +-3 sigma, bars beyond them recoloured.
  assert.equal(await main.locator('line.threshold').count(), 2);
  const beyond = await main.locator('rect.bar.beyond').count();
  const expectedBeyond = q0.counts.filter((_, i) => (q0.edges[i + 1] ?? 0) <= -3 || (q0.edges[i] ?? 0) >= 3).length;
  assert.equal(beyond, expectedBeyond);
  assert.equal(await page.locator('.small-multiples .multiple').count(), 8);
  await page.locator('[data-histogram="w:model.layers.5.self_attn.q_proj.weight"]').click();
  await page.waitForSelector('.chart[data-chart="histogram-model.layers.5.self_attn.q_proj.weight"]');
  await page.screenshot({ path: join(screenshotDir, 'dark-outliers.png'), fullPage: true });
  await page.close();
});

test('emergent: highlighted dimensions are exactly the systematic dims and standouts of each map; a click shows the dim per layer', { skip }, async () => {
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'emergent' });
  const maps = tiny.outlierMaps ?? [];
  assert.deepEqual(
    maps.map((m) => m.id),
    ['attn_in@6', 'attn_out@6', 'mlp_in@6', 'mlp_act@6'],
  );
  const dimsOf = async (selector: string): Promise<number[]> =>
    (await page.locator(selector).evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-dim'))))).sort((a, b) => a - b);
  for (const map of maps) {
    await page.locator(`[data-map="${map.id}"]`).click();
    await page.waitForSelector(`.chart[data-chart="emergent-${map.site}-${map.criterion.threshold}"]`);
    assert.equal(await page.locator('svg.emergent rect.cell').count(), map.layers * map.dims);
    assert.deepEqual(await dimsOf('.systematic-marker'), map.systematic.map((s) => s.dim).sort((a, b) => a - b), map.id);
    assert.deepEqual(await dimsOf('.standout-marker'), map.standouts.map((s) => s.dim).sort((a, b) => a - b), map.id);
    assert.equal(await page.locator('[data-systematic-dim]').count(), map.systematic.length);
    assert.equal(await page.locator('[data-standout-dim]').count(), map.standouts.length);
  }
  // tiny-llama's attention input has recurring outlier channels: the map must show some.
  const attn = maps.find((m) => m.id === 'attn_in@6');
  assert.ok(attn !== undefined && attn.standouts.length > 0, 'attn_in has recurring standouts');
  const dim = attn.standouts[0]?.dim ?? -1;
  await page.locator('[data-map="attn_in@6"]').click();
  await page.locator(`[data-standout-dim="${dim}"]`).click();
  const detail = page.locator(`[data-dim-detail="${dim}"]`);
  await detail.waitFor();
  assert.equal(await detail.locator('circle.point').count(), 8);
  const readers = attn.details.find((d) => d.dim === dim)?.readers.length ?? 0;
  assert.equal(readers, 24); // q, k and v of 8 layers read attn_in
  assert.equal(await detail.locator('table.readers tbody tr').count(), readers);
  await page.screenshot({ path: join(screenshotDir, 'dark-emergent.png'), fullPage: true });
  await page.close();
});

test('errors: cells = layers x roles (+ embeddings, head); a click opens the block-error map and histogram', { skip }, async () => {
  const errors = tiny.errors;
  assert.ok(errors !== undefined);
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'errors' });
  const layerCells = errors.cells.filter((c) => c.layer !== null).length;
  assert.equal(layerCells, 8 * 7);
  assert.equal(await page.locator('.error-cell').count(), errors.cells.length);
  const tensor = 'model.layers.3.mlp.down_proj.weight';
  await page.locator(`.error-cell[data-tensor="${tensor}"]`).click();
  const panel = page.locator(`[data-block-map="${tensor}"]`);
  await panel.waitFor();
  const map = tiny.blockMaps?.find((b) => b.tensor === tensor);
  assert.ok(map !== undefined);
  assert.equal(await panel.locator('rect.block').count(), map.rows * map.cols);
  // The element-wise error histogram of the quant card: 64 bars with the card's counts, every element of the tensor once.
  const histogram = panel.locator('[data-role="error-histogram"][data-kind="elementwise"]');
  const histogramCounts = await histogram.locator('rect.bar').evaluateAll((bars) => bars.map((b) => Number(b.getAttribute('data-count'))));
  assert.ok(map.errorHistogram !== undefined);
  assert.equal(histogramCounts.length, 64);
  assert.deepEqual(histogramCounts, map.errorHistogram.counts);
  const shape = tiny.overview?.tensors.find((t) => t.name === tensor)?.shape ?? [];
  assert.equal(histogramCounts.reduce((a, b) => a + b, 0), (shape[0] ?? 0) * (shape[1] ?? 0));
  // int4 g128 rounding error is bounded by half a step: the distribution spreads over both signs, densest near 0.
  const half = histogramCounts.length / 2;
  assert.ok(histogramCounts.slice(0, half).reduce((a, b) => a + b, 0) > 0 && histogramCounts.slice(half).reduce((a, b) => a + b, 0) > 0);
  assert.ok((histogramCounts[half] ?? 0) > (histogramCounts[0] ?? 0) && (histogramCounts[half] ?? 0) > (histogramCounts[63] ?? 0));
  assert.equal(await page.locator('[data-role="no-error-histogram"]').count(), 0);
  // Keyboard: focus another cell, Enter opens its map.
  const other = 'model.layers.0.self_attn.q_proj.weight';
  await page.locator(`.error-cell[data-tensor="${other}"]`).focus();
  await page.keyboard.press('Enter');
  await page.locator(`[data-block-map="${other}"]`).waitFor();
  await page.close();
});

test('errors: a quant card written before error histograms says so and shows the block-error spread instead', { skip }, async () => {
  const errors = tiny.errors;
  assert.ok(errors !== undefined);
  const olderMaps = (tiny.blockMaps ?? []).map(({ errorHistogram: _dropped, ...rest }) => rest);
  const page = await h().open({ dataset: { ...tiny, blockMaps: olderMaps }, theme: 'dark', view: 'errors' });
  const tensor = 'model.layers.3.mlp.down_proj.weight';
  await page.locator(`.error-cell[data-tensor="${tensor}"]`).click();
  const panel = page.locator(`[data-block-map="${tensor}"]`);
  await panel.waitFor();
  assert.match((await panel.locator('[data-role="no-error-histogram"]').textContent()) ?? '', /no element-wise error histogram/);
  const map = olderMaps.find((b) => b.tensor === tensor);
  assert.ok(map !== undefined);
  const counts = await panel.locator('[data-role="error-histogram"][data-kind="block"] rect.bar').evaluateAll((bars) => bars.map((b) => Number(b.getAttribute('data-count'))));
  assert.equal(counts.reduce((a, b) => a + b, 0), map.values.filter((v) => v > 0).length);
  assert.deepEqual(pageErrors(page), []);
  await page.close();
});

test('errors: the heatmap fills in live from progress messages; block maps come from the host on request', { skip }, async () => {
  const errors = tiny.errors;
  assert.ok(errors !== undefined);
  const dataset: WebviewDataset = { version: 1, overview: tiny.overview, errors: { ...errors, cells: [] }, blockMaps: tiny.blockMaps };
  const page = await h().open({ dataset, theme: 'dark', view: 'errors' });
  const pending = await page.locator('.cell.pending').count();
  assert.equal(pending, errors.cells.length);
  const total = errors.cells.length;
  for (const [i, cell] of errors.cells.slice(0, 20).entries()) {
    await page.evaluate(([c, done, all, target]) => (globalThis as unknown as PageGlobals).__QUANTLENS_HOST__?.notify('webview/errorCell', { target, run: 'run-1', cell: c, done, total: all }), [cell, i + 1, total, errors.target] as const);
    // Each message adds its cell at once (counted after every message, not only at the end).
    if (i === 0 || i === 9) await page.waitForFunction((n) => (globalThis as unknown as PageGlobals).document.querySelectorAll('.error-cell').length === n, i + 1);
  }
  await page.waitForFunction((n) => (globalThis as unknown as PageGlobals).document.querySelectorAll('.error-cell').length === n, 20);
  assert.equal(await page.locator('.cell.pending').count(), total - 20);
  assert.equal(await page.locator('.progress').getAttribute('data-progress'), `20/${total}`);
  await page.screenshot({ path: join(screenshotDir, 'dark-errors-live.png'), fullPage: true });
  // A cell of a new run starts a fresh heatmap (the last run's cells would describe other weights).
  const restart = { target: errors.target, run: 'run-2', cell: errors.cells[0], done: 1, total };
  await page.evaluate((p) => (globalThis as unknown as PageGlobals).__QUANTLENS_HOST__?.notify('webview/errorCell', p), restart);
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('.error-cell').length === 1);
  for (const [i, cell] of errors.cells.slice(1, 20).entries()) {
    await page.evaluate((p) => (globalThis as unknown as PageGlobals).__QUANTLENS_HOST__?.notify('webview/errorCell', p), { target: errors.target, run: 'run-2', cell, done: i + 2, total });
  }
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelectorAll('.error-cell').length === 20);
  // The host replaces the dataset with one that carries no block maps: a click must ask the host for one.
  const filled = { ...dataset, errors: { ...errors, cells: errors.cells.slice(0, 20) }, blockMaps: undefined };
  await page.evaluate((d) => (globalThis as unknown as PageGlobals).__QUANTLENS_HOST__?.notify('webview/dataset', { dataset: d }), filled);
  const tensor = errors.cells[5]?.tensor ?? '';
  await page.locator(`.error-cell[data-tensor="${tensor}"]`).click();
  await page.locator(`[data-block-map="${tensor}"]`).waitFor();
  const requests = ((await posted(page)) as { kind?: string; method?: string; params?: { tensor?: string } }[]).filter((m) => m.kind === 'request' && m.method === 'webview/blockMap');
  assert.deepEqual(
    requests.map((r) => r.params?.tensor),
    [tensor],
  );
  await page.close();
});

test('compare: one point per method x bits, FP baseline, table with every row', { skip }, async () => {
  const table = tiny.comparison;
  assert.ok(table !== undefined);
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'compare' });
  assert.equal(await page.locator('circle.compare-point').count(), table.rows.length);
  assert.equal(await page.locator('line.baseline-line').count(), 1);
  // Each point sits at its row's perplexity: the higher the perplexity, the higher on the chart (smaller y).
  const ys = await page.locator('circle.compare-point').evaluateAll((els) => els.map((e) => Number(e.getAttribute('cy'))));
  const order = (values: number[]): number[] => values.map((_, i) => i).sort((a, b) => (values[a] ?? 0) - (values[b] ?? 0));
  assert.deepEqual(order(ys), order(table.rows.map((r) => -r.ppl)));
  assert.equal(await page.locator('table.compare-table tbody tr').count(), table.rows.length + 1);
  await page.close();
});

test('export: CSV and SVG of a chart go to the host as webview/export', { skip }, async () => {
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'compare' });
  await page.locator('.chart[data-chart="method-comparison"] [data-export="csv"]').click();
  await page.locator('.chart[data-chart="method-comparison"] [data-export="svg"]').click();
  await page.locator('.chart[data-chart="method-comparison"] [data-export="png"]').click();
  await page.waitForFunction(() => (((globalThis as unknown as PageGlobals).__QUANTLENS_POSTED__ ?? []) as { method?: string }[]).filter((m) => m.method === 'webview/export').length === 3);
  const exports = ((await posted(page)) as { method?: string; params?: { format: string; fileName: string; content: string } }[]).filter((m) => m.method === 'webview/export').map((m) => m.params);
  const csv = exports.find((e) => e?.format === 'csv');
  assert.ok(csv !== undefined);
  assert.equal(csv.fileName, 'method-comparison.csv');
  const lines = csv.content.trim().split('\n');
  assert.equal(lines[0], 'method,bits,group,bitsPerWeight,ppl,deltaPpl,bytes,seconds');
  assert.equal(lines.length, 1 + 1 + (tiny.comparison?.rows.length ?? 0));
  const svg = exports.find((e) => e?.format === 'svg');
  assert.match(svg?.content ?? '', /^<\?xml[\s\S]*<svg[\s\S]*circle/);
  assert.doesNotMatch(svg?.content ?? '', /var\(--/, 'theme variables are resolved in the exported SVG');
  assert.match(exports.find((e) => e?.format === 'png')?.content ?? '', /^data:image\/png;base64,/);
  await page.close();
});

/** Width and height of a PNG from its IHDR chunk (bytes 16..23, big-endian). */
function pngSize(dataUrl: string): { width: number; height: number } {
  const bytes = Buffer.from(dataUrl.replace(/^data:image\/png;base64,/, ''), 'base64');
  assert.equal(bytes.subarray(1, 4).toString('latin1'), 'PNG');
  return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
}

interface ExportedSvg {
  ok: boolean;
  width: number;
  height: number;
  title: string;
  panels: number;
  stops: number;
  labels: string[];
  bars: number;
  cells: number;
  themeVariables: boolean;
}

/** Parses an exported SVG in the page (DOMParser) and counts what it holds. */
async function inspectSvg(page: Page, svg: string): Promise<ExportedSvg> {
  return page.evaluate((text) => {
    interface El {
      getAttribute(n: string): string | null;
      textContent: string | null;
      querySelectorAll(s: string): ArrayLike<El>;
      querySelector(s: string): El | null;
    }
    const doc = new (globalThis as unknown as { DOMParser: new () => { parseFromString(t: string, type: string): El } }).DOMParser().parseFromString(text, 'image/svg+xml');
    // No helper functions in here: tsx would wrap them in a __name() the page does not have.
    const root = doc.querySelector('svg');
    return {
      ok: root !== null && doc.querySelector('parsererror') === null,
      width: Number(root?.getAttribute('width')),
      height: Number(root?.getAttribute('height')),
      title: doc.querySelector('[data-export="title"]')?.textContent ?? '',
      panels: doc.querySelectorAll('svg[data-export="panel"]').length,
      stops: doc.querySelectorAll('linearGradient stop').length,
      labels: Array.from(doc.querySelectorAll('[data-export="label"]')).map((e) => e.textContent ?? ''),
      bars: doc.querySelectorAll('rect[data-count]').length,
      cells: doc.querySelectorAll('g[data-tensor]').length,
      themeVariables: text.includes('var(--'),
    };
  }, svg);
}

/** Clicks SVG and PNG export of one chart frame and returns what was posted. */
async function exportChart(page: Page, chart: string): Promise<{ svg: ExportedSvg; png: { width: number; height: number } }> {
  const before = ((await posted(page)) as { method?: string }[]).filter((m) => m.method === 'webview/export').length;
  await page.locator(`.chart[data-chart="${chart}"] [data-export="svg"]`).first().click();
  await page.locator(`.chart[data-chart="${chart}"] [data-export="png"]`).first().click();
  await page.waitForFunction((n) => (((globalThis as unknown as PageGlobals).__QUANTLENS_POSTED__ ?? []) as { method?: string }[]).filter((m) => m.method === 'webview/export').length === n, before + 2);
  const exports = ((await posted(page)) as { method?: string; params?: ExportParamsLike }[]).filter((m) => m.method === 'webview/export').slice(before).map((m) => m.params);
  const svg = exports.find((e) => e?.format === 'svg');
  const png = exports.find((e) => e?.format === 'png');
  assert.ok(svg !== undefined && png !== undefined, chart);
  assert.equal(svg.fileName, `${chart}.svg`);
  return { svg: await inspectSvg(page, svg.content), png: pngSize(png.content) };
}

interface ExportParamsLike {
  format: string;
  fileName: string;
  content: string;
}

test('export: every view\'s charts export as one self-contained SVG (title, legend, all panels) and a 2x PNG', { skip }, async () => {
  const check = (name: string, e: { svg: ExportedSvg; png: { width: number; height: number } }): void => {
    assert.ok(e.svg.ok, `${name}: the SVG parses`);
    assert.equal(e.svg.themeVariables, false, `${name}: theme variables are resolved`);
    assert.deepEqual(e.png, { width: e.svg.width * 2, height: e.svg.height * 2 }, `${name}: PNG at 2x the SVG`);
  };
  // Errors: heatmap + its colour legend (11 stops), every cell; the block map and the error histogram.
  let page = await h().open({ fixture: 'tiny-llama.json', theme: 'light', view: 'errors' });
  const errors = tiny.errors;
  assert.ok(errors !== undefined);
  const heatmap = await exportChart(page, `errors-${errors.target}`);
  check('heatmap', heatmap);
  assert.match(heatmap.svg.title, /^Quantization error: /);
  assert.equal(heatmap.svg.panels, 2, 'heatmap and legend');
  assert.equal(heatmap.svg.stops, 11);
  assert.equal(heatmap.svg.cells, errors.cells.length);
  const tensor = 'model.layers.3.mlp.down_proj.weight';
  await page.locator(`.error-cell[data-tensor="${tensor}"]`).click();
  await page.locator(`[data-block-map="${tensor}"]`).waitFor();
  const histogram = await exportChart(page, `error-histogram-${tensor}`);
  check('error histogram', histogram);
  assert.equal(histogram.svg.bars, 64);
  const blocks = await exportChart(page, `block-errors-${tensor}`);
  check('block map', blocks);
  assert.deepEqual([blocks.svg.panels, blocks.svg.stops], [2, 11], 'block map and its colour legend');
  await page.close();
  // Outliers: the small multiples export all 8 panels with their layer labels.
  page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'outliers' });
  const multiples = await exportChart(page, 'layers-weights-q');
  check('small multiples', multiples);
  assert.equal(multiples.svg.panels, 8);
  assert.deepEqual(multiples.svg.labels.filter((l) => /^L\d+$/.test(l)), ['L0', 'L1', 'L2', 'L3', 'L4', 'L5', 'L6', 'L7']);
  assert.equal(multiples.svg.bars, 8 * 64);
  const main = await exportChart(page, 'histogram-model.layers.0.self_attn.q_proj.weight');
  check('histogram', main);
  assert.equal(main.svg.panels, 1);
  await page.close();
  // Emergent: the map with its legend.
  page = await h().open({ fixture: 'tiny-llama.json', theme: 'high-contrast', view: 'emergent' });
  const chartId = await page.locator('.chart[data-chart^="emergent-"]').first().getAttribute('data-chart');
  const emergent = await exportChart(page, chartId ?? '');
  check('emergent', emergent);
  assert.ok(emergent.svg.panels >= 2 && emergent.svg.stops === 11, JSON.stringify(emergent.svg));
  // The per-dimension chart of a clicked standout.
  await page.locator('[data-standout-dim]').first().click();
  const dimChart = await page.locator('.chart[data-chart^="dim-"]').first().getAttribute('data-chart');
  const dim = await exportChart(page, dimChart ?? '');
  check('dimension detail', dim);
  assert.equal(dim.svg.panels, 1);
  await page.close();
  // Compare and overview: one chart each.
  page = await h().open({ fixture: 'tiny-llama.json', theme: 'light', view: 'compare' });
  const compare = await exportChart(page, 'method-comparison');
  check('compare', compare);
  assert.equal(compare.svg.title, 'Method comparison: perplexity per method and bit width');
  await page.close();
  page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'overview' });
  check('overview', await exportChart(page, 'size-by-target'));
  await page.close();
});

test('state: the view and threshold survive a reload through setState/getState', { skip }, async () => {
  const page = await h().open({ fixture: 'tiny-llama.json', theme: 'dark', view: 'outliers' });
  await page.locator('[data-control="threshold"] input').fill('4.5');
  await page.locator('[data-control="threshold"] input').press('Enter');
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('line.threshold') !== null);
  await page.locator('[data-tab="emergent"]').click();
  await page.locator('[data-tab="emergent"]').press('ArrowRight'); // keyboard: next tab
  await page.waitForFunction(() => (globalThis as unknown as PageGlobals).document.querySelector('.app')?.getAttribute('data-view') === 'errors');
  await page.reload();
  await page.waitForSelector('.app[data-ready="true"]');
  // The ?view= of the URL only applies when nothing was saved: the restored state wins.
  assert.equal(await page.locator('.app').getAttribute('data-view'), 'errors');
  await page.locator('[data-tab="outliers"]').click();
  assert.equal(await page.locator('[data-control="threshold"] input').inputValue(), '4.5');
  await page.close();
});

for (const theme of ['light', 'dark'] as const) {
  test(`screenshots of every view in the ${theme} theme`, { skip }, async () => {
    for (const view of ['overview', 'outliers', 'emergent', 'errors', 'compare'] as const) {
      const page = await h().open({ fixture: 'tiny-llama.json', theme, view });
      if (view === 'errors') {
        await page.locator('.error-cell[data-tensor="model.layers.7.self_attn.q_proj.weight"]').click();
        await page.locator('[data-block-map]').waitFor();
      }
      if (view === 'emergent') {
        await page.locator('[data-standout-dim]').first().click();
        await page.locator('[data-dim-detail]').waitFor();
      }
      await page.screenshot({ path: join(screenshotDir, `${theme}-${view}.png`), fullPage: true });
      assert.deepEqual(pageErrors(page), [], `${theme} ${view}`);
      await page.close();
    }
  });
}

test('screenshots in the high-contrast theme (errors, emergent)', { skip }, async () => {
  for (const view of ['errors', 'emergent'] as const) {
    const page = await h().open({ fixture: 'tiny-llama.json', theme: 'high-contrast', view });
    if (view === 'errors') {
      await page.locator('.error-cell[data-tensor="model.layers.7.self_attn.q_proj.weight"]').click();
      await page.locator('[data-block-map]').waitFor();
    }
    // Primary and secondary buttons look alike here: the pressed toggle must carry the theme's active border.
    const outlines = await page.locator('.controls vscode-button[aria-pressed]').evaluateAll((els) =>
      els.map((e) => `${e.getAttribute('aria-pressed')}:${(globalThis as unknown as { getComputedStyle(el: unknown): { outlineStyle: string } }).getComputedStyle(e).outlineStyle}`),
    );
    assert.ok(outlines.includes('true:solid') && outlines.every((o) => o === 'true:solid' || o === 'false:none'), outlines.join(' '));
    await page.screenshot({ path: join(screenshotDir, `high-contrast-${view}.png`), fullPage: true });
    assert.deepEqual(pageErrors(page), [], `high-contrast ${view}`);
    await page.close();
  }
});
