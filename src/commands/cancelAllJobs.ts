import * as vscode from 'vscode';
import type { ExtensionDeps } from '../host/deps';

/** quantlens.cancelAllJobs: cancels every queued and running job; returns how many were live. */
export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.cancelAllJobs', (): number => {
    const count = deps.jobs.cancelAll();
    deps.log.info(`cancel all: ${count} job(s)`);
    if (count === 0) void vscode.window.setStatusBarMessage('Quant Lens: no jobs to cancel', 3000);
    return count;
  });
}
