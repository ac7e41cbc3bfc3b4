/**
 * The model inspector: a read-only custom editor for *.safetensors, *.gguf and model.safetensors.index.json.
 * Reads headers only (through the backend), never shows binary; a file that is not a checkpoint gets a
 * clear error view. Tracks which checkpoint is active for "Open Outlier Explorer".
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { describeError } from '../core/errors';
import type { ExtensionDeps } from '../host/deps';
import { INSPECTOR_SCRIPT, parseInspectorMessage, renderError, renderLoading, renderOverview } from './overviewHtml';
import { hostPage, webviewOptions } from './webviewHtml';

export const INSPECTOR_VIEW_TYPE = 'quantlens.inspector';

class CheckpointDocument implements vscode.CustomDocument {
  constructor(readonly uri: vscode.Uri) {}
  dispose(): void {}
}

/** Result of the last render of each open inspector, for tests and for the outlier command. */
export interface InspectorState {
  uri: vscode.Uri;
  status: 'loading' | 'ready' | 'error';
  error: string | undefined;
}

export class InspectorProvider implements vscode.CustomReadonlyEditorProvider<CheckpointDocument> {
  private readonly panels = new Map<vscode.WebviewPanel, InspectorState>();
  private lastActive: vscode.Uri | undefined;

  constructor(private readonly deps: ExtensionDeps) {}

  static register(deps: ExtensionDeps): { provider: InspectorProvider; disposable: vscode.Disposable } {
    const provider = new InspectorProvider(deps);
    const disposable = vscode.window.registerCustomEditorProvider(INSPECTOR_VIEW_TYPE, provider, {
      supportsMultipleEditorsPerDocument: true,
      webviewOptions: { enableFindWidget: true },
    });
    return { provider, disposable };
  }

  /** The checkpoint in the focused inspector, or the last one focused. */
  activeCheckpoint(): vscode.Uri | undefined {
    for (const [panel, state] of this.panels) if (panel.active) return state.uri;
    return this.lastActive;
  }

  states(): InspectorState[] {
    return [...this.panels.values()].map((s) => ({ ...s }));
  }

  openCustomDocument(uri: vscode.Uri): CheckpointDocument {
    return new CheckpointDocument(uri);
  }

  async resolveCustomEditor(document: CheckpointDocument, panel: vscode.WebviewPanel): Promise<void> {
    const uri = document.uri;
    const fileName = basename(uri.fsPath);
    const state: InspectorState = { uri, status: 'loading', error: undefined };
    this.panels.set(panel, state);
    this.lastActive = uri;
    panel.onDidChangeViewState(() => {
      if (panel.active) this.lastActive = uri;
    });
    panel.onDidDispose(() => this.panels.delete(panel));
    panel.webview.options = webviewOptions(this.deps.extensionUri);
    panel.webview.onDidReceiveMessage((message: unknown) => {
      const action = parseInspectorMessage(message);
      if (action === 'analyse') void vscode.commands.executeCommand('quantlens.openOutlierExplorer', uri);
      if (action === 'quantize') void vscode.commands.executeCommand('quantlens.quantize', uri);
      if (action === 'compare') void vscode.commands.executeCommand('quantlens.compare', uri);
      if (action === 'reopen') void vscode.commands.executeCommand('vscode.openWith', uri, 'default');
    });
    panel.webview.html = hostPage(panel.webview, fileName, renderLoading(fileName), '');
    try {
      const summary = await this.deps.backend.inspect(uri.fsPath);
      panel.webview.html = hostPage(panel.webview, fileName, renderOverview(summary, fileName), INSPECTOR_SCRIPT);
      state.status = 'ready';
      this.deps.log.info(`inspector: ${uri.fsPath}: ${summary.tensors.length} tensors, ${summary.format}`);
    } catch (error) {
      const message = describeError(error);
      panel.webview.html = hostPage(panel.webview, fileName, renderError(fileName, uri.fsPath, message), INSPECTOR_SCRIPT);
      state.status = 'error';
      state.error = message;
      this.deps.log.warn(`inspector: ${uri.fsPath}: ${message}`);
    }
  }
}
