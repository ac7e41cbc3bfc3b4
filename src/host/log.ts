import * as vscode from 'vscode';

/** The extension's one log, shown in the Output panel as "Quant Lens" (levels follow the user's log level). */
export function createLog(): vscode.LogOutputChannel {
  return vscode.window.createOutputChannel('Quant Lens', { log: true });
}
