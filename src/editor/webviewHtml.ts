/**
 * The HTML shells of Quant Lens webviews. Every page gets CSP `default-src 'none'`, scripts only with a
 * fresh nonce from crypto.randomBytes, styles from the webview's own folder (plus the nonce'd inline
 * block), and localResourceRoots limited to the built webview folder.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import * as vscode from 'vscode';

export function createNonce(): string {
  return randomBytes(18).toString('base64url');
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The folder the React bundle is built into; the only folder a webview may load from. */
export function webviewRoot(extensionUri: vscode.Uri): vscode.Uri {
  return vscode.Uri.joinPath(extensionUri, 'dist', 'webview');
}

export function webviewOptions(extensionUri: vscode.Uri): vscode.WebviewOptions {
  return { enableScripts: true, localResourceRoots: [webviewRoot(extensionUri)] };
}

/** True once the webview engineer's bundle has been built into dist/webview/index.js. */
export function reactBundleAvailable(extensionUri: vscode.Uri): boolean {
  return existsSync(vscode.Uri.joinPath(webviewRoot(extensionUri), 'index.js').fsPath);
}

function contentSecurityPolicy(webview: vscode.Webview, nonce: string): string {
  return [
    "default-src 'none'",
    `img-src ${webview.cspSource} data:`,
    `font-src ${webview.cspSource}`,
    `style-src ${webview.cspSource} 'nonce-${nonce}'`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
}

/** A host-rendered page: `body` is trusted HTML built with escapeHtml; `script` runs under the nonce. */
export function hostPage(webview: vscode.Webview, title: string, body: string, script: string): string {
  const nonce = createNonce();
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(webview, nonce)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeHtml(title)}</title>
<style nonce="${nonce}">${HOST_STYLE}</style>
</head><body>${body}
<script nonce="${nonce}">${script}</script>
</body></html>`;
}

/** The shell the React bundle runs in: its script and stylesheet through asWebviewUri, nothing inline. */
export function reactPage(webview: vscode.Webview, extensionUri: vscode.Uri, title: string): string {
  const nonce = createNonce();
  const root = webviewRoot(extensionUri);
  const script = webview.asWebviewUri(vscode.Uri.joinPath(root, 'index.js'));
  const cssFile = vscode.Uri.joinPath(root, 'index.css');
  const css = existsSync(cssFile.fsPath) ? `<link rel="stylesheet" href="${webview.asWebviewUri(cssFile).toString()}">` : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${contentSecurityPolicy(webview, nonce)}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeHtml(title)}</title>${css}
</head><body><div id="root"></div>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body></html>`;
}

const HOST_STYLE = `
body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); padding: 0 20px 20px; }
h1 { font-size: 1.4em; margin: 16px 0 4px; } h2 { font-size: 1.1em; margin: 20px 0 6px; }
.sub { color: var(--vscode-descriptionForeground); margin-bottom: 12px; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid var(--vscode-editorWidget-border, #8884); vertical-align: top; }
th { font-weight: 600; } td.num, th.num { text-align: right; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }
.card { border: 1px solid var(--vscode-editorWidget-border, #8884); border-radius: 4px; padding: 8px 12px; min-width: 120px; }
.card .v { font-size: 1.3em; font-weight: 600; } .card .k { color: var(--vscode-descriptionForeground); font-size: 0.9em; }
.actions { display: flex; gap: 8px; margin: 12px 0; }
button { background: var(--vscode-button-background); color: var(--vscode-button-foreground); border: none; padding: 5px 12px; cursor: pointer; border-radius: 2px; }
button.secondary { background: var(--vscode-button-secondaryBackground); color: var(--vscode-button-secondaryForeground); }
button:hover { background: var(--vscode-button-hoverBackground); }
input[type=search] { background: var(--vscode-input-background); color: var(--vscode-input-foreground); border: 1px solid var(--vscode-input-border, transparent); padding: 3px 6px; width: 300px; }
.error { border-left: 4px solid var(--vscode-errorForeground); padding: 8px 14px; margin: 16px 0; background: var(--vscode-inputValidation-errorBackground, #5a1d1d33); }
.error code { white-space: pre-wrap; }
.bar { display: inline-block; height: 8px; background: var(--vscode-charts-blue, #3794ff); vertical-align: middle; }
.hot { color: var(--vscode-charts-red, #f14c4c); font-weight: 600; }
code { font-family: var(--vscode-editor-font-family); }
`;
