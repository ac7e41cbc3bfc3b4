import * as vscode from 'vscode';
import { describeError } from '../core/errors';
import { showOutlierExplorer } from '../editor/outlierPanel';
import type { ExtensionDeps } from '../host/deps';
import { pickWorkspaceCheckpoints, resolveCheckpoint } from './checkpointTargets';

/**
 * quantlens.openOutlierExplorer (palette and editor title): the panel for the given checkpoint, else the
 * active inspector's, else one the user picks. Returns the panel's title (for tests).
 */
export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps, activeCheckpoint: () => vscode.Uri | undefined): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.openOutlierExplorer', async (arg?: unknown): Promise<string | undefined> => {
    try {
      let path: string | undefined;
      if (arg instanceof vscode.Uri) path = await resolveCheckpoint(arg);
      else path = activeCheckpoint()?.fsPath ?? (await pickWorkspaceCheckpoints('Open Outlier Explorer: pick a checkpoint', false))[0];
      if (!path) return undefined;
      const panel = await showOutlierExplorer(deps, vscode.Uri.file(path));
      return panel.title;
    } catch (error) {
      void vscode.window.showErrorMessage(`Quant Lens: ${describeError(error)}`);
      return undefined;
    }
  });
}
