/**
 * quantlens.compare — two checkpoints side by side (headers only): size, bits per weight, and per
 * tensor the dtype and bytes in each, e.g. an original against its quantized export.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { describeError } from '../core/errors';
import { escapeHtml, hostPage, webviewOptions } from '../editor/webviewHtml';
import type { CheckpointSummary } from '../host/backend';
import type { ExtensionDeps } from '../host/deps';
import { formatBytes } from '../host/format';
import { pickWorkspaceCheckpoints, resolveCheckpoint } from './checkpointTargets';

/** GGUF renames HF tensors; compare on a shared key so that both sides line up where they can. */
function tensorKey(name: string): string {
  return name
    .replace(/^model\./, '')
    .replace(/^layers\.(\d+)\./, 'blk.$1.')
    .replace(/\.weight$/, '');
}

export function renderComparison(a: CheckpointSummary, b: CheckpointSummary): string {
  const bpw = (s: CheckpointSummary): string => (s.parameterCount > 0 ? ((s.totalBytes * 8) / s.parameterCount).toFixed(2) : '–');
  const byKey = new Map(b.tensors.map((t) => [tensorKey(t.name), t]));
  const rows = a.tensors
    .map((t) => {
      const other = byKey.get(tensorKey(t.name)) ?? b.tensors.find((x) => x.name === t.name);
      return `<tr><td><code>${escapeHtml(t.name)}</code></td><td>${escapeHtml(t.dtype)}</td><td class="num">${formatBytes(t.bytes)}</td><td>${escapeHtml(other?.dtype ?? '—')}</td><td class="num">${other ? formatBytes(other.bytes) : '—'}</td></tr>`;
    })
    .join('');
  return `<h1>Compare ${escapeHtml(basename(a.path))} ↔ ${escapeHtml(basename(b.path))}</h1>
<table id="compare-summary"><thead><tr><th></th><th>${escapeHtml(basename(a.path))}</th><th>${escapeHtml(basename(b.path))}</th></tr></thead><tbody>
<tr><td>format</td><td>${a.format}</td><td>${b.format}</td></tr>
<tr><td>tensors</td><td>${a.tensors.length}</td><td>${b.tensors.length}</td></tr>
<tr><td>tensor data</td><td>${formatBytes(a.totalBytes)}</td><td>${formatBytes(b.totalBytes)}</td></tr>
<tr><td>bits per weight</td><td>${bpw(a)}</td><td>${bpw(b)}</td></tr></tbody></table>
<h2>Tensors</h2>
<table id="compare-tensors"><thead><tr><th>tensor</th><th>dtype A</th><th class="num">bytes A</th><th>dtype B</th><th class="num">bytes B</th></tr></thead><tbody>${rows}</tbody></table>`;
}

export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.compare', async (arg?: unknown, second?: unknown): Promise<string | undefined> => {
    try {
      const first = arg instanceof vscode.Uri ? await resolveCheckpoint(arg) : (await pickWorkspaceCheckpoints('Compare: first checkpoint', false))[0];
      if (!first) return undefined;
      const other = second instanceof vscode.Uri ? second.fsPath : (await pickWorkspaceCheckpoints(`Compare ${basename(first)} with…`, false))[0];
      if (!other) return undefined;
      const [a, b] = await Promise.all([deps.backend.inspect(first), deps.backend.inspect(other)]);
      const title = `Compare: ${basename(first)} ↔ ${basename(other)}`;
      const panel = vscode.window.createWebviewPanel('quantlens.compare', title, vscode.ViewColumn.Active, webviewOptions(deps.extensionUri));
      panel.webview.html = hostPage(panel.webview, title, renderComparison(a, b), '');
      return title;
    } catch (error) {
      void vscode.window.showErrorMessage(`Quant Lens: ${describeError(error)}`);
      return undefined;
    }
  });
}
