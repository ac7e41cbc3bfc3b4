/**
 * The WebAssembly kernels of weightStats.as (built into weightStatsWasm.ts) behind the types of
 * analysis/weightStats.ts: per-row moments (pass 1) and histograms + outlier counts (pass 2) of f32 or BF16 rows
 * that sit in the module's memory. The caller reserves window slots (reserve), reads rows straight into them
 * (slotView + Checkpoint.readRowsF32Into / readRowsBf16Into) and runs the passes there: no copy between the file
 * and the kernels, and BF16 is widened as the kernels load it.
 *
 * Threads: the memory is a shared WebAssembly.Memory, and threads - 1 helper worker_threads instantiate the same
 * module on it. A block of rows is cut into chunks of about CHUNK_VALUES values, and every thread (this one and the
 * helpers that have started) takes the next chunk from a shared Atomics counter until none is left: a thread that
 * another process slows down takes fewer chunks instead of holding the others up. Pass 1 writes each row's moments
 * to a shared per-row block; pass 2 adds each row's outliers to a shared per-row block and its histograms and
 * column counts to the thread's own scratch, all added up here. A helper waits on an Atomics word (no polling) and
 * is told what to run through its control block in the same memory; a helper that fails or does not answer ends
 * the call with an INTERNAL error (no partial counts). Shared memory does not detach
 * views when it grows, so a read in flight into a slot survives reserve().
 *
 * Results: counts exactly the reference's (countSecondPassCpu); moments within float64 rounding of momentsOf
 * (weightStats.as says how). Rows longer than PIECE values are cut into pieces whose moments are
 * merged (mergeMoments) and whose column counters are added piece by piece (on this thread only).
 */
import { Worker } from 'node:worker_threads';
import { QuantLensError } from '../../errors';
import { growMemory, wasmApi, type WasmApi, type WasmMemory } from '../../wasmApi';
import { LOG_BINS_PER_OCTAVE, MOMENT_SLOTS, RowMoments, fixedBinOf, mergeMoments, emptyMoments, type SecondPassCounts, type SecondPassSpec } from '../weightStats';
import { WEIGHT_STATS_WASM_BASE64 } from './weightStatsWasm';

/** The module's declared maximum (buildInfo.ts): the whole 32-bit space. */
const MAX_PAGES = 65536;
/** Rows per kernel call and thread (the moments / row-outlier scratch holds this many). */
const BLOCK_ROWS = 4096;
/** Longest row piece per kernel call (the column-outlier scratch holds this many). */
const PIECE = 256 * 1024;
/** Values per chunk that a thread takes at a time (whole rows, at least one). */
const CHUNK_VALUES = 64 * 1024;
/** Rows per block: the shared per-row outputs hold this many. */
const SHARED_ROWS = 16 * 1024;
/** Most compute threads (this one and helpers). */
export const MAX_STATS_THREADS = 8;
/** Bytes of one helper's control block (8 Int32 words, then up to 14 float64 arguments). */
const CTRL_BYTES = 256;
/** Log-histogram table size per lane (weightStats.as LOG_TABLE); slots from 1020 hold non-finite values. */
const LOG_TABLE = 1024;
const FIRST_NON_FINITE_LOG_SLOT = 255 * 4;
/** Fixed-histogram slots per lane before its log table (weightStats.as FIXED_SLOTS): bins <= 256, then the skip slot. */
const FIXED_SLOTS = 260;
/** The clean pass's joint table per lane (weightStats.as JOINT_SLOTS): slot fixedBin + 1024 + rank. */
const JOINT_SLOTS = 2048 + FIXED_SLOTS;
const LANE_TABLE = Math.max(FIXED_SLOTS + LOG_TABLE, JOINT_SLOTS);
/** Stay well below the 4 GiB the module may address. */
const MAX_HEAP_BYTES = 3 * 2 ** 30;
/** How long this thread waits for the helper's half before it gives up on the helper (it then runs the half itself). */
const HELPER_TIMEOUT_MS = 60_000;
/**
 * Kernels a finished job hands back (release) wait this long for the next job's acquire before their helper
 * threads end: a helper takes 50-70 ms and ~50 ms of CPU to start, a tenth of a 1 GiB stats job on two cores.
 * Only kernels whose memory is at most KEEP_BYTES are kept (their memory cannot shrink).
 */
const KEEP_MS = 10_000;
const KEEP_BYTES = 128 * 2 ** 20;

type RowMomentsKernel = (src: number, rows: number, rowLength: number, out: number) => void;
type SecondPassKernel = (src: number, rows: number, rowLength: number, lo: number, scale: number, bins: number, threshold: number, center: number, tables: number, rowOut: number, colOut: number, clean: number) => void;

/** The kernels over f32 rows, and (…Bf16) over BF16 rows as stored: 2 bytes per value, widened as they are loaded. */
interface WeightStatsExports {
  heapBase(): number;
  rowMoments: RowMomentsKernel;
  rowMomentsBf16: RowMomentsKernel;
  secondPass: SecondPassKernel;
  secondPassBf16: SecondPassKernel;
}

const FUNCTIONS = ['heapBase', 'rowMoments', 'rowMomentsBf16', 'secondPass', 'secondPassBf16'] as const;

/**
 * How a slot holds its rows: 'f32', or 'bf16' as Checkpoint.readRowsBf16Into leaves them (the BF16 values in the
 * upper half of the rows' f32 room: bytes [2n, 4n) of the slot for n values).
 */
export type SlotValues = 'f32' | 'bf16';

/**
 * The helper thread (plain JS, run with `eval`, so the bundles need no extra entry point). Control block, Int32
 * words at `ctrl`: [0] request sequence (this side bumps it and notifies), [1] done sequence (the helper sets it
 * to the request's and notifies), [2] op (1 rowMoments, 2 secondPass, 3 exit), [3] 0 or 1 when the call threw,
 * [4] 1 once the helper is listening (until then the threads that are take its chunks: a worker takes tens of ms
 * to start), [5] 1 for BF16 rows (the …Bf16 kernels, 2 bytes per value); the arguments as float64 from byte
 * ctrl + 32: src, rows, rowLength, the Int32 chunk counter's byte address, rows per chunk, then the kernel's own
 * (rowMoments: out; secondPass: lo .. clean with rowOut for row 0).
 */
const HELPER_SOURCE = `
const { workerData } = require('node:worker_threads');
const { module, memory, ctrl } = workerData;
const wasm = new WebAssembly.Instance(module, { env: { memory } }).exports;
const words = new Int32Array(memory.buffer, ctrl, 8);
let seen = Atomics.load(words, 0);
Atomics.store(words, 4, 1);
for (;;) {
  Atomics.wait(words, 0, seen);
  seen = Atomics.load(words, 0);
  const op = words[2];
  if (op === 3) break;
  const a = new Float64Array(memory.buffer, ctrl + 32, 14);
  const src = a[0], rows = a[1], rowLength = a[2], chunk = a[4];
  const bf16 = words[5] === 1;
  const valueBytes = bf16 ? 2 : 4;
  const rowMoments = bf16 ? wasm.rowMomentsBf16 : wasm.rowMoments;
  const secondPass = bf16 ? wasm.secondPassBf16 : wasm.secondPass;
  const counter = new Int32Array(memory.buffer, a[3], 1);
  let failed = 0;
  try {
    for (;;) {
      const r0 = Atomics.add(counter, 0, 1) * chunk;
      if (r0 >= rows) break;
      const n = Math.min(chunk, rows - r0);
      const at = src + r0 * rowLength * valueBytes;
      if (op === 1) rowMoments(at, n, rowLength, a[5] + r0 * 80);
      else secondPass(at, n, rowLength, a[5], a[6], a[7], a[8], a[9], a[10], a[11] + r0 * 4, a[12], a[13]);
    }
  } catch (e) {
    failed = 1;
  }
  words[3] = failed;
  Atomics.store(words, 1, seen);
  Atomics.notify(words, 1);
}
`;

type SharedMemory = WasmMemory<SharedArrayBuffer>;

let compiled: object | null | undefined;

function compile(api: WasmApi): object | null {
  if (compiled === undefined) {
    try {
      compiled = new api.Module(Buffer.from(WEIGHT_STATS_WASM_BASE64, 'base64'));
    } catch {
      compiled = null;
    }
  }
  return compiled;
}

const align64 = (n: number): number => Math.ceil(n / 64) * 64;

/** One thread's scratch: moments out, histogram tables, row and column outlier counters. */
interface Scratch {
  moments: number;
  tables: number;
  rowOut: number;
  colOut: number;
}

const SCRATCH_BYTES = align64(BLOCK_ROWS * MOMENT_SLOTS * 8) + align64(4 * LANE_TABLE * 4) + align64(BLOCK_ROWS * 4) + align64(PIECE * 4);

function scratchAt(p: number): Scratch {
  const moments = p;
  const tables = moments + align64(BLOCK_ROWS * MOMENT_SLOTS * 8);
  const rowOut = tables + align64(4 * LANE_TABLE * 4);
  const colOut = rowOut + align64(BLOCK_ROWS * 4);
  return { moments, tables, rowOut, colOut };
}

/** Adds n values whose |x| has log table slot k (exponent k >> 2, two mantissa bits k & 3: logBinOf's rule) to counts.log. */
function addLogSlot(counts: SecondPassCounts, spec: SecondPassSpec, k: number, n: number): void {
  const exponent = k >> 2;
  const first = spec.log.topExponent - spec.log.octaves + 1;
  if (exponent === 0 || exponent < first) counts.log[counts.log.length - 1]! += n;
  else counts.log[Math.min(spec.log.octaves * LOG_BINS_PER_OCTAVE - 1, (exponent - first) * LOG_BINS_PER_OCTAVE + (k & 3))]! += n;
}

/** One slot of a thread's 4 lane tables (at u32 index `tables`), summed over the lanes. */
function laneSum(u32: Uint32Array, tables: number, slot: number): number {
  return u32[tables + slot]! + u32[tables + LANE_TABLE + slot]! + u32[tables + 2 * LANE_TABLE + slot]! + u32[tables + 3 * LANE_TABLE + slot]!;
}

/** A thread's 4 lane tables at u32 index `tables` (the masked pass's layout) into counts.fixed and counts.log. */
function foldHistograms(u32: Uint32Array, tables: number, spec: SecondPassSpec, counts: SecondPassCounts): void {
  const lane = (slot: number) => laneSum(u32, tables, slot);
  for (let b = 0; b < spec.fixed.bins; b++) counts.fixed[b]! += lane(b);
  for (let k = 0; k < FIRST_NON_FINITE_LOG_SLOT; k++) {
    const n = lane(FIXED_SLOTS + k);
    if (n !== 0) addLogSlot(counts, spec, k, n);
  }
}

/** The float whose order-preserving integer (bits ^ ((bits >> 31) & 0x7fffffff)) is `key`. */
function floatOfOrderKey(key: number): number {
  const bits = key < 0 ? key ^ 0x7fffffff : key;
  ORDER_KEY_I32[0] = bits;
  return ORDER_KEY_F32[0]!;
}
const ORDER_KEY_I32 = new Int32Array(1);
const ORDER_KEY_F32 = new Float32Array(ORDER_KEY_I32.buffer);

/** Per spec (a tensor's pass 2, every window and thread): each rank's first and last fixed bin (foldJoint). */
const rankBinsCache = new WeakMap<SecondPassSpec, Int32Array>();

function rankBinsOf(spec: SecondPassSpec): Int32Array {
  let ends = rankBinsCache.get(spec);
  if (ends === undefined) {
    ends = new Int32Array(2 * 2048);
    for (let rank = -1024; rank < 1024; rank++) {
      const k = rank >= 0 ? rank : -1 - rank;
      if (k >= FIRST_NON_FINITE_LOG_SLOT) continue;
      ends[2 * (rank + 1024)] = fixedBinOf(floatOfOrderKey(rank * 2 ** 21), spec.fixed);
      ends[2 * (rank + 1024) + 1] = fixedBinOf(floatOfOrderKey(rank * 2 ** 21 + (2 ** 21 - 1)), spec.fixed);
    }
    rankBinsCache.set(spec, ends);
  }
  return ends;
}

/**
 * A thread's 4 joint tables (the clean pass: slot fixedBin + 1024 + rank, weightStats.as JOINT_SLOTS) into
 * counts.fixed and counts.log. The floats of one rank form an interval, and the fixed bin is non-decreasing in x
 * (f32 subtraction, multiplication by a scale >= 0, floor and clamp all are), so the bins that rank's values can
 * have are fixedBinOf of its two ends and the ones between: each (rank, bin) pair has its own slot, since the
 * slots of any other rank lie wholly below or above. Ranks of NaN / Inf bits hold nothing in a clean pass.
 */
function foldJoint(u32: Uint32Array, tables: number, spec: SecondPassSpec, counts: SecondPassCounts): void {
  const lane = (slot: number) => laneSum(u32, tables, slot);
  const ends = rankBinsOf(spec);
  for (let rank = -1024; rank < 1024; rank++) {
    // |x|'s log table slot: rank for x >= 0, -1 - rank (its mirror) for x < 0.
    const k = rank >= 0 ? rank : -1 - rank;
    if (k >= FIRST_NON_FINITE_LOG_SLOT) continue;
    const first = ends[2 * (rank + 1024)]!;
    const last = ends[2 * (rank + 1024) + 1]!;
    for (let b = first; b <= last; b++) {
      const n = lane(b + 1024 + rank);
      if (n === 0) continue;
      counts.fixed[b]! += n;
      addLogSlot(counts, spec, k, n);
    }
  }
}

/** 1..MAX_STATS_THREADS. */
function threadCountOf(threads: number): number {
  return Math.max(1, Math.min(MAX_STATS_THREADS, Math.floor(threads)));
}

/** The kernels the last job released, until KEEP_MS pass or the next job takes them. */
let kept: { kernels: WeightStatsKernels; timer: ReturnType<typeof setTimeout> } | null = null;

/** The helper thread and its control block. */
class Helper {
  private sequence = 0;
  private readonly words: Int32Array;
  private readonly args: Float64Array;
  private running = false;
  private listening = false;

  constructor(
    private readonly worker: Worker,
    memory: SharedMemory,
    ctrl: number,
    /** Its scratch (tables and column counters) in WeightStatsKernels.scratch. */
    readonly scratchIndex: number,
  ) {
    this.words = new Int32Array(memory.buffer, ctrl, 8);
    this.args = new Float64Array(memory.buffer, ctrl + 32, 14);
    worker.unref();
  }

  /** Whether the helper has started and waits for work. */
  get ready(): boolean {
    if (!this.listening) this.listening = Atomics.load(this.words, 4) === 1;
    return this.listening;
  }

  /** Starts op with args on the helper thread (over BF16 rows when `bf16`). */
  start(op: 1 | 2, args: readonly number[], bf16: boolean): void {
    this.args.set(args);
    this.words[2] = op;
    this.words[5] = bf16 ? 1 : 0;
    this.sequence++;
    this.running = true;
    Atomics.store(this.words, 0, this.sequence);
    Atomics.notify(this.words, 0);
  }

  /** Waits for the started op; false when the helper failed or did not answer. */
  finish(): boolean {
    if (!this.running) return true;
    this.running = false;
    const deadline = Date.now() + HELPER_TIMEOUT_MS;
    for (;;) {
      const done = Atomics.load(this.words, 1);
      if (done === this.sequence) return this.words[3] === 0;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(this.words, 1, done, left);
    }
  }

  stop(): void {
    this.words[2] = 3;
    this.sequence++;
    Atomics.store(this.words, 0, this.sequence);
    Atomics.notify(this.words, 0);
    void this.worker.terminate();
  }
}

/**
 * Kernel instances on one shared memory: control blocks, the chunk counter and the shared per-row outputs, one scratch
 * per thread, then `slots` windows of f32 rows.
 */
export class WeightStatsKernels {
  private readonly scratch: readonly Scratch[];
  private readonly counterPtr: number;
  private readonly blockMoments: number;
  private readonly blockRowOut: number;
  private readonly slotsPtr: number;
  private slotElements = 0;
  private slotCount = 0;
  /** Threads asked for (helpers that could not start leave fewer). */
  readonly requestedThreads: number;
  /** Whether dispose() ended the helpers. */
  private ended = false;
  /** helpers[k] computes part k + 1 of a block, in scratch[k + 1]. */
  private helpers: Helper[] = [];

  private constructor(
    module: object,
    private readonly memory: SharedMemory,
    private readonly wasm: WeightStatsExports,
    threads: number,
    /** Values per chunk (CHUNK_VALUES; tests make it small so that every thread surely takes chunks). */
    private readonly chunkValues: number,
  ) {
    this.requestedThreads = threads;
    const p = align64(wasm.heapBase());
    const ctrl = (k: number) => p + k * CTRL_BYTES;
    this.counterPtr = p + MAX_STATS_THREADS * CTRL_BYTES;
    this.blockMoments = this.counterPtr + 64;
    this.blockRowOut = this.blockMoments + align64(SHARED_ROWS * MOMENT_SLOTS * 8);
    const first = this.blockRowOut + align64(SHARED_ROWS * 4);
    this.scratch = Array.from({ length: threads }, (_, t) => scratchAt(first + t * SCRATCH_BYTES));
    this.slotsPtr = first + threads * SCRATCH_BYTES;
    this.grow(this.slotsPtr);
    try {
      for (let k = 0; k + 1 < threads; k++) {
        new Int32Array(memory.buffer, ctrl(k), CTRL_BYTES / 4).fill(0);
        this.helpers.push(new Helper(new Worker(HELPER_SOURCE, { eval: true, workerData: { module, memory, ctrl: ctrl(k) } }), memory, ctrl(k), k + 1));
      }
    } catch {
      // Fewer threads than asked (a worker could not start): the blocks are cut into as many parts as there are.
    }
  }

  /**
   * Kernels on this thread and threads - 1 helper threads (1..MAX_STATS_THREADS), sharing blocks in chunks of about
   * `chunkValues` values; null where the engine has no
   * WebAssembly SIMD or shared memory (the caller runs the JS reference). dispose() ends the helpers.
   */
  static create(threads = 1, chunkValues = CHUNK_VALUES): WeightStatsKernels | null {
    const api = wasmApi();
    const module = api === undefined ? null : compile(api);
    if (api === undefined || module === null) return null;
    try {
      const memory = new api.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
      const exports = new api.Instance(module, { env: { memory } }).exports;
      if (!FUNCTIONS.every((name) => typeof exports[name] === 'function')) return null;
      const wasm = exports as unknown as WeightStatsExports;
      const kernels = new WeightStatsKernels(module, memory, wasm, threadCountOf(threads), Math.max(1, Math.floor(chunkValues)));
      if (!kernels.grow(kernels.slotsPtr)) {
        kernels.dispose();
        return null;
      }
      return kernels;
    } catch {
      return null;
    }
  }

  /** Compute threads: this one and its helpers. */
  get threads(): number {
    return 1 + this.helpers.length;
  }

  /** Threads that take parts now: this one and the helpers that have started. */
  get readyThreads(): number {
    return 1 + this.readyHelpers().length;
  }

  /** The helpers that listen now (a block's parts 1.. go to them, in this order). */
  private readyHelpers(): Helper[] {
    return this.helpers.filter((h) => h.ready);
  }

  /** Ends the helper threads (the instance is not used again). */
  dispose(): void {
    this.ended = true;
    for (const h of this.helpers) h.stop();
    this.helpers = [];
  }

  /**
   * Kernels on `threads` threads for a job: the ones the last job released when they match (helpers started,
   * code warm), new ones otherwise (create). Hand them back with release().
   */
  static acquire(threads = 1): WeightStatsKernels | null {
    const wanted = threadCountOf(threads);
    const last = kept;
    kept = null;
    if (last !== null) {
      clearTimeout(last.timer);
      if (last.kernels.requestedThreads === wanted && !last.kernels.ended) return last.kernels;
      last.kernels.dispose();
    }
    return WeightStatsKernels.create(wanted);
  }

  /** Hands the kernels back after a job: kept for the next acquire for KEEP_MS if their memory is small enough, ended otherwise. */
  release(): void {
    if (this.ended || this.memory.buffer.byteLength > KEEP_BYTES) {
      this.dispose();
      return;
    }
    if (kept !== null) {
      clearTimeout(kept.timer);
      kept.kernels.dispose();
    }
    const timer = setTimeout(() => {
      if (kept?.kernels !== this) return;
      kept = null;
      this.dispose();
    }, KEEP_MS);
    timer.unref();
    kept = { kernels: this, timer };
  }

  /** Waits for helper k; on failure ends every helper and throws (its counters may hold part of its rows). */
  private finishHelper(helper: Helper): void {
    if (helper.finish()) return;
    this.dispose();
    throw new QuantLensError('INTERNAL', 'a statistics helper thread failed or did not answer');
  }

  /**
   * Runs both kernels (both pass 2 variants) once on 64 K zeros in this thread's scratch, never in a slot: V8 runs a
   * WebAssembly function first in its baseline compiler and tiers it up after some work (the first 16 MiB call took
   * 15-17 ms instead of 4-6), so a caller warms up while its first read is in flight.
   */
  warmUp(): void {
    const s = this.scratch[0]!;
    const rows = 64;
    const rowLength = 1024;
    new Uint8Array(this.memory.buffer, s.colOut, rows * rowLength * 4).fill(0);
    const colOut = s.colOut + rows * rowLength * 4;
    for (let k = 0; k < 2; k++) {
      for (const [rowMoments, secondPass] of [[this.wasm.rowMoments, this.wasm.secondPass], [this.wasm.rowMomentsBf16, this.wasm.secondPassBf16]] as const) {
        rowMoments(s.colOut, rows, rowLength, s.moments);
        secondPass(s.colOut, rows, rowLength, 0, 1, 64, 1, 0, s.tables, s.rowOut, colOut, 1);
        secondPass(s.colOut, rows, rowLength, 0, 1, 64, 1, 0, s.tables, s.rowOut, colOut, 0);
      }
    }
  }

  /** Makes room for `slots` windows of `windowElements` f32 values each (never shrinks). False when that does not fit the 32-bit heap. */
  reserve(slots: number, windowElements: number): boolean {
    const elements = Math.max(this.slotElements, Math.ceil(windowElements / 16) * 16);
    const count = Math.max(this.slotCount, slots);
    if (!this.grow(this.slotsPtr + count * elements * 4)) return false;
    this.slotElements = elements;
    this.slotCount = count;
    return true;
  }

  private grow(end: number): boolean {
    return growMemory(this.memory, end, MAX_HEAP_BYTES);
  }

  /** The first `elements` values of a slot, as a view of the shared memory (read rows into it). */
  slotView(slot: number, elements: number): Float32Array {
    this.checkSlot(slot, elements);
    return new Float32Array(this.memory.buffer, this.slotPtr(slot), elements);
  }

  /** Per-row moments of `rows` rows of `rowLength` values at the start of a slot (as rowMomentsCpu), held as `values`. */
  rowMoments(slot: number, rows: number, rowLength: number, values: SlotValues = 'f32'): RowMoments {
    this.checkSlot(slot, rows * rowLength);
    const { base, valueBytes, bf16 } = this.rowsIn(slot, rows * rowLength, values);
    const kernel = bf16 ? this.wasm.rowMomentsBf16 : this.wasm.rowMoments;
    const out = new RowMoments(rows);
    if (rowLength === 0) return out;
    if (rowLength <= PIECE) {
      for (let r = 0; r < rows; r += SHARED_ROWS) {
        const n = Math.min(SHARED_ROWS, rows - r);
        const src = base + r * rowLength * valueBytes;
        this.inChunks(n, rowLength, (helper, chunk) => helper.start(1, [src, n, rowLength, this.counterPtr, chunk, this.blockMoments], bf16), (r0, count) =>
          kernel(src + r0 * rowLength * valueBytes, count, rowLength, this.blockMoments + r0 * MOMENT_SLOTS * 8),
        );
        out.setRows(r, new Float64Array(this.memory.buffer, this.blockMoments, n * MOMENT_SLOTS));
      }
      return out;
    }
    const piece = new RowMoments(1);
    for (let r = 0; r < rows; r++) {
      let merged = emptyMoments();
      for (let c = 0; c < rowLength; c += PIECE) {
        const length = Math.min(PIECE, rowLength - c);
        kernel(base + (r * rowLength + c) * valueBytes, 1, length, this.scratch[0]!.moments);
        piece.setRows(0, new Float64Array(this.memory.buffer, this.scratch[0]!.moments, MOMENT_SLOTS));
        merged = mergeMoments(merged, piece.get(0));
      }
      out.set(r, merged);
    }
    return out;
  }

  /**
   * Adds `rows` whole rows at the start of a slot (rows rowStart.. of the tensor) to the pass 2 counters (as
   * countSecondPassCpu). `allFinite`: the caller knows (from pass 1) that these rows hold no NaN or Inf, so the
   * kernel may leave out its masks (it does when the histogram scale is finite too). The slot holds them as `values`.
   */
  secondPass(slot: number, rows: number, rowLength: number, rowStart: number, spec: SecondPassSpec, counts: SecondPassCounts, allFinite = false, values: SlotValues = 'f32'): void {
    this.checkSlot(slot, rows * rowLength);
    if (rows === 0 || rowLength === 0) return;
    const bins = spec.fixed.bins;
    if (!(bins >= 1 && bins < FIXED_SLOTS - 1)) throw new RangeError(`histogram bins ${bins} outside 1..${FIXED_SLOTS - 2}`);
    const u32 = new Uint32Array(this.memory.buffer);
    for (const s of this.scratch) u32.fill(0, s.tables / 4, s.tables / 4 + 4 * LANE_TABLE);
    const { base, valueBytes, bf16 } = this.rowsIn(slot, rows * rowLength, values);
    const kernel = bf16 ? this.wasm.secondPassBf16 : this.wasm.secondPass;
    const clean = allFinite && Number.isFinite(spec.fixed.scale) ? 1 : 0;
    const addColumns = (s: Scratch, colStart: number, length: number) => {
      const col = u32.subarray(s.colOut / 4, s.colOut / 4 + length);
      for (let c = 0; c < length; c++) if (col[c] !== 0) counts.columnOutliers[colStart + c]! += col[c]!;
    };
    if (rowLength <= PIECE) {
      for (const s of this.scratch) u32.fill(0, s.colOut / 4, s.colOut / 4 + rowLength);
      const kernelArgs = (t: Scratch): number[] => [spec.fixed.lo, spec.fixed.scale, bins, spec.threshold, spec.center, t.tables, this.blockRowOut, t.colOut, clean];
      const mine = this.scratch[0]!;
      for (let r = 0; r < rows; r += SHARED_ROWS) {
        const n = Math.min(SHARED_ROWS, rows - r);
        const src = base + r * rowLength * valueBytes;
        u32.fill(0, this.blockRowOut / 4, this.blockRowOut / 4 + n);
        this.inChunks(n, rowLength, (helper, chunk) => helper.start(2, [src, n, rowLength, this.counterPtr, chunk, ...kernelArgs(this.scratch[helper.scratchIndex]!)], bf16), (r0, count) =>
          kernel(src + r0 * rowLength * valueBytes, count, rowLength, spec.fixed.lo, spec.fixed.scale, bins, spec.threshold, spec.center, mine.tables, this.blockRowOut + r0 * 4, mine.colOut, clean),
        );
        const rowOut = u32.subarray(this.blockRowOut / 4, this.blockRowOut / 4 + n);
        for (let i = 0; i < n; i++) counts.rowOutliers[rowStart + r + i]! += rowOut[i]!;
      }
      for (const s of this.scratch) addColumns(s, 0, rowLength);
    } else {
      const mine = this.scratch[0]!;
      for (let r = 0; r < rows; r++) {
        u32[mine.rowOut / 4] = 0;
        for (let c = 0; c < rowLength; c += PIECE) {
          const length = Math.min(PIECE, rowLength - c);
          u32.fill(0, mine.colOut / 4, mine.colOut / 4 + length);
          kernel(base + (r * rowLength + c) * valueBytes, 1, length, spec.fixed.lo, spec.fixed.scale, bins, spec.threshold, spec.center, mine.tables, mine.rowOut, mine.colOut, clean);
          addColumns(mine, c, length);
        }
        counts.rowOutliers[rowStart + r]! += u32[mine.rowOut / 4]!;
      }
    }
    for (const s of this.scratch) {
      if (clean === 1) foldJoint(u32, s.tables / 4, spec, counts);
      else foldHistograms(u32, s.tables / 4, spec, counts);
    }
  }

  /**
   * Runs `rows` rows in chunks of whole rows (about CHUNK_VALUES values) on this thread and the helpers that listen:
   * `startHelper` hands a helper the block (it takes chunks from the shared counter until none is left), `run` does
   * one chunk here; returns when every chunk is done.
   */
  private inChunks(rows: number, rowLength: number, startHelper: (helper: Helper, chunk: number) => void, run: (rowStart: number, rowCount: number) => void): void {
    const chunk = Math.max(1, Math.floor(this.chunkValues / Math.max(1, rowLength)));
    const chunks = Math.ceil(rows / chunk);
    const helpers = chunks > 1 ? this.readyHelpers().slice(0, chunks - 1) : [];
    const counter = new Int32Array(this.memory.buffer, this.counterPtr, 1);
    Atomics.store(counter, 0, 0);
    for (const h of helpers) startHelper(h, chunk);
    for (;;) {
      const r0 = Atomics.add(counter, 0, 1) * chunk;
      if (r0 >= rows) break;
      run(r0, Math.min(chunk, rows - r0));
    }
    for (const h of helpers) this.finishHelper(h);
  }

  /** Where `elements` values held as `values` start in a slot, and their size. */
  private rowsIn(slot: number, elements: number, values: SlotValues): { base: number; valueBytes: number; bf16: boolean } {
    const bf16 = values === 'bf16';
    return { base: this.slotPtr(slot) + (bf16 ? elements * 2 : 0), valueBytes: bf16 ? 2 : 4, bf16 };
  }

  private slotPtr(slot: number): number {
    return this.slotsPtr + slot * this.slotElements * 4;
  }

  private checkSlot(slot: number, elements: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slotCount || elements > this.slotElements) throw new RangeError(`slot ${slot} of ${this.slotCount} cannot hold ${elements} values (reserved ${this.slotElements})`);
  }
}
