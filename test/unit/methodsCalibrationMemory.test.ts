/**
 * Issue #6 "calibration memory bounded by one layer": calibrated layers leave memory as each layer finishes
 * (spilled to a temporary file, read back by row range by the method checkpoint the writers consume).
 * - The outputs are those of the in-memory path bit for bit (both paths run here: written files' sha256, compare's perplexities).
 * - The spill file exists beside the output while calibrating and is gone after success, cancel and error.
 * - Peak RSS of a calibration over a generated LLaMA with many small layers (child process) stays near one layer's
 *   working set with the spill, and grows by the whole model's weights with the layers kept in memory.
 * This file is also the child of the memory test (QUANTLENS_CALIBRATION_MEMORY_CHILD).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CancelledError, InvalidArgumentError } from '../../src/core/errors';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel } from '../../src/core/model/forward';
import { compareMethods, loadTokenizer, textWindows } from '../../src/core/methods/compare';
import { LAYER_TENSORS, LayerSpillFile, layerTensorShape } from '../../src/core/methods/calibrate';
import { checkpointWithMethodWeights } from '../../src/core/methods/methodCheckpoint';
import { runMethodQuantize, type MethodQuantizeSpec } from '../../src/core/methods/methodQuantize';
import { disposeMethodRun, quantizeWithMethod } from '../../src/core/methods/quantizeWithMethod';
import { generateLlama, type GeneratedLlamaShape } from '../../bench/generateLlama';
import { fixturesDir, microLlamaDir, repoRoot } from '../helpers/paths';
import { withTempDir } from '../helpers/scoped';

const CHILD_ENV = 'QUANTLENS_CALIBRATION_MEMORY_CHILD';
const calibFile = join(fixturesDir, 'calib-64k.txt');
const evalFile = join(fixturesDir, 'eval.txt');

function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Spill files of this process (temporaryPathFor names carry the pid). */
function spillFilesIn(dir: string): string[] {
  return readdirSync(dir).filter((f) => f.includes('calibration') && f.includes(`.${process.pid}.`) && f.endsWith('.tmp'));
}

const CASES: { target: string; spec: MethodQuantizeSpec }[] = [
  { target: 'int4-g32', spec: { method: 'awq', calib: calibFile, calibWindows: 4, ctx: 128 } },
  { target: 'int8', spec: { method: 'smoothquant', calib: calibFile, calibWindows: 4, ctx: 128 } },
  { target: 'Q4_0', spec: { method: 'awq', calib: calibFile, calibWindows: 4, ctx: 128 } },
  { target: 'Q8_0', spec: { method: 'smoothquant', calib: calibFile, calibWindows: 4, ctx: 128 } },
  { target: 'int4-g32', spec: { method: 'gptq', calib: calibFile, calibWindows: 4, ctx: 128 } },
  { target: 'Q4_0', spec: { method: 'gptq', calib: calibFile, calibWindows: 4, ctx: 128 } },
  { target: 'int8', spec: { method: 'llm-int8', calib: calibFile, calibWindows: 4, ctx: 128 } },
];

if (process.env[CHILD_ENV] === undefined) {
  test('quantize --method on micro-llama: the files written through the spill are the in-memory path\'s, bit for bit; no spill file left', async () => {
    await withTempDir(async (dir) => {
      for (const { target, spec } of CASES) {
        const ext = target.startsWith('Q') ? 'gguf' : 'safetensors';
        const spilled = join(dir, `${spec.method}-${target}-spilled.${ext}`);
        const inMemory = join(dir, `${spec.method}-${target}-memory.${ext}`);
        let spillSeen = 0;
        const a = await runMethodQuantize({ input: microLlamaDir, target, output: spilled }, spec, {
          onCalibration: () => {
            spillSeen = Math.max(spillSeen, spillFilesIn(dir).length);
          },
        });
        const b = await runMethodQuantize({ input: microLlamaDir, target, output: inMemory }, spec, { keepLayersInMemory: true });
        assert.equal(sha256(spilled), sha256(inMemory), `${spec.method} --to ${target}: same bytes`);
        assert.equal(a.run.layers, null, `${spec.method}: no layers in memory`);
        assert.ok(b.run.layers !== null && b.run.layers.length === 2);
        // AWQ / SmoothQuant spill beside the output while calibrating; GPTQ / LLM.int8() keep no layers at all.
        const spills = spec.method === 'awq' || spec.method === 'smoothquant';
        assert.equal(spillSeen, spills ? 1 : 0, `${spec.method}: spill file beside the output during calibration`);
        assert.deepEqual(spillFilesIn(dir), [], `${spec.method}: spill file removed`);
      }
    });
  });

  test('quantize --method awq: cancel during calibration, cancel while writing, and a writer error leave no spill file and no output', async () => {
    await withTempDir(async (dir) => {
      const spec: MethodQuantizeSpec = { method: 'awq', calib: calibFile, calibWindows: 4, ctx: 128 };
      const output = join(dir, 'awq.safetensors');
      const calibrating = new AbortController();
      let seenWhileCalibrating = 0;
      await assert.rejects(
        runMethodQuantize({ input: microLlamaDir, target: 'int4-g32', output }, spec, {
          signal: calibrating.signal,
          onCalibration: (done) => {
            seenWhileCalibrating = spillFilesIn(dir).length;
            if (done === 1) calibrating.abort();
          },
        }),
        CancelledError,
      );
      assert.equal(seenWhileCalibrating, 1, 'the spill file existed');
      assert.deepEqual(readdirSync(dir), [], 'cancel in calibration: nothing left');

      const writing = new AbortController();
      let seenWhileWriting = 0;
      await assert.rejects(
        runMethodQuantize({ input: microLlamaDir, target: 'int4-g32', output }, spec, {
          signal: writing.signal,
          onProgress: (p) => {
            seenWhileWriting = Math.max(seenWhileWriting, spillFilesIn(dir).length);
            if (p.step >= 3) writing.abort();
          },
        }),
        CancelledError,
      );
      assert.equal(seenWhileWriting, 1, 'the writer read from the spill file');
      assert.deepEqual(readdirSync(dir), [], 'cancel while writing: nothing left');

      await assert.rejects(
        runMethodQuantize({ input: microLlamaDir, target: 'int4-g32', output }, spec, {
          onProgress: (p) => {
            if (p.step >= 2) throw new InvalidArgumentError('injected writer failure');
          },
        }),
        /injected writer failure/,
      );
      assert.deepEqual(readdirSync(dir), [], 'writer error: nothing left');
    });
  });

  test('compare on micro-llama: perplexities through the spill view equal the in-memory hooks\' bit for bit; spill files removed', async () => {
    const checkpoint = await openCheckpoint(microLlamaDir);
    try {
      const model = LlamaModel.fromCheckpoint(checkpoint);
      const tokenizer = await loadTokenizer(checkpoint);
      const calibIds = tokenizer.encode(await readFile(calibFile, 'utf8'));
      const evalIds = tokenizer.encode(await readFile(evalFile, 'utf8'));
      const options = { methods: ['awq', 'gptq', 'smoothquant', 'llm-int8'] as const, bits: [4, 8], groupSize: 32, ctx: 128, calibWindows: 4, evalWindows: 4 };
      const spilled = await compareMethods(model, calibIds, evalIds, { ...options, methods: [...options.methods] });
      const inMemory = await compareMethods(model, calibIds, evalIds, { ...options, methods: [...options.methods], layersInMemory: true });
      assert.equal(spilled.rows.length, 7);
      assert.deepEqual(
        spilled.rows.map((r) => [r.method, r.bits, r.ppl]),
        inMemory.rows.map((r) => [r.method, r.bits, r.ppl]),
      );
      assert.deepEqual(spillFilesIn(tmpdir()), []);
      // Cancel in the middle of a row's calibration: the row's spill file goes too.
      const controller = new AbortController();
      await assert.rejects(
        compareMethods(model, calibIds, evalIds, {
          ...options,
          methods: ['awq'],
          bits: [4],
          signal: controller.signal,
          onStatus: (line) => {
            if (/calibrating/.test(line)) setImmediate(() => controller.abort());
          },
        }),
        CancelledError,
      );
      assert.deepEqual(spillFilesIn(tmpdir()), []);
    } finally {
      await checkpoint.close();
    }
  });

  test('LayerSpillFile: rows read back as written; refuses unwritten layers, bad ranges and an existing path; dispose deletes', async () => {
    await withTempDir(async (dir) => {
      const checkpoint = await openCheckpoint(microLlamaDir);
      try {
        const model = LlamaModel.fromCheckpoint(checkpoint);
        const path = join(dir, 'spill.tmp');
        const spill = await LayerSpillFile.create(path, model.config);
        try {
          await assert.rejects(LayerSpillFile.create(path, model.config), /cannot create/);
          const layer1 = await model.readLayer(1);
          await spill.put(1, layer1);
          for (const t of LAYER_TENSORS) {
            const { rows, cols } = layerTensorShape(model.config, t);
            const all = t === 'attnNorm' ? layer1.attnNorm : t === 'ffnNorm' ? layer1.ffnNorm : layer1.linear[t];
            assert.deepEqual(await spill.readRows(1, t), all, t);
            if (rows > 3) assert.deepEqual(await spill.readRows(1, t, 2, 1), all.slice(2 * cols, 3 * cols), `${t} row 2`);
          }
          await assert.rejects(spill.readRows(0, 'q'), /layer 0 was not calibrated/);
          await assert.rejects(spill.readRows(1, 'q', 60, 10), /outside/);
          await assert.rejects(spill.readRows(2, 'q'), /no layer 2/);
          await assert.rejects(spill.put(0, { ...layer1, attnNorm: new Float32Array(3) }), /3 values/);
        } finally {
          await spill.dispose();
        }
        assert.deepEqual(readdirSync(dir), []);
        await spill.dispose(); // twice is fine
      } finally {
        await checkpoint.close();
      }
    });
  });

  test('memory: a calibration over 48 small layers (child process) grows RSS by about one layer with the spill, by the whole model in memory', async () => {
    await withTempDir(async (dir) => {
      const shape: GeneratedLlamaShape = { hidden: 256, ffn: 768, heads: 4, kvHeads: 4, vocab: 8192, layers: 48, seed: 7 };
      const generated = await generateLlama(join(dir, 'model'), shape, microLlamaDir);
      const measure = (mode: string): ChildReport => {
        const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', fileURLToPath(import.meta.url)], {
          cwd: repoRoot,
          env: { ...process.env, [CHILD_ENV]: JSON.stringify({ folder: generated.hfFolder, mode }) },
          encoding: 'utf8',
          timeout: 300_000,
        });
        assert.equal(child.status, 0, `child (${mode}) failed: ${child.stderr}`);
        const line = child.stdout.split('\n').find((l) => l.startsWith('{'));
        assert.ok(line !== undefined, child.stdout);
        return JSON.parse(line) as ChildReport;
      };
      const spilled = measure('spill');
      const inMemory = measure('memory');
      const MB = 1e6;
      const layersAfter8 = shape.layers - 8;
      const growth = (r: ChildReport): number => r.rssAfterLastLayer - r.rssAfterLayer8;
      const show = (r: ChildReport): string =>
        `+${(r.peakGrowth / MB).toFixed(1)} MB peak RSS, +${(growth(r) / MB).toFixed(1)} MB from layer 8 to ${shape.layers} (calibration ${r.seconds.toFixed(1)} s)`;
      console.log(
        `# ${shape.layers} layers, one layer's rewritten weights ${(spilled.layerBytes / MB).toFixed(1)} MB f32, all ${(spilled.totalBytes / MB).toFixed(1)} MB: ` +
          `spilled ${show(spilled)} (read back through the method checkpoint included), in memory ${show(inMemory)}`,
      );
      // The in-memory path holds every layer: the measurement sees the model's weights (the test can fail).
      assert.ok(inMemory.peakGrowth > 0.8 * inMemory.totalBytes, `in memory: +${inMemory.peakGrowth} for ${inMemory.totalBytes} bytes of layers`);
      assert.ok(growth(inMemory) > 0.8 * layersAfter8 * inMemory.layerBytes, `in memory: +${growth(inMemory)} bytes over ${layersAfter8} layers`);
      // The spill: flat in the layer count (40 more layers add less than two layers' weights), and the peak is a fixed
      // working set (one layer read and rewritten, the runtime's scratch and heaps) far below the model's weights.
      assert.ok(growth(spilled) < 2 * spilled.layerBytes, `spilled: +${growth(spilled)} bytes over ${layersAfter8} layers, one layer ${spilled.layerBytes}`);
      assert.ok(spilled.peakGrowth < 0.4 * spilled.totalBytes, `spilled: peak +${spilled.peakGrowth} bytes`);
    });
  });
} else {
  void memoryChild(process.env[CHILD_ENV]);
}

interface ChildReport {
  peakGrowth: number;
  /** RSS after a full GC once layer 8 is done, and once the last layer is done (bytes). */
  rssAfterLayer8: number;
  rssAfterLastLayer: number;
  layerBytes: number;
  totalBytes: number;
  seconds: number;
}

/**
 * The child: SmoothQuant's calibration (fold only, as `quantize --method smoothquant` runs it) over the generated
 * model, layers spilled or kept in memory, then every rewritten tensor read back through the method checkpoint view
 * in row windows (as a writer does). Peak RSS is sampled every 5 ms and at each layer, after a full GC, against the
 * RSS after a GC before calibrating (the model's files are read lazily, so the baseline holds no weights).
 */
async function memoryChild(argument: string): Promise<void> {
  const { folder, mode } = JSON.parse(argument) as { folder: string; mode: 'spill' | 'memory' };
  const gc = (globalThis as { gc?: () => void }).gc ?? (() => undefined);
  const checkpoint = await openCheckpoint(folder);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const c = model.config;
    let state = 12345;
    const ids: number[] = [];
    for (let i = 0; i < 4 * 64; i++) {
      state = (state * 1103515245 + 12345) % 2147483648;
      ids.push(2 + (state % 8000));
    }
    const windows = textWindows(ids, 64, 4, 'calibration');
    const layerBytes = LAYER_TENSORS.reduce((a, t) => {
      const { rows, cols } = layerTensorShape(c, t);
      return a + rows * cols * 4;
    }, 0);
    gc();
    const base = process.memoryUsage().rss;
    let peak = base;
    const sample = (): void => {
      peak = Math.max(peak, process.memoryUsage().rss);
    };
    const sampler = setInterval(sample, 5);
    const rssAfter: number[] = [];
    const started = performance.now();
    const run = await quantizeWithMethod(model, windows, 'smoothquant', { bits: 8, groupSize: 0, smoothOnly: true, alpha: 0.5 }, {
      layers: mode === 'spill' ? { spillPath: join(tmpdir(), `quantlens-memory-test.calibration.${process.pid}.tmp`) } : 'memory',
      onProgress: (done) => {
        sample();
        gc();
        rssAfter[done] = process.memoryUsage().rss;
      },
    });
    const seconds = (performance.now() - started) / 1000;
    try {
      const view = checkpointWithMethodWeights(checkpoint, model, run);
      for (let l = 0; l < c.numLayers; l++) {
        for (const role of ['q', 'down'] as const) {
          const name = model.linearTensorName(l, role);
          const rows = layerTensorShape(c, role).rows;
          for (let r = 0; r < rows; r += 64) await view.readRowsF32(name, r, Math.min(64, rows - r));
        }
      }
      sample();
    } finally {
      clearInterval(sampler);
      await disposeMethodRun(run);
    }
    const report: ChildReport = { peakGrowth: peak - base, rssAfterLayer8: rssAfter[8] ?? 0, rssAfterLastLayer: rssAfter[c.numLayers] ?? 0, layerBytes, totalBytes: layerBytes * c.numLayers, seconds };
    console.log(JSON.stringify(report));
  } finally {
    await checkpoint.close();
  }
}
