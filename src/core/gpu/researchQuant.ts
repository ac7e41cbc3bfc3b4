/**
 * The research quantizers on the GPU, bit for bit equal to the CPU references in core/quant:
 * INT8 absmax and zero-point (int8.ts), group-wise INTn 2/3/4/8 sym/asym (intN.ts), NF4 blocks of 64
 * (nf4.ts; the double quantization of absmax stays on the CPU) and FP8 E4M3 (fp8.ts).
 *
 * How the bits match: the CPU references compute in f32 (each step Math.fround-ed, which equals IEEE
 * f32 arithmetic); the kernels do the same IEEE f32 operations on bit patterns in integers
 * (kernels/lib/exact_f32.wgsl), so neither WGSL's 2.5-ULP division nor a flush of subnormals nor an
 * assumed absence of Inf can change a result. Rounding rules: at the top of kernels/{intn,fp8,nf4}.wgsl.
 *
 * A weight is a row-major [rows, cols] array cut into spans that share a scale (groups of a row, a
 * row, or the whole tensor; see kernels/lib/research_span.wgsl). Per chunk of the tensor (within the
 * binding limit) one submit runs: range (lo/hi/absmax per span), params (scale, zero), encode.
 * When a span is longer than a chunk (per-tensor scales of a big tensor), the ranges of all chunks
 * are merged on the host first (min/max are exact in any order) and a second pass encodes.
 * NaN/Inf -> NumericError naming the first such value; AbortSignal -> CancelledError between phases.
 */
import { InvalidArgumentError, NumericError } from '../errors';
import { quantizeInt8Absmax, quantizeInt8ZeroPoint, type Int8AbsmaxQuantized, type Int8Granularity, type Int8ZeroPointQuantized } from '../quant/int8';
import { groupCount, quantizeRowsIntN, type IntBits, type IntNQuantized } from '../quant/intN';
import { doubleQuantizeAbsmax, NF4_BLOCK_SIZE, type Nf4Quantized } from '../quant/nf4';
import { quantizeFp8E4M3, type Fp8Quantized, type Fp8ScaleGranularity } from '../quant/fp8';
import { guarded, type GpuContext } from './device';
import { align4, encodeKernel, gridFor, type BindingKind, type Kernel } from './kernels';
import { DEFAULT_MAX_CHUNK_BYTES, throwIfAborted, type GpuRunOptions } from './quantize';
import { WGSL_SOURCES } from './kernels/index';

export type { GpuRunOptions } from './quantize';

type SchemeKernel = 'intn' | 'fp8' | 'nf4';
type Phase = 0 | 1 | 2 | 3;
const PHASE_NAMES = ['range', 'params', 'encode', 'decode'] as const;
const WG = 64;
/** Values per thread of the encode and decode phases (VALUES_PER_THREAD in research_span.wgsl). */
const VALUES_PER_THREAD = 32;
const NO_BAD_VALUE = 0xffffffff;

const BINDINGS: readonly BindingKind[] = ['read-only-storage', 'storage', 'storage', 'storage', 'storage', 'storage', 'uniform'];

function phaseKernel(scheme: SchemeKernel, phase: Phase): Kernel {
  return {
    name: `${scheme}#${PHASE_NAMES[phase]}`,
    // The phase is a WGSL constant, so each phase is its own pipeline with the others compiled out.
    wgsl: `const PHASE = ${phase}u;\n${WGSL_SOURCES.common}\n${WGSL_SOURCES[scheme]}`,
    bindings: BINDINGS,
    workgroupSize: WG,
    workgroupsFor: (items: number) => Math.ceil(items / WG),
  };
}

const KERNELS: Record<SchemeKernel, readonly [Kernel, Kernel, Kernel, Kernel]> = {
  intn: [phaseKernel('intn', 0), phaseKernel('intn', 1), phaseKernel('intn', 2), phaseKernel('intn', 3)],
  fp8: [phaseKernel('fp8', 0), phaseKernel('fp8', 1), phaseKernel('fp8', 2), phaseKernel('fp8', 3)],
  nf4: [phaseKernel('nf4', 0), phaseKernel('nf4', 1), phaseKernel('nf4', 2), phaseKernel('nf4', 3)],
};

/** Spans up to this long get one thread each in the range phase; longer ones workgroups of SEGMENT values. */
const RANGE_PER_THREAD_MAX_SPAN = 256;
/** Values per workgroup of a long span in the range phase (SEGMENT in research_span.wgsl). */
const SEGMENT = 4096;

/** Range-phase workgroups per span of this chunk: 0 = one thread per span. */
function segmentsPerSpan(layout: SpanLayout, chunk: Chunk): number {
  return layout.longestSpan <= RANGE_PER_THREAD_MAX_SPAN ? 0 : Math.ceil(Math.min(layout.longestSpan, chunk.count) / SEGMENT);
}

/** Workgroups of phase 0 for a chunk. */
function rangeWorkgroups(layout: SpanLayout, chunk: Chunk): number {
  const segments = segmentsPerSpan(layout, chunk);
  return segments === 0 ? Math.ceil(chunk.spanCount / WG) : chunk.spanCount * segments;
}

/** Initial range keys of a span whose segments meet through atomics: lo = hi = +0 (key 0x80000000), absmax 0. */
function initialRangeKeys(spans: number): Uint32Array {
  const keys = new Uint32Array(spans * 3);
  for (let k = 0; k < spans; k++) {
    keys[3 * k] = 0x80000000;
    keys[3 * k + 1] = 0x80000000;
  }
  return keys;
}

/** The scheme constants of the uniform block (kernels/lib/research_span.wgsl `Params`). */
interface SchemeConfig {
  kernel: SchemeKernel;
  bits: number;
  symmetric: boolean;
  minZero: number;
  /** INT8 absmax stores q as int8, not q + 128. */
  signedLevels: boolean;
}

/** Bytes of codes for `count` values (one byte each, or two NF4 codes per byte). */
const codeBytes = (kernel: SchemeKernel, count: number): number => (kernel === 'nf4' ? Math.ceil(count / 2) : count);

/** The span layout: [rows, cols] cut into groups of `group` columns (last one of a row shorter). */
class SpanLayout {
  readonly count: number;
  readonly groupsPerRow: number;
  readonly spans: number;
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly group: number,
  ) {
    this.count = rows * cols;
    this.groupsPerRow = groupCount(cols, group);
    this.spans = rows * this.groupsPerRow;
    if (this.count >= 2 ** 32) throw new InvalidArgumentError(`a tensor of ${this.count} values exceeds the GPU path's 2^32-value index range`);
  }
  spanOf(position: number): number {
    const row = Math.floor(position / this.cols);
    return row * this.groupsPerRow + Math.floor((position - row * this.cols) / this.group);
  }
  /** Start of the span holding `position` (the last span boundary at or before it). */
  spanStartAtOrBefore(position: number): number {
    if (position >= this.count) return this.count;
    const row = Math.floor(position / this.cols);
    return row * this.cols + Math.floor((position - row * this.cols) / this.group) * this.group;
  }
  /** Longest span (values). */
  get longestSpan(): number {
    return Math.min(this.group, this.cols);
  }
}

interface Chunk {
  start: number;
  count: number;
  firstSpan: number;
  spanCount: number;
}

function chunkOf(layout: SpanLayout, start: number, end: number): Chunk {
  const firstSpan = layout.spanOf(start);
  return { start, count: end - start, firstSpan, spanCount: layout.spanOf(end - 1) - firstSpan + 1 };
}

/** Values per chunk: within the caller's and the device's limits, a multiple of 64 (NF4 bytes and words line up). */
function chunkCapacity(gpu: GpuContext, options: GpuRunOptions): number {
  const capBytes = Math.min(options.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES, gpu.limits.maxStorageBufferBindingSize, gpu.limits.maxBufferSize);
  const values = Math.floor(capBytes / 4 / 64) * 64;
  if (values < 64) throw new InvalidArgumentError(`a chunk of ${capBytes} bytes cannot hold 64 values`);
  return values;
}

/** Chunks that start and end on span boundaries (every span lies in one chunk). */
function planWholeSpanChunks(layout: SpanLayout, capacity: number): Chunk[] {
  const chunks: Chunk[] = [];
  for (let start = 0; start < layout.count; ) {
    const end = layout.spanStartAtOrBefore(start + capacity);
    chunks.push(chunkOf(layout, start, end));
    start = end;
  }
  return chunks;
}

/** Chunks of `capacity` values regardless of spans (spans may straddle chunks). */
function planFixedChunks(layout: SpanLayout, capacity: number): Chunk[] {
  const chunks: Chunk[] = [];
  for (let start = 0; start < layout.count; start += capacity) chunks.push(chunkOf(layout, start, Math.min(layout.count, start + capacity)));
  return chunks;
}

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** The GPU buffers of one run, sized for its largest chunk; destroyed by `destroy()`. */
class RunBuffers {
  readonly input: GPUBuffer;
  readonly ranges: GPUBuffer;
  readonly spanWords: GPUBuffer;
  readonly codes: GPUBuffer;
  readonly firstBad: GPUBuffer;
  readonly decoded: GPUBuffer;
  readonly uniform: GPUBuffer;
  readonly staging: GPUBuffer;
  readonly layoutOffsets: { codes: number; spanWords: number; ranges: number; firstBad: number; decoded: number };
  constructor(
    private readonly gpu: GpuContext,
    sizes: { inputValues: number; spans: number; codeBytes: number; decodedValues: number },
  ) {
    const { device } = gpu;
    const storage = (label: string, bytes: number) => device.createBuffer({ label, size: align4(bytes), usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
    this.input = storage('research input', sizes.inputValues * 4);
    this.ranges = storage('research ranges', sizes.spans * 12);
    this.spanWords = storage('research span words', sizes.spans * 8);
    this.codes = storage('research codes', sizes.codeBytes);
    this.firstBad = storage('research first bad value', 4);
    this.decoded = storage('research decoded', sizes.decodedValues * 4);
    this.uniform = device.createBuffer({ label: 'research params', size: 48, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
    const codesAt = 0;
    const spanWordsAt = align4(sizes.codeBytes);
    const rangesAt = spanWordsAt + align4(sizes.spans * 8);
    const firstBadAt = rangesAt + align4(sizes.spans * 12);
    const decodedAt = firstBadAt + 4;
    this.layoutOffsets = { codes: codesAt, spanWords: spanWordsAt, ranges: rangesAt, firstBad: firstBadAt, decoded: decodedAt };
    this.staging = device.createBuffer({ label: 'research readback', size: decodedAt + align4(sizes.decodedValues * 4), usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  }
  get all(): GPUBuffer[] {
    return [this.input, this.ranges, this.spanWords, this.codes, this.firstBad, this.decoded, this.uniform];
  }
  writeUniform(layout: SpanLayout, chunk: Chunk, config: SchemeConfig): void {
    const words = new Uint32Array([
      chunk.count,
      chunk.start,
      layout.cols,
      layout.group,
      layout.groupsPerRow,
      chunk.firstSpan,
      chunk.spanCount,
      config.bits,
      config.symmetric ? 1 : 0,
      config.minZero,
      config.signedLevels ? 1 : 0,
      segmentsPerSpan(layout, chunk),
    ]);
    this.gpu.device.queue.writeBuffer(this.uniform, 0, words);
    this.gpu.device.queue.writeBuffer(this.firstBad, 0, new Uint32Array([NO_BAD_VALUE]));
  }
  destroy(): void {
    for (const b of [...this.all, this.staging]) b.destroy();
  }
}

interface Copy {
  from: GPUBuffer;
  to: number;
  bytes: number;
}

/** Dispatches `phases`, copies `copies` into the staging buffer, submits and maps it; `read` sees the mapped words. */
async function runPhases(gpu: GpuContext, buffers: RunBuffers, scheme: SchemeKernel, phases: { phase: Phase; workgroups: number }[], copies: Copy[], options: GpuRunOptions, chunkIndex: number, chunkCount: number, read: (mapped: ArrayBuffer) => void): Promise<void> {
  const { device } = gpu;
  options.onPhase?.('compute', chunkIndex, chunkCount);
  throwIfAborted(options.signal);
  const encoder = device.createCommandEncoder();
  for (const { phase, workgroups } of phases) {
    encodeKernel(gpu, encoder, KERNELS[scheme][phase], buffers.all, gridFor(workgroups, gpu.limits.maxComputeWorkgroupsPerDimension));
  }
  let end = 0;
  for (const c of copies) {
    if (c.bytes === 0) continue;
    encoder.copyBufferToBuffer(c.from, 0, buffers.staging, c.to, align4(c.bytes));
    end = Math.max(end, c.to + align4(c.bytes));
  }
  device.queue.submit([encoder.finish()]);
  options.onPhase?.('readback', chunkIndex, chunkCount);
  throwIfAborted(options.signal);
  await buffers.staging.mapAsync(GPUMapMode.READ, 0, end);
  try {
    throwIfAborted(options.signal);
    read(buffers.staging.getMappedRange(0, end));
  } finally {
    buffers.staging.unmap();
  }
}

/** Throws NumericError naming the first NaN/Inf of the chunk (flat index, and row/column of a 2-D weight). */
function throwIfBad(mapped: ArrayBuffer, offset: number, chunk: Chunk, values: Float32Array, weightCols: number | undefined, label: string): void {
  const local = new Uint32Array(mapped, offset, 1)[0]!;
  if (local === NO_BAD_VALUE) return;
  const index = chunk.start + local;
  const row = weightCols === undefined ? -1 : Math.floor(index / weightCols);
  const where = weightCols === undefined ? '' : ` (row ${row}, column ${index - row * weightCols})`;
  throw new NumericError(`${label}: value ${index}${where} is ${String(values[index])}, which cannot be quantized`);
}

interface EncodeResult {
  codes: Uint8Array;
  /** Two words per span: [scale bits (NF4: 1/absmax), zero]. */
  spanWords: Uint32Array;
  /** Three f32 per span: lo = min(min, 0), hi = max(max, 0), absmax. Zero-filled when the params were given. */
  ranges: Float32Array;
}

/**
 * Quantizes `values` ([layout.rows, layout.cols]) with one of the kernels. With `givenSpanWords`
 * (one span: the whole tensor) the range and params phases are skipped and those words are used.
 */
async function encodeOnGpu(gpu: GpuContext, values: Float32Array, layout: SpanLayout, config: SchemeConfig, options: GpuRunOptions & { weightCols?: number }, givenSpanWords?: Uint32Array): Promise<EncodeResult> {
  const label = options.label ?? 'tensor';
  const scheme = config.kernel;
  const capacity = chunkCapacity(gpu, options);
  const spanFitsChunk = givenSpanWords === undefined && layout.longestSpan <= capacity;
  const chunks = spanFitsChunk ? planWholeSpanChunks(layout, capacity) : planFixedChunks(layout, capacity);
  const codes = new Uint8Array(codeBytes(scheme, layout.count));
  const spanWords = givenSpanWords ?? new Uint32Array(layout.spans * 2);
  const ranges = new Float32Array(layout.spans * 3);
  const rangeBits = bitsOf(ranges);
  throwIfAborted(options.signal);
  const maxSpans = Math.max(...chunks.map((c) => c.spanCount));
  const maxValues = Math.max(...chunks.map((c) => c.count));
  const buffers = new RunBuffers(gpu, { inputValues: maxValues, spans: maxSpans, codeBytes: codeBytes(scheme, maxValues), decodedValues: 1 });
  const offsets = buffers.layoutOffsets;
  const upload = (chunk: Chunk, index: number, extra?: () => void): void => {
    options.onPhase?.('upload', index, chunks.length);
    throwIfAborted(options.signal);
    gpu.device.queue.writeBuffer(buffers.input, 0, values, chunk.start, chunk.count);
    buffers.writeUniform(layout, chunk, config);
    extra?.();
  };
  const initRanges = (chunk: Chunk): void => {
    if (segmentsPerSpan(layout, chunk) > 0) gpu.device.queue.writeBuffer(buffers.ranges, 0, initialRangeKeys(chunk.spanCount));
  };
  // Pass 1's merged range keys when spans straddle chunks (the second pass uploads them).
  let mergedKeys: Uint32Array | null = null;
  try {
    if (!spanFitsChunk && givenSpanWords === undefined) {
      // Pass 1: range keys of every chunk, merged per span on the host (min / max are exact in any order).
      const merged = initialRangeKeys(layout.spans);
      mergedKeys = merged;
      for (let index = 0; index < chunks.length; index++) {
        const chunk = chunks[index]!;
        await guarded(gpu, `${label}: ${scheme} ranges, chunk ${index + 1}/${chunks.length}`, async () => {
          upload(chunk, index, () => initRanges(chunk));
          const copies = [
            { from: buffers.ranges, to: offsets.ranges, bytes: chunk.spanCount * 12 },
            { from: buffers.firstBad, to: offsets.firstBad, bytes: 4 },
          ];
          await runPhases(gpu, buffers, scheme, [{ phase: 0, workgroups: rangeWorkgroups(layout, chunk) }], copies, options, index, chunks.length, (mapped) => {
            throwIfBad(mapped, offsets.firstBad, chunk, values, options.weightCols, label);
            // [min key, max key, absmax bits] per span: u32 order = value order.
            const part = new Uint32Array(mapped, offsets.ranges, chunk.spanCount * 3);
            for (let k = 0; k < chunk.spanCount; k++) {
              const s = 3 * (chunk.firstSpan + k);
              merged[s] = Math.min(merged[s]!, part[3 * k]!);
              merged[s + 1] = Math.max(merged[s + 1]!, part[3 * k + 1]!);
              merged[s + 2] = Math.max(merged[s + 2]!, part[3 * k + 2]!);
            }
          });
        });
      }
    }
    // Pass 2 (or the only pass): ranges (unless merged above or params given), params, codes.
    for (let index = 0; index < chunks.length; index++) {
      const chunk = chunks[index]!;
      await guarded(gpu, `${label}: ${scheme} chunk ${index + 1}/${chunks.length}`, async () => {
        upload(chunk, index, () => {
          if (givenSpanWords !== undefined) gpu.device.queue.writeBuffer(buffers.spanWords, 0, givenSpanWords);
          else if (mergedKeys !== null) gpu.device.queue.writeBuffer(buffers.ranges, 0, mergedKeys, chunk.firstSpan * 3, chunk.spanCount * 3);
          else initRanges(chunk);
        });
        const phases: { phase: Phase; workgroups: number }[] = [];
        if (spanFitsChunk) phases.push({ phase: 0, workgroups: rangeWorkgroups(layout, chunk) });
        if (givenSpanWords === undefined) phases.push({ phase: 1, workgroups: Math.ceil(chunk.spanCount / WG) });
        phases.push({ phase: 2, workgroups: Math.ceil(chunk.count / VALUES_PER_THREAD / WG) });
        const chunkCodeBytes = codeBytes(scheme, chunk.count);
        const copies = [
          { from: buffers.codes, to: offsets.codes, bytes: chunkCodeBytes },
          { from: buffers.spanWords, to: offsets.spanWords, bytes: givenSpanWords === undefined ? chunk.spanCount * 8 : 0 },
          { from: buffers.ranges, to: offsets.ranges, bytes: givenSpanWords === undefined ? chunk.spanCount * 12 : 0 },
          { from: buffers.firstBad, to: offsets.firstBad, bytes: 4 },
        ];
        await runPhases(gpu, buffers, scheme, phases, copies, options, index, chunks.length, (mapped) => {
          throwIfBad(mapped, offsets.firstBad, chunk, values, options.weightCols, label);
          codes.set(new Uint8Array(mapped, offsets.codes, chunkCodeBytes), codeBytes(scheme, chunk.start));
          if (givenSpanWords === undefined) spanWords.set(new Uint32Array(mapped, offsets.spanWords, chunk.spanCount * 2), chunk.firstSpan * 2);
          if (givenSpanWords === undefined) rangeBits.set(new Uint32Array(mapped, offsets.ranges, chunk.spanCount * 3), chunk.firstSpan * 3);
        });
      });
    }
  } finally {
    buffers.destroy();
  }
  return { codes, spanWords, ranges };
}

/**
 * Decodes `codes` of a [layout.rows, layout.cols] tensor back to f32 with the kernel's decode_value:
 * span words [scale bits, zero] (intn, fp8) or absmax per span (nf4).
 */
async function decodeOnGpu(gpu: GpuContext, codes: Uint8Array, layout: SpanLayout, config: SchemeConfig, perSpan: { spanWords: Uint32Array } | { absmax: Float32Array }, options: GpuRunOptions): Promise<Float32Array> {
  const label = options.label ?? 'tensor';
  const scheme = config.kernel;
  const capacity = chunkCapacity(gpu, options);
  const chunks = planFixedChunks(layout, capacity);
  const out = new Float32Array(layout.count);
  throwIfAborted(options.signal);
  if (layout.count === 0) return out;
  const maxSpans = Math.max(...chunks.map((c) => c.spanCount));
  const maxValues = Math.max(...chunks.map((c) => c.count));
  const buffers = new RunBuffers(gpu, { inputValues: 1, spans: maxSpans, codeBytes: codeBytes(scheme, maxValues), decodedValues: maxValues });
  const offsets = buffers.layoutOffsets;
  try {
    for (let index = 0; index < chunks.length; index++) {
      const chunk = chunks[index]!;
      await guarded(gpu, `${label}: ${scheme} decode chunk ${index + 1}/${chunks.length}`, async () => {
        options.onPhase?.('upload', index, chunks.length);
        throwIfAborted(options.signal);
        buffers.writeUniform(layout, chunk, config);
        const first = codeBytes(scheme, chunk.start);
        const bytes = codeBytes(scheme, chunk.count);
        const padded = new Uint8Array(align4(bytes));
        padded.set(codes.subarray(first, first + bytes));
        gpu.device.queue.writeBuffer(buffers.codes, 0, padded);
        if ('spanWords' in perSpan) {
          gpu.device.queue.writeBuffer(buffers.spanWords, 0, perSpan.spanWords, chunk.firstSpan * 2, chunk.spanCount * 2);
        } else {
          const ranges = new Float32Array(chunk.spanCount * 3);
          for (let k = 0; k < chunk.spanCount; k++) ranges[3 * k + 2] = perSpan.absmax[chunk.firstSpan + k]!;
          gpu.device.queue.writeBuffer(buffers.ranges, 0, ranges);
        }
        const copies = [{ from: buffers.decoded, to: offsets.decoded, bytes: chunk.count * 4 }];
        await runPhases(gpu, buffers, scheme, [{ phase: 3, workgroups: Math.ceil(chunk.count / VALUES_PER_THREAD / WG) }], copies, options, index, chunks.length, (mapped) => {
          out.set(new Float32Array(mapped, offsets.decoded, chunk.count), chunk.start);
        });
      });
    }
  } finally {
    buffers.destroy();
  }
  return out;
}

function checkSize(weights: Float32Array, rows: number, cols: number): void {
  if (weights.length !== rows * cols) throw new InvalidArgumentError(`expected ${rows}x${cols} = ${rows * cols} weights, got ${weights.length}`);
}

/** [rows, cols] with one span per tensor (as one row) or per output row. */
function granularityLayout(rows: number, cols: number, granularity: 'tensor' | 'channel'): SpanLayout {
  const count = rows * cols;
  return granularity === 'tensor' ? new SpanLayout(1, count, count) : new SpanLayout(rows, cols, cols);
}

function f32Bits(x: number): number {
  return bitsOf(Float32Array.of(x))[0]!;
}

function scalesOf(spanWords: Uint32Array, spans: number): Float32Array {
  const scales = new Float32Array(spans);
  const bits = bitsOf(scales);
  for (let s = 0; s < spans; s++) bits[s] = spanWords[2 * s]!;
  return scales;
}

function zerosOf(spanWords: Uint32Array, spans: number): Uint8Array {
  const zeros = new Uint8Array(spans);
  for (let s = 0; s < spans; s++) zeros[s] = spanWords[2 * s + 1]!;
  return zeros;
}

function spanWordsOf(scales: Float32Array, zeros: Uint8Array | null): Uint32Array {
  const words = new Uint32Array(scales.length * 2);
  const bits = bitsOf(scales);
  for (let s = 0; s < scales.length; s++) {
    words[2 * s] = bits[s]!;
    words[2 * s + 1] = zeros?.[s] ?? 0;
  }
  return words;
}

const INT8_ABSMAX: SchemeConfig = { kernel: 'intn', bits: 8, symmetric: true, minZero: 0, signedLevels: true };
const INT8_ZERO_POINT: SchemeConfig = { kernel: 'intn', bits: 8, symmetric: false, minZero: 0, signedLevels: false };
const FP8: SchemeConfig = { kernel: 'fp8', bits: 8, symmetric: true, minZero: 0, signedLevels: false };
const NF4: SchemeConfig = { kernel: 'nf4', bits: 4, symmetric: true, minZero: 0, signedLevels: false };

/** quantizeInt8Absmax on the GPU (same result, bit for bit). */
export async function quantizeInt8AbsmaxOnGpu(gpu: GpuContext, weights: Float32Array, rows: number, cols: number, granularity: Int8Granularity, options: GpuRunOptions = {}): Promise<Int8AbsmaxQuantized> {
  checkSize(weights, rows, cols);
  if (weights.length === 0) return quantizeInt8Absmax(weights, rows, cols, granularity);
  const layout = granularityLayout(rows, cols, granularity);
  const r = await encodeOnGpu(gpu, weights, layout, INT8_ABSMAX, { ...options, weightCols: cols });
  return { rows, cols, granularity, values: new Int8Array(r.codes.buffer, r.codes.byteOffset, r.codes.length), scales: scalesOf(r.spanWords, layout.spans) };
}

/** quantizeInt8ZeroPoint on the GPU. */
export async function quantizeInt8ZeroPointOnGpu(gpu: GpuContext, weights: Float32Array, rows: number, cols: number, granularity: Int8Granularity, options: GpuRunOptions = {}): Promise<Int8ZeroPointQuantized> {
  checkSize(weights, rows, cols);
  if (weights.length === 0) return quantizeInt8ZeroPoint(weights, rows, cols, granularity);
  const layout = granularityLayout(rows, cols, granularity);
  const r = await encodeOnGpu(gpu, weights, layout, INT8_ZERO_POINT, { ...options, weightCols: cols });
  return { rows, cols, granularity, values: r.codes, scales: scalesOf(r.spanWords, layout.spans), zeros: zerosOf(r.spanWords, layout.spans) };
}

/** quantizeRowsIntN on the GPU: levels, scales and zeros into `out` (from allocateIntN). */
export async function quantizeRowsIntNOnGpu(gpu: GpuContext, weights: Float32Array, out: IntNQuantized, minZero = 0, options: GpuRunOptions = {}): Promise<void> {
  const { rows, cols, groupSize, bits, symmetric } = out;
  if (weights.length !== rows * cols) throw new InvalidArgumentError(`expected ${rows * cols} weights, got ${weights.length}`);
  if (weights.length === 0) {
    quantizeRowsIntN(weights, out, minZero);
    return;
  }
  const layout = new SpanLayout(rows, cols, groupSize);
  const r = await encodeOnGpu(gpu, weights, layout, { kernel: 'intn', bits, symmetric, minZero, signedLevels: false }, { ...options, weightCols: cols });
  out.levels.set(r.codes);
  out.scales.set(scalesOf(r.spanWords, layout.spans));
  out.zeros.set(zerosOf(r.spanWords, layout.spans));
}

/** quantizeFp8E4M3 on the GPU. */
export async function quantizeFp8E4M3OnGpu(gpu: GpuContext, weights: Float32Array, rows: number, cols: number, granularity: Fp8ScaleGranularity, options: GpuRunOptions = {}): Promise<Fp8Quantized> {
  checkSize(weights, rows, cols);
  if (weights.length === 0) return quantizeFp8E4M3(weights, rows, cols, granularity);
  const layout = granularityLayout(rows, cols, granularity);
  const r = await encodeOnGpu(gpu, weights, layout, FP8, { ...options, weightCols: cols });
  return { rows, cols, granularity, codes: r.codes, scales: scalesOf(r.spanWords, layout.spans) };
}

/** quantizeNf4 on the GPU (the double quantization of absmax, when asked for, runs on the CPU). */
export async function quantizeNf4OnGpu(gpu: GpuContext, values: Float32Array, options: GpuRunOptions & { doubleQuant?: boolean } = {}): Promise<Nf4Quantized> {
  const count = values.length;
  if (count === 0) throw new InvalidArgumentError('cannot NF4-quantize an empty tensor');
  const layout = new SpanLayout(1, count, NF4_BLOCK_SIZE);
  const r = await encodeOnGpu(gpu, values, layout, NF4, options);
  const absmax = new Float32Array(layout.spans);
  for (let b = 0; b < layout.spans; b++) absmax[b] = r.ranges[3 * b + 2]!;
  return { count, packed: r.codes, absmax, doubleQuant: options.doubleQuant === true ? doubleQuantizeAbsmax(absmax) : null };
}

/** quantizeInt8WithScale on the GPU: q = clamp(roundEven(f32(w / scale)), -127, 127) into out[outStart...]. */
export async function quantizeInt8WithScaleOnGpu(gpu: GpuContext, weights: Float32Array, scale: number, out: Int8Array, outStart: number, options: GpuRunOptions = {}): Promise<void> {
  if (weights.length === 0) return;
  const r = await encodeOnGpu(gpu, weights, new SpanLayout(1, weights.length, weights.length), INT8_ABSMAX, options, Uint32Array.of(f32Bits(scale), 128));
  out.set(new Int8Array(r.codes.buffer, r.codes.byteOffset, r.codes.length), outStart);
}

/** quantizeAsymmetricWithParams on the GPU: weights[start, start + length) into levels[outStart...]. */
export async function quantizeAsymmetricWithParamsOnGpu(gpu: GpuContext, weights: Float32Array, start: number, length: number, scale: number, zero: number, bits: IntBits, levels: Uint8Array, outStart: number, options: GpuRunOptions = {}): Promise<void> {
  if (length === 0) return;
  const span = weights.subarray(start, start + length);
  const r = await encodeOnGpu(gpu, span, new SpanLayout(1, length, length), { kernel: 'intn', bits, symmetric: false, minZero: 0, signedLevels: false }, options, Uint32Array.of(f32Bits(scale), zero));
  levels.set(r.codes, outStart);
}

/** encodeFp8WithScale on the GPU: E4M3(f32(w / scale)) into codes[outStart...]. */
export async function encodeFp8WithScaleOnGpu(gpu: GpuContext, weights: Float32Array, scale: number, codes: Uint8Array, outStart: number, options: GpuRunOptions = {}): Promise<void> {
  if (weights.length === 0) return;
  const r = await encodeOnGpu(gpu, weights, new SpanLayout(1, weights.length, weights.length), FP8, options, Uint32Array.of(f32Bits(scale), 0));
  codes.set(r.codes, outStart);
}

/** dequantizeInt8Absmax on the GPU: f32(q * scale), value-exact. */
export function dequantizeInt8AbsmaxOnGpu(gpu: GpuContext, q: Int8AbsmaxQuantized, options: GpuRunOptions = {}): Promise<Float32Array> {
  const layout = granularityLayout(q.rows, q.cols, q.granularity);
  const codes = new Uint8Array(q.values.buffer, q.values.byteOffset, q.values.length);
  return decodeOnGpu(gpu, codes, layout, INT8_ABSMAX, { spanWords: spanWordsOf(q.scales, null) }, options);
}

/** dequantizeInt8ZeroPoint on the GPU: f32(f32(q - zero) * scale). */
export function dequantizeInt8ZeroPointOnGpu(gpu: GpuContext, q: Int8ZeroPointQuantized, options: GpuRunOptions = {}): Promise<Float32Array> {
  return decodeOnGpu(gpu, q.values, granularityLayout(q.rows, q.cols, q.granularity), INT8_ZERO_POINT, { spanWords: spanWordsOf(q.scales, q.zeros) }, options);
}

/** dequantizeRowsIntN on the GPU: f32(f32(q - zero) * scale). */
export function dequantizeRowsIntNOnGpu(gpu: GpuContext, q: IntNQuantized, options: GpuRunOptions = {}): Promise<Float32Array> {
  const config: SchemeConfig = { kernel: 'intn', bits: q.bits, symmetric: q.symmetric, minZero: 0, signedLevels: false };
  return decodeOnGpu(gpu, q.levels, new SpanLayout(q.rows, q.cols, q.groupSize), config, { spanWords: spanWordsOf(q.scales, q.zeros) }, options);
}

/** dequantizeFp8E4M3 on the GPU: f32(e4m3(q) * scale). */
export function dequantizeFp8E4M3OnGpu(gpu: GpuContext, q: Fp8Quantized, options: GpuRunOptions = {}): Promise<Float32Array> {
  return decodeOnGpu(gpu, q.codes, granularityLayout(q.rows, q.cols, q.granularity), FP8, { spanWords: spanWordsOf(q.scales, null) }, options);
}

/** dequantizeNf4Packed on the GPU: f32(NF4[code] * absmax[block]). */
export function dequantizeNf4PackedOnGpu(gpu: GpuContext, packed: Uint8Array, absmax: Float32Array, count: number, options: GpuRunOptions = {}): Promise<Float32Array> {
  if (packed.length < Math.ceil(count / 2)) throw new InvalidArgumentError(`NF4 data holds ${packed.length * 2} codes, need ${count}`);
  if (absmax.length < Math.ceil(count / NF4_BLOCK_SIZE)) throw new InvalidArgumentError(`NF4 absmax holds ${absmax.length} blocks, need ${Math.ceil(count / NF4_BLOCK_SIZE)}`);
  if (count === 0) return Promise.resolve(new Float32Array(0));
  return decodeOnGpu(gpu, packed, new SpanLayout(1, count, NF4_BLOCK_SIZE), NF4, { absmax }, options);
}
