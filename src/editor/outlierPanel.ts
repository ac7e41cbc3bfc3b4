/**
 * The Outlier Explorer panel for one checkpoint: per-tensor weight statistics (kurtosis, outliers beyond
 * the threshold, the input dimensions where they sit), computed off the host thread; with a calibration
 * file (`quantlens.calibrationFile`, or "Run Calibration Pass"), the activation side from the analyze job
 * in the worker (activation histograms, emergent-feature maps); with a quant card of this session's last
 * quantize of the checkpoint, the error heatmap. One panel per checkpoint; asking again reveals it.
 */
import { existsSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import * as vscode from 'vscode';
import { CancelledError, IoError, describeError } from '../core/errors';
import type { OutlierSummary } from '../host/backend';
import type { ExtensionDeps } from '../host/deps';
import { describeDatasetSummary, errorPartsForOutput, findQuantCardOutput, summarizeDataset, withActivations, type DatasetSummary } from '../host/analysisDataset';
import { LiveHeatmapFeed } from '../host/liveHeatmap';
import { lastQuantOutput, onQuantRun } from '../host/quantRuns';
import { readSettings } from '../host/settings';
import { requireTrustedWorkspace } from '../host/trust';
import { buildWeightDataset } from '../host/webviewDataset';
import type { ViewName, WebviewDataset } from '../protocol/webview';
import { hostReactWebview, type ReactWebviewHost } from './reactPanel';
import { escapeHtml, hostPage, reactBundleAvailable, webviewOptions } from './webviewHtml';

export const OUTLIER_VIEW_TYPE = 'quantlens.outlierExplorer';

/** One open React explorer: what it has been sent, and the calibration pass running for it. */
interface Explorer {
  checkpoint: string;
  panel: vscode.WebviewPanel;
  host: ReactWebviewHost;
  dataset: WebviewDataset | undefined;
  /** Settles when the weight dataset has been sent (or failed). */
  loaded: Promise<void>;
  calibration: AbortController | undefined;
  liveHeatmap: LiveHeatmapFeed | undefined;
}

const panels = new Map<string, vscode.WebviewPanel>();
const explorers = new Map<string, Explorer>();

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
    let markLoaded = (): void => undefined;
    const explorer: Explorer = { checkpoint: key, panel, host, dataset: undefined, loaded: new Promise<void>((r) => (markLoaded = r)), calibration: undefined, liveHeatmap: undefined };
    explorers.set(key, explorer);
    // While a quantize of this checkpoint runs, each finished tensor becomes a heatmap cell at once; at the
    // end the run's quant card replaces the heatmap (block maps and error histograms come with it).
    const liveHeatmap = new LiveHeatmapFeed(key, (params) => void explorer.host.showErrorCell(params));
    explorer.liveHeatmap = liveHeatmap;
    const quantRuns = onQuantRun((event) => {
      liveHeatmap.handle(event);
      if (event.input !== resolve(key) || event.kind !== 'finished') return;
      deps.log.info(`outlier explorer: ${key}: ${liveHeatmap.cellsOfLastRun} heatmap cells sent while the quantize ran`);
      void showQuantCard(deps, explorer, event.output);
    });
    panel.onDidDispose(() => {
      explorers.delete(key);
      explorer.calibration?.abort();
      quantRuns.dispose();
      host.dispose();
    });
    try {
      const started = performance.now();
      const { dataset, skipped } = await buildWeightDataset(key, controller.signal);
      await send(deps, explorer, dataset, 'outliers');
      deps.log.info(`outlier explorer: ${key}: ${dataset.histograms?.length ?? 0} weight histograms in ${((performance.now() - started) / 1000).toFixed(2)} s${skipped.length > 0 ? `; too large to draw here: ${skipped.join(', ')}` : ''}`);
    } catch (error) {
      markLoaded();
      if (error instanceof CancelledError || controller.signal.aborted) return panel;
      deps.log.error(`outlier explorer: ${key}: ${describeError(error)}`);
      void vscode.window.showErrorMessage(`Quant Lens: the analysis of ${basename(key)} failed: ${describeError(error)}`);
      return panel;
    }
    markLoaded();
    // This session's last quantize of the checkpoint, else the newest card beside it (an earlier session's).
    const lastOutput = lastQuantOutput(key) ?? (await findQuantCardOutput(key, [dirname(key), key]));
    if (lastOutput !== undefined) await showQuantCard(deps, explorer, lastOutput);
    const calibrationFile = readSettings(checkpoint).calibrationFile;
    if (calibrationFile !== '' && vscode.workspace.isTrusted) {
      try {
        runCalibration(deps, explorer, resolveCalibrationFile(calibrationFile, checkpoint), undefined).catch((error: unknown) => {
          if (!(error instanceof CancelledError)) void vscode.window.showErrorMessage(`Quant Lens: the calibration pass on ${basename(key)} failed: ${describeError(error)}`);
        });
      } catch (error) {
        deps.log.error(`outlier explorer: ${key}: quantlens.calibrationFile: ${describeError(error)}`);
        void vscode.window.showErrorMessage(`Quant Lens: quantlens.calibrationFile: ${describeError(error)}`);
      }
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

/** Sends the dataset and remembers it (for later merges and for `outlierExplorerDataset`). */
async function send(deps: ExtensionDeps, explorer: Explorer, dataset: WebviewDataset, view?: ViewName): Promise<void> {
  explorer.dataset = dataset;
  await explorer.host.showDataset(dataset, view);
  deps.log.info(`outlier explorer: ${explorer.checkpoint}: dataset sent: ${describeDatasetSummary(summarizeDataset(dataset))}`);
}

/** The quant card of `output` as the error heatmap (the cells of a run in progress came live before it). */
async function showQuantCard(deps: ExtensionDeps, explorer: Explorer, output: string): Promise<void> {
  try {
    await explorer.loaded;
    const base = explorer.dataset;
    if (base === undefined) return;
    const parts = await errorPartsForOutput(output, base.overview?.layers ?? 0);
    if (parts === undefined || parts.errors === undefined) {
      deps.log.info(`outlier explorer: ${explorer.checkpoint}: no quant card beside ${output}`);
      return;
    }
    await send(deps, explorer, { ...(explorer.dataset ?? base), ...parts });
  } catch (error) {
    deps.log.error(`outlier explorer: ${explorer.checkpoint}: the quant card of ${output}: ${describeError(error)}`);
  }
}

/** A calibration file setting: absolute, or relative to the checkpoint's workspace folder (else the first one). */
export function resolveCalibrationFile(setting: string, checkpoint: vscode.Uri): string {
  const folder = vscode.workspace.getWorkspaceFolder(checkpoint) ?? vscode.workspace.workspaceFolders?.[0];
  const path = isAbsolute(setting) ? setting : join(folder?.uri.fsPath ?? process.cwd(), setting);
  if (!existsSync(path)) throw new IoError(`${path}: the calibration file does not exist`);
  return path;
}

/**
 * Runs the analyze job on `calibrationFile` for the explorer (a progress notification with Cancel; a
 * new run replaces one still going) and sends the dataset with the activation data.
 */
async function runCalibration(deps: ExtensionDeps, explorer: Explorer, calibrationFile: string, view: ViewName | undefined): Promise<DatasetSummary | undefined> {
  explorer.calibration?.abort();
  const controller = new AbortController();
  explorer.calibration = controller;
  const { checkpoint } = explorer;
  const tokens = readSettings(vscode.Uri.file(checkpoint)).calibrationTokens;
  const started = performance.now();
  try {
    const report = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Calibration pass on ${basename(checkpoint)} (${tokens} tokens of ${basename(calibrationFile)})`, cancellable: true },
      async (progress, token) => {
        token.onCancellationRequested(() => controller.abort());
        let reported = 0;
        return deps.backend.analyzeActivations(
          checkpoint,
          calibrationFile,
          tokens,
          (event) => {
            const fraction = event.total > 0 ? event.done / event.total : 0;
            progress.report({ message: event.tensor, increment: Math.max(0, (fraction - reported) * 100) });
            reported = Math.max(reported, fraction);
          },
          controller.signal,
        );
      },
    );
    await explorer.loaded;
    if (controller.signal.aborted || explorer.dataset === undefined) return undefined;
    deps.log.info(`outlier explorer: ${checkpoint}: calibration pass on ${calibrationFile}: ${report.tokens} tokens (${report.windows} x ${report.windowTokens}) in ${((performance.now() - started) / 1000).toFixed(2)} s`);
    await send(deps, explorer, withActivations(explorer.dataset, report), view);
    return summarizeDataset(explorer.dataset);
  } catch (error) {
    if (error instanceof CancelledError || controller.signal.aborted) {
      deps.log.info(`outlier explorer: ${checkpoint}: calibration pass cancelled`);
      throw new CancelledError();
    }
    deps.log.error(`outlier explorer: ${checkpoint}: calibration pass on ${calibrationFile}: ${describeError(error)}`);
    throw error;
  } finally {
    if (explorer.calibration === controller) explorer.calibration = undefined;
  }
}

/**
 * "Run Calibration Pass": opens (or reveals) the explorer of `checkpoint`, runs the analyze job on
 * `calibrationFile` and shows the emergent-feature view. Resolves with what the dataset now holds.
 */
export async function runCalibrationPass(deps: ExtensionDeps, checkpoint: vscode.Uri, calibrationFile: string): Promise<DatasetSummary | undefined> {
  requireTrustedWorkspace('A calibration pass');
  if (!reactBundleAvailable(deps.extensionUri)) throw new IoError(`${deps.extensionUri.fsPath}: the webview bundle is missing (run the build): the activation views need it`);
  await showOutlierExplorer(deps, checkpoint);
  const explorer = explorers.get(checkpoint.fsPath);
  if (explorer === undefined) return undefined;
  return runCalibration(deps, explorer, calibrationFile, 'emergent');
}

/** The checkpoint of the Outlier Explorer panel that has focus, if one has. */
export function activeExplorerCheckpoint(): vscode.Uri | undefined {
  for (const explorer of explorers.values()) if (explorer.panel.active) return vscode.Uri.file(explorer.checkpoint);
  return undefined;
}

/** What the explorer of `checkpoint` was last sent (tests and the log). */
export function explorerDatasetSummary(checkpoint: string): DatasetSummary | undefined {
  const explorer = explorers.get(checkpoint);
  if (explorer?.dataset === undefined) return undefined;
  return { ...summarizeDataset(explorer.dataset), liveErrorCells: explorer.liveHeatmap?.cellsOfLastRun ?? 0 };
}
