import * as vscode from 'vscode';
import type { ExtensionDeps } from '../host/deps';

/** quantlens.showLog: the "Quant Lens" log channel. */
export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.showLog', () => deps.log.show(true));
}
