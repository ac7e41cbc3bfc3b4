import * as vscode from 'vscode';
import type { ExtensionDeps } from '../host/deps';

/** quantlens.cancelJob: cancels one queued or running job, picked from a list (or `{ id }` from a script). */
export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.cancelJob', async (arg?: unknown): Promise<boolean> => {
    if (typeof arg === 'object' && arg !== null && typeof (arg as Record<string, unknown>).id === 'number') {
      return deps.jobs.cancel((arg as { id: number }).id);
    }
    const active = deps.jobs.active();
    if (active.length === 0) {
      void vscode.window.showInformationMessage('Quant Lens: no job is queued or running.');
      return false;
    }
    const picked = await vscode.window.showQuickPick(
      active.map((job) => ({ label: job.label, description: job.state, detail: job.progress?.message, id: job.id })),
      { title: 'Cancel a Quant Lens job' },
    );
    return picked ? deps.jobs.cancel(picked.id) : false;
  });
}
