/**
 * Finding checkpoints: what a right-clicked folder holds, and a picker over the workspace when a
 * command runs from the palette without one.
 */
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import * as vscode from 'vscode';

export const CHECKPOINT_GLOB = '**/{*.safetensors,*.gguf,model.safetensors.index.json}';

export function isCheckpointFileName(name: string): boolean {
  return name.endsWith('.safetensors') || name.endsWith('.gguf') || name === 'model.safetensors.index.json';
}

/**
 * The checkpoints directly inside a folder: a sharded index stands for its shards; a HF folder with
 * model.safetensors is one checkpoint; GGUF files each count.
 */
export async function checkpointsInFolder(folder: string): Promise<string[]> {
  const names = (await readdir(folder)).sort();
  if (names.includes('model.safetensors.index.json')) {
    return [join(folder, 'model.safetensors.index.json'), ...names.filter((n) => n.endsWith('.gguf')).map((n) => join(folder, n))];
  }
  return names.filter(isCheckpointFileName).map((n) => join(folder, n));
}

export async function isFolder(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Resolves a right-clicked file or folder to one checkpoint path, asking when a folder holds several.
 * A Hugging Face folder (model.safetensors or a shard index) stands for itself, config.json included.
 */
export async function resolveCheckpoint(uri: vscode.Uri): Promise<string | undefined> {
  if (!(await isFolder(uri.fsPath))) return uri.fsPath;
  const found = await checkpointsInFolder(uri.fsPath);
  const only = found.length === 1 ? basename(found[0] ?? '') : '';
  if (only === 'model.safetensors' || only === 'model.safetensors.index.json') return uri.fsPath;
  if (found.length <= 1) {
    if (found.length === 0) void vscode.window.showWarningMessage(`${uri.fsPath} holds no .safetensors or .gguf checkpoint.`);
    return found[0];
  }
  const picked = await vscode.window.showQuickPick(
    found.map((path) => ({ label: vscode.workspace.asRelativePath(path), path })),
    { title: 'Quant Lens: which checkpoint?', placeHolder: 'The folder holds several checkpoints' },
  );
  return picked?.path;
}

/** Lets the user pick one or several checkpoints of the workspace. */
export async function pickWorkspaceCheckpoints(title: string, canPickMany: boolean): Promise<string[]> {
  const files = await vscode.workspace.findFiles(CHECKPOINT_GLOB, '**/node_modules/**', 500);
  const items = files
    .map((uri) => ({ label: vscode.workspace.asRelativePath(uri), path: uri.fsPath }))
    .sort((a, b) => a.label.localeCompare(b.label));
  if (items.length === 0) {
    const chosen = await vscode.window.showOpenDialog({ title, canSelectMany: canPickMany, filters: { Checkpoints: ['safetensors', 'gguf', 'json'] } });
    return (chosen ?? []).map((u) => u.fsPath);
  }
  if (canPickMany) {
    const picked = await vscode.window.showQuickPick(items, { title, canPickMany: true, placeHolder: 'Select checkpoints', ignoreFocusOut: true });
    return (picked ?? []).map((p) => p.path);
  }
  const picked = await vscode.window.showQuickPick(items, { title, placeHolder: 'Select a checkpoint', ignoreFocusOut: true });
  return picked ? [picked.path] : [];
}

/**
 * Keeps the context key `quantlens.checkpointFolders` (folders that directly hold a checkpoint) up to
 * date, so the explorer shows "Quantize…" on those folders.
 */
export function trackCheckpointFolders(): vscode.Disposable {
  const update = async (): Promise<void> => {
    const files = await vscode.workspace.findFiles(CHECKPOINT_GLOB, '**/node_modules/**', 2000);
    const folders = new Set<string>();
    for (const file of files) {
      const folder = vscode.Uri.joinPath(file, '..');
      folders.add(folder.fsPath);
      folders.add(folder.path);
    }
    await vscode.commands.executeCommand('setContext', 'quantlens.checkpointFolders', [...folders]);
  };
  const watcher = vscode.workspace.createFileSystemWatcher(CHECKPOINT_GLOB, false, true, false);
  let timer: NodeJS.Timeout | undefined;
  const schedule = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => void update(), 500);
  };
  watcher.onDidCreate(schedule);
  watcher.onDidDelete(schedule);
  void update();
  return new vscode.Disposable(() => {
    if (timer) clearTimeout(timer);
    watcher.dispose();
  });
}
