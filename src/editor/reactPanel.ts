/**
 * Hosts the React bundle (dist/webview/index.js) in a webview: the HTML shell its README asks for, the
 * typed rpc endpoint over postMessage with the ready handshake, the dataset notification, exports saved
 * through a save dialog, block-map requests answered (none are kept host-side yet).
 */
import * as vscode from 'vscode';
import { RpcEndpoint } from '../protocol/rpc';
import { BlockMapRequest, DatasetNotification, ErrorCellNotification, ExportNotification, type ErrorCellParams, type ViewName, type WebviewDataset } from '../protocol/webview';
import { createNonce, escapeHtml, webviewRoot } from './webviewHtml';

export function reactShell(webview: vscode.Webview, extensionUri: vscode.Uri, title: string, view: ViewName): string {
  const nonce = createNonce();
  const root = webviewRoot(extensionUri);
  const script = webview.asWebviewUri(vscode.Uri.joinPath(root, 'index.js'));
  const css = webview.asWebviewUri(vscode.Uri.joinPath(root, 'index.css'));
  // 'unsafe-inline' styles: React and the vscode-elements components set inline styles (webview/README.md).
  const csp = [
    "default-src 'none'",
    `img-src ${webview.cspSource} data: blob:`,
    `style-src ${webview.cspSource} 'unsafe-inline'`,
    `font-src ${webview.cspSource}`,
    `script-src 'nonce-${nonce}'`,
  ].join('; ');
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>${escapeHtml(title)}</title>
<link rel="stylesheet" href="${css.toString()}">
</head><body>
<div id="root" data-view="${view}"></div>
<script nonce="${nonce}" src="${script.toString()}"></script>
</body></html>`;
}

export interface ReactWebviewHost extends vscode.Disposable {
  /** Sends (or replaces) the dataset once the webview has said it is ready. */
  showDataset(dataset: WebviewDataset, view?: ViewName): Promise<void>;
  /** One heatmap cell of a quantize run (the errors view fills in live), once the webview is ready. */
  showErrorCell(params: ErrorCellParams): Promise<void>;
}

export function hostReactWebview(webview: vscode.Webview, extensionUri: vscode.Uri, title: string, view: ViewName, log: vscode.LogOutputChannel): ReactWebviewHost {
  const endpoint = new RpcEndpoint({
    post: (message) => void webview.postMessage(message),
    listen: (handler) => {
      const subscription = webview.onDidReceiveMessage((message: unknown) => handler(message));
      return () => subscription.dispose();
    },
  });
  endpoint.handle(BlockMapRequest, () => null);
  endpoint.onNotification(ExportNotification, (params) => {
    void (async () => {
      const target = await vscode.window.showSaveDialog({ defaultUri: vscode.Uri.file(params.fileName), title: `Export ${params.fileName}` });
      if (!target) return;
      const dataUrl = /^data:[^;]+;base64,/.exec(params.content);
      const bytes = dataUrl ? Buffer.from(params.content.slice(dataUrl[0].length), 'base64') : Buffer.from(params.content, 'utf8');
      await vscode.workspace.fs.writeFile(target, bytes);
      log.info(`exported ${target.fsPath}`);
    })();
  });
  const ready = endpoint.whenReady().then(() => endpoint.ready());
  webview.html = reactShell(webview, extensionUri, title, view);
  return {
    showDataset: async (dataset, firstView) => {
      await ready;
      endpoint.notify(DatasetNotification, firstView ? { view: firstView, dataset } : { dataset });
    },
    showErrorCell: async (params) => {
      await ready;
      endpoint.notify(ErrorCellNotification, params);
    },
    dispose: () => endpoint.dispose('the webview was closed'),
  };
}
