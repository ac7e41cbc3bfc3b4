/**
 * Extension-host integration tests, run inside a real VS Code (code-server here, a desktop VS Code
 * through test/e2e/runDesktop.ts). The workspace is a temp copy of test/fixtures/micro-llama with
 * micro-llama-f32.gguf and a corrupt checkpoint added. In a restricted (untrusted) workspace only the
 * "restricted" suite runs.
 */
import assert from 'node:assert/strict';
import { chmod, copyFile, mkdir, readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as vscode from 'vscode';
import type { QuantLensApi } from '../../../src/extension';

const EXTENSION_ID = 'quantlens.quant-lens';

interface Outcome {
  output: string;
  outputBytes: number;
  inputBytes: number;
}

function workspaceRoot(): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  assert.ok(folder, 'the e2e workspace folder is open');
  return folder.uri.fsPath;
}

async function api(): Promise<QuantLensApi> {
  const extension = vscode.extensions.getExtension<QuantLensApi>(EXTENSION_ID);
  assert.ok(extension, `${EXTENSION_ID} is installed`);
  return extension.activate();
}

async function waitFor<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Files in a folder that look like leftovers of an interrupted write. */
async function leftovers(folder: string, stem: string): Promise<string[]> {
  return (await readdir(folder)).filter((n) => n.startsWith(stem) || n.includes('.tmp') || n.includes('.partial'));
}

/** The JSON header of a safetensors file: tensor name -> dtype and shape. */
async function safetensorsHeader(path: string): Promise<Record<string, { dtype: string; shape: number[] } | undefined>> {
  const bytes = await readFile(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  return JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; shape: number[] } | undefined>;
}

function fixture(name: string): string {
  const extension = vscode.extensions.getExtension(EXTENSION_ID);
  assert.ok(extension, `${EXTENSION_ID} is installed`);
  return join(extension.extensionPath, 'test', 'fixtures', name);
}

async function rejection(promise: Thenable<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, 'rejects with an Error');
    return error;
  }
  assert.fail('expected the command to be refused');
}

async function openInspector(api: QuantLensApi, path: string): Promise<{ status: string; error: string | undefined }> {
  const uri = vscode.Uri.file(path);
  await vscode.commands.executeCommand('vscode.openWith', uri, 'quantlens.inspector');
  return waitFor(`the inspector for ${path}`, () => {
    const state = api.inspectors().find((s) => s.uri.fsPath === path && s.status !== 'loading');
    return state ? { status: state.status, error: state.error } : undefined;
  });
}

function restrictedSuite(): void {
  suite('restricted (untrusted) workspace', () => {
    test('the workspace is untrusted and the extension still activates', async () => {
      assert.equal(vscode.workspace.isTrusted, false);
      const quantLens = await api();
      assert.ok(vscode.extensions.getExtension(EXTENSION_ID)?.isActive);
      assert.deepEqual(quantLens.jobs(), []);
    });

    test('inspecting works without trust', async () => {
      const state = await openInspector(await api(), join(workspaceRoot(), 'model.safetensors'));
      assert.equal(state.status, 'ready', state.error);
    });

    test('quantize refuses to write and leaves no file', async () => {
      const output = join(workspaceRoot(), 'untrusted-int8.safetensors');
      const error = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input: join(workspaceRoot(), 'model.safetensors'), target: 'int8', output }));
      assert.match(error.message, /trusted workspace/);
      assert.equal(await exists(output), false);
    });

    test('batch convert refuses to write', async () => {
      const error = await rejection(vscode.commands.executeCommand('quantlens.batchConvert', { inputs: [join(workspaceRoot(), 'model.safetensors')], targets: ['int8'] }));
      assert.match(error.message, /trusted workspace/);
    });
  });
}

function trustedSuite(): void {
  suite('activation and contributions', () => {
    test('activates and registers every contributed command', async () => {
      await api();
      const extension = vscode.extensions.getExtension(EXTENSION_ID);
      assert.ok(extension?.isActive);
      const manifest = extension.packageJSON as { contributes: { commands: { command: string }[] } };
      const contributed = manifest.contributes.commands.map((c) => c.command);
      assert.ok(contributed.length >= 6);
      const registered = new Set(await vscode.commands.getCommands(true));
      for (const command of contributed) assert.ok(registered.has(command), `${command} is registered`);
    });

    test('settings have their documented defaults', () => {
      const config = vscode.workspace.getConfiguration('quantlens');
      assert.equal(config.get('outlierThreshold'), 6);
      assert.equal(config.inspect('device')?.defaultValue, 'auto');
    });
  });

  suite('model inspector', () => {
    test('opens model.safetensors as the custom editor with the overview', async () => {
      const path = join(workspaceRoot(), 'model.safetensors');
      const state = await openInspector(await api(), path);
      assert.equal(state.status, 'ready', state.error);
      const tab = vscode.window.tabGroups.activeTabGroup.activeTab;
      assert.ok(tab?.input instanceof vscode.TabInputCustom, 'the active tab is a custom editor');
      assert.equal(tab.input.viewType, 'quantlens.inspector');
      assert.equal(tab.input.uri.fsPath, path);
    });

    test('opens a GGUF file', async () => {
      const state = await openInspector(await api(), join(workspaceRoot(), 'micro-llama-f32.gguf'));
      assert.equal(state.status, 'ready', state.error);
    });

    test('a corrupt checkpoint opens as an error view naming the file and the defect', async () => {
      const path = join(workspaceRoot(), 'corrupt.safetensors');
      const state = await openInspector(await api(), path);
      assert.equal(state.status, 'error');
      assert.ok(state.error?.includes('corrupt.safetensors'), state.error);
    });
  });

  suite('quantize through the command', () => {
    test('writes an INT8 safetensors file (and its quant card) that the inspector reads back', async () => {
      const input = join(workspaceRoot(), 'model.safetensors');
      const output = join(workspaceRoot(), 'out-int8.safetensors');
      const outcome = await vscode.commands.executeCommand<Outcome>('quantlens.quantize', { input, target: 'int8', output });
      assert.equal(outcome.output, output);
      const bytes = await readFile(output);
      assert.equal(bytes.length, outcome.outputBytes);
      const headerLength = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype?: string }>;
      assert.ok(Object.values(header).some((t) => t.dtype === 'I8'), 'some tensors are stored as I8');
      assert.ok(outcome.outputBytes < outcome.inputBytes, `INT8 (${outcome.outputBytes} B) is smaller than BF16 (${outcome.inputBytes} B)`);
      assert.ok(await exists(`${output}.quant.json`), 'the quant card is written beside the output');
      const state = await openInspector(await api(), output);
      assert.equal(state.status, 'ready', state.error);
    });

    test('writes a GGUF Q8_0 file that the inspector reads back', async () => {
      const input = join(workspaceRoot(), 'model.safetensors');
      const output = join(workspaceRoot(), 'out-Q8_0.gguf');
      const outcome = await vscode.commands.executeCommand<Outcome>('quantlens.quantize', { input, target: 'gguf:Q8_0', output });
      const bytes = await readFile(output);
      assert.equal(bytes.length, outcome.outputBytes);
      assert.equal(bytes.subarray(0, 4).toString('latin1'), 'GGUF');
      const state = await openInspector(await api(), output);
      assert.equal(state.status, 'ready', state.error);
    });

    test('refuses to overwrite an existing output unless asked', async () => {
      const input = join(workspaceRoot(), 'model.safetensors');
      const output = join(workspaceRoot(), 'out-int8.safetensors');
      const before = await readFile(output);
      const error = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input, target: 'int8', output }));
      assert.match(error.message, /already exists/);
      assert.deepEqual(await readFile(output), before);
    });

    test('cancelling a running job leaves no output and no partial file', async () => {
      const quantLens = await api();
      const input = join(workspaceRoot(), 'model.safetensors');
      const output = join(workspaceRoot(), 'cancelled-int8.safetensors');
      const cancelled = new Promise<void>((resolve) => {
        const sub = quantLens.onDidChangeJobs(() => {
          const job = quantLens.jobs().find((j) => j.outputPath === output);
          const runningWithProgress = job?.state === 'running' && job.progress !== undefined;
          const ended = job !== undefined && job.state !== 'queued' && job.state !== 'running';
          if (runningWithProgress || ended) {
            // Cancel mid-run, once the worker reports its first tensor (an early end fails below).
            sub.dispose();
            void vscode.commands.executeCommand('quantlens.cancelAllJobs').then(() => resolve());
          }
        });
      });
      const run = vscode.commands.executeCommand('quantlens.quantize', { input, target: 'int8', output });
      await cancelled;
      const error = await rejection(run);
      assert.match(error.name + error.message, /Cancel|cancel/);
      assert.equal(await exists(output), false);
      assert.deepEqual(await leftovers(workspaceRoot(), 'cancelled-int8'), []);
      assert.equal(quantLens.jobs().find((j) => j.outputPath === output)?.state, 'cancelled');
    });

    test('a second quantize of the same output while one runs is refused and the first completes', async () => {
      const input = join(workspaceRoot(), 'model.safetensors');
      const output = join(workspaceRoot(), 'twice-nf4.safetensors');
      // Both requests are issued in the same tick: whichever reaches the queue second finds the first live.
      const settled = await Promise.allSettled([
        vscode.commands.executeCommand<Outcome>('quantlens.quantize', { input, target: 'nf4', output }),
        vscode.commands.executeCommand<Outcome>('quantlens.quantize', { input, target: 'nf4', output, overwrite: true }),
      ]);
      const done = settled.filter((s): s is PromiseFulfilledResult<Outcome> => s.status === 'fulfilled');
      const refused = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
      assert.equal(done.length, 1, 'exactly one run completes');
      assert.equal(refused.length, 1, 'exactly one run is refused');
      assert.match(String(refused[0]?.reason instanceof Error ? refused[0].reason.message : refused[0]?.reason), /already being written/);
      assert.equal((await stat(output)).size, done[0]?.value.outputBytes);
    });

    test('an output folder that does not exist or is not writable is refused before any work', async () => {
      const input = join(workspaceRoot(), 'model.safetensors');
      const missing = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input, target: 'int8', output: join(workspaceRoot(), 'no-such-folder', 'x.safetensors') }));
      assert.match(missing.message, /not writable|does not exist/);
      const locked = join(workspaceRoot(), 'locked');
      await mkdir(locked, { recursive: true });
      await chmod(locked, 0o555);
      // root ignores permission bits: there, a folder of a read-only file system stands in.
      const target = process.getuid?.() === 0 ? '/proc/quantlens-e2e.safetensors' : join(locked, 'x.safetensors');
      const denied = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input, target: 'int8', output: target }));
      assert.match(denied.message, /not writable|does not exist/);
      assert.equal(await exists(target), false);
    });

    test('an unknown target and methods with a target they cannot write (LLM.int8() to INT4, GPTQ to INT8) are refused', async () => {
      const input = join(workspaceRoot(), 'model.safetensors');
      const unknown = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input, target: 'Q9_9', output: join(workspaceRoot(), 'x.gguf') }));
      assert.match(unknown.message, /unknown quantization target/);
      const output = join(workspaceRoot(), 'x.safetensors');
      const calibrationFile = fixture('calib-64k.txt');
      const llmInt8 = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input, target: 'int4', output, method: 'llm-int8', calibrationFile }));
      assert.match(llmInt8.message, /LLM\.int8\(\) cannot write INT4/);
      const gptqInt8 = await rejection(vscode.commands.executeCommand('quantlens.quantize', { input, target: 'int8', output, method: 'gptq', calibrationFile }));
      assert.match(gptqInt8.message, /GPTQ cannot write INT8/);
      assert.equal(await exists(output), false);
    });

    test('GPTQ with a calibration file writes INT4 g32 in the GPTQ layout and records the method in the card', async () => {
      const root = workspaceRoot();
      const input = join(root, 'model.safetensors');
      const calibrationFile = join(root, 'calib-gptq.txt');
      await copyFile(fixture('calib-64k.txt'), calibrationFile);
      const output = join(root, 'gptq-int4-g32.safetensors');
      const outcome = await vscode.commands.executeCommand<Outcome>('quantlens.quantize', {
        input, target: 'int4', groupSize: 32, output, method: 'gptq', calibrationFile, calibrationWindows: 2,
      });
      assert.equal(outcome.output, output);
      const header = await safetensorsHeader(output);
      const qweights = Object.entries(header).filter(([name]) => name.endsWith('.qweight'));
      assert.ok(qweights.length > 0, 'GPTQ layout tensors (qweight) are written');
      // micro-llama's q_proj is 64 inputs wide: 64 / 8 codes per int32 row of qweight, 64 / 32 groups of scales.
      const qProj = header['model.layers.0.self_attn.q_proj.qweight'];
      assert.deepEqual(qProj?.dtype, 'I32');
      const scales = header['model.layers.0.self_attn.q_proj.scales'];
      assert.equal(scales?.shape[0], 64 / 32);
      const card = JSON.parse(await readFile(`${output}.quant.json`, 'utf8')) as { recipe: Record<string, unknown> };
      assert.equal(card.recipe.method, 'gptq');
      assert.equal(card.recipe.calibration, calibrationFile);
      assert.equal(card.recipe.calibrationWindows, 2);
    });
  });

  suite('batch convert', () => {
    test('converts two checkpoints and reports a failing item without stopping the rest', async () => {
      const root = workspaceRoot();
      const inputs = [join(root, 'model.safetensors'), join(root, 'micro-llama-f32.gguf'), join(root, 'corrupt.safetensors')];
      const results = await vscode.commands.executeCommand<{ input: string; status: string; output: string; error?: string }[]>('quantlens.batchConvert', { inputs, targets: ['int8'] });
      assert.equal(results.length, 3);
      const byInput = new Map(results.map((r) => [r.input, r]));
      for (const ok of inputs.slice(0, 2)) {
        const r = byInput.get(ok);
        assert.equal(r?.status, 'succeeded', r?.error);
        assert.ok(r && (await stat(r.output)).size > 0);
      }
      const bad = byInput.get(inputs[2] ?? '');
      assert.equal(bad?.status, 'failed');
      assert.ok(bad?.error?.includes('corrupt.safetensors'), bad?.error);
      assert.equal(await exists(bad?.output ?? ''), false);
    });
  });

  suite('compare', () => {
    test('compares the original with its GGUF export in a panel', async () => {
      const root = workspaceRoot();
      const title = await vscode.commands.executeCommand<string>('quantlens.compare', vscode.Uri.file(join(root, 'model.safetensors')), vscode.Uri.file(join(root, 'out-Q8_0.gguf')));
      assert.equal(title, 'Compare: model.safetensors ↔ out-Q8_0.gguf');
      await waitFor('the compare tab', () => (vscode.window.tabGroups.all.some((g) => g.tabs.some((t) => t.label === title)) ? true : undefined), 10_000);
    });
  });

  suite('outlier explorer', () => {
    test('opens a panel for a checkpoint', async () => {
      const title = await vscode.commands.executeCommand<string>('quantlens.openOutlierExplorer', vscode.Uri.file(join(workspaceRoot(), 'model.safetensors')));
      assert.equal(title, 'Outliers: model.safetensors');
      await waitFor('the Outlier Explorer tab', () => (vscode.window.tabGroups.all.some((g) => g.tabs.some((t) => t.label === title)) ? true : undefined), 10_000);
    });

    test('with quantlens.calibrationFile set, the explorer gets the activation data and the last quantize\'s error heatmap', async () => {
      const root = workspaceRoot();
      const checkpoint = join(root, 'model.safetensors');
      const extension = vscode.extensions.getExtension(EXTENSION_ID);
      assert.ok(extension);
      await copyFile(join(extension.extensionPath, 'test', 'fixtures', 'calib-64k.txt'), join(root, 'calib.txt'));
      // One panel per checkpoint: close the one the previous test opened so this one opens afresh.
      for (const group of vscode.window.tabGroups.all) for (const tab of group.tabs) if (tab.label === 'Outliers: model.safetensors') await vscode.window.tabGroups.close(tab);
      const config = vscode.workspace.getConfiguration('quantlens');
      await config.update('calibrationFile', 'calib.txt', vscode.ConfigurationTarget.Workspace);
      await config.update('calibrationTokens', 128, vscode.ConfigurationTarget.Workspace);
      try {
        const title = await vscode.commands.executeCommand<string>('quantlens.openOutlierExplorer', vscode.Uri.file(checkpoint));
        assert.equal(title, 'Outliers: model.safetensors');
        const summary = await waitFor(
          'activation data in the explorer dataset',
          async () => {
            const s = await vscode.commands.executeCommand<{ activationHistograms: number } | undefined>('quantlens.outlierExplorerDataset', checkpoint);
            return s !== undefined && s.activationHistograms > 0 ? (s as DatasetSummaryLike) : undefined;
          },
          60_000,
        );
        assert.ok(summary.weightHistograms > 0, JSON.stringify(summary));
        // micro-llama: 2 layers x 5 capture sites (attention in/out, MLP in/activation, residual) + the final norm.
        assert.deepEqual(summary.outlierMaps, ['attn_in@6', 'mlp_in@6', 'residual@6']);
        assert.equal(summary.activationHistograms, 2 * 5 + 1, JSON.stringify(summary));
        // Earlier tests quantized model.safetensors in this session: its quant card gives the heatmap.
        assert.ok(summary.errorCells >= 14, JSON.stringify(summary));

        const rerun = await vscode.commands.executeCommand<DatasetSummaryLike | undefined>('quantlens.runCalibration', vscode.Uri.file(checkpoint), join(root, 'calib.txt'));
        assert.ok(rerun !== undefined && rerun.activationHistograms === summary.activationHistograms && rerun.weightHistograms === summary.weightHistograms, JSON.stringify(rerun));

        // A quantize of this checkpoint while the explorer is open: its card's cells replace the heatmap.
        const output = join(root, 'explorer-fp8.safetensors');
        await vscode.commands.executeCommand<Outcome>('quantlens.quantize', { input: checkpoint, target: 'fp8', output });
        const card = JSON.parse(await readFile(`${output}.quant.json`, 'utf8')) as { recipe: { target?: string; scheme?: string }; tensors: { quantized: boolean }[] };
        const expectedTarget = String(card.recipe.target ?? card.recipe.scheme);
        const afterQuantize = await waitFor('the new heatmap in the explorer dataset', async () => {
          const s = await vscode.commands.executeCommand<DatasetSummaryLike | undefined>('quantlens.outlierExplorerDataset', checkpoint);
          return s?.errorTarget === expectedTarget ? s : undefined;
        });
        assert.equal(afterQuantize.errorCells, card.tensors.filter((t) => t.quantized).length);
        // Those cells also reached the webview one by one while the quantize ran (not replayed from the card).
        assert.equal(afterQuantize.liveErrorCells, card.tensors.filter((t) => t.quantized).length);
        assert.equal(afterQuantize.activationHistograms, summary.activationHistograms, 'the activation data stays');
      } finally {
        await config.update('calibrationFile', undefined, vscode.ConfigurationTarget.Workspace);
        await config.update('calibrationTokens', undefined, vscode.ConfigurationTarget.Workspace);
      }
    });
  });
}

/** What quantlens.outlierExplorerDataset returns (src/host/analysisDataset.ts DatasetSummary). */
interface DatasetSummaryLike {
  weightHistograms: number;
  activationHistograms: number;
  outlierMaps: string[];
  errorCells: number;
  errorTarget: string | null;
  liveErrorCells?: number;
}

export function registerExtensionTests(): void {
  if (vscode.workspace.isTrusted) trustedSuite();
  else restrictedSuite();
}
