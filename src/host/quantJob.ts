/**
 * One quantize run as the user sees it: checks (trust, overwrite, writable folder), a queued job with a
 * progress notification that names the current tensor and can be cancelled, log lines, and a final
 * notification with sizes before/after and buttons to open or reveal the output.
 */
import { randomBytes } from 'node:crypto';
import { open, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import * as vscode from 'vscode';
import { CancelledError, InvalidArgumentError, IoError, describeError } from '../core/errors';
import type { QuantOutcome, QuantRequest } from './backend';
import type { ExtensionDeps } from './deps';
import { formatBytes } from './format';
import { reportQuantRun } from './quantRuns';
import { checkMethodTarget, findTarget } from './targets';
import { sweepStaleTempFiles } from './tempFiles';
import { requireTrustedWorkspace } from './trust';

export interface QuantRunOptions {
  /** Overwrite an existing output. Interactive runs ask; scripted runs must say so. */
  overwrite: 'ask' | 'yes' | 'no';
  /** Show the final notification (batch items leave that to the batch summary). */
  notify: boolean;
  /** Progress notification for this run (batch items report into the batch's own notification). */
  showProgress: boolean;
}

export async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates and removes a probe file: permission bits alone do not tell (root ignores them, and a
 * read-only or virtual file system refuses anyway).
 */
export async function probeWritableFolder(folder: string): Promise<void> {
  const probe = join(folder, `.quantlens-write-probe-${randomBytes(6).toString('hex')}`);
  try {
    const handle = await open(probe, 'wx');
    await handle.close();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new IoError(`${folder}: the output folder does not exist or is not writable (${code})`, error);
  }
  await rm(probe, { force: true });
}

/** Refusals that must happen before a job is queued: they name the file and the reason. */
export async function checkQuantRequest(request: QuantRequest, overwrite: QuantRunOptions['overwrite']): Promise<boolean> {
  requireTrustedWorkspace('Writing a quantized checkpoint');
  const target = findTarget(request.target);
  if (!target) throw new InvalidArgumentError(`unknown quantization target "${request.target}"`);
  if (!target.available) throw new InvalidArgumentError(`${target.label}: ${target.unavailableReason ?? 'not available'}`);
  if (request.method !== undefined) {
    checkMethodTarget(request.method.method, target);
    if (!(await fileExists(request.method.calibrationFile))) throw new IoError(`${request.method.calibrationFile}: the calibration file does not exist`);
  }
  if (!(await fileExists(request.input))) throw new IoError(`${request.input}: no such file or folder`);
  await probeWritableFolder(dirname(request.output));
  if (await fileExists(request.output)) {
    if (overwrite === 'no') throw new InvalidArgumentError(`${request.output} already exists; refusing to overwrite it`);
    if (overwrite === 'ask') {
      const answer = await vscode.window.showWarningMessage(
        `${request.output} already exists. Replace it?`,
        { modal: true },
        'Replace',
      );
      if (answer !== 'Replace') return false;
    }
  }
  return true;
}

/**
 * Queues the run and waits for it. Resolves with the outcome, rejects with CancelledError when cancelled
 * (no file left at the output), or with the error that stopped it.
 */
export async function runQuantJob(deps: ExtensionDeps, request: QuantRequest, options: QuantRunOptions): Promise<QuantOutcome> {
  const label = `${request.input} → ${request.target}`;
  const job = deps.jobs.enqueue({
    label,
    outputPath: request.output,
    run: async (context) => {
      for (const stale of await sweepStaleTempFiles(dirname(request.output))) deps.log.info(`removed a temp file left by an interrupted job: ${stale}`);
      deps.log.info(`quantize started: ${request.input} -> ${request.output} (${request.method ? `${request.method.method} on ${request.method.calibrationFile}, ` : ''}${request.target}${request.groupSize ? `, group ${request.groupSize}` : ''}, device ${request.device})`);
      const run = { input: request.input, output: request.output, target: request.target };
      reportQuantRun({ kind: 'started', ...run });
      return deps.backend.quantize(
        request,
        (event) => {
          reportQuantRun({ kind: 'progress', ...run, tensor: event.tensor, done: event.done, total: event.total, ...(event.result === undefined ? {} : { result: event.result }) });
          context.report({ message: `${event.tensor} (${event.done}/${event.total})`, fraction: event.total > 0 ? event.done / event.total : undefined });
          deps.log.trace(`quantize ${request.output}: ${event.done}/${event.total} ${event.tensor}`);
        },
        context.signal,
      );
    },
  });

  if (options.showProgress) {
    void vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: `Quantizing ${shortName(request.input)} to ${request.target}`, cancellable: true },
      async (progress, token) => {
        token.onCancellationRequested(() => job.cancel());
        let reported = 0;
        const stop = job.onProgress((p) => {
          const fraction = p.fraction ?? reported;
          progress.report({ message: p.message, increment: Math.max(0, (fraction - reported) * 100) });
          reported = fraction;
        });
        progress.report({ message: job.info().state === 'queued' ? 'queued behind another job' : 'starting' });
        try {
          await job.result;
        } catch {
          // reported below
        } finally {
          stop();
        }
      },
    );
  }

  try {
    const outcome = await job.result;
    const ratio = outcome.inputBytes > 0 ? outcome.outputBytes / outcome.inputBytes : 0;
    const summary = `${shortName(request.input)} → ${shortName(outcome.output)}: ${formatBytes(outcome.inputBytes)} → ${formatBytes(outcome.outputBytes)} (${(ratio * 100).toFixed(0)} %, ${outcome.bitsPerWeight.toFixed(2)} bpw) in ${outcome.seconds.toFixed(1)} s${outcome.warnings.length > 0 ? `, ${outcome.warnings.length} warning(s)` : ', no errors'}`;
    deps.log.info(`quantize finished: ${summary}`);
    reportQuantRun({ kind: 'finished', input: request.input, output: outcome.output, target: request.target });
    for (const warning of outcome.warnings) deps.log.warn(`quantize ${outcome.output}: ${warning}`);
    if (options.notify) void offerOutput(outcome.output, `Quantized ${summary}`);
    return outcome;
  } catch (error) {
    reportQuantRun({ kind: 'failed', input: request.input, output: request.output, target: request.target });
    if (error instanceof CancelledError) {
      deps.log.info(`quantize cancelled: ${request.output} (no output written)`);
      if (options.notify) void vscode.window.showInformationMessage(`Quantizing ${shortName(request.input)} was cancelled; no output was written.`);
    } else {
      deps.log.error(`quantize failed: ${request.output}: ${describeError(error)}`);
      if (error instanceof Error && error.stack) deps.log.debug(error.stack);
      if (options.notify) void vscode.window.showErrorMessage(`Quantizing ${shortName(request.input)} failed: ${describeError(error)}`, 'Show Log').then((a) => {
        if (a === 'Show Log') deps.log.show();
      });
    }
    throw error;
  }
}

export async function offerOutput(output: string, message: string): Promise<void> {
  const choice = await vscode.window.showInformationMessage(message, 'Open in Inspector', 'Reveal in Explorer');
  const uri = vscode.Uri.file(output);
  if (choice === 'Open in Inspector') await vscode.commands.executeCommand('vscode.openWith', uri, 'quantlens.inspector');
  if (choice === 'Reveal in Explorer') await vscode.commands.executeCommand('revealInExplorer', uri);
}

export function shortName(path: string): string {
  const parts = path.split(/[\\/]/).filter((p) => p.length > 0);
  return parts.slice(-1)[0] ?? path;
}
