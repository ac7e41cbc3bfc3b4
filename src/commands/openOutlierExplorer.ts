import * as vscode from 'vscode';
import { CancelledError, describeError } from '../core/errors';
import { activeExplorerCheckpoint, explorerDatasetSummary, runCalibrationPass, showOutlierExplorer } from '../editor/outlierPanel';
import type { DatasetSummary } from '../host/analysisDataset';
import type { ExtensionDeps } from '../host/deps';
import { pickWorkspaceCheckpoints, resolveCheckpoint } from './checkpointTargets';

/**
 * quantlens.openOutlierExplorer (palette and editor title): the panel for the given checkpoint, else the
 * active inspector's, else one the user picks. Returns the panel's title (for tests).
 * quantlens.runCalibration ("Run Calibration Pass", the explorer's title bar and the palette): the
 * analyze job on a text file the user picks (or `calibrationFile`), for the given checkpoint, else the
 * focused explorer's, the active inspector's, or one the user picks. Returns what the dataset now holds.
 * quantlens.outlierExplorerDataset (not in the palette): what the explorer of a checkpoint was last sent.
 */
export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps, activeCheckpoint: () => vscode.Uri | undefined): vscode.Disposable {
  const open = vscode.commands.registerCommand('quantlens.openOutlierExplorer', async (arg?: unknown): Promise<string | undefined> => {
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
  const calibrate = vscode.commands.registerCommand('quantlens.runCalibration', async (arg?: unknown, calibrationFile?: unknown): Promise<DatasetSummary | undefined> => {
    try {
      let path: string | undefined;
      if (arg instanceof vscode.Uri) path = await resolveCheckpoint(arg);
      else path = activeExplorerCheckpoint()?.fsPath ?? activeCheckpoint()?.fsPath ?? (await pickWorkspaceCheckpoints('Run Calibration Pass: pick a checkpoint', false))[0];
      if (!path) return undefined;
      let textFile = typeof calibrationFile === 'string' ? calibrationFile : calibrationFile instanceof vscode.Uri ? calibrationFile.fsPath : undefined;
      if (textFile === undefined) {
        const picked = await vscode.window.showOpenDialog({
          title: 'Run Calibration Pass: a UTF-8 text file',
          canSelectMany: false,
          openLabel: 'Calibrate',
          filters: { Text: ['txt', 'md', 'jsonl', 'json'], 'All files': ['*'] },
          defaultUri: vscode.workspace.getWorkspaceFolder(vscode.Uri.file(path))?.uri,
        });
        textFile = picked?.[0]?.fsPath;
        if (textFile === undefined) return undefined;
      }
      return await runCalibrationPass(deps, vscode.Uri.file(path), textFile);
    } catch (error) {
      if (!(error instanceof CancelledError)) void vscode.window.showErrorMessage(`Quant Lens: ${describeError(error)}`);
      // Scripted callers (tests) see the failure too.
      if (arg !== undefined) throw error;
      return undefined;
    }
  });
  const summary = vscode.commands.registerCommand('quantlens.outlierExplorerDataset', (arg?: unknown): DatasetSummary | undefined => {
    const path = arg instanceof vscode.Uri ? arg.fsPath : typeof arg === 'string' ? arg : undefined;
    return path === undefined ? undefined : explorerDatasetSummary(path);
  });
  return vscode.Disposable.from(open, calibrate, summary);
}
