/**
 * Generates the webview's test fixtures from REAL checkpoints with the core modules, exactly as the extension
 * host would feed the webview:
 *   test/webview/fixtures/tiny-llama.json   (../shared/models/tiny-llama)
 *   test/webview/fixtures/micro-llama.json  (test/fixtures/micro-llama)
 *
 * - overview: the checkpoint's tensor table (openCheckpoint) and config;
 * - weight histograms: every 2-D tensor read through Checkpoint.readRowsF32, summarized by summarizeValues;
 * - activation histograms and emergent-feature maps: `analyzeModel` (what `quantlens analyze --json` prints) over
 *   test/fixtures/calib-64k.txt, through outlierMapFromAnalysis / activationHistogramsFromAnalysis;
 * - error heatmap + block-error maps: the quant card of `runQuantize` (what `quantlens quantize --to int4-g128
 *   --include-embeddings` writes), through errorsFromQuantCard;
 * - method comparison: `compareMethods` (what `quantlens compare --json` prints), calibrated on calib-64k.txt and
 *   evaluated on test/fixtures/eval.txt, through comparisonFromCompareResult.
 *
 * Usage: XDG_RUNTIME_DIR=/tmp node --import tsx scripts/make-webview-fixtures.ts [--only tiny-llama|micro-llama]
 *        [--compare-json <file>]   reuse a `quantlens compare ... --json` output for the (last) model instead of running it
 *        [--comparison-only]       with --compare-json: only replace the comparison of the existing fixture file
 *        [--errors-only]           only redo the quantize and replace the error heatmap, block maps and error histograms
 * tiny-llama's committed comparison came from (the same settings as below):
 *   quantlens compare ../shared/models/tiny-llama --calib test/fixtures/calib-64k.txt --eval test/fixtures/eval.txt \
 *     --methods rtn,gptq,smoothquant,llm-int8 --bits 4,8 --ctx 128 --calib-windows 8 --eval-windows 2 --json
 * (AWQ left out for tiny-llama only because its grid search took too long on the shared 2-core machine.)
 */
import { readFile, writeFile, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/core/model/loadModel';
import { analyzeModel } from '../src/core/model/analyzeModel';
import { compareMethods, type CompareResult } from '../src/core/methods/compare';
import { runQuantize } from '../src/core/quant/pipeline';
import { WEBVIEW_PROTOCOL_VERSION, type BlockErrorMap, type HistogramSummary, type WebviewDataset } from '../src/protocol/webview';
import {
  activationHistogramsFromAnalysis,
  classifyTensorName,
  comparisonFromCompareResult,
  dtypeMix,
  errorsFromQuantCard,
  estimateTargetSizes,
  outlierMapFromAnalysis,
  roundForJson,
  summarizeValues,
  tensorRow,
} from '../src/protocol/viewModels';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sharedDir = resolve(repoRoot, '..', 'shared');

function argValue(flag: string): string | undefined {
  const i = process.argv.indexOf(flag);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

interface ModelJob {
  name: string;
  dir: string;
  out: string;
  /** Calibration for the analysis: tokens in windows of ctx. */
  analyzeTokens: number;
  ctx: number;
  /** Method comparison settings (as `quantlens compare` flags). */
  compare: { methods: ('rtn' | 'awq' | 'gptq' | 'smoothquant' | 'llm-int8')[]; bits: number[]; group: number; calibWindows: number; evalWindows: number };
  quantTarget: string;
  /** Block maps are downsampled by this factor from the card's 64 x 64 (keeps the committed JSON small). */
  blockMapDownsample: number;
}

const CALIB = 'test/fixtures/calib-64k.txt';
const EVAL = 'test/fixtures/eval.txt';
/** Share beyond the threshold is exact at these (in std units): 0.5 .. 24 in steps of 0.5, 6.0 included. */
const THRESHOLD_GRID = Array.from({ length: 48 }, (_, i) => (i + 1) / 2);
/** The activation site families drawn as emergent-feature maps. */
const MAP_KINDS = ['attn_in', 'attn_out', 'mlp_in', 'mlp_act'] as const;

async function buildDataset(job: ModelJob, compareJson: string | undefined): Promise<WebviewDataset> {
  const started = Date.now();
  const log = (m: string): void => console.log(`[${job.name} ${((Date.now() - started) / 1000).toFixed(1)} s] ${m}`);
  const loaded = await loadModel(job.dir);
  try {
    const { checkpoint, model, tokenizer } = loaded;
    const cfg = model.config;
    const rows = checkpoint.tensors.map((t) => tensorRow(t));
    const overview = {
      name: job.name,
      format: checkpoint.format,
      architecture: Array.isArray(checkpoint.config?.architectures) ? String(checkpoint.config.architectures[0]) : 'llama',
      layers: cfg.numLayers,
      hiddenSize: cfg.hiddenSize,
      heads: cfg.numHeads,
      kvHeads: cfg.numKvHeads,
      intermediateSize: cfg.intermediateSize,
      vocabSize: cfg.vocabSize,
      parameterCount: rows.reduce((a, r) => a + r.params, 0),
      totalBytes: rows.reduce((a, r) => a + r.bytes, 0),
      dtypeMix: dtypeMix(rows),
      sizeByTarget: estimateTargetSizes(rows),
      tensors: rows,
    };

    const histograms: HistogramSummary[] = [];
    for (const t of checkpoint.tensors) {
      if (t.shape.length !== 2) continue;
      const { layer, role } = classifyTensorName(t.name);
      const values = await checkpoint.readRowsF32(t.name);
      histograms.push(summarizeValues(values, { id: `w:${t.name}`, label: t.name, source: 'weights', layer, role, unit: 'std', bins: 64, thresholds: THRESHOLD_GRID }));
    }
    log(`${histograms.length} weight histograms`);

    const calibText = await readFile(join(repoRoot, CALIB), 'utf8');
    const report = await analyzeModel(model, tokenizer, calibText, { tokens: job.analyzeTokens, ctx: job.ctx, modelName: job.name, calibrationFile: CALIB });
    log(
      `analysis: ${report.tokens} tokens; systematic ${JSON.stringify(report.systematic.map((s) => `${s.kind}:${s.dim}`))}; ` +
        `recurring standouts ${JSON.stringify(report.recurringStandouts.map((s) => `${s.kind}:${s.dim}`))}`,
    );
    histograms.push(...activationHistogramsFromAnalysis(report).filter((h) => h.label !== 'final_norm'));

    const errorsPart = await buildErrors(job, cfg.numLayers, log);

    let compared: CompareResult | null = null;
    if (process.argv.includes('--skip-compare')) {
      log('comparison skipped (--skip-compare)');
    } else if (compareJson !== undefined) {
      compared = JSON.parse(await readFile(compareJson, 'utf8')) as CompareResult;
      log(`comparison from ${compareJson}`);
    } else {
      const evalText = await readFile(join(repoRoot, EVAL), 'utf8');
      const c = job.compare;
      compared = await compareMethods(model, tokenizer.encode(calibText), tokenizer.encode(evalText), {
        methods: c.methods,
        bits: c.bits,
        groupSize: c.group,
        ctx: job.ctx,
        calibWindows: c.calibWindows,
        evalWindows: c.evalWindows,
        onStatus: (line) => log(line),
      });
    }
    if (compared !== null) log(`comparison: FP16 ppl ${compared.baseline.ppl.toFixed(3)}; ${compared.rows.map((r) => `${r.method} W${r.bits} ${r.ppl.toFixed(2)}`).join(', ')}`);

    const dataset: WebviewDataset = {
      version: WEBVIEW_PROTOCOL_VERSION,
      overview,
      histograms,
      outlierMaps: MAP_KINDS.map((kind) => outlierMapFromAnalysis(report, kind)),
      errors: errorsPart.errors,
      blockMaps: errorsPart.blockMaps,
    };
    // 3 significant digits keep the committed JSON small (the views print at most 4); block maps 2 (colour only).
    const rounded = roundForJson(dataset, 3);
    if (rounded.blockMaps !== undefined) rounded.blockMaps = roundBlockMaps(rounded.blockMaps);
    if (compared !== null) rounded.comparison = roundForJson(comparisonFromCompareResult(compared, overview.parameterCount, { calibration: CALIB, evaluation: EVAL }), 5);
    return rounded;
  } finally {
    await loaded.close();
  }
}

/** The error heatmap and block maps (with the element-wise error histograms) of a fresh quantize's card. */
async function buildErrors(job: ModelJob, layers: number, log: (m: string) => void): Promise<ReturnType<typeof errorsFromQuantCard>> {
  const scratch = await mkdtemp(join(tmpdir(), 'quantlens-fixture-'));
  try {
    const result = await runQuantize({ input: job.dir, output: join(scratch, `${job.name}.safetensors`), target: job.quantTarget, includeEmbeddings: true });
    const part = errorsFromQuantCard(result.card, layers, { downsample: job.blockMapDownsample, relative: true });
    log(`quant card ${job.quantTarget}: ${part.errors.cells.length} tensors, ${result.card.totals.bitsPerWeight.toFixed(3)} bits/weight`);
    return part;
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/** Block values to 2 significant digits (colour only), the scale to 4; histogram counts stay exact. */
function roundBlockMaps(maps: BlockErrorMap[]): BlockErrorMap[] {
  return maps.map((m) => ({ ...m, values: roundForJson(m.values, 2), scale: roundForJson(m.scale, 4) }));
}

async function main(): Promise<void> {
  const outDir = join(repoRoot, 'test', 'webview', 'fixtures');
  await mkdir(outDir, { recursive: true });
  const only = argValue('--only');
  const compareJson = argValue('--compare-json');
  const jobs: ModelJob[] = [
    {
      name: 'micro-llama',
      dir: join(repoRoot, 'test', 'fixtures', 'micro-llama'),
      out: join(outDir, 'micro-llama.json'),
      analyzeTokens: 1024,
      ctx: 128,
      compare: { methods: ['rtn', 'awq', 'gptq', 'smoothquant', 'llm-int8'], bits: [4, 8], group: 64, calibWindows: 4, evalWindows: 4 },
      quantTarget: 'int4-g64',
      blockMapDownsample: 2,
    },
    {
      name: 'tiny-llama',
      dir: join(sharedDir, 'models', 'tiny-llama'),
      out: join(outDir, 'tiny-llama.json'),
      analyzeTokens: 2048,
      ctx: 128,
      compare: { methods: ['rtn', 'gptq', 'smoothquant', 'llm-int8'], bits: [4, 8], group: 128, calibWindows: 8, evalWindows: 2 },
      quantTarget: 'int4-g128',
      blockMapDownsample: 2,
    },
  ].filter((j) => only === undefined || j.name === only) as ModelJob[];
  for (const job of jobs) {
    if (process.argv.includes('--comparison-only') && compareJson !== undefined) {
      const existing = JSON.parse(await readFile(job.out, 'utf8')) as WebviewDataset;
      const compared = JSON.parse(await readFile(compareJson, 'utf8')) as CompareResult;
      existing.comparison = roundForJson(comparisonFromCompareResult(compared, existing.overview?.parameterCount ?? 0, { calibration: CALIB, evaluation: EVAL }), 5);
      await writeFile(job.out, JSON.stringify(existing) + '\n');
      console.log(`replaced the comparison in ${job.out}`);
      continue;
    }
    if (process.argv.includes('--errors-only')) {
      // Only the quant-card part (heatmap, block maps, error histograms): the rest of the fixture stays as it is.
      const existing = JSON.parse(await readFile(job.out, 'utf8')) as WebviewDataset;
      const part = await buildErrors(job, existing.overview?.layers ?? 0, (m) => console.log(`[${job.name}] ${m}`));
      existing.errors = roundForJson(part.errors, 3);
      existing.blockMaps = roundBlockMaps(roundForJson(part.blockMaps, 3));
      await writeFile(job.out, JSON.stringify(existing) + '\n');
      console.log(`replaced the errors part of ${job.out}`);
      continue;
    }
    const dataset = await buildDataset(job, job === jobs[jobs.length - 1] ? compareJson : undefined);
    const text = JSON.stringify(dataset);
    await writeFile(job.out, text + '\n');
    console.log(`wrote ${job.out} (${(text.length / 1024).toFixed(0)} KiB)`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
