/**
 * The Outlier Explorer panel for one checkpoint: per-tensor weight statistics (kurtosis, outliers beyond
 * the threshold, the input dimensions where they sit), computed by a job off the host thread.
 * One panel per checkpoint; asking again reveals it.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { CancelledError, describeError } from '../core/errors';
import type { OutlierSummary } from '../host/backend';
import type { ExtensionDeps } from '../host/deps';
import { readSettings } from '../host/settings';
import { buildWeightDataset } from '../host/webviewDataset';
import { hostReactWebview } from './reactPanel';
import { escapeHtml, hostPage, reactBundleAvailable, webviewOptions } from './webviewHtml';

export const OUTLIER_VIEW_TYPE = 'quantlens.outlierExplorer';

const panels = new Map<string, vscode.WebviewPanel>();

export function renderOutliers(summary: OutlierSummary): string {
  const rows = [...summary.tensors].sort((a, b) => b.kurtosis - a.kurtosis);
  const totalOutliers = rows.reduce((n, r) => n + r.outlierCount, 0);
  const totalCount = rows.reduce((n, r) => n + r.count, 0);
  // Dimensions that are outlier columns in many tensors are the weight-side trace of emergent features.
  const dimVotes = new Map<number, number>();
  for (const r of rows) for (const c of r.topColumns.slice(0, 3)) if (c.count > 0) dimVotes.set(c.index, (dimVotes.get(c.index) ?? 0) + 1);
  const topDims = [...dimVotes.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8);
  const tableRows = rows
    .map((r) => {
      const share = r.count > 0 ? r.outlierCount / r.count : 0;
      return `<tr><td><code>${escapeHtml(r.name)}</code></td><td>[${r.shape.join(', ')}]</td><td class="num${r.kurtosis > 10 ? ' hot' : ''}">${r.kurtosis.toFixed(2)}</td><td class="num">${r.absMax.toPrecision(4)}</td><td class="num">${r.std.toPrecision(4)}</td><td class="num">${r.outlierCount}</td><td class="num">${(share * 100).toFixed(3)} %</td><td>${r.topColumns
        .slice(0, 3)
        .filter((c) => c.count > 0)
        .map((c) => `${c.index} (${c.count})`)
        .join(', ')}</td></tr>`;
    })
    .join('');
  return `<h1>Outlier Explorer — ${escapeHtml(basename(summary.path))}</h1>
<div class="sub">Weights beyond ${summary.thresholdSigma} σ of their tensor · ${escapeHtml(summary.device)} · ${summary.seconds.toFixed(2)} s</div>
<div class="cards" id="outlier-summary">
<div class="card"><div class="v">${rows.length}</div><div class="k">tensors analysed</div></div>
<div class="card"><div class="v">${totalOutliers}</div><div class="k">outlier weights</div></div>
<div class="card"><div class="v">${totalCount > 0 ? ((totalOutliers / totalCount) * 100).toFixed(3) : '0'} %</div><div class="k">of all weights</div></div>
</div>
<h2>Input dimensions that hold outliers in many tensors</h2>
<table id="outlier-dims"><thead><tr><th>dimension</th><th class="num">tensors where it is a top-3 outlier column</th></tr></thead><tbody>${topDims
    .map(([dim, votes]) => `<tr><td>${dim}</td><td class="num">${votes}</td></tr>`)
    .join('')}</tbody></table>
<h2>Tensors by kurtosis</h2>
<table id="outlier-tensors"><thead><tr><th>tensor</th><th>shape</th><th class="num">kurtosis</th><th class="num">|max|</th><th class="num">std</th><th class="num">outliers</th><th class="num">share</th><th>top columns (count)</th></tr></thead><tbody>${tableRows}</tbody></table>`;
}

export async function showOutlierExplorer(deps: ExtensionDeps, checkpoint: vscode.Uri): Promise<vscode.WebviewPanel> {
  const key = checkpoint.fsPath;
  const existing = panels.get(key);
  if (existing) {
    existing.reveal();
    return existing;
  }
  const title = `Outliers: ${basename(key)}`;
  const panel = vscode.window.createWebviewPanel(OUTLIER_VIEW_TYPE, title, vscode.ViewColumn.Active, webviewOptions(deps.extensionUri));
  panels.set(key, panel);
  const controller = new AbortController();
  panel.onDidDispose(() => {
    panels.delete(key);
    controller.abort();
  });
  if (reactBundleAvailable(deps.extensionUri)) {
    const host = hostReactWebview(panel.webview, deps.extensionUri, title, 'outliers', deps.log);
    panel.onDidDispose(() => host.dispose());
    try {
      const started = performance.now();
      const { dataset, skipped } = await buildWeightDataset(key, controller.signal);
      await host.showDataset(dataset, 'outliers');
      deps.log.info(`outlier explorer: ${key}: ${dataset.histograms?.length ?? 0} weight histograms in ${((performance.now() - started) / 1000).toFixed(2)} s${skipped.length > 0 ? `; too large to draw here: ${skipped.join(', ')}` : ''}`);
    } catch (error) {
      if (error instanceof CancelledError || controller.signal.aborted) return panel;
      deps.log.error(`outlier explorer: ${key}: ${describeError(error)}`);
      void vscode.window.showErrorMessage(`Quant Lens: the analysis of ${basename(key)} failed: ${describeError(error)}`);
    }
    return panel;
  }
  // Without the React bundle (a build without webview/), a host-rendered table of the worker's statistics.
  const threshold = readSettings(checkpoint).outlierThreshold;
  panel.webview.html = hostPage(panel.webview, title, `<h1>${escapeHtml(title)}</h1><div class="sub" id="loading">Computing weight statistics…</div>`, '');
  try {
    const summary = await deps.backend.analyzeOutliers(
      key,
      threshold,
      (event) => {
        if (!controller.signal.aborted) void panel.webview.postMessage({ type: 'progress', text: `${event.done}/${event.total} ${event.tensor}` });
      },
      controller.signal,
    );
    panel.webview.html = hostPage(panel.webview, title, renderOutliers(summary), '');
    deps.log.info(`outlier explorer: ${key}: ${summary.tensors.length} tensors in ${summary.seconds.toFixed(2)} s on ${summary.device}`);
  } catch (error) {
    if (error instanceof CancelledError || controller.signal.aborted) return panel;
    deps.log.error(`outlier explorer: ${key}: ${describeError(error)}`);
    panel.webview.html = hostPage(
      panel.webview,
      title,
      `<h1>${escapeHtml(title)}</h1><div class="error" id="error" role="alert"><strong>The analysis failed.</strong><p><code>${escapeHtml(describeError(error))}</code></p></div>`,
      '',
    );
  }
  return panel;
}
