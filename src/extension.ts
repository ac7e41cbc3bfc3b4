/**
 * Quant Lens in VS Code. activate() only wires: the log, the job queue, the backend over the core,
 * the inspector (custom editor), the status-bar item and one registration per command.
 */
import * as vscode from 'vscode';
import * as batchConvert from './commands/batchConvert';
import * as cancelAllJobs from './commands/cancelAllJobs';
import * as cancelJob from './commands/cancelJob';
import { trackCheckpointFolders } from './commands/checkpointTargets';
import * as compare from './commands/compare';
import * as openInspector from './commands/openInspector';
import * as openOutlierExplorer from './commands/openOutlierExplorer';
import * as quantize from './commands/quantize';
import * as showLog from './commands/showLog';
import { InspectorProvider, type InspectorState } from './editor/inspectorProvider';
import { CoreBackend } from './host/coreBackend';
import type { ExtensionDeps } from './host/deps';
import { JobQueue, type JobInfo } from './host/jobQueue';
import { createLog } from './host/log';
import { readSettings } from './host/settings';
import { createJobStatusBar } from './host/statusBar';
import { removeOwnTempFilesSync } from './host/tempFiles';

/** What activate() returns: a small API that tests (and other extensions) can use to observe jobs. */
export interface QuantLensApi {
  jobs(): JobInfo[];
  onDidChangeJobs(listener: () => void): vscode.Disposable;
  inspectors(): InspectorState[];
}

let shutdown: (() => Promise<void>) | undefined;

export function activate(context: vscode.ExtensionContext): QuantLensApi {
  const log = createLog();
  const jobs = new JobQueue(1);
  const backend = new CoreBackend(() => readSettings().device);
  const deps: ExtensionDeps = { log, jobs, backend, extensionUri: context.extensionUri };
  const { provider, disposable: inspectorRegistration } = InspectorProvider.register(deps);
  const activeCheckpoint = (): vscode.Uri | undefined => provider.activeCheckpoint();

  context.subscriptions.push(
    log,
    inspectorRegistration,
    createJobStatusBar(jobs),
    trackCheckpointFolders(),
    quantize.register(context, deps, activeCheckpoint),
    openOutlierExplorer.register(context, deps, activeCheckpoint),
    batchConvert.register(context, deps),
    compare.register(context, deps),
    openInspector.register(context, deps),
    cancelJob.register(context, deps),
    cancelAllJobs.register(context, deps),
    showLog.register(context, deps),
    { dispose: () => backend.dispose() },
  );
  // On shutdown running jobs are cancelled and their temp files removed before the host exits.
  shutdown = async () => {
    jobs.dispose();
    await jobs.whenIdle();
  };
  // A server stop (SIGTERM) or a hard exit gives no time for deactivate(): stop the job worker thread,
  // remove the running jobs' temp files synchronously, and once more after a short pause (a file the worker
  // was opening as the signal came is removed too), then let the signal take its default course.
  const removeTempFiles = (): void => {
    const outputs = jobs.active().map((j) => j.outputPath);
    if (outputs.length === 0) return;
    backend.stopWorkerNow();
    removeOwnTempFilesSync(outputs);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
    removeOwnTempFilesSync(outputs);
  };
  const onSigterm = (): void => {
    removeTempFiles();
    process.removeListener('SIGTERM', onSigterm);
    if (process.listenerCount('SIGTERM') === 0) process.kill(process.pid, 'SIGTERM');
  };
  process.on('SIGTERM', onSigterm);
  process.on('exit', removeTempFiles);
  context.subscriptions.push({
    dispose: () => {
      process.removeListener('SIGTERM', onSigterm);
      process.removeListener('exit', removeTempFiles);
    },
  });
  log.info(`Quant Lens activated (workspace ${vscode.workspace.isTrusted ? 'trusted' : 'restricted: inspect only'})`);
  return {
    jobs: () => jobs.list(),
    onDidChangeJobs: (listener) => new vscode.Disposable(jobs.onDidChange(listener).dispose),
    inspectors: () => provider.states(),
  };
}

export async function deactivate(): Promise<void> {
  await shutdown?.();
  shutdown = undefined;
}
