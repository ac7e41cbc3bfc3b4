/**
 * The QuantBackend over the core: headers through openCheckpoint; outlier statistics and quantization
 * off the extension host's thread (see the notes at each method).
 */
import { stat } from 'node:fs/promises';
import { InvalidArgumentError, UnsupportedError } from '../core/errors';
import type { Checkpoint, MetadataValue } from '../core/formats/checkpoint';
import { openCheckpoint } from '../core/formats/openCheckpoint';
import { JobRunner } from '../core/jobs/jobRunner';
import type { MethodQuantizeSpec } from '../core/methods/methodQuantize';
import { isGgufTarget, planQuantize, type QuantizeRequest, type QuantizeResult } from '../core/quant/pipeline';
import type { AnalysisReport } from '../protocol/analysis';
import type { DevicePreference } from './settings';
import { checkMethodTarget, findTarget, pipelineTarget } from './targets';
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

export class CoreBackend implements QuantBackend {
  private worker: Promise<JobRunner> | undefined;
  /** The worker once it has started (what stopWorkerNow can reach synchronously). */
  private started: JobRunner | undefined;
  private workerHeapMb: number | undefined;

  /** `device` setting for jobs that can use the GPU. */
  constructor(private readonly device: () => DevicePreference = () => 'auto') {}

  async inspect(path: string): Promise<CheckpointSummary> {
    const checkpoint = await openCheckpoint(path);
    try {
      return summarizeCheckpoint(checkpoint);
    } finally {
      await checkpoint.close();
    }
  }

  /** Weight statistics through the job worker's stats job (GPU when available, else CPU). */
  async analyzeOutliers(path: string, thresholdSigma: number, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<OutlierSummary> {
    const runner = await this.runner();
    const result = await runner.run(
      { kind: 'stats', modelPath: path, device: this.device(), histogramBins: 64, logOctaves: 24, outlierSigma: thresholdSigma, topChannels: 5 },
      { signal, onProgress: (p) => onProgress({ tensor: p.tensorName, done: p.tensorIndex, total: p.tensorCount }) },
    );
    const tensors: TensorOutlierRow[] = result.tensors
      .filter((t) => t.shape.length === 2)
      .map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: [...t.shape],
        count: t.count,
        absMax: t.absMax,
        std: Math.sqrt(t.variance),
        kurtosis: t.kurtosis,
        outlierCount: t.outlierCount,
        topColumns: t.topOutlierColumns.map((c) => ({ index: c.index, count: c.count })),
      }));
    return { path, thresholdSigma, device: `${result.device.toUpperCase()} (${result.deviceDescription}), job worker`, seconds: result.seconds, tensors };
  }

  /** The analyze job in the worker (CPU: the forward pass has no GPU path). */
  async analyzeActivations(path: string, calibrationFile: string, tokens: number, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<AnalysisReport> {
    const runner = await this.runner();
    const result = await runner.run(
      { kind: 'analyze', modelPath: path, calibrationFile, tokens },
      { signal, onProgress: (p) => onProgress({ tensor: p.tensorName || p.phase, done: p.tensorIndex + (p.phase === 'compute' || p.phase === 'done' ? 1 : 0), total: p.tensorCount }) },
    );
    return result.report;
  }

  /** The dry-run plan: the pipeline's for research targets, the GGUF exporter's (exact file size) for GGUF ones. */
  async plan(request: QuantRequest): Promise<QuantPlan> {
    // The plan is the target's: the calibration pass changes values, not sizes.
    const { method: _method, ...pipelineRequest } = toPipelineRequest(request);
    if (isGgufTarget(pipelineRequest.target)) {
      const { planGgufExport } = await import('../core/convert/exportGguf');
      const checkpoint = await openCheckpoint(request.input);
      try {
        const plan = await planGgufExport(checkpoint, { target: pipelineRequest.target.toUpperCase() });
        const parameters = plan.tensors.reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
        const inputBytes = checkpoint.tensors.reduce((n, t) => n + t.nbytes, 0);
        return { inputBytes, outputBytes: plan.fileBytes, bitsPerWeight: parameters > 0 ? (plan.fileBytes * 8) / parameters : 0, tensorCount: plan.tensors.length };
      } finally {
        await checkpoint.close();
      }
    }
    const plan = await planQuantize(pipelineRequest);
    return { inputBytes: plan.totals.sourceBytes, outputBytes: plan.totals.outputBytes, bitsPerWeight: plan.totals.bitsPerWeight, tensorCount: plan.tensors.length };
  }

  /**
   * Runs the pipeline (atomic output: nothing at `output` on failure or cancel) in the job worker, so
   * the extension host stays responsive; the worker's quantize job handles GGUF and safetensors targets.
   */
  async quantize(request: QuantRequest, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<QuantOutcome> {
    const warnings: string[] = [];
    const pipelineRequest = toPipelineRequest(request);
    const runner = await this.runner(request.maxWorkerMemoryMB);
    const reply = await runner.run(
      { kind: 'quantize', request: pipelineRequest, device: this.device() },
      {
        signal,
        onProgress: (p) =>
          onProgress({ tensor: p.tensorName || p.phase, done: p.tensorIndex + (p.phase === 'done' ? 1 : 0), total: p.tensorCount, ...(p.tensorResult === undefined ? {} : { result: p.tensorResult }) }),
        onNotice: (message) => warnings.push(message),
      },
    );
    const result: QuantizeResult = reply.result;
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

  /**
   * One worker for the extension's lifetime, started on first use, again if it died, and again with a
   * new heap limit when the `quantlens.maxWorkerMemoryMB` setting changed (once no job is running on it).
   */
  private async runner(maxHeapMb?: number): Promise<JobRunner> {
    const current = await this.worker?.catch(() => undefined);
    if (current?.alive && (maxHeapMb === undefined || maxHeapMb === this.workerHeapMb || current.busy)) return current;
    if (current?.alive) await current.dispose();
    this.workerHeapMb = maxHeapMb;
    this.worker = JobRunner.start({ maxHeapMb });
    this.worker.then((r) => (this.started = r)).catch(() => undefined);
    return this.worker;
  }

  /**
   * Asks the worker thread to stop at once, without waiting (a SIGTERM or exit handler cannot wait): after
   * this, it starts no new file, so the temp files its jobs opened can be removed for good.
   */
  stopWorkerNow(): void {
    void this.started?.terminate().catch(() => undefined);
    this.started = undefined;
  }

  dispose(): void {
    void this.worker?.then((r) => r.dispose()).catch(() => undefined);
    this.worker = undefined;
    this.started = undefined;
  }

}

function toPipelineRequest(request: QuantRequest): QuantizeRequest {
  const target = findTarget(request.target);
  if (!target) throw new InvalidArgumentError(`unknown quantization target "${request.target}"`);
  if (!target.available) throw new UnsupportedError(`${target.label}: ${target.unavailableReason ?? 'not available'}`);
  const mapped = pipelineTarget(target, request.groupSize);
  const pipelineRequest: QuantizeRequest = { input: request.input, output: request.output, target: mapped.target, ...(mapped.groupSize !== undefined ? { groupSize: mapped.groupSize } : {}) };
  if (request.method !== undefined) {
    const method = checkMethodTarget(request.method.method, target);
    const spec: MethodQuantizeSpec = { method: method.id, calib: request.method.calibrationFile };
    if (request.method.calibrationWindows !== undefined) spec.calibWindows = request.method.calibrationWindows;
    pipelineRequest.method = spec;
  }
  return pipelineRequest;
}
