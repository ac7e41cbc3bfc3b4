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
import { isGpuDecodable, tensorStatsOnGpu, type RowData } from '../gpu/stats';
import { ComputeDevice } from './computeDevice';
import { sleep, type JobContext } from './jobContext';
import { ProgressTracker } from './progressTracker';

/** Rows are read in windows of at most this many bytes of f32. */
const WINDOW_BYTES = 32 * 1024 * 1024;

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
  try {
    const tensors = selectTensors(checkpoint, spec.tensorNames);
    const bytesTotal = tensors.reduce((a, t) => a + t.nbytes, 0);
    const tracker = new ProgressTracker(ctx.jobId, tensors.length, bytesTotal, ctx.progress);
    tracker.update('open', 0, tensors[0]?.name ?? '');
    device = await ComputeDevice.open(spec.device, ctx.notice);
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
              read: async (rowStart, rowCount): Promise<RowData> =>
                isGpuDecodable(tensor.dtype) ? { kind: 'raw', dtype: tensor.dtype, bytes: await checkpoint.readRawRows(tensor.name, rowStart, rowCount) } : { kind: 'f32', values: await readF32(rowStart, rowCount) },
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
    device?.dispose();
    await cpuEngine?.dispose();
    await checkpoint.close();
  }
}
