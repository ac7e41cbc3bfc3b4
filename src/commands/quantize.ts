/**
 * quantlens.quantize — "Quantize…" from the explorer, the inspector or the palette: a quick-pick flow
 * (target or calibrated method, then its target; group size; calibration text for a method; output path,
 * estimate) and then a job. Scripts and tests call it with `{ input, target, output?, groupSize?, overwrite?,
 * method?, calibrationFile?, calibrationWindows? }` and get the outcome back (no UI asked).
 */
import * as vscode from 'vscode';
import { InvalidArgumentError, describeError } from '../core/errors';
import type { QuantMethodRequest, QuantOutcome, QuantRequest } from '../host/backend';
import { resolveCalibrationFile } from '../editor/outlierPanel';
import type { ExtensionDeps } from '../host/deps';
import { formatBytes } from '../host/format';
import { defaultOutputPath } from '../host/outputPath';
import { checkQuantRequest, fileExists, runQuantJob, shortName } from '../host/quantJob';
import { readSettings } from '../host/settings';
import { GGUF_EXPORT_AVAILABLE, METHODS, TARGETS, checkMethodTarget, findTarget, type MethodInfo, type TargetInfo } from '../host/targets';
import { requireTrustedWorkspace } from '../host/trust';
import { isFolder, pickWorkspaceCheckpoints, resolveCheckpoint } from './checkpointTargets';

export interface ScriptedQuantizeArgs {
  input: string;
  target: string;
  output: string | undefined;
  groupSize: number | undefined;
  overwrite: boolean;
  /** A calibrated method id (gptq, awq, smoothquant). */
  method: string | undefined;
  /** Calibration text: absolute or relative to the workspace folder; `quantlens.calibrationFile` when absent. */
  calibrationFile: string | undefined;
  calibrationWindows: number | undefined;
}

/** Accepts `{ input, target, output?, groupSize?, overwrite?, method?, calibrationFile?, calibrationWindows? }`; anything else is not a scripted call. */
export function parseScriptedArgs(arg: unknown): ScriptedQuantizeArgs | undefined {
  if (typeof arg !== 'object' || arg === null || arg instanceof vscode.Uri) return undefined;
  const r = arg as Record<string, unknown>;
  if (typeof r.input !== 'string' || typeof r.target !== 'string') return undefined;
  if (r.output !== undefined && typeof r.output !== 'string') throw new InvalidArgumentError('quantlens.quantize: output must be a string');
  if (r.groupSize !== undefined && (typeof r.groupSize !== 'number' || !Number.isInteger(r.groupSize) || r.groupSize <= 0)) {
    throw new InvalidArgumentError('quantlens.quantize: groupSize must be a positive integer');
  }
  if (r.method !== undefined && typeof r.method !== 'string') throw new InvalidArgumentError('quantlens.quantize: method must be a string');
  if (r.calibrationFile !== undefined && typeof r.calibrationFile !== 'string') throw new InvalidArgumentError('quantlens.quantize: calibrationFile must be a string');
  if (r.calibrationWindows !== undefined && (typeof r.calibrationWindows !== 'number' || !Number.isInteger(r.calibrationWindows) || r.calibrationWindows <= 0)) {
    throw new InvalidArgumentError('quantlens.quantize: calibrationWindows must be a positive integer');
  }
  if (r.method === undefined && (r.calibrationFile !== undefined || r.calibrationWindows !== undefined)) {
    throw new InvalidArgumentError('quantlens.quantize: calibrationFile and calibrationWindows need a method (gptq, awq, smoothquant)');
  }
  return {
    input: r.input,
    target: r.target,
    output: r.output,
    groupSize: r.groupSize,
    overwrite: r.overwrite === true,
    method: r.method,
    calibrationFile: r.calibrationFile,
    calibrationWindows: r.calibrationWindows,
  };
}

/** The calibration file a method reads: the one given, else `quantlens.calibrationFile`; relative paths from the workspace folder. */
function calibrationFileFor(input: string, given: string | undefined): string {
  const setting = given ?? readSettings(vscode.Uri.file(input)).calibrationFile;
  if (setting === '') throw new InvalidArgumentError('quantlens.quantize: a calibrated method needs a calibrationFile (or the quantlens.calibrationFile setting)');
  return resolveCalibrationFile(setting, vscode.Uri.file(input));
}

export async function buildRequest(input: string, target: TargetInfo, groupSize: number | undefined, output: string | undefined, method?: QuantMethodRequest): Promise<QuantRequest> {
  const settings = readSettings(vscode.Uri.file(input));
  const workspaceFolder = vscode.workspace.getWorkspaceFolder(vscode.Uri.file(input))?.uri.fsPath;
  const group = target.usesGroupSize ? (groupSize ?? settings.groupSize) : undefined;
  return {
    input,
    target: target.id,
    output: output ?? defaultOutputPath(input, await isFolder(input), target, group, settings.outputFolderPattern, workspaceFolder, method?.method),
    groupSize: group,
    device: settings.device,
    maxWorkerMemoryMB: settings.maxWorkerMemoryMB,
    ...(method !== undefined ? { method } : {}),
  };
}

async function runScripted(deps: ExtensionDeps, args: ScriptedQuantizeArgs): Promise<QuantOutcome> {
  const target = findTarget(args.target);
  if (!target) throw new InvalidArgumentError(`unknown quantization target "${args.target}"`);
  let method: QuantMethodRequest | undefined;
  if (args.method !== undefined) {
    // Refuse a method with a target it cannot write before the calibration file is looked for.
    const info = checkMethodTarget(args.method, target);
    method = { method: info.id, calibrationFile: calibrationFileFor(args.input, args.calibrationFile) };
    if (args.calibrationWindows !== undefined) method.calibrationWindows = args.calibrationWindows;
  }
  const request = await buildRequest(args.input, target, args.groupSize, args.output, method);
  await checkQuantRequest(request, args.overwrite ? 'yes' : 'no');
  return runQuantJob(deps, request, { overwrite: args.overwrite ? 'yes' : 'no', notify: true, showProgress: true });
}

interface TargetItem extends vscode.QuickPickItem {
  target?: TargetInfo;
  method?: MethodInfo;
}

type TargetChoice = { target: TargetInfo; method: undefined } | { target: undefined; method: MethodInfo };

function targetItem(target: TargetInfo): TargetItem {
  return {
    label: target.available ? target.label : `$(lock) ${target.label}`,
    description: target.available ? `≈ ${target.nominalBitsPerWeight} bpw` : (target.unavailableReason ?? 'not available'),
    detail: target.detail,
    target,
  };
}

/** Shows the items until an available one is accepted (an unavailable one says why); undefined when dismissed. */
async function pickAvailable(items: TargetItem[], title: string, placeholder: string, preselect: (item: TargetItem) => boolean): Promise<TargetItem | undefined> {
  for (;;) {
    const quickPick = vscode.window.createQuickPick<TargetItem>();
    quickPick.title = title;
    quickPick.ignoreFocusOut = true;
    quickPick.placeholder = placeholder;
    quickPick.items = items;
    quickPick.matchOnDescription = true;
    const preselected = items.find(preselect);
    if (preselected) quickPick.activeItems = [preselected];
    const chosen = await new Promise<TargetItem | undefined>((resolve) => {
      quickPick.onDidAccept(() => resolve(quickPick.selectedItems[0] ?? quickPick.activeItems[0]));
      quickPick.onDidHide(() => resolve(undefined));
      quickPick.show();
    });
    quickPick.dispose();
    const choice = chosen?.target ?? chosen?.method;
    if (!chosen || !choice) return undefined;
    if (choice.available) return chosen;
    void vscode.window.showInformationMessage(`${choice.label}: ${choice.unavailableReason ?? 'not available'}.`);
  }
}

/** The target of a calibrated method, among those it writes. */
async function pickMethodTarget(method: MethodInfo, defaultTarget: string): Promise<TargetInfo | undefined> {
  const items = method.targetIds.map((id) => findTarget(id)).filter((t): t is TargetInfo => t !== undefined && t.available).map(targetItem);
  const chosen = await pickAvailable(items, `Quantize with ${method.label}: output target`, `The format ${method.label}'s weights are written in`, (i) => i.target?.id === defaultTarget);
  return chosen?.target;
}

async function pickCalibrationFile(input: string, method: MethodInfo): Promise<string | undefined> {
  if (readSettings(vscode.Uri.file(input)).calibrationFile !== '') return calibrationFileFor(input, undefined);
  const picked = await vscode.window.showOpenDialog({
    title: `Quantize with ${method.label}: calibration text (UTF-8)`,
    canSelectMany: false,
    openLabel: 'Calibrate',
    filters: { Text: ['txt'], 'All files': ['*'] },
    defaultUri: vscode.workspace.getWorkspaceFolder(vscode.Uri.file(input))?.uri,
  });
  return picked?.[0]?.fsPath;
}

async function pickTarget(defaultTarget: string): Promise<TargetChoice | undefined> {
  const items: TargetItem[] = [];
  const gguf: [string, (t: TargetInfo) => boolean] = ['GGUF (llama.cpp)', (t) => t.format === 'gguf'];
  const sections: [string, (t: TargetInfo) => boolean][] = [
    ...(GGUF_EXPORT_AVAILABLE ? [gguf] : []),
    ['safetensors', (t) => t.format === 'safetensors'],
    ...(GGUF_EXPORT_AVAILABLE ? [] : [gguf]),
  ];
  for (const [label, belongs] of sections) {
    items.push({ label, kind: vscode.QuickPickItemKind.Separator });
    for (const target of TARGETS.filter(belongs)) items.push(targetItem(target));
  }
  items.push({ label: 'calibrated methods (a calibration pass first)', kind: vscode.QuickPickItemKind.Separator });
  for (const method of METHODS) {
    items.push({
      label: method.available ? method.label : `$(lock) ${method.label}`,
      description: method.available ? `calibrated · ${method.targetIds.map((id) => findTarget(id)?.label ?? id).join(', ')}` : (method.unavailableReason ?? 'not available'),
      detail: method.detail,
      method,
    });
  }
  const chosen = await pickAvailable(items, 'Quantize (1/4): target', 'Target format and scheme, or a calibrated method', (i) => i.target?.id === defaultTarget);
  if (chosen?.target) return { target: chosen.target, method: undefined };
  if (chosen?.method) return { target: undefined, method: chosen.method };
  return undefined;
}

async function pickGroupSize(defaultSize: number): Promise<number | undefined> {
  const sizes = [32, 64, 128, 256];
  const picked = await vscode.window.showQuickPick(
    sizes.map((size) => ({
      label: String(size),
      description: `${size === defaultSize ? 'default · ' : ''}+${((16 / size)).toFixed(3)} bpw for the F16 scale`,
      size,
    })).sort((a, b) => (a.size === defaultSize ? -1 : b.size === defaultSize ? 1 : a.size - b.size)),
    { title: 'Quantize (2/4): group size', placeHolder: 'Weights per scale: smaller groups are more accurate and larger', ignoreFocusOut: true },
  );
  return picked?.size;
}

async function pickOutput(suggested: string): Promise<string | undefined> {
  for (;;) {
    const output = await vscode.window.showInputBox({
      title: 'Quantize (3/4): output file',
      ignoreFocusOut: true,
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
  const choice = await pickTarget(settings.defaultTarget);
  if (!choice) return undefined;
  const target = choice.target ?? (await pickMethodTarget(choice.method, settings.defaultTarget));
  if (!target) return undefined;
  let groupSize: number | undefined;
  if (target.usesGroupSize) {
    groupSize = await pickGroupSize(settings.groupSize);
    if (groupSize === undefined) return undefined;
  }
  let method: QuantMethodRequest | undefined;
  if (choice.method) {
    // Reading the calibration text runs the model on it: a trusted workspace, like writing.
    requireTrustedWorkspace('Calibrating a model');
    const calibrationFile = await pickCalibrationFile(input, choice.method);
    if (calibrationFile === undefined) return undefined;
    method = { method: choice.method.id, calibrationFile };
  }
  const draft = await buildRequest(input, target, groupSize, undefined, method);
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
    { title: `Quantize (4/4): ${method ? `${choice.method?.label ?? method.method} → ` : ''}${target.label}`, placeHolder: `Estimated: ${estimate}${method ? `, after a calibration pass on ${shortName(method.calibrationFile)}` : ''}`, ignoreFocusOut: true },
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
