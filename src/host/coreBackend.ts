/**
 * The QuantBackend over the core: headers through openCheckpoint; outlier statistics and quantization
 * off the extension host's thread (see the notes at each method).
 */
import { stat } from 'node:fs/promises';
import { CancelledError, InvalidArgumentError, UnsupportedError } from '../core/errors';
import type { Checkpoint, MetadataValue } from '../core/formats/checkpoint';
import { openCheckpoint } from '../core/formats/openCheckpoint';
import { planQuantize, runQuantize, type QuantizeRequest } from '../core/quant/pipeline';
import { findTarget, pipelineTarget } from './targets';
import type { CheckpointSummary, DtypeTotal, OutlierSummary, QuantBackend, QuantOutcome, QuantPlan, QuantProgressEvent, QuantRequest, TensorOutlierRow } from './backend';

const MAX_METADATA_CHARS = 160;

function elementCount(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

/** One line per metadata value: long arrays (GGUF vocabularies) are abbreviated to their length. */
export function describeMetadataValue(value: MetadataValue): string {
  if (Array.isArray(value)) {
    const head = value.slice(0, 8).map((v) => (Array.isArray(v) ? `[${v.length}]` : String(v)));
    return `[${value.length} items] ${head.join(', ')}${value.length > 8 ? ', …' : ''}`.slice(0, MAX_METADATA_CHARS);
  }
  const text = String(value);
  return text.length > MAX_METADATA_CHARS ? `${text.slice(0, MAX_METADATA_CHARS)}…` : text;
}

export function summarizeCheckpoint(checkpoint: Checkpoint): CheckpointSummary {
  const byDtype = new Map<string, DtypeTotal>();
  let parameterCount = 0;
  let totalBytes = 0;
  const tensors = checkpoint.tensors.map((t) => {
    const parameters = elementCount(t.shape);
    parameterCount += parameters;
    totalBytes += t.nbytes;
    const total = byDtype.get(t.dtype) ?? { dtype: t.dtype, tensors: 0, parameters: 0, bytes: 0 };
    total.tensors++;
    total.parameters += parameters;
    total.bytes += t.nbytes;
    byDtype.set(t.dtype, total);
    return { name: t.name, dtype: t.dtype, shape: [...t.shape], parameters, bytes: t.nbytes };
  });
  const architectures = checkpoint.config?.architectures;
  const ggufArchitecture = checkpoint.metadata['general.architecture'];
  const architecture =
    Array.isArray(architectures) && typeof architectures[0] === 'string'
      ? architectures[0]
      : typeof ggufArchitecture === 'string'
        ? ggufArchitecture
        : typeof checkpoint.config?.model_type === 'string'
          ? checkpoint.config.model_type
          : null;
  const metadata: [string, string][] = Object.entries(checkpoint.metadata).map(([k, v]) => [k, describeMetadataValue(v)]);
  if (checkpoint.config) {
    for (const [k, v] of Object.entries(checkpoint.config)) {
      const text = typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v);
      metadata.push([`config.json: ${k}`, text.length > MAX_METADATA_CHARS ? `${text.slice(0, MAX_METADATA_CHARS)}…` : text]);
    }
  }
  return {
    path: checkpoint.path,
    format: checkpoint.format,
    files: [...checkpoint.files],
    architecture,
    parameterCount,
    totalBytes,
    byDtype: [...byDtype.values()].sort((a, b) => b.bytes - a.bytes),
    tensors,
    metadata,
    config: checkpoint.config,
  };
}

/** Lets the host's event loop run between chunks of work done on its thread. */
const yieldToHost = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Rows per read when streaming a tensor (bounded windows, never a whole large tensor). */
const ROWS_PER_CHUNK = 256;

async function tensorOutliers(checkpoint: Checkpoint, name: string, dtype: string, shape: number[], thresholdSigma: number, signal: AbortSignal): Promise<TensorOutlierRow> {
  const rows = shape[0] ?? 1;
  const columns = shape.length >= 2 ? elementCount(shape.slice(1)) : elementCount(shape);
  // Pass 1: mean and central moments in f64 (Welford per chunk, merged), |max|.
  let count = 0;
  let mean = 0;
  let m2 = 0;
  let absMax = 0;
  for (let start = 0; start < rows; start += ROWS_PER_CHUNK) {
    if (signal.aborted) throw new CancelledError();
    const values = await checkpoint.readRowsF32(name, start, Math.min(ROWS_PER_CHUNK, rows - start));
    for (const x of values) {
      if (!Number.isFinite(x)) continue;
      count++;
      const delta = x - mean;
      mean += delta / count;
      m2 += delta * (x - mean);
      const a = Math.abs(x);
      if (a > absMax) absMax = a;
    }
    await yieldToHost();
  }
  const variance = count > 0 ? m2 / count : 0;
  const std = Math.sqrt(variance);
  // Pass 2: fourth moment, outliers beyond thresholdSigma, and the columns they sit in.
  let m4 = 0;
  let outlierCount = 0;
  const perColumn = new Uint32Array(columns);
  const limit = thresholdSigma * std;
  for (let start = 0; start < rows; start += ROWS_PER_CHUNK) {
    if (signal.aborted) throw new CancelledError();
    const values = await checkpoint.readRowsF32(name, start, Math.min(ROWS_PER_CHUNK, rows - start));
    for (let i = 0; i < values.length; i++) {
      const x = values[i] ?? 0;
      if (!Number.isFinite(x)) continue;
      const d = x - mean;
      m4 += d * d * d * d;
      if (std > 0 && Math.abs(d) >= limit) {
        outlierCount++;
        perColumn[i % columns] = (perColumn[i % columns] ?? 0) + 1;
      }
    }
    await yieldToHost();
  }
  const kurtosis = variance > 0 && count > 0 ? m4 / count / (variance * variance) - 3 : 0;
  const topColumns = [...perColumn.entries()]
    .filter(([, c]) => c > 0)
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5)
    .map(([index, c]) => ({ index, count: c }));
  return { name, dtype, shape, count, absMax, std, kurtosis, outlierCount, topColumns };
}

export class CoreBackend implements QuantBackend {
  async inspect(path: string): Promise<CheckpointSummary> {
    const checkpoint = await openCheckpoint(path);
    try {
      return summarizeCheckpoint(checkpoint);
    } finally {
      await checkpoint.close();
    }
  }

  async analyzeOutliers(path: string, thresholdSigma: number, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<OutlierSummary> {
    const started = performance.now();
    const checkpoint = await openCheckpoint(path);
    try {
      const matrices = checkpoint.tensors.filter((t) => t.shape.length === 2);
      const tensors: TensorOutlierRow[] = [];
      for (const [index, t] of matrices.entries()) {
        onProgress({ tensor: t.name, done: index, total: matrices.length });
        tensors.push(await tensorOutliers(checkpoint, t.name, t.dtype, [...t.shape], thresholdSigma, signal));
      }
      return { path, thresholdSigma, device: 'CPU (extension host, streamed by rows)', seconds: (performance.now() - started) / 1000, tensors };
    } finally {
      await checkpoint.close();
    }
  }

  /** The pipeline's dry-run plan; for GGUF targets (planned by the exporter) the nominal bits per weight. */
  async plan(request: QuantRequest): Promise<QuantPlan> {
    const pipelineRequest = toPipelineRequest(request);
    const target = findTarget(request.target);
    if (target?.format === 'gguf') {
      const summary = await this.inspect(request.input);
      return {
        inputBytes: summary.totalBytes,
        outputBytes: Math.round((summary.parameterCount * target.nominalBitsPerWeight) / 8),
        bitsPerWeight: target.nominalBitsPerWeight,
        tensorCount: summary.tensors.length,
      };
    }
    const plan = await planQuantize(pipelineRequest);
    return { inputBytes: plan.totals.sourceBytes, outputBytes: plan.totals.outputBytes, bitsPerWeight: plan.totals.bitsPerWeight, tensorCount: plan.tensors.length };
  }

  /**
   * Runs the pipeline (atomic output: nothing at `output` on failure or cancel).
   * NOTE: runs on the extension host's thread, one tensor at a time with awaits in between, until the
   * job worker (src/core/jobs) offers a quantize job kind; then this moves into the worker.
   */
  async quantize(request: QuantRequest, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<QuantOutcome> {
    const warnings: string[] = [];
    const result = await runQuantize(toPipelineRequest(request), {
      signal,
      onProgress: (p) => onProgress({ tensor: p.action === 'quantize' || p.action === 'copy' ? p.tensor : `${p.action} ${p.tensor}`, done: p.step, total: p.total }),
      onWarning: (message) => warnings.push(message),
    });
    const outputBytes = (await stat(result.outputPath)).size;
    const totals = result.card.totals;
    return {
      output: result.outputPath,
      inputBytes: totals.sourceBytes,
      outputBytes,
      bitsPerWeight: totals.parameters > 0 ? (outputBytes * 8) / totals.parameters : 0,
      tensorCount: result.card.tensors.length,
      warnings,
      seconds: result.seconds,
    };
  }

  dispose(): void {}
}

function toPipelineRequest(request: QuantRequest): QuantizeRequest {
  const target = findTarget(request.target);
  if (!target) throw new InvalidArgumentError(`unknown quantization target "${request.target}"`);
  if (!target.available) throw new UnsupportedError(`${target.label}: ${target.unavailableReason ?? 'not available'}`);
  const mapped = pipelineTarget(target, request.groupSize);
  return { input: request.input, output: request.output, target: mapped.target, ...(mapped.groupSize !== undefined ? { groupSize: mapped.groupSize } : {}) };
}
