/**
 * The host-rendered model inspector: overview cards, dtype totals, the tensor table (filterable) and
 * metadata, with buttons for analyse / quantize / compare. Also the error view for files that are not
 * checkpoints. Pure functions of a CheckpointSummary; all text goes through escapeHtml.
 */
import type { CheckpointSummary } from '../host/backend';
import { formatBytes, formatCount } from '../host/format';
import { escapeHtml } from './webviewHtml';

export const INSPECTOR_ACTIONS = ['analyse', 'quantize', 'compare', 'reopen'] as const;
export type InspectorAction = (typeof INSPECTOR_ACTIONS)[number];

/** Webview -> host message of the host-rendered pages; everything else is ignored. */
export function parseInspectorMessage(message: unknown): InspectorAction | undefined {
  if (typeof message !== 'object' || message === null) return undefined;
  const record = message as Record<string, unknown>;
  const action = record.action;
  return record.type === 'action' && typeof action === 'string' && (INSPECTOR_ACTIONS as readonly string[]).includes(action)
    ? (action as InspectorAction)
    : undefined;
}

const card = (value: string, key: string): string =>
  `<div class="card"><div class="v">${escapeHtml(value)}</div><div class="k">${escapeHtml(key)}</div></div>`;

function configNumber(config: Record<string, unknown> | null, ...keys: string[]): number | undefined {
  for (const key of keys) {
    const value = config?.[key];
    if (typeof value === 'number') return value;
  }
  return undefined;
}

export function renderOverview(summary: CheckpointSummary, fileName: string): string {
  const config = summary.config;
  const layers = configNumber(config, 'num_hidden_layers');
  const hidden = configNumber(config, 'hidden_size');
  const cards = [
    card(summary.format === 'gguf' ? 'GGUF' : 'safetensors', 'format'),
    card(summary.architecture ?? 'unknown', 'architecture'),
    card(formatCount(summary.parameterCount), 'parameters'),
    card(formatBytes(summary.totalBytes), 'tensor data'),
    card(String(summary.tensors.length), 'tensors'),
    ...(layers !== undefined ? [card(String(layers), 'layers')] : []),
    ...(hidden !== undefined ? [card(String(hidden), 'hidden size')] : []),
    ...(summary.files.length > 1 ? [card(String(summary.files.length), 'shards')] : []),
  ].join('');
  const bpw = summary.parameterCount > 0 ? (summary.totalBytes * 8) / summary.parameterCount : 0;
  const maxBytes = Math.max(1, ...summary.byDtype.map((d) => d.bytes));
  const dtypeRows = summary.byDtype
    .map(
      (d) =>
        `<tr><td>${escapeHtml(d.dtype)}</td><td class="num">${d.tensors}</td><td class="num">${formatCount(d.parameters)}</td><td class="num">${formatBytes(d.bytes)}</td><td><span class="bar" data-width="${Math.round((d.bytes / maxBytes) * 160)}"></span></td></tr>`,
    )
    .join('');
  const tensorRows = summary.tensors
    .map(
      (t) =>
        `<tr data-name="${escapeHtml(t.name.toLowerCase())}"><td><code>${escapeHtml(t.name)}</code></td><td>${escapeHtml(t.dtype)}</td><td>[${t.shape.join(', ')}]</td><td class="num">${formatCount(t.parameters)}</td><td class="num">${formatBytes(t.bytes)}</td></tr>`,
    )
    .join('');
  const metadataRows = summary.metadata
    .map(([k, v]) => `<tr><td><code>${escapeHtml(k)}</code></td><td>${escapeHtml(v)}</td></tr>`)
    .join('');
  return `<h1>${escapeHtml(fileName)}</h1>
<div class="sub">Model inspector · ${escapeHtml(summary.path)} · ${bpw.toFixed(2)} bits per weight as stored</div>
<div class="cards" id="overview">${cards}</div>
<div class="actions">
<button data-action="analyse" title="Weight statistics and outlier dimensions">Analyse (Outlier Explorer)</button>
<button data-action="quantize" class="secondary">Quantize…</button>
<button data-action="compare" class="secondary">Compare…</button>
</div>
<h2>By dtype</h2>
<table id="dtypes"><thead><tr><th>dtype</th><th class="num">tensors</th><th class="num">parameters</th><th class="num">bytes</th><th></th></tr></thead><tbody>${dtypeRows}</tbody></table>
<h2>Tensors (${summary.tensors.length})</h2>
<input type="search" id="filter" placeholder="Filter tensors by name" aria-label="Filter tensors by name">
<table id="tensors"><thead><tr><th>name</th><th>dtype</th><th>shape</th><th class="num">parameters</th><th class="num">bytes</th></tr></thead><tbody>${tensorRows}</tbody></table>
<h2>Metadata (${summary.metadata.length})</h2>
<table id="metadata"><tbody>${metadataRows}</tbody></table>`;
}

export function renderError(fileName: string, path: string, message: string): string {
  return `<h1>${escapeHtml(fileName)}</h1>
<div class="error" id="error" role="alert"><strong>Quant Lens cannot open this file as a checkpoint.</strong>
<p><code>${escapeHtml(message)}</code></p>
<p>Quant Lens reads <code>*.safetensors</code>, <code>*.gguf</code> and <code>model.safetensors.index.json</code>. The file may be truncated, corrupt, or another kind of file.</p></div>
<div class="sub">${escapeHtml(path)}</div>
<div class="actions"><button data-action="reopen" class="secondary">Open as text</button></div>`;
}

export function renderLoading(fileName: string): string {
  return `<h1>${escapeHtml(fileName)}</h1><div class="sub" id="loading">Reading the header…</div>`;
}

/** The page script: action buttons post messages; the tensor filter persists through setState. */
export const INSPECTOR_SCRIPT = `
const vscode = acquireVsCodeApi();
document.addEventListener('click', (event) => {
  const target = event.target instanceof Element ? event.target.closest('button[data-action]') : null;
  if (target) vscode.postMessage({ type: 'action', action: target.getAttribute('data-action') });
});
// Inline style attributes are blocked by the CSP; sizes are set through the CSSOM instead.
for (const bar of document.querySelectorAll('.bar[data-width]')) bar.style.width = bar.dataset.width + 'px';
const filter = document.getElementById('filter');
if (filter) {
  const apply = () => {
    const q = filter.value.trim().toLowerCase();
    for (const row of document.querySelectorAll('#tensors tbody tr')) row.style.display = !q || row.dataset.name.includes(q) ? '' : 'none';
    vscode.setState({ ...(vscode.getState() || {}), filter: filter.value });
  };
  filter.value = (vscode.getState() || {}).filter || '';
  filter.addEventListener('input', apply);
  apply();
}
`;
