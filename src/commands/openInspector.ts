import * as vscode from 'vscode';
import { INSPECTOR_VIEW_TYPE } from '../editor/inspectorProvider';
import type { ExtensionDeps } from '../host/deps';
import { resolveCheckpoint } from './checkpointTargets';

/** quantlens.openInspector: opens a checkpoint file (or the one in a folder) in the model inspector. */
export function register(_context: vscode.ExtensionContext, _deps: ExtensionDeps): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.openInspector', async (arg?: unknown) => {
    if (!(arg instanceof vscode.Uri)) return;
    const path = await resolveCheckpoint(arg);
    if (path) await vscode.commands.executeCommand('vscode.openWith', vscode.Uri.file(path), INSPECTOR_VIEW_TYPE);
  });
}
