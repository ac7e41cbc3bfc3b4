/**
 * quantlens.quantize — "Quantize…" from the explorer, the inspector or the palette: a quick-pick flow
 * (target, group size, output path, estimate) and then a job. Scripts and tests call it with
 * `{ input, target, output?, groupSize?, overwrite? }` and get the outcome back (no UI asked).
 */
import * as vscode from 'vscode';
import { InvalidArgumentError, describeError } from '../core/errors';
import type { QuantOutcome, QuantRequest } from '../host/backend';
import type { ExtensionDeps } from '../host/deps';
import { formatBytes } from '../host/format';
import { defaultOutputPath } from '../host/outputPath';
import { checkQuantRequest, fileExists, runQuantJob, shortName } from '../host/quantJob';
import { readSettings } from '../host/settings';
import { GGUF_EXPORT_AVAILABLE, TARGETS, findTarget, type TargetInfo } from '../host/targets';
import { requireTrustedWorkspace } from '../host/trust';
import { isFolder, pickWorkspaceCheckpoints, resolveCheckpoint } from './checkpointTargets';

export interface ScriptedQuantizeArgs {
  input: string;
  target: string;
  output: string | undefined;
  groupSize: number | undefined;
  overwrite: boolean;
}

/** Accepts `{ input, target, output?, groupSize?, overwrite? }`; anything else is not a scripted call. */
export function parseScriptedArgs(arg: unknown): ScriptedQuantizeArgs | undefined {
  if (typeof arg !== 'object' || arg === null || arg instanceof vscode.Uri) return undefined;
  const r = arg as Record<string, unknown>;
  if (typeof r.input !== 'string' || typeof r.target !== 'string') return undefined;
  if (r.output !== undefined && typeof r.output !== 'string') throw new InvalidArgumentError('quantlens.quantize: output must be a string');
  if (r.groupSize !== undefined && (typeof r.groupSize !== 'number' || !Number.isInteger(r.groupSize) || r.groupSize <= 0)) {
    throw new InvalidArgumentError('quantlens.quantize: groupSize must be a positive integer');
  }
  return {
    input: r.input,
    target: r.target,
    output: r.output,
    groupSize: r.groupSize,
    overwrite: r.overwrite === true,
  };
}

export async function buildRequest(input: string, target: TargetInfo, groupSize: number | undefined, output: string | undefined): Promise<QuantRequest> {
  const settings = readSettings(vscode.Uri.file(input));
  const workspaceFolder = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(input))?.uri.fsPath;
  const group = target.usesGroupSize ? (groupSize ?? settings.groupSize) : undefined;
  return {
    input,
    target: target.id,
    output: output ?? defaultOutputPath(input, await isFolder(input), target, group, settings.outputFolderPattern, workspaceFolder),
    groupSize: group,
    device: settings.device,
    maxWorkerMemoryMB: settings.maxWorkerMemoryMB,
  };
}

async function runScripted(deps: ExtensionDeps, args: ScriptedQuantizeArgs): Promise<QuantOutcome> {
  const target = findTarget(args.target);
  if (!target) throw new InvalidArgumentError(`unknown quantization target "${args.target}"`);
  const request = await buildRequest(args.input, target, args.groupSize, args.output);
  await checkQuantRequest(request, args.overwrite ? 'yes' : 'no');
  return runQuantJob(deps, request, { overwrite: args.overwrite ? 'yes' : 'no', notify: true, showProgress: true });
}

interface TargetItem extends vscode.QuickPickItem {
  target?: TargetInfo;
}

async function pickTarget(defaultTarget: string): Promise<TargetInfo | undefined> {
  const items: TargetItem[] = [];
  const gguf: [string, (t: TargetInfo) => boolean] = ['GGUF (llama.cpp)', (t) => t.format === 'gguf'];
  const sections: [string, (t: TargetInfo) => boolean][] = [
    ...(GGUF_EXPORT_AVAILABLE ? [gguf] : []),
    ['safetensors', (t) => t.format === 'safetensors' && !t.needsCalibration],
    ...(GGUF_EXPORT_AVAILABLE ? [] : [gguf]),
    ['calibrated methods', (t) => t.needsCalibration],
  ];
  for (const [label, belongs] of sections) {
    items.push({ label, kind: vscode.QuickPickItemKind.Separator });
    for (const target of TARGETS.filter(belongs)) {
      items.push({
        label: target.available ? target.label : `$(lock) ${target.label}`,
        description: target.available ? `≈ ${target.nominalBitsPerWeight} bpw` : (target.unavailableReason ?? 'not available'),
        detail: target.detail,
        target,
      });
    }
  }
  for (;;) {
    const quickPick = vscode.window.createQuickPick<TargetItem>();
    quickPick.title = 'Quantize (1/4): target';
    quickPick.placeholder = 'Target format and scheme';
    quickPick.items = items;
    quickPick.matchOnDescription = true;
    const preselected = items.find((i) => i.target?.id === defaultTarget);
    if (preselected) quickPick.activeItems = [preselected];
    const chosen = await new Promise<TargetItem | undefined>((resolve) => {
      quickPick.onDidAccept(() => resolve(quickPick.selectedItems[0] ?? quickPick.activeItems[0]));
      quickPick.onDidHide(() => resolve(undefined));
      quickPick.show();
    });
    quickPick.dispose();
    if (!chosen?.target) return undefined;
    if (chosen.target.available) return chosen.target;
    void vscode.window.showInformationMessage(`${chosen.target.label}: ${chosen.target.unavailableReason ?? 'not available'}.`);
  }
}

async function pickGroupSize(defaultSize: number): Promise<number | undefined> {
  const sizes = [32, 64, 128, 256];
  const picked = await vscode.window.showQuickPick(
    sizes.map((size) => ({
      label: String(size),
      description: `${size === defaultSize ? 'default · ' : ''}+${((16 / size)).toFixed(3)} bpw for the F16 scale`,
      size,
    })).sort((a, b) => (a.size === defaultSize ? -1 : b.size === defaultSize ? 1 : a.size - b.size)),
    { title: 'Quantize (2/4): group size', placeHolder: 'Weights per scale: smaller groups are more accurate and larger' },
  );
  return picked?.size;
}

async function pickOutput(suggested: string): Promise<string | undefined> {
  for (;;) {
    const output = await vscode.window.showInputBox({
      title: 'Quantize (3/4): output file',
      value: suggested,
      valueSelection: [suggested.length, suggested.length],
      prompt: 'Where to write the quantized checkpoint',
      validateInput: (value) => (value.trim().length === 0 ? 'Give an output path' : undefined),
    });
    if (output === undefined) return undefined;
    if (!(await fileExists(output))) return output;
    const answer = await vscode.window.showWarningMessage(`${output} already exists. Replace it?`, { modal: true }, 'Replace', 'Choose another name');
    if (answer === 'Replace') return output;
    if (answer === undefined) return undefined;
    suggested = output;
  }
}

async function runInteractive(deps: ExtensionDeps, input: string): Promise<QuantOutcome | undefined> {
  requireTrustedWorkspace('Writing a quantized checkpoint');
  const settings = readSettings(vscode.Uri.file(input));
  const target = await pickTarget(settings.defaultTarget);
  if (!target) return undefined;
  let groupSize: number | undefined;
  if (target.usesGroupSize) {
    groupSize = await pickGroupSize(settings.groupSize);
    if (groupSize === undefined) return undefined;
  }
  const draft = await buildRequest(input, target, groupSize, undefined);
  const output = await pickOutput(draft.output);
  if (!output) return undefined;
  const request: QuantRequest = { ...draft, output };

  const plan = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Window, title: 'Quant Lens: estimating output size' },
    () => deps.backend.plan(request),
  );
  const estimate = `${formatBytes(plan.inputBytes)} → ≈ ${formatBytes(plan.outputBytes)}, ${plan.bitsPerWeight.toFixed(2)} bits per weight, ${plan.tensorCount} tensors`;
  const confirm = await vscode.window.showQuickPick(
    [
      { label: '$(play) Start quantizing', description: estimate, detail: `${shortName(input)} → ${output}`, start: true },
      { label: '$(close) Cancel', start: false },
    ],
    { title: `Quantize (4/4): ${target.label}`, placeHolder: `Estimated: ${estimate}` },
  );
  if (!confirm?.start) return undefined;
  // The file may have appeared while the user was choosing: the modal above already agreed to replace.
  if (!(await checkQuantRequest(request, 'yes'))) return undefined;
  try {
    return await runQuantJob(deps, request, { overwrite: 'yes', notify: true, showProgress: true });
  } catch {
    return undefined; // runQuantJob has shown and logged the failure or the cancellation
  }
}

export function register(_context: vscode.ExtensionContext, deps: ExtensionDeps, activeCheckpoint: () => vscode.Uri | undefined): vscode.Disposable {
  return vscode.commands.registerCommand('quantlens.quantize', async (arg?: unknown): Promise<QuantOutcome | undefined> => {
    const scripted = parseScriptedArgs(arg);
    if (scripted) return runScripted(deps, scripted);
    try {
      let input: string | undefined;
      if (arg instanceof vscode.Uri) input = await resolveCheckpoint(arg);
      else {
        const active = activeCheckpoint();
        input = active ? active.fsPath : (await pickWorkspaceCheckpoints('Quantize: pick a checkpoint', false))[0];
      }
      if (!input) return undefined;
      return await runInteractive(deps, input);
    } catch (error) {
      // Refusals before the job (trust, unknown target, unwritable folder, busy output) end up here.
      deps.log.warn(`quantize: ${describeError(error)}`);
      void vscode.window.showErrorMessage(`Quant Lens: ${describeError(error)}`);
      return undefined;
    }
  });
}
