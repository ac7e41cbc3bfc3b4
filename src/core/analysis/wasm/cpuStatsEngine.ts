/**
 * The stats job's CPU path over a whole checkpoint: tensorStatsStreamed's two passes (analysis/weightStats.ts)
 * on the WebAssembly kernels (statsKernels.ts), with the file read overlapped with the computation.
 *   - Rows are read straight into window slots in the kernels' memory, never copied again: F32 and BF16 as stored
 *     (Checkpoint.readRowsF32Into / readRowsBf16Into, one pread into the slot; the kernels widen BF16 as they
 *     load it, so a BF16 file is never widened in memory), other types decoded to f32 (readRowsF32Into).
 *   - A tensor whose windows fit in the resident budget (RESIDENT_BYTES of f32) keeps them all: pass 1 runs on
 *     each window as it arrives and pass 2 on all of them from memory, so the file is read once. A larger tensor
 *     is read again for pass 2, window by window (memory stays bounded whatever the tensor's size).
 *   - The job's reads are known in advance (per tensor: its windows, and again for pass 2 when it is not
 *     resident), so while one window is computed the next read fills another slot (the read runs on libuv's
 *     thread pool, the kernels on this thread). Reads go round a ring of slots, one more than the most windows a
 *     resident tensor holds: the read ahead never lands on a window that is still to be computed.
 * Same results as tensorStatsStreamed: counts exact, moments within float64 rounding (statsKernels.ts).
 */
import { availableParallelism } from 'node:os';
import { CancelledError } from '../../errors';
import type { Checkpoint, TensorEntry } from '../../formats/checkpoint';
import {
  RowMoments,
  checkShape,
  computeTensorStats,
  emptySecondPassCounts,
  secondPassSpecOf,
  statsFromPasses,
  summarizeMoments,
  validateStatsOptions,
  type TensorStats,
  type WeightStatsOptions,
} from '../weightStats';
import { MAX_STATS_THREADS, WeightStatsKernels, type SlotValues } from './statsKernels';

/** f32 bytes of the windows a tensor may keep between its passes (beyond that it is read twice). */
export const RESIDENT_BYTES = 256 * 1024 * 1024;

interface WindowRead {
  tensorIndex: number;
  rowStart: number;
  rowCount: number;
}

interface Pending {
  read: WindowRead;
  slot: number;
  /** How the slot holds the rows once they are there. */
  done: Promise<SlotValues>;
}

/** A window in its slot. */
interface Held {
  slot: number;
  values: SlotValues;
}

const sameRead = (a: WindowRead, b: WindowRead): boolean => a.tensorIndex === b.tensorIndex && a.rowStart === b.rowStart && a.rowCount === b.rowCount;

/**
 * Compute threads for the CPU path: every core on a machine of two (the reads run beside them on libuv's pool), one
 * core left for the reads on larger ones, at most 4 (past that the passes wait on memory rather than on cores);
 * QUANTLENS_STATS_THREADS=1..8 overrides it (for A/B measurements, bench gpu).
 */
export function defaultStatsThreads(): number {
  const forced = Number(process.env.QUANTLENS_STATS_THREADS);
  if (Number.isInteger(forced) && forced >= 1 && forced <= MAX_STATS_THREADS) return forced;
  const cores = availableParallelism();
  return cores <= 2 ? cores : Math.min(4, cores - 1);
}

/** Rows per window of a tensor, for windows of at most `windowElements` values (at least one row). */
export function rowsPerWindowOf(rowLength: number, windowElements: number): number {
  return Math.max(1, Math.floor(windowElements / Math.max(1, rowLength)));
}

/** A tensor's windows of at most `windowElements` values (whole rows, at least one). */
function windowsOf(tensorIndex: number, rows: number, rowLength: number, windowElements: number): WindowRead[] {
  const perWindow = rowsPerWindowOf(rowLength, windowElements);
  const windows: WindowRead[] = [];
  for (let r = 0; r < rows; r += perWindow) windows.push({ tensorIndex, rowStart: r, rowCount: Math.min(perWindow, rows - r) });
  return windows;
}

export class CpuStatsEngine {
  /** Every read the job makes, in order (pass 2 windows repeated for the tensors that are not resident). */
  private readonly plan: WindowRead[] = [];
  /** Index in `plan` of each tensor's first read. */
  private readonly firstRead: number[] = [];
  private pending: Pending | null = null;
  /** The ring slot the next read goes to. */
  private nextSlot = 0;
  /** Whether the kernels ran once (WeightStatsKernels.warmUp). */
  private warm = false;
  private readCount = 0;

  private constructor(
    private readonly kernels: WeightStatsKernels,
    private readonly checkpoint: Checkpoint,
    private readonly tensors: readonly TensorEntry[],
    private readonly windowElements: number,
    /** Most windows a tensor keeps between its passes; the ring has one slot more. */
    private readonly residentWindows: number,
    private readonly ringSlots: number,
  ) {
    tensors.forEach((t, tensorIndex) => {
      this.firstRead.push(this.plan.length);
      const { rows, rowLength } = checkShape(t.name, t.shape, t.shape.reduce((a, b) => a * b, 1));
      if (rows * rowLength === 0) return;
      const windows = windowsOf(tensorIndex, rows, rowLength, windowElements);
      this.plan.push(...windows);
      if (windows.length > residentWindows) this.plan.push(...windows);
    });
  }

  /**
   * An engine for these tensors with windows of at most `windowElements` values (a row longer than that is one
   * window) that keeps a tensor's windows between its passes when they hold at most `residentElements` values,
   * or null where the kernels do not run (no WebAssembly SIMD) or two windows do not fit their memory.
   */
  static create(checkpoint: Checkpoint, tensors: readonly TensorEntry[], windowElements: number, threads = defaultStatsThreads(), residentElements = RESIDENT_BYTES / 4): CpuStatsEngine | null {
    const kernels = WeightStatsKernels.acquire(threads);
    if (kernels === null) return null;
    let slotElements = 0;
    let mostWindows = 0;
    for (const t of tensors) {
      const elements = t.shape.reduce((a, b) => a * b, 1);
      const rows = t.shape.length <= 1 ? 1 : t.shape[0]!;
      const rowLength = t.shape.length <= 1 ? elements : elements / Math.max(1, rows);
      const perWindow = rowsPerWindowOf(rowLength, windowElements);
      slotElements = Math.max(slotElements, Math.min(elements, perWindow * rowLength));
      if (elements > 0) mostWindows = Math.max(mostWindows, Math.ceil(rows / perWindow));
    }
    // Resident: tensors of up to residentWindows windows (at least one: a tensor of one window is never read twice).
    const residentWindows = Math.max(1, Math.floor(residentElements / Math.max(1, slotElements)));
    const ringSlots = Math.max(2, Math.min(residentWindows, mostWindows) + 1);
    if (kernels.reserve(ringSlots, slotElements)) return new CpuStatsEngine(kernels, checkpoint, tensors, windowElements, residentWindows, ringSlots);
    // The 32-bit heap cannot hold the resident windows: read every tensor of several windows twice.
    if (kernels.reserve(2, slotElements)) return new CpuStatsEngine(kernels, checkpoint, tensors, windowElements, 1, 2);
    kernels.dispose();
    return null;
  }

  /** Statistics of tensors[index] (the same as tensorStatsStreamed over the same windows). */
  async tensorStats(index: number, options: WeightStatsOptions, signal?: AbortSignal): Promise<TensorStats> {
    validateStatsOptions(options);
    const tensor = this.tensors[index]!;
    const elementCount = tensor.shape.reduce((a, b) => a * b, 1);
    const { rows, rowLength } = checkShape(tensor.name, tensor.shape, elementCount);
    if (elementCount === 0) return computeTensorStats(tensor.name, tensor.shape, new Float32Array(0), options);
    const checkCancel = () => {
      if (signal?.aborted === true) throw new CancelledError();
    };
    const windows = windowsOf(index, rows, rowLength, this.windowElements);
    const resident = windows.length <= this.residentWindows;
    const rowMoments = new RowMoments(rows);
    const held: Held[] = [];
    for (const w of windows) {
      checkCancel();
      const h = await this.take(w);
      rowMoments.setRows(w.rowStart, this.kernels.rowMoments(h.slot, w.rowCount, rowLength, h.values).data);
      held.push(h);
    }
    const total = summarizeMoments(rowMoments.total());
    const spec = secondPassSpecOf(total, options);
    const allFinite = total.nanCount === 0 && total.infCount === 0;
    const counts = emptySecondPassCounts(spec, rows, rowLength);
    for (const [k, w] of windows.entries()) {
      checkCancel();
      const h = resident ? held[k]! : await this.take(w);
      this.kernels.secondPass(h.slot, w.rowCount, rowLength, w.rowStart, spec, counts, allFinite, h.values);
    }
    return statsFromPasses(tensor.name, tensor.shape, rowMoments, spec, counts);
  }

  /** Threads computing (this one and a helper when 2). */
  get threads(): number {
    return this.kernels.threads;
  }

  /** Window reads made so far (tests: a resident tensor is read once). */
  get reads(): number {
    return this.readCount;
  }

  /** Window slots in the kernels' memory (the ring). */
  get slotCount(): number {
    return this.ringSlots;
  }

  /**
   * Waits for the read in flight (its error, if any, is dropped) and hands the kernels back for the next job
   * (WeightStatsKernels.release): call before the checkpoint closes.
   */
  async dispose(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (pending !== null) await pending.done.catch(() => undefined);
    this.kernels.release();
  }

  /** The slot holding `read`'s rows once they are there; starts the plan's next read into the next ring slot. */
  private async take(read: WindowRead): Promise<Held> {
    let held: Held;
    const pending = this.pending;
    this.pending = null;
    if (pending !== null && sameRead(pending.read, read)) {
      held = { slot: pending.slot, values: await pending.done };
    } else {
      if (pending !== null) await pending.done.catch(() => undefined);
      const started = this.startRead(read);
      if (!this.warm) {
        // While the first read is in flight (on libuv's pool).
        this.kernels.warmUp();
        this.warm = true;
      }
      held = { slot: started.slot, values: await started.done };
    }
    const next = this.nextAfter(read);
    if (next !== undefined) {
      const ahead = this.startRead(next);
      // Observed here so that a failed read-ahead that is never taken is not an unhandled rejection.
      ahead.done.catch(() => undefined);
      this.pending = ahead;
    }
    return held;
  }

  /** Starts reading `read` into the next ring slot. */
  private startRead(read: WindowRead): Pending {
    const slot = this.nextSlot;
    this.nextSlot = (slot + 1) % this.ringSlots;
    this.readCount++;
    return { read, slot, done: this.readInto(read, slot) };
  }

  private position = 0;

  /** The plan's read after `read` (found from the current position, or from its tensor's first read). */
  private nextAfter(read: WindowRead): WindowRead | undefined {
    let at = this.position < this.plan.length && sameRead(this.plan[this.position]!, read) ? this.position : -1;
    if (at < 0) {
      for (let i = this.firstRead[read.tensorIndex]!; i < this.plan.length && this.plan[i]!.tensorIndex === read.tensorIndex; i++) {
        if (sameRead(this.plan[i]!, read) && i >= this.position) {
          at = i;
          break;
        }
      }
      if (at < 0) at = this.firstRead[read.tensorIndex]!;
    }
    this.position = at + 1;
    return this.plan[at + 1];
  }

  /** Reads `read`'s rows into a slot: BF16 as stored where the checkpoint can, f32 otherwise. */
  private async readInto(read: WindowRead, slot: number): Promise<SlotValues> {
    const tensor = this.tensors[read.tensorIndex]!;
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    const rowLength = tensor.shape.length <= 1 ? elements : elements / tensor.shape[0]!;
    const target = this.kernels.slotView(slot, read.rowCount * rowLength);
    if (tensor.dtype === 'BF16' && this.checkpoint.readRowsBf16Into !== undefined && (await this.checkpoint.readRowsBf16Into(tensor.name, read.rowStart, read.rowCount, target))) return 'bf16';
    if (this.checkpoint.readRowsF32Into !== undefined) await this.checkpoint.readRowsF32Into(tensor.name, read.rowStart, read.rowCount, target);
    else target.set(await this.checkpoint.readRowsF32(tensor.name, read.rowStart, read.rowCount));
    return 'f32';
  }
}
