/**
 * Layer (b): the extension as a user meets it, in code-server driven by Playwright + Debian Chromium.
 * Opens the fixture from the explorer, right-clicks "Quantize…", walks the quick picks, watches the
 * progress notification and the result, opens the Outlier Explorer from the palette and reads it
 * inside the webview frames, runs Batch Convert on two fixtures, opens a corrupt file, and closes
 * the window during a job. Screenshots of every step go to test-output/e2e/ (the README shows them).
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { Frame, Locator, Page } from 'playwright-core';
import { microLlamaF32Gguf, sharedFile } from '../helpers/paths';
import { e2eSkipReason, launchBrowser, makeWorkspace, screenshotDir, startCodeServer, workbenchUrl, type BrowserSession, type CodeServerSession } from './harness/codeServer';

const skip = e2eSkipReason();
/** tiny-llama (38 MB) makes a job long enough to watch its progress and to close the window during it. */
const tinyLlama = sharedFile('models/tiny-llama');

const CORRUPT = Uint8Array.from([0xff, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22]);

let server: CodeServerSession | undefined;
let browser: BrowserSession | undefined;
let workspace = '';
let page: Page;
let shot = 0;

async function screenshot(name: string): Promise<void> {
  shot++;
  // Park the mouse so that no hover tooltip covers the view.
  await page.mouse.move(1390, 890);
  await page.screenshot({ path: join(screenshotDir, `${String(shot).padStart(2, '0')}-${name}.png`) });
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function explorerRow(name: string): Locator {
  return page.locator('.explorer-folders-view .monaco-list-row').filter({ has: page.locator('.label-name', { hasText: new RegExp(`^${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) }) });
}

/** Waits until the quick input shows a step whose title contains `title`. */
async function quickStep(title: string): Promise<Locator> {
  await page.locator('.quick-input-widget .quick-input-title', { hasText: title }).waitFor({ timeout: 30_000 });
  return quickInput();
}

async function quickInput(): Promise<Locator> {
  const input = page.locator('.quick-input-widget input.input');
  await input.waitFor({ state: 'visible', timeout: 20_000 });
  return input;
}

/** Types into the open quick pick and accepts the first row that contains `text`. */
async function pick(text: string): Promise<void> {
  const input = await quickInput();
  await input.fill(text);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: text }).first().waitFor({ timeout: 20_000 });
  await input.press('Enter');
}

async function runCommand(title: string, timeoutMs = 20_000): Promise<void> {
  await page.locator('.monaco-workbench').click({ position: { x: 700, y: 5 } }).catch(() => undefined);
  await page.keyboard.press('F1');
  const input = await quickInput();
  await input.fill(`>${title}`);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: title }).first().waitFor({ timeout: timeoutMs });
  await input.press('Enter');
}

/** The innermost frame of a webview that holds `selector` (webviews sit two iframes deep). */
async function webviewFrameWith(selector: string, timeoutMs = 60_000): Promise<Frame> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const frame of page.frames()) {
      if ((await frame.locator(selector).count().catch(() => 0)) > 0) return frame;
    }
    if (Date.now() > deadline) {
      await screenshot(`failed-waiting-for-${selector.replace(/\W+/g, '')}`);
      throw new Error(`no webview frame shows ${selector}; frames: ${page.frames().map((f) => f.url().slice(0, 80)).join(' | ')}`);
    }
    await page.waitForTimeout(250);
  }
}

function toast(text: string | RegExp): Locator {
  return page.locator('.notifications-toasts .notification-toast', { hasText: text });
}

async function rightClickAndChoose(row: Locator, action: string): Promise<void> {
  await row.click({ button: 'right' });
  const item = page.locator('.context-view .action-label', { hasText: action }).first();
  await item.waitFor({ timeout: 20_000 });
  await screenshot(`context-menu-${action.replace(/\W+/g, '-').replace(/-+$/, '').toLowerCase()}`);
  await item.click();
}

before(async () => {
  if (skip) return;
  await rm(screenshotDir, { recursive: true, force: true });
  await mkdir(screenshotDir, { recursive: true });
  const extra: Record<string, string | Uint8Array> = { 'micro-llama-f32.gguf': microLlamaF32Gguf, 'corrupt.safetensors': CORRUPT };
  workspace = await makeWorkspace(extra);
  if (!tinyLlama.skip) {
    await mkdir(join(workspace, 'tiny-llama'));
    for (const name of ['config.json', 'model.safetensors']) {
      await copyFile(join(tinyLlama.path, name), join(workspace, 'tiny-llama', name));
    }
  }
  server = await startCodeServer({ workspace, trusted: true });
  browser = await launchBrowser();
  page = browser.page;
  await page.goto(workbenchUrl(server));
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  await explorerRow('model.safetensors').waitFor({ timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (workspace) await rm(join(workspace, '..'), { recursive: true, force: true });
});

test('the UI end to end', { skip, timeout: 300_000 }, async (t) => {
  await t.test('opens the fixture from the explorer in the model inspector', async () => {
    // The development extension registers a while after the workbench appears (longer on a busy
    // machine): retry the palette until its command is listed, then run it.
    const deadline = Date.now() + 120_000;
    for (;;) {
      try {
        await runCommand('Quant Lens: Show Log', 5_000);
        break;
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await page.keyboard.press('Escape');
      }
    }
    await page.locator('.part.panel', { hasText: 'Quant Lens activated' }).waitFor({ timeout: 30_000 });
    await screenshot('workbench');
    await explorerRow('model.safetensors').dblclick();
    const frame = await webviewFrameWith('#tensors');
    assert.match((await frame.locator('#overview').innerText()).replace(/\s+/g, ' '), /safetensors.*LlamaForCausalLM/);
    const rows = await frame.locator('#tensors tbody tr').count();
    assert.ok(rows >= 20, `the tensor table lists the tensors (${rows})`);
    await frame.locator('#filter').fill('q_proj');
    assert.equal(await frame.locator('#tensors tbody tr:visible').count(), 2);
    await screenshot('inspector');
  });

  await t.test('a corrupt file opens as a clear error view', async () => {
    await explorerRow('corrupt.safetensors').dblclick();
    const frame = await webviewFrameWith('#error');
    assert.match(await frame.locator('#error').innerText(), /cannot open this file as a checkpoint[\s\S]*corrupt\.safetensors/);
    await screenshot('corrupt-file');
  });

  await t.test('right-click "Quantize…" walks the quick picks and runs the job with progress', async () => {
    const folder = !tinyLlama.skip;
    // A folder holding a checkpoint gets the menu too; tiny-llama takes long enough to watch.
    const row = folder ? explorerRow('tiny-llama') : explorerRow('model.safetensors');
    const output = folder ? join(workspace, 'tiny-llama-int8.safetensors') : join(workspace, 'micro-llama-int8.safetensors');
    await rightClickAndChoose(row, 'Quantize…');
    await quickStep('Quantize (1/4): target');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'INT8 (safetensors)' }).first().waitFor();
    await screenshot('quick-pick-target');
    await pick('INT8 (safetensors)');
    const outputBox = await quickStep('Quantize (3/4): output file');
    assert.equal(await outputBox.inputValue(), output);
    await screenshot('quick-pick-output');
    await outputBox.press('Enter');
    const start = page.locator('.quick-input-list .monaco-list-row', { hasText: 'Start quantizing' });
    await start.waitFor({ timeout: 30_000 });
    assert.match(await start.innerText(), /bits per weight/);
    await screenshot('quick-pick-estimate');
    await (await quickInput()).press('Enter');
    if (folder) {
      await toast(/Quantizing tiny-llama/).waitFor({ timeout: 30_000 });
      await screenshot('progress-notification');
    }
    const done = toast(/Quantized .*int8\.safetensors/);
    await done.waitFor({ timeout: 120_000 });
    assert.match(await done.innerText(), /MiB|KiB/);
    await done.locator('.monaco-button', { hasText: 'Open in Inspector' }).waitFor();
    await screenshot('quantize-result');
    assert.ok((await stat(output)).size > 0);
  });

  await t.test('"Open Outlier Explorer" from the palette shows the panel content', async () => {
    // Focus the model.safetensors inspector through its tab: the explorer rows shift while new outputs appear.
    await page.locator('.tabs-container .tab', { has: page.locator('.label-name', { hasText: /^model\.safetensors$/ }) }).first().click();
    await webviewFrameWith('#tensors');
    await runCommand('Quant Lens: Open Outlier Explorer');
    // The React bundle's outliers view: weight histograms of model.safetensors with the threshold control.
    const frame = await webviewFrameWith('.app[data-ready="true"][data-view="outliers"] .outliers-view');
    const view = frame.locator('.outliers-view');
    await view.locator('svg').first().waitFor();
    assert.match(await view.innerText(), /model\.layers\.\d+\./);
    assert.ok((await frame.locator('.small-multiples [role="listitem"], .small-multiples .multiple').count()) >= 2, 'small multiples down the layers');
    await screenshot('outlier-explorer');
  });

  await t.test('Batch Convert on two fixtures', async () => {
    await runCommand('Quant Lens: Batch Convert…');
    await quickStep('Batch Convert (1/2): inputs');
    await pick('Pick checkpoints in the workspace');
    const input = await quickStep('Batch Convert (1/2): checkpoints');
    for (const name of ['model.safetensors', 'micro-llama-f32.gguf']) {
      await input.fill(name);
      await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().locator('input[type=checkbox], .monaco-checkbox, .quick-input-list-checkbox').first().click();
    }
    await input.fill('');
    await screenshot('batch-inputs');
    await input.press('Enter');
    const targets = await quickStep('Batch Convert (2/2): targets');
    await targets.fill('NF4');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'NF4' }).first().locator('input[type=checkbox], .monaco-checkbox, .quick-input-list-checkbox').first().click();
    await screenshot('batch-targets');
    await targets.press('Enter');
    const summary = toast(/Batch Convert: 2 succeeded, 0 failed/);
    await summary.waitFor({ timeout: 120_000 });
    await page.waitForTimeout(600); // let the progress toast fade out
    await screenshot('batch-summary');
    assert.ok(await exists(join(workspace, 'micro-llama-nf4.safetensors')));
    assert.ok(await exists(join(workspace, 'micro-llama-f32-nf4.safetensors')));
  });

  await t.test('closing the window during a job leaves no partial file', { skip: tinyLlama.skip }, async () => {
    const output = join(workspace, 'tiny-llama-fp8.safetensors');
    await rightClickAndChoose(explorerRow('tiny-llama'), 'Quantize…');
    await quickStep('Quantize (1/4): target');
    await pick('FP8 E4M3');
    await (await quickStep('Quantize (3/4): output file')).press('Enter');
    await page.locator('.quick-input-list .monaco-list-row', { hasText: 'Start quantizing' }).waitFor({ timeout: 30_000 });
    await (await quickInput()).press('Enter');
    await toast(/Quantizing tiny-llama/).waitFor({ timeout: 30_000 });
    await screenshot('closing-during-job');
    // Close the window and shut VS Code down while the job runs.
    await browser?.close();
    browser = undefined;
    await server?.stop();
    server = undefined;
    const names = await readdir(workspace);
    const temp = names.filter((n) => n.endsWith('.tmp'));
    assert.deepEqual(temp, [], `no temporary files are left: ${temp.join(', ')}`);
    // Either the job was cancelled (no output) or it had finished: then the file must be whole.
    if (await exists(output)) {
      const bytes = await readFile(output);
      const headerLength = Number(bytes.readBigUInt64LE(0));
      const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { data_offsets?: [number, number] }>;
      const dataEnd = Math.max(...Object.values(header).map((t) => t.data_offsets?.[1] ?? 0));
      assert.equal(bytes.length, 8 + headerLength + dataEnd, 'a finished output is complete');
      console.log('# closing the window: the job had finished before shutdown; its output is complete');
    } else {
      console.log('# closing the window: the job was stopped; no output and no temporary file left');
    }
  });
});
