/**
 * The stats job's CPU path over a whole checkpoint: tensorStatsStreamed's two passes (analysis/weightStats.ts)
 * on the WebAssembly kernels (statsKernels.ts), with the file read overlapped with the computation.
 *   - Rows are read straight into one of two window slots in the kernels' memory (Checkpoint.readRowsF32Into:
 *     F32 files by one pread into the slot, BF16/F16 widened in place), never copied again.
 *   - The job's reads are known in advance (per tensor: its windows for pass 1, and again for pass 2 when it
 *     has more than one; a tensor of one window is computed from memory twice), so while one slot is computed
 *     the next read fills the other one (the read runs on libuv's thread pool, the kernels on this thread).
 * Same results as tensorStatsStreamed: counts exact, moments within float64 rounding (statsKernels.ts).
 */
import { availableParallelism } from 'node:os';
import { CancelledError } from '../../errors';
import type { Checkpoint, TensorEntry } from '../../formats/checkpoint';
import {
  checkShape,
  computeTensorStats,
  emptyMoments,
  emptySecondPassCounts,
  mergeMoments,
  secondPassSpecOf,
  statsFromPasses,
  summarizeMoments,
  validateStatsOptions,
  type Moments,
  type TensorStats,
  type WeightStatsOptions,
} from '../weightStats';
import { MAX_STATS_THREADS, WeightStatsKernels } from './statsKernels';

interface WindowRead {
  tensorIndex: number;
  rowStart: number;
  rowCount: number;
}

interface Pending {
  read: WindowRead;
  slot: number;
  done: Promise<void>;
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

export class CpuStatsEngine {
  /** Every read the job makes, in order (pass 2 windows repeated for tensors of several windows). */
  private readonly plan: WindowRead[] = [];
  /** Index in `plan` of each tensor's first read. */
  private readonly firstRead: number[] = [];
  private pending: Pending | null = null;
  /** The slot being computed (the next read goes to the other). */
  private computeSlot = 1;
  /** Whether the kernels ran once (WeightStatsKernels.warmUp). */
  private warm = false;

  private constructor(
    private readonly kernels: WeightStatsKernels,
    private readonly checkpoint: Checkpoint,
    private readonly tensors: readonly TensorEntry[],
    private readonly windowElements: number,
  ) {
    tensors.forEach((t, tensorIndex) => {
      this.firstRead.push(this.plan.length);
      const { rows, rowLength } = checkShape(t.name, t.shape, t.shape.reduce((a, b) => a * b, 1));
      if (rows * rowLength === 0) return;
      const perWindow = rowsPerWindowOf(rowLength, windowElements);
      const windows: WindowRead[] = [];
      for (let r = 0; r < rows; r += perWindow) windows.push({ tensorIndex, rowStart: r, rowCount: Math.min(perWindow, rows - r) });
      this.plan.push(...windows);
      if (windows.length > 1) this.plan.push(...windows);
    });
  }

  /**
   * An engine for these tensors with windows of at most `windowElements` values (a row longer than that is one
   * window), or null where the kernels do not run (no WebAssembly SIMD) or the windows do not fit their memory.
   */
  static create(checkpoint: Checkpoint, tensors: readonly TensorEntry[], windowElements: number, threads = defaultStatsThreads()): CpuStatsEngine | null {
    const kernels = WeightStatsKernels.create(threads);
    if (kernels === null) return null;
    let slotElements = 0;
    for (const t of tensors) {
      const elements = t.shape.reduce((a, b) => a * b, 1);
      const rowLength = t.shape.length <= 1 ? elements : elements / Math.max(1, t.shape[0]!);
      slotElements = Math.max(slotElements, Math.min(elements, rowsPerWindowOf(rowLength, windowElements) * rowLength));
    }
    if (!kernels.reserve(2, slotElements)) {
      kernels.dispose();
      return null;
    }
    return new CpuStatsEngine(kernels, checkpoint, tensors, windowElements);
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
    const perWindow = rowsPerWindowOf(rowLength, this.windowElements);
    const windows: WindowRead[] = [];
    for (let r = 0; r < rows; r += perWindow) windows.push({ tensorIndex: index, rowStart: r, rowCount: Math.min(perWindow, rows - r) });
    const rowMoments: Moments[] = [];
    let resident = -1;
    for (const w of windows) {
      checkCancel();
      const slot = await this.take(w);
      rowMoments.push(...this.kernels.rowMoments(slot, w.rowCount, rowLength));
      if (windows.length === 1) resident = slot;
    }
    const total = summarizeMoments(rowMoments.reduce(mergeMoments, emptyMoments()));
    const spec = secondPassSpecOf(total, options);
    const allFinite = total.nanCount === 0 && total.infCount === 0;
    const counts = emptySecondPassCounts(spec, rows, rowLength);
    for (const w of windows) {
      checkCancel();
      const slot = resident >= 0 ? resident : await this.take(w);
      this.kernels.secondPass(slot, w.rowCount, rowLength, w.rowStart, spec, counts, allFinite);
    }
    return statsFromPasses(tensor.name, tensor.shape, rowMoments, spec, counts);
  }

  /** Threads computing (this one and a helper when 2). */
  get threads(): number {
    return this.kernels.threads;
  }

  /** Waits for the read in flight (its error, if any, is dropped) and ends the helper thread: call before the checkpoint closes. */
  async dispose(): Promise<void> {
    const pending = this.pending;
    this.pending = null;
    if (pending !== null) await pending.done.catch(() => undefined);
    this.kernels.dispose();
  }

  /** The slot holding `read`'s rows once they are there; starts the plan's next read into the other slot. */
  private async take(read: WindowRead): Promise<number> {
    let slot: number;
    const pending = this.pending;
    this.pending = null;
    if (pending !== null && sameRead(pending.read, read)) {
      await pending.done;
      slot = pending.slot;
    } else {
      if (pending !== null) await pending.done.catch(() => undefined);
      slot = 1 - this.computeSlot;
      const done = this.readInto(read, slot);
      if (!this.warm) {
        // While the first read is in flight (on libuv's pool).
        this.kernels.warmUp();
        this.warm = true;
      }
      await done;
    }
    this.computeSlot = slot;
    const next = this.nextAfter(read);
    if (next !== undefined) {
      const nextSlot = 1 - slot;
      const done = this.readInto(next, nextSlot);
      // Observed here so that a failed read-ahead that is never taken is not an unhandled rejection.
      done.catch(() => undefined);
      this.pending = { read: next, slot: nextSlot, done };
    }
    return slot;
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

  private async readInto(read: WindowRead, slot: number): Promise<void> {
    const tensor = this.tensors[read.tensorIndex]!;
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    const rowLength = tensor.shape.length <= 1 ? elements : elements / tensor.shape[0]!;
    const target = this.kernels.slotView(slot, read.rowCount * rowLength);
    if (this.checkpoint.readRowsF32Into !== undefined) await this.checkpoint.readRowsF32Into(tensor.name, read.rowStart, read.rowCount, target);
    else target.set(await this.checkpoint.readRowsF32(tensor.name, read.rowStart, read.rowCount));
  }
}
