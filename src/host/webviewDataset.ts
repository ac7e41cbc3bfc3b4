/**
 * The dataset the React webview draws for a checkpoint: the overview (tensor table, dtype mix, sizes per
 * target) and one weight histogram per 2-D tensor, built with the protocol's view-model adapters.
 * Tensors are read one at a time with a yield to the host's event loop in between; tensors beyond
 * MAX_HISTOGRAM_ELEMENTS are left out (named in `skipped`) so a large model cannot stall the host.
 */
import { basename } from 'node:path';
import { CancelledError } from '../core/errors';
import type { Checkpoint } from '../core/formats/checkpoint';
import { openCheckpoint } from '../core/formats/openCheckpoint';
import { classifyTensorName, dtypeMix, estimateTargetSizes, summarizeValues, tensorRow } from '../protocol/viewModels';
import { WEBVIEW_PROTOCOL_VERSION, type HistogramSummary, type ModelOverview, type WebviewDataset } from '../protocol/webview';

export const MAX_HISTOGRAM_ELEMENTS = 16 * 1024 * 1024;
/** Share beyond the threshold is exact at these (std units): 0.5 .. 24 in steps of 0.5, 6.0 included. */
const THRESHOLD_GRID = Array.from({ length: 48 }, (_, i) => (i + 1) / 2);

function configNumber(checkpoint: Checkpoint, hfKey: string, ggufSuffix: string): number {
  const fromConfig = checkpoint.config?.[hfKey];
  if (typeof fromConfig === 'number') return fromConfig;
  const arch = checkpoint.metadata['general.architecture'];
  const fromGguf = typeof arch === 'string' ? checkpoint.metadata[`${arch}.${ggufSuffix}`] : undefined;
  return typeof fromGguf === 'number' ? fromGguf : 0;
}

export function overviewOf(checkpoint: Checkpoint): ModelOverview {
  const rows = checkpoint.tensors.map((t) => tensorRow(t));
  const architectures = checkpoint.config?.architectures;
  const ggufArch = checkpoint.metadata['general.architecture'];
  const heads = configNumber(checkpoint, 'num_attention_heads', 'attention.head_count');
  const kvHeads = configNumber(checkpoint, 'num_key_value_heads', 'attention.head_count_kv');
  return {
    name: basename(checkpoint.path),
    format: checkpoint.format,
    architecture: Array.isArray(architectures) && typeof architectures[0] === 'string' ? architectures[0] : typeof ggufArch === 'string' ? ggufArch : 'unknown',
    layers: configNumber(checkpoint, 'num_hidden_layers', 'block_count'),
    hiddenSize: configNumber(checkpoint, 'hidden_size', 'embedding_length'),
    heads,
    kvHeads: kvHeads || heads,
    intermediateSize: configNumber(checkpoint, 'intermediate_size', 'feed_forward_length'),
    vocabSize: configNumber(checkpoint, 'vocab_size', 'vocab_size'),
    parameterCount: rows.reduce((a, r) => a + r.params, 0),
    totalBytes: rows.reduce((a, r) => a + r.bytes, 0),
    dtypeMix: dtypeMix(rows),
    sizeByTarget: estimateTargetSizes(rows),
    tensors: rows,
  };
}

export async function buildWeightDataset(path: string, signal: AbortSignal): Promise<{ dataset: WebviewDataset; skipped: string[] }> {
  const checkpoint = await openCheckpoint(path);
  try {
    const histograms: HistogramSummary[] = [];
    const skipped: string[] = [];
    for (const t of checkpoint.tensors) {
      if (t.shape.length !== 2) continue;
      if (signal.aborted) throw new CancelledError();
      const elements = t.shape.reduce((a, b) => a * b, 1);
      if (elements > MAX_HISTOGRAM_ELEMENTS) {
        skipped.push(t.name);
        continue;
      }
      const { layer, role } = classifyTensorName(t.name);
      const values = await checkpoint.readRowsF32(t.name);
      histograms.push(summarizeValues(values, { id: `w:${t.name}`, label: t.name, source: 'weights', layer, role, unit: 'std', bins: 64, thresholds: THRESHOLD_GRID }));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return { dataset: { version: WEBVIEW_PROTOCOL_VERSION, overview: overviewOf(checkpoint), histograms }, skipped };
  } finally {
    await checkpoint.close();
  }
}
