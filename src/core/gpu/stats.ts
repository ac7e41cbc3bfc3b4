/**
 * Weight statistics on the GPU: the two passes of analysis/weightStats.ts (the CPU reference),
 * streamed over windows of rows so memory stays bounded whatever the tensor size.
 *   pass 1: raw rows are uploaded (BF16/F16/F8 decoded to f32 by the `decode` kernel), per-segment
 *           moments come back and are merged into per-row and per-tensor moments in f64 on the host;
 *   pass 2: with the tensor's range and outlier threshold known, the `histogram` kernel counts both
 *           histograms and the outliers per row and per column (the data stays on the GPU when the
 *           tensor fits in one window, otherwise the windows are read again).
 * Rows longer than one window are cut into pieces of whole 256-value multiples and merged on the host.
 * Agreement with the CPU reference: histogram and outlier counts exactly (same f32 binning rules),
 * moments within f32 accumulation error (tests use 1e-4 relative on mean/variance, 1e-3 on kurtosis).
 */
import { InvalidArgumentError } from '../errors';
import {
  RowMoments,
  checkShape,
  emptySecondPassCounts,
  mergeMoments,
  secondPassSpecOf,
  statsFromPasses,
  summarizeMoments,
  validateStatsOptions,
  type Moments,
  type SecondPassCounts,
  type TensorStats,
  type WeightStatsOptions,
} from '../analysis/weightStats';
import { guarded, type GpuContext } from './device';
import { KERNELS, align4, createStorageBuffer, encodeKernel, gridFor } from './kernels';
import { DEFAULT_MAX_CHUNK_BYTES, throwIfAborted, type GpuRunOptions } from './quantize';

/** Stored dtypes the decode kernel turns into f32, with their kernel mode and byte size. */
export const GPU_DECODABLE = { F32: { mode: 0, bytes: 4 }, BF16: { mode: 1, bytes: 2 }, F16: { mode: 2, bytes: 2 }, F8_E4M3: { mode: 3, bytes: 1 }, F8_E5M2: { mode: 4, bytes: 1 } } as const;
export type GpuDecodableDtype = keyof typeof GPU_DECODABLE;

export function isGpuDecodable(dtype: string): dtype is GpuDecodableDtype {
  return Object.hasOwn(GPU_DECODABLE, dtype);
}

/** Rows as read from the file: decoded f32, or the stored bytes of a dtype the GPU decodes. */
export type RowData = { kind: 'f32'; values: Float32Array } | { kind: 'raw'; dtype: GpuDecodableDtype; bytes: Uint8Array };

export interface RowSource {
  /** Reads rows [rowStart, rowStart + rowCount). */
  read(rowStart: number, rowCount: number): Promise<RowData>;
}

/** Values per moment segment: f32 counts stay exact and per-segment sums accurate. */
const SEGMENT = 16384;
const SEG_STRIDE = 11;

interface Piece {
  rowStart: number;
  rowCount: number;
  /** Column range within the row (a whole row unless the row is longer than a window). */
  colStart: number;
  colCount: number;
}

/** Splits a tensor into windows of whole rows, or pieces of one row, of at most maxElements values. */
export function planPieces(rows: number, rowLength: number, maxElements: number): Piece[] {
  const pieces: Piece[] = [];
  if (rowLength <= maxElements) {
    const perWindow = Math.max(1, Math.floor(maxElements / Math.max(1, rowLength)));
    for (let r = 0; r < rows; r += perWindow) pieces.push({ rowStart: r, rowCount: Math.min(perWindow, rows - r), colStart: 0, colCount: rowLength });
  } else {
    const pieceLength = Math.max(256, Math.floor(maxElements / 256) * 256);
    for (let r = 0; r < rows; r++) for (let c = 0; c < rowLength; c += pieceLength) pieces.push({ rowStart: r, rowCount: 1, colStart: c, colCount: Math.min(pieceLength, rowLength - c) });
  }
  return pieces;
}

function sliceRowData(data: RowData, colStart: number, colCount: number): RowData {
  if (data.kind === 'f32') return { kind: 'f32', values: data.values.subarray(colStart, colStart + colCount) };
  const size = GPU_DECODABLE[data.dtype].bytes;
  return { kind: 'raw', dtype: data.dtype, bytes: data.bytes.subarray(colStart * size, (colStart + colCount) * size) };
}

export async function tensorStatsOnGpu(
  gpu: GpuContext,
  name: string,
  shape: readonly number[],
  source: RowSource,
  options: WeightStatsOptions,
  run: GpuRunOptions = {},
): Promise<TensorStats> {
  validateStatsOptions(options);
  const elementCount = shape.reduce((a, b) => a * b, 1);
  const { rows, rowLength } = checkShape(name, shape, elementCount);
  const cap = Math.min(run.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES, gpu.limits.maxStorageBufferBindingSize);
  const maxElements = Math.floor(cap / 4);
  if (maxElements < 256) throw new InvalidArgumentError(`a chunk of ${cap} bytes is too small`);
  const pieces = elementCount === 0 ? [] : planPieces(rows, rowLength, maxElements);
  const pieceElements = pieces.reduce((m, p) => Math.max(m, p.rowCount * p.colCount), 0);
  const maxSegments = pieces.reduce((m, p) => Math.max(m, p.rowCount * Math.ceil(p.colCount / SEGMENT)), 0);
  const { device } = gpu;

  const created: GPUBuffer[] = [];
  const track = (b: GPUBuffer) => {
    created.push(b);
    return b;
  };
  const values = track(createStorageBuffer(gpu, `${name} f32`, pieceElements * 4));
  const raw = track(createStorageBuffer(gpu, `${name} raw`, pieceElements * 4));
  const segments = track(createStorageBuffer(gpu, `${name} segments`, maxSegments * SEG_STRIDE * 4));
  const params = track(device.createBuffer({ label: 'stats params', size: 48, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }));
  const stagingSize = align4(Math.max(maxSegments * SEG_STRIDE * 4, (options.histogramBins + options.logOctaves * 4 + 1 + rows + rowLength) * 4));
  const staging = track(device.createBuffer({ label: 'stats readback', size: stagingSize, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }));

  /** Uploads one piece into `values` (decoding on the GPU when raw). */
  const upload = (data: RowData, count: number): void => {
    if (data.kind === 'f32') {
      device.queue.writeBuffer(values, 0, data.values, 0, count);
      return;
    }
    if (data.dtype === 'F32') {
      device.queue.writeBuffer(values, 0, padTo4(data.bytes));
      return;
    }
    device.queue.writeBuffer(raw, 0, padTo4(data.bytes));
    const grid = gridFor(KERNELS.decode.workgroupsFor(count), gpu.limits.maxComputeWorkgroupsPerDimension);
    device.queue.writeBuffer(params, 0, new Uint32Array([count, GPU_DECODABLE[data.dtype].mode, grid.x, 0]));
    const encoder = device.createCommandEncoder();
    encodeKernel(gpu, encoder, KERNELS.decode, [raw, values, params], grid);
    device.queue.submit([encoder.finish()]);
  };

  const readPiece = async (p: Piece, index: number): Promise<RowData> => {
    run.onPhase?.('upload', index, pieces.length);
    throwIfAborted(run.signal);
    const data = await source.read(p.rowStart, p.rowCount);
    throwIfAborted(run.signal);
    return p.colCount === rowLength ? data : sliceRowData(data, p.colStart, p.colCount);
  };

  try {
    // ---- pass 1: moments ----
    const rowMoments = new RowMoments(rows);
    for (const [index, p] of pieces.entries()) {
      const data = await readPiece(p, index);
      await guarded(gpu, `${name}: statistics pass 1, window ${index + 1}/${pieces.length}`, async () => {
        const count = p.rowCount * p.colCount;
        upload(data, count);
        run.onPhase?.('compute', index, pieces.length);
        throwIfAborted(run.signal);
        const segmentsPerRow = Math.ceil(p.colCount / SEGMENT);
        const segmentCount = p.rowCount * segmentsPerRow;
        const grid = gridFor(KERNELS.rowMoments.workgroupsFor(segmentCount), gpu.limits.maxComputeWorkgroupsPerDimension);
        device.queue.writeBuffer(params, 0, new Uint32Array([segmentCount, SEGMENT, p.colCount, segmentsPerRow, grid.x, 0, 0, 0]));
        const encoder = device.createCommandEncoder();
        encodeKernel(gpu, encoder, KERNELS.rowMoments, [values, segments, params], grid);
        const bytes = segmentCount * SEG_STRIDE * 4;
        encoder.copyBufferToBuffer(segments, 0, staging, 0, bytes);
        device.queue.submit([encoder.finish()]);
        run.onPhase?.('readback', index, pieces.length);
        await staging.mapAsync(GPUMapMode.READ, 0, bytes);
        try {
          throwIfAborted(run.signal);
          const seg = new Float32Array(staging.getMappedRange(0, bytes));
          for (let s = 0; s < segmentCount; s++) {
            const row = p.rowStart + Math.floor(s / segmentsPerRow);
            rowMoments.set(row, mergeMoments(rowMoments.get(row), segmentMoments(seg, s)));
          }
        } finally {
          staging.unmap();
        }
      });
    }

    // ---- pass 2: histograms and outliers ----
    const spec = secondPassSpecOf(summarizeMoments(rowMoments.total()), options);
    const counts = emptySecondPassCounts(spec, rows, rowLength);
    if (pieces.length > 0) {
      const fixed = track(createStorageBuffer(gpu, 'fixed histogram', counts.fixed.byteLength));
      const log = track(createStorageBuffer(gpu, 'log histogram', counts.log.byteLength));
      const rowOut = track(createStorageBuffer(gpu, 'row outliers', counts.rowOutliers.byteLength));
      const colOut = track(createStorageBuffer(gpu, 'column outliers', counts.columnOutliers.byteLength));
      // Fresh buffers are zeroed by WebGPU.
      const resident = pieces.length === 1;
      for (const [index, p] of pieces.entries()) {
        const data = resident ? null : await readPiece(p, index);
        await guarded(gpu, `${name}: statistics pass 2, window ${index + 1}/${pieces.length}`, async () => {
          const count = p.rowCount * p.colCount;
          if (data !== null) upload(data, count);
          run.onPhase?.('compute', index, pieces.length);
          throwIfAborted(run.signal);
          const grid = gridFor(KERNELS.histogram.workgroupsFor(count), gpu.limits.maxComputeWorkgroupsPerDimension);
          const words = new Uint32Array(12);
          const floats = new Float32Array(words.buffer);
          const ints = new Int32Array(words.buffer);
          words.set([count, rowLength, p.rowStart, p.colStart, spec.fixed.bins, spec.log.octaves * 4]);
          ints[6] = spec.log.topExponent - spec.log.octaves + 1;
          words[7] = grid.x;
          floats[8] = spec.fixed.lo;
          floats[9] = spec.fixed.scale;
          floats[10] = spec.threshold;
          floats[11] = spec.center;
          device.queue.writeBuffer(params, 0, words);
          const encoder = device.createCommandEncoder();
          encodeKernel(gpu, encoder, KERNELS.histogram, [values, fixed, log, rowOut, colOut, params], grid);
          device.queue.submit([encoder.finish()]);
        });
      }
      run.onPhase?.('readback', pieces.length - 1, pieces.length);
      await guarded(gpu, `${name}: statistics readback`, () => readCounters(gpu, staging, [fixed, log, rowOut, colOut], counts));
      throwIfAborted(run.signal);
    }
    return statsFromPasses(name, shape, rowMoments, spec, counts);
  } finally {
    for (const b of created) b.destroy();
  }
}

function segmentMoments(seg: Float32Array, s: number): Moments {
  const o = s * SEG_STRIDE;
  const count = seg[o]!;
  const empty = count === 0;
  // The kernel worked on x * 2^shift: undo it for the mean and the central sums.
  const unscale = 2 ** -seg[o + 10]!;
  return {
    count,
    mean: seg[o + 1]! * unscale,
    m2: seg[o + 2]! * unscale ** 2,
    m3: seg[o + 3]! * unscale ** 3,
    m4: seg[o + 4]! * unscale ** 4,
    min: empty ? Infinity : seg[o + 5]!,
    max: empty ? -Infinity : seg[o + 6]!,
    absMax: seg[o + 7]!,
    nanCount: seg[o + 8]!,
    infCount: seg[o + 9]!,
  };
}

async function readCounters(gpu: GpuContext, staging: GPUBuffer, buffers: GPUBuffer[], counts: SecondPassCounts): Promise<void> {
  const targets = [counts.fixed, counts.log, counts.rowOutliers, counts.columnOutliers];
  const encoder = gpu.device.createCommandEncoder();
  let offset = 0;
  const offsets: number[] = [];
  buffers.forEach((b, i) => {
    offsets.push(offset);
    encoder.copyBufferToBuffer(b, 0, staging, offset, targets[i]!.byteLength);
    offset += targets[i]!.byteLength;
  });
  gpu.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ, 0, align4(offset));
  try {
    const all = new Uint32Array(staging.getMappedRange(0, align4(offset)));
    targets.forEach((t, i) => t.set(all.subarray(offsets[i]! / 4, offsets[i]! / 4 + t.length)));
  } finally {
    staging.unmap();
  }
}

function padTo4(bytes: Uint8Array): Uint8Array {
  if (bytes.byteLength % 4 === 0 && bytes.byteOffset % 4 === 0) return bytes;
  const padded = new Uint8Array(align4(bytes.byteLength));
  padded.set(bytes);
  return padded;
}
