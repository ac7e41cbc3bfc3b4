/**
 * The runtime parts of the Outlier Explorer's dataset: activation histograms and emergent-feature maps
 * from an analysis report (the analyze job), the error heatmap and block maps from a quant card, and a
 * one-line summary of what a dataset holds (logged, and returned to tests).
 */
import { readFile, readdir, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseQuantCard, quantCardPath } from '../core/quant/quantCard';
import type { AnalysisReport, ActivationSiteKind } from '../protocol/analysis';
import { activationHistogramsFromAnalysis, errorsFromQuantCard, outlierMapFromAnalysis } from '../protocol/viewModels';
import type { WebviewDataset } from '../protocol/webview';
import { FormatError } from '../core/errors';

/** The site families the emergent view draws, in its order: inputs of attention and MLP, the residual stream. */
const MAP_KINDS: ActivationSiteKind[] = ['attn_in', 'mlp_in', 'residual'];

export function activationParts(report: AnalysisReport): Pick<WebviewDataset, 'outlierMaps' | 'histograms'> {
  const kinds = MAP_KINDS.filter((kind) => report.sites.some((s) => s.kind === kind));
  return { outlierMaps: kinds.map((kind) => outlierMapFromAnalysis(report, kind)), histograms: activationHistogramsFromAnalysis(report) };
}

/** Weight histograms stay; activation histograms are replaced by the new report's. */
export function withActivations(dataset: WebviewDataset, report: AnalysisReport): WebviewDataset {
  const parts = activationParts(report);
  const weights = (dataset.histograms ?? []).filter((h) => h.source !== 'activations');
  return { ...dataset, histograms: [...weights, ...(parts.histograms ?? [])], ...(parts.outlierMaps !== undefined ? { outlierMaps: parts.outlierMaps } : {}) };
}

/**
 * The error heatmap and block maps of the quant card beside `output` (`<output>.quant.json`); undefined
 * when there is no card. The card is a small JSON file; a malformed one is a FormatError naming it.
 */
export async function errorPartsForOutput(output: string, layers: number): Promise<Pick<WebviewDataset, 'errors' | 'blockMaps'> | undefined> {
  const path = quantCardPath(output);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new FormatError(path, `not JSON (${error instanceof Error ? error.message : String(error)})`);
  }
  const card = parseQuantCard(parsed, path);
  // Block maps relative to their mean: short numbers over postMessage.
  return errorsFromQuantCard(card, layers, { relative: true });
}

/** Cards larger than this are not read while looking for one (a card is a few hundred KiB at most). */
const MAX_CARD_BYTES = 8 * 1024 * 1024;

/**
 * The output of the newest quant card in `folders` whose source is `checkpoint` and whose output still
 * exists (for a checkpoint quantized in an earlier session). Unreadable or malformed cards are skipped.
 */
export async function findQuantCardOutput(checkpoint: string, folders: string[]): Promise<string | undefined> {
  const source = resolve(checkpoint);
  let best: { output: string; createdAt: string } | undefined;
  for (const folder of new Set(folders.map((f) => resolve(f)))) {
    let names: string[];
    try {
      names = await readdir(folder);
    } catch {
      continue;
    }
    for (const name of names.filter((n) => n.endsWith('.quant.json'))) {
      const path = join(folder, name);
      try {
        if ((await stat(path)).size > MAX_CARD_BYTES) continue;
        const card: unknown = JSON.parse(await readFile(path, 'utf8'));
        if (typeof card !== 'object' || card === null) continue;
        const { source: cardSource, createdAt } = card as { source?: { path?: unknown }; createdAt?: unknown };
        if (typeof cardSource?.path !== 'string' || resolve(folder, cardSource.path) !== source || typeof createdAt !== 'string') continue;
        const output = path.slice(0, -'.quant.json'.length);
        await stat(output);
        if (best === undefined || createdAt > best.createdAt) best = { output, createdAt };
      } catch {
        // not a card of ours, or its output is gone
      }
    }
  }
  return best?.output;
}

export interface DatasetSummary {
  weightHistograms: number;
  activationHistograms: number;
  outlierMaps: string[];
  systematicDims: number;
  standoutDims: number;
  errorCells: number;
  errorTarget: string | null;
  blockMaps: number;
  /** Heatmap cells posted live during the last quantize of the checkpoint (the Outlier Explorer adds it). */
  liveErrorCells?: number;
}

export function summarizeDataset(dataset: WebviewDataset): DatasetSummary {
  const histograms = dataset.histograms ?? [];
  const maps = dataset.outlierMaps ?? [];
  return {
    weightHistograms: histograms.filter((h) => h.source === 'weights').length,
    activationHistograms: histograms.filter((h) => h.source === 'activations').length,
    outlierMaps: maps.map((m) => m.id),
    systematicDims: maps.reduce((n, m) => n + m.systematic.length, 0),
    standoutDims: maps.reduce((n, m) => n + m.standouts.length, 0),
    errorCells: dataset.errors?.cells.length ?? 0,
    errorTarget: dataset.errors?.target ?? null,
    blockMaps: dataset.blockMaps?.length ?? 0,
  };
}

export function describeDatasetSummary(s: DatasetSummary): string {
  const parts = [`${s.weightHistograms} weight histograms`];
  if (s.activationHistograms > 0 || s.outlierMaps.length > 0) parts.push(`${s.activationHistograms} activation histograms`, `outlier maps ${s.outlierMaps.join(', ')} (${s.systematicDims} systematic, ${s.standoutDims} standout dims)`);
  if (s.errorCells > 0) parts.push(`error heatmap ${s.errorTarget ?? ''} (${s.errorCells} cells, ${s.blockMaps} block maps)`);
  return parts.join('; ');
}
