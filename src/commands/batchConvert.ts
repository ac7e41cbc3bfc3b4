/**
 * quantlens.batchConvert — several checkpoints × several targets as one queue: per-item progress in one
 * cancellable notification, failures per item without stopping the rest, a summary at the end.
 * Scripted form: `{ inputs: string[], targets: string[], overwrite? }` returns the per-item results.
 */
import { basename } from 'node:path';
import * as vscode from 'vscode';
import { CancelledError, InvalidArgumentError, describeError } from '../core/errors';
import type { QuantOutcome, QuantRequest } from '../host/backend';
import type { ExtensionDeps } from '../host/deps';
import { formatBytes } from '../host/format';
import { checkQuantRequest, runQuantJob, shortName } from '../host/quantJob';
import { TARGETS, findTarget, type TargetInfo } from '../host/targets';
import { requireTrustedWorkspace } from '../host/trust';
import { checkpointsInFolder, isFolder, pickWorkspaceCheckpoints } from './checkpointTargets';
import { buildRequest } from './quantize';

export interface BatchItemResult {
  input: string;
  target: string;
  output: string;
  status: 'succeeded' | 'failed' | 'cancelled';
  error?: string;
  outputBytes?: number;
}

interface ScriptedBatchArgs {
  inputs: string[];
  targets: string[];
  overwrite: boolean;
}

function parseScriptedBatch(arg: unknown): ScriptedBatchArgs | undefined {
  if (typeof arg !== 'object' || arg === null || arg instanceof vscode.Uri) return undefined;
  const r = arg as Record<string, unknown>;
  const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string');
  if (!strings(r.inputs) || !strings(r.targets)) return undefined;
  return { inputs: r.inputs, targets: r.targets, overwrite: r.overwrite === true };
}

/** Expands folders (explorer selection or "scan a folder") into the checkpoints they hold. */
async function expandInputs(paths: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const path of paths) {
    if (await isFolder(path)) out.push(...(await checkpointsInFolder(path)));
    else out.push(path);
  }
  return [...new Set(out)];
}

async function pickInputs(): Promise<string[]> {
  const how = await vscode.window.showQuickPick(
    [
      { label: '$(files) Pick checkpoints in the workspace', scan: false },
      { label: '$(folder) Scan a folder', scan: true },
    ],
    { title: 'Batch Convert (1/2): inputs', ignoreFocusOut: true },
  );
  if (!how) return [];
  if (!how.scan) return pickWorkspaceCheckpoints('Batch Convert (1/2): checkpoints', true);
  const folder = await vscode.window.showOpenDialog({ canSelectFiles: false, canSelectFolders: true, title: 'Folder with checkpoints' });
  return folder?.[0] ? expandInputs([folder[0].fsPath]) : [];
}

async function pickTargets(): Promise<TargetInfo[]> {
  const picked = await vscode.window.showQuickPick(
    TARGETS.filter((t) => t.available).map((t) => ({ label: t.label, description: `≈ ${t.nominalBitsPerWeight} bpw`, detail: t.detail, target: t })),
    { title: 'Batch Convert (2/2): targets', canPickMany: true, placeHolder: 'Select one or more targets', ignoreFocusOut: true },
  );
  return (picked ?? []).map((p) => p.target);
}

export async function runBatch(deps: ExtensionDeps, inputs: string[], targets: TargetInfo[], overwrite: boolean): Promise<BatchItemResult[]> {
  requireTrustedWorkspace('Batch conversion');
  const results: BatchItemResult[] = [];
  const planned: { request: QuantRequest; result: BatchItemResult }[] = [];
  for (const input of inputs) {
    for (const target of targets) {
      const request = await buildRequest(input, target, undefined, undefined);
      const result: BatchItemResult = { input, target: target.id, output: request.output, status: 'failed' };
      results.push(result);
      try {
        await checkQuantRequest(request, overwrite ? 'yes' : 'no');
        planned.push({ request, result });
      } catch (error) {
        result.error = describeError(error);
      }
    }
  }
  deps.log.info(`batch: ${results.length} item(s), ${planned.length} queued`);

  await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Batch Convert: ${planned.length} item(s)`, cancellable: true },
    async (progress, token) => {
      let finished = 0;
      const runs = planned.map(async ({ request, result }, index) => {
        try {
          const outcome: QuantOutcome = await runQuantJob(deps, request, { overwrite: overwrite ? 'yes' : 'no', notify: false, showProgress: false });
          result.status = 'succeeded';
          result.outputBytes = outcome.outputBytes;
        } catch (error) {
          result.status = error instanceof CancelledError ? 'cancelled' : 'failed';
          result.error = describeError(error);
        } finally {
          finished++;
          progress.report({ increment: 100 / Math.max(1, planned.length), message: `${finished}/${planned.length} done · last: ${basename(request.output)} ${result.status}` });
        }
        return index;
      });
      const outputs = new Set(planned.map((p) => p.request.output));
      const cancelAll = token.onCancellationRequested(() => {
        for (const job of deps.jobs.active()) if (outputs.has(job.outputPath)) deps.jobs.cancel(job.id);
      });
      const progressSub = deps.jobs.onDidChange(() => {
        const running = deps.jobs.active().find((j) => j.state === 'running' && outputs.has(j.outputPath));
        if (running?.progress) progress.report({ message: `${finished + 1}/${planned.length} ${shortName(running.outputPath)}: ${running.progress.message}` });
      });
      await Promise.all(runs);
      cancelAll.dispose();
      progressSub.dispose();
    },
  );

  const count = (s: BatchItemResult['status']): number => results.filter((r) => r.status === s).length;
  const summary = `Batch Convert: ${count('succeeded')} succeeded, ${count('failed')} failed, ${count('cancelled')} cancelled`;
  deps.log.info(summary);
  for (const r of results) {
    const line = `batch ${r.status}: ${r.input} -> ${r.output}${r.outputBytes !== undefined ? ` (${formatBytes(r.outputBytes)})` : ''}${r.error ? `: ${r.error}` : ''}`;
    if (r.status === 'failed') deps.log.error(line);
    else deps.log.info(line);
  }
  const show = count('failed') > 0 ? vscode.window.showWarningMessage : vscode.window.showInformationMessage;
  void show(`${summary}.`, 'Show Log').then((choice) => {
    if (choice === 'Show Log') deps.log.show();
  });
  return results;
}

export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.batchConvert', async (arg?: unknown, selection?: unknown): Promise<BatchItemResult[] | undefined> => {
    const scripted = parseScriptedBatch(arg);
    if (scripted) {
      const targets = scripted.targets.map((id) => {
        const target = findTarget(id);
        if (!target?.available) throw new InvalidArgumentError(`unknown or unavailable target "${id}"`);
        return target;
      });
      return runBatch(deps, await expandInputs(scripted.inputs), targets, scripted.overwrite);
    }
    try {
      requireTrustedWorkspace('Batch conversion');
      const selected = Array.isArray(selection) ? selection.filter((u): u is vscode.Uri => u instanceof vscode.Uri) : arg instanceof vscode.Uri ? [arg] : [];
      const inputs = selected.length > 0 ? await expandInputs(selected.map((u) => u.fsPath)) : await pickInputs();
      if (inputs.length === 0) return undefined;
      const targets = await pickTargets();
      if (targets.length === 0) return undefined;
      return await runBatch(deps, inputs, targets, false);
    } catch (error) {
      void vscode.window.showErrorMessage(`Quant Lens: ${describeError(error)}`);
      return undefined;
    }
  });
}
