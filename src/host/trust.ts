import * as vscode from 'vscode';
import { QuantLensError } from '../core/errors';

/** Raised when a command would write files or run calibration in a workspace the user has not trusted. */
export class UntrustedWorkspaceError extends QuantLensError {
  constructor(action: string) {
    super('INVALID_ARGUMENT', `${action} needs a trusted workspace: Quant Lens only inspects checkpoints in restricted mode.`);
  }
}

/** Inspecting works everywhere; anything that writes outputs or runs calibration calls this first. */
export function requireTrustedWorkspace(action: string): void {
  if (!vscode.workspace.isTrusted) throw new UntrustedWorkspaceError(action);
}
