/**
 * `quantlens analyze <model> --calib <file>`: one calibration pass, then the LLM.int8() outlier
 * analysis (per-layer outlier dims, systematic ones), the scale-free recurring standouts and the
 * weight-side view. `--json` prints the AnalysisReport (protocol/analysis.ts) the outlier explorer draws.
 */
import { basename } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../../core/errors';
import { DEFAULT_ANALYZE_CTX, DEFAULT_ANALYZE_TOKENS, analyzeModel } from '../../core/model/analyzeModel';
import { DEFAULT_OUTLIER_THRESHOLD, readTextFile } from '../../core/model/calibration';
import { loadModel } from '../../core/model/loadModel';
import { topChannelsByAbsmax } from '../../core/analysis/emergentFeatures';
import type { AnalysisReport } from '../../protocol/analysis';
import type { CliCommand, CliIo } from '../cliTypes';
import { cancellableCommand, parseModelTextArgs } from '../modelCommand';

const HELP = `usage: quantlens analyze <model> --calib <file> [--tokens ${DEFAULT_ANALYZE_TOKENS}] [--ctx ${DEFAULT_ANALYZE_CTX}] [--threshold ${DEFAULT_OUTLIER_THRESHOLD}] [--json] [--out <file>]

One forward pass over the first --tokens tokens of <file> (windows of --ctx), capturing for the
input of every linear layer and the residual stream after each block: per-channel absmax, mean |x|,
count of |x| >= threshold, and |x| histograms. Then:
  outlier dims     channels with some |x| >= threshold, per layer and site
  systematic       LLM.int8(): the same dim over the threshold in >= 25% of layers and >= 6% of tokens
  standouts        channels with absmax >= 2x the site's median, recurring in >= 50% of layers
  weight view      per input channel weight absmax; the 1% of channels AWQ would protect (by mean |x|)

options:
  --calib <file>     UTF-8 calibration text (required)
  --tokens <n>       tokens to use (default ${DEFAULT_ANALYZE_TOKENS})
  --ctx <n>          window length (default ${DEFAULT_ANALYZE_CTX}, at most max_position_embeddings)
  --threshold <x>    outlier magnitude (default ${DEFAULT_OUTLIER_THRESHOLD})
  --json             print the report as JSON (the outlier explorer's data)
  --out <file>       also write the JSON report to <file>
  --help             this text`;

function fmtDims(dims: Array<{ dim: number; absmax: number }>): string {
  return dims.map((d) => `${d.dim}:${d.absmax.toFixed(2)}`).join(' ');
}

export function formatAnalysis(report: AnalysisReport): string[] {
  const lines: string[] = [];
  lines.push(`${report.model}: ${report.tokens} tokens of ${report.calibrationFile} (${report.windows} x ${report.windowTokens}), threshold ${report.threshold}`);
  lines.push('');
  lines.push(`${'site'.padEnd(22)} ${'median'.padStart(7)} ${'>=thr'.padStart(6)} ${'stand'.padStart(6)}  top channels (dim:absmax)`);
  for (const s of report.sites) {
    lines.push(`${s.id.padEnd(22)} ${s.medianAbsmax.toFixed(2).padStart(7)} ${String(s.outlierDims.length).padStart(6)} ${String(s.standoutDims.length).padStart(6)}  ${fmtDims(topChannelsByAbsmax(s, 5))}`);
  }
  lines.push('');
  const c = report.criteria;
  lines.push(`systematic outlier dims (LLM.int8(): |x| >= ${report.threshold} in >= ${c.minTokenShare * 100}% of tokens, in >= ${c.minLayerShare * 100}% of layers):`);
  if (report.systematic.length === 0) lines.push('  none');
  const byKind = new Map<string, typeof report.systematic>();
  for (const s of report.systematic) byKind.set(s.kind, [...(byKind.get(s.kind) ?? []), s]);
  for (const [kind, dims] of byKind) {
    const shown = dims.slice(0, 12).map((d) => `${d.dim} (layers ${(d.layerShare * 100).toFixed(0)}%, tokens ${(d.tokenShare * 100).toFixed(1)}%, max ${d.maxAbs.toFixed(1)})`);
    lines.push(`  ${kind.padEnd(9)} ${dims.length} dims: ${shown.join(', ')}${dims.length > 12 ? ', ...' : ''}`);
  }
  lines.push('');
  lines.push(`recurring standout dims (absmax >= ${c.standoutFactor}x the site median in >= ${c.minStandoutLayerShare * 100}% of layers):`);
  if (report.recurringStandouts.length === 0) lines.push('  none');
  const standoutByKind = new Map<string, typeof report.recurringStandouts>();
  for (const s of report.recurringStandouts) standoutByKind.set(s.kind, [...(standoutByKind.get(s.kind) ?? []), s]);
  for (const [kind, dims] of standoutByKind) {
    const shown = dims.slice(0, 12).map((d) => `${d.dim} (layers ${d.layers.join(',')}; ${d.meanRatio.toFixed(1)}x median, max ${d.maxAbs.toFixed(1)})`);
    lines.push(`  ${kind.padEnd(9)} ${shown.join('; ')}${dims.length > 12 ? '; ...' : ''}`);
  }
  lines.push('');
  lines.push(`AWQ would protect (top ${c.awqProtectFraction * 100}% input channels by mean |x|), first linear of each input site:`);
  const seen = new Set<string>();
  for (const w of report.weights) {
    if (seen.has(w.site)) continue;
    seen.add(w.site);
    const wmax = w.awqProtected.map((j) => `${j} (w absmax ${(w.weightAbsmax[j] ?? 0).toFixed(3)})`).join(', ');
    lines.push(`  ${w.site.padEnd(20)} ${wmax}`);
  }
  return lines;
}

export async function runAnalyze(args: string[], io: CliIo, signal?: AbortSignal): Promise<number> {
  const parsed = parseModelTextArgs(
    args,
    {
      calib: { type: 'string' },
      tokens: { type: 'string' },
      ctx: { type: 'string' },
      threshold: { type: 'string' },
      json: { type: 'boolean' },
      out: { type: 'string' },
      help: { type: 'boolean' },
    },
    'calib',
    HELP,
    io,
  );
  if (parsed === null) return 0;
  const { modelPath, textPath: calibPath, values } = parsed;
  const tokens = values.tokens === undefined ? DEFAULT_ANALYZE_TOKENS : Number(values.tokens);
  const ctx = values.ctx === undefined ? undefined : Number(values.ctx);
  if (ctx !== undefined && (!Number.isSafeInteger(ctx) || ctx < 2)) throw new InvalidArgumentError(`--ctx must be an integer >= 2, got '${values.ctx}'`);
  const threshold = values.threshold === undefined ? DEFAULT_OUTLIER_THRESHOLD : Number(values.threshold);
  const text = await readTextFile(calibPath);
  const loaded = await loadModel(modelPath);
  try {
    if (ctx !== undefined && ctx > loaded.model.config.maxPositionEmbeddings) {
      throw new InvalidArgumentError(`--ctx ${ctx} is longer than the model's max_position_embeddings (${loaded.model.config.maxPositionEmbeddings})`);
    }
    const report = await analyzeModel(loaded.model, loaded.tokenizer, text, {
      tokens,
      ctx,
      threshold,
      signal,
      modelName: basename(modelPath),
      calibrationFile: basename(calibPath),
      onProgress: values.json === true ? undefined : (done, total) => io.err(`layer ${done}/${total}`),
    });
    const json = JSON.stringify(report);
    if (values.out !== undefined) await writeFile(values.out, json);
    if (values.json === true) io.out(json);
    else for (const line of formatAnalysis(report)) io.out(line);
    return 0;
  } finally {
    await loaded.close();
  }
}

export const command: CliCommand = cancellableCommand(runAnalyze);
