/**
 * The `stats` job: per-tensor statistics, histograms and outlier channels of every weight, tensor by
 * tensor (memory bounded by one window of rows), on the GPU or the CPU path.
 */
import type { StatsJobResult, StatsJobSpec, TensorStatsSummary } from '../../protocol/jobs';
import { tensorStatsStreamed, topCounts, type TensorStats, type WeightStatsOptions } from '../analysis/weightStats';
import { CpuStatsEngine } from '../analysis/wasm/cpuStatsEngine';
import { CancelledError, InvalidArgumentError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { isGpuDecodable, planPieces, tensorStatsOnGpu, type RowData } from '../gpu/stats';
import { ComputeDevice } from './computeDevice';
import { sleep, type JobContext } from './jobContext';
import { ProgressTracker } from './progressTracker';

/** Rows are read in windows of at most this many bytes of f32. */
const WINDOW_BYTES = 32 * 1024 * 1024;

/**
 * The GPU path's reads, one ahead: tensorStatsOnGpu reads the windows of planPieces (again for pass 2 when a tensor
 * has several), so the job knows them in advance and starts the next read (on libuv's pool) as it hands one over;
 * that read then overlaps the device's work on the window just handed over. A read out of the plan's order is made
 * on the spot (and the plan resumes after it).
 */
class GpuReadAhead {
  private readonly plan: { tensorIndex: number; rowStart: number; rowCount: number }[] = [];
  private readonly firstRead: number[] = [];
  private position = 0;
  private pending: { at: number; data: Promise<RowData> } | null = null;

  constructor(
    tensors: readonly TensorEntry[],
    maxChunkBytes: number,
    private readonly load: (tensorIndex: number, rowStart: number, rowCount: number) => Promise<RowData>,
  ) {
    tensors.forEach((t, tensorIndex) => {
      this.firstRead.push(this.plan.length);
      const elements = t.shape.reduce((a, b) => a * b, 1);
      if (elements === 0) return;
      const rows = t.shape.length <= 1 ? 1 : t.shape[0]!;
      const pieces = planPieces(rows, elements / rows, Math.floor(maxChunkBytes / 4)).map((p) => ({ tensorIndex, rowStart: p.rowStart, rowCount: p.rowCount }));
      this.plan.push(...pieces);
      if (pieces.length > 1) this.plan.push(...pieces);
    });
  }

  read(tensorIndex: number, rowStart: number, rowCount: number): Promise<RowData> {
    const matches = (i: number) => {
      const r = this.plan[i];
      return r !== undefined && r.tensorIndex === tensorIndex && r.rowStart === rowStart && r.rowCount === rowCount;
    };
    let at = matches(this.position) ? this.position : -1;
    for (let i = this.firstRead[tensorIndex] ?? this.plan.length; at < 0 && i < this.plan.length && this.plan[i]!.tensorIndex === tensorIndex; i++) if (matches(i)) at = i;
    const pending = this.pending;
    this.pending = null;
    const data = pending !== null && pending.at === at ? pending.data : this.load(tensorIndex, rowStart, rowCount);
    if (at >= 0) {
      this.position = at + 1;
      const next = this.plan[at + 1];
      if (next !== undefined) {
        const ahead = this.load(next.tensorIndex, next.rowStart, next.rowCount);
        // Observed here so that a failed read-ahead that is never taken is not an unhandled rejection.
        ahead.catch(() => undefined);
        this.pending = { at: at + 1, data: ahead };
      }
    }
    return data;
  }

  /** Waits for the read in flight (its error dropped): call before the checkpoint closes. */
  async drain(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (pending !== null) await pending.data.catch(() => undefined);
  }
}

export function selectTensors(checkpoint: Checkpoint, names: readonly string[] | undefined): TensorEntry[] {
  if (names === undefined) return checkpoint.tensors;
  const byName = new Map(checkpoint.tensors.map((t) => [t.name, t]));
  return names.map((n) => {
    const t = byName.get(n);
    if (t === undefined) throw new InvalidArgumentError(`${checkpoint.path}: no tensor named ${n}`);
    return t;
  });
}

export function summarizeTensorStats(stats: TensorStats, dtype: string, top: number): TensorStatsSummary {
  return {
    name: stats.name,
    dtype,
    shape: stats.shape,
    count: stats.count,
    nanCount: stats.nanCount,
    infCount: stats.infCount,
    min: stats.min,
    max: stats.max,
    absMax: stats.absMax,
    mean: stats.mean,
    variance: stats.variance,
    kurtosis: stats.kurtosis,
    outlierThreshold: stats.outlierThreshold,
    outlierCenter: stats.outlierCenter,
    outlierCount: stats.outlierCount,
    topOutlierRows: topCounts(stats.rowOutlierCounts, top),
    topOutlierColumns: topCounts(stats.columnOutlierCounts, top),
    rowAbsMax: Array.from(stats.rowAbsMax),
    histogram: { lo: stats.histogram.lo, hi: stats.histogram.hi, counts: Array.from(stats.histogram.counts) },
    logHistogram: { octaves: stats.logHistogram.octaves, topExponent: stats.logHistogram.topExponent, underflow: stats.logHistogram.underflow, counts: Array.from(stats.logHistogram.counts) },
  };
}

export async function runStatsJob(spec: StatsJobSpec, ctx: JobContext): Promise<StatsJobResult> {
  const options: WeightStatsOptions = { histogramBins: spec.histogramBins, logOctaves: spec.logOctaves, outlierSigma: spec.outlierSigma, topChannels: spec.topChannels };
  const checkpoint = await openCheckpoint(spec.modelPath);
  let device: ComputeDevice | null = null;
  let cpuEngine: CpuStatsEngine | null | undefined;
  let gpuReads: GpuReadAhead | null = null;
  try {
    const tensors = selectTensors(checkpoint, spec.tensorNames);
    const bytesTotal = tensors.reduce((a, t) => a + t.nbytes, 0);
    const tracker = new ProgressTracker(ctx.jobId, tensors.length, bytesTotal, ctx.progress);
    tracker.update('open', 0, tensors[0]?.name ?? '');
    // Under auto a software adapter (lavapipe) is given back: the CPU path is several times faster there (README #4).
    device = await ComputeDevice.open(spec.device, ctx.notice, { softwareAdapter: spec.testFaults?.useSoftwareAdapter === true ? 'use' : 'avoid' });
    const gpuLimit = device.gpu?.limits.maxStorageBufferBindingSize;
    if (gpuLimit !== undefined) {
      const readRows = async (tensorIndex: number, rowStart: number, rowCount: number): Promise<RowData> => {
        const t = tensors[tensorIndex]!;
        return isGpuDecodable(t.dtype) ? { kind: 'raw', dtype: t.dtype, bytes: await checkpoint.readRawRows(t.name, rowStart, rowCount) } : { kind: 'f32', values: await checkpoint.readRowsF32(t.name, rowStart, rowCount) };
      };
      gpuReads = new GpuReadAhead(tensors, Math.min(WINDOW_BYTES, gpuLimit), readRows);
    }
    const results: TensorStatsSummary[] = [];
    let bytesDone = 0;
    for (const [index, tensor] of tensors.entries()) {
      if (ctx.signal.aborted) throw new CancelledError();
      tracker.update('read', index, tensor.name);
      const rowLength = tensor.shape.length <= 1 ? 1 : tensor.shape.slice(1).reduce((a, b) => a * b, 1);
      const rowsPerWindow = Math.max(1, Math.floor(WINDOW_BYTES / 4 / Math.max(1, rowLength)));
      const readF32 = (rowStart: number, rowCount: number) => checkpoint.readRowsF32(tensor.name, rowStart, rowCount);
      const stats = await device.run(
        (gpu) =>
          tensorStatsOnGpu(
            gpu,
            tensor.name,
            tensor.shape,
            {
              read: (rowStart, rowCount): Promise<RowData> => gpuReads!.read(index, rowStart, rowCount),
            },
            options,
            {
              signal: ctx.signal,
              maxChunkBytes: WINDOW_BYTES,
              label: tensor.name,
              onPhase: (phase) => {
                if (phase === 'compute' && spec.testFaults?.loseGpuAtTensor === index) gpu.destroy();
                tracker.update(phase, index, tensor.name);
              },
            },
          ),
        () => {
          tracker.update('compute', index, tensor.name);
          // The WebAssembly kernels with reads overlapped (made when the CPU path first runs); the JS reference where they do not run.
          cpuEngine ??= CpuStatsEngine.create(checkpoint, tensors, WINDOW_BYTES / 4);
          if (cpuEngine !== null) return cpuEngine.tensorStats(index, options, ctx.signal);
          return tensorStatsStreamed(tensor.name, tensor.shape, readF32, options, { signal: ctx.signal, maxWindowElements: rowsPerWindow * rowLength });
        },
      );
      results.push(summarizeTensorStats(stats, tensor.dtype, spec.topChannels));
      bytesDone += tensor.nbytes;
      tracker.update('compute', index, tensor.name, bytesDone);
      if (spec.testFaults?.delayMsPerTensor !== undefined) await sleep(spec.testFaults.delayMsPerTensor, ctx.signal);
    }
    if (ctx.signal.aborted) throw new CancelledError();
    tracker.update('done', Math.max(0, tensors.length - 1), tensors.at(-1)?.name ?? '', bytesTotal);
    return { kind: 'stats', modelPath: spec.modelPath, device: device.kind, deviceDescription: device.description, tensors: results, bytesRead: bytesTotal, seconds: tracker.secondsSinceStart() };
  } finally {
    await gpuReads?.drain();
    device?.dispose();
    await cpuEngine?.dispose();
    await checkpoint.close();
  }
}
