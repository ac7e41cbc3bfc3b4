import type * as vscode from 'vscode';
import type { QuantBackend } from './backend';
import type { JobQueue } from './jobQueue';

/** What activate() builds once and hands to every command and to the editor. */
export interface ExtensionDeps {
  log: vscode.LogOutputChannel;
  jobs: JobQueue;
  backend: QuantBackend;
  extensionUri: vscode.Uri;
}
