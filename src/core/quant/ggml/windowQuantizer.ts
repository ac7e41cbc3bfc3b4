/**
 * Windows of rows quantized where their values were read: the caller stages a window (gets views of
 * WebAssembly memory to read or decode the values into), quantizes it there, writes the bytes from there
 * and releases it. No copy of the values in, none of the bytes out, no allocation per window.
 *
 *   const wq = WindowQuantizer.create(threads);        // 1: instances on this thread; > 1: quantPool workers
 *   const w = await wq.stage('Q8_0', rows, cols);       // waits while `depth` windows are unreleased
 *   for (const part of w.parts) fill(part.values, firstRow + part.row, part.rows);
 *   const { bytes, nonFinite } = await w.quantize();    // bytes per part, in row order
 *                                                       // (quantize(true): the parts hold BF16 in their upper
 *                                                       // half, widened where they are quantized)
 *   ... write bytes ...; w.release();
 *
 * `depth` windows may be held at once (default 3: one being written, one quantized, one read), so an
 * exporter overlaps reading window w + 1 and writing w - 1 with quantizing w. Each window slot is its own
 * WebAssembly memory (one per worker with threads), grown once to the largest window it holds.
 * The bytes are quantizeGgml's: the same WebAssembly code over the same blocks; a window is split over
 * the workers by whole rows, as quantizeRows does.
 */
import { QuantLensError } from '../../errors';
import { ggmlTypeByName } from '../../formats/gguf/ggmlTypes';
import { QuantizePool, type StagedImatrix } from './quantPool';
import { ensureMemory, GgmlWasmQuantizer, isImatrixQuantType, quantLayout, type ImatrixQuantType, type WasmQuantType } from './wasm/ggmlWasm';

/** Rows [row, row + rows) of a staged window (row counted from the window's first row). */
export interface StagedPart {
  readonly row: number;
  readonly rows: number;
  /** Where the part's rows x cols values go: WebAssembly memory, valid until the window is released. */
  readonly values: Float32Array;
}

export interface QuantizedWindow {
  /** Each part's bytes, in row order (views of WebAssembly memory, valid until the window is released). */
  readonly bytes: readonly Uint8Array[];
  /** Index (from the window's first value) of the first NaN / Inf, or -1; when >= 0, `bytes` is empty. */
  readonly nonFinite: number;
}

export interface StagedWindow {
  readonly type: WasmQuantType;
  readonly rows: number;
  readonly cols: number;
  readonly parts: readonly StagedPart[];
  /**
   * Quantizes the staged values (after looking for NaN / Inf in them). Call once. `bf16`: every part's values
   * were staged as BF16 in the upper half of its room (Checkpoint.readRowsBf16Into); they are widened in place
   * where they are quantized (on the workers), so `values` holds their f32 afterwards.
   */
  quantize(bf16?: boolean): Promise<QuantizedWindow>;
  /** Gives the window's memory back for another window (after its bytes are written). */
  release(): void;
}

interface Slot {
  /** Stages and quantizes one window in this slot's memory (with importance weights: their path). */
  stage(type: WasmQuantType, rows: number, cols: number, importance: Float32Array | null, release: () => void): StagedWindow;
}

/**
 * Where a window's importance weights go: after its output bytes (64-byte aligned), copied in at staging,
 * so the importance-matrix path needs no other memory. Checks the type has that path and the weights' length.
 */
function weightsAt(type: WasmQuantType, cols: number, importance: Float32Array, end: number): { type: ImatrixQuantType; at: number; end: number } {
  if (!isImatrixQuantType(type)) throw new QuantLensError('INTERNAL', `window quantizer: ${type} has no importance-matrix path`);
  if (importance.length !== cols) throw new QuantLensError('INTERNAL', `window quantizer: ${importance.length} importance weights for rows of ${cols}`);
  const at = (end + 63) & ~63;
  return { type, at, end: at + cols * 4 };
}

/** Bytes per row of `cols` values in `type`; cols must be whole blocks. */
function rowBytesOf(type: WasmQuantType, cols: number): { rowBytes: number; blockValues: number } {
  const info = ggmlTypeByName(type);
  if (info === undefined || cols % info.blockSize !== 0) throw new QuantLensError('INTERNAL', `window quantizer: rows of ${cols} values are not whole ${type} blocks`);
  return { rowBytes: (cols / info.blockSize) * info.typeSize, blockValues: info.blockSize };
}

/** A slot on this thread: its own WebAssembly instance and memory (so nothing else using this thread's instance can overwrite it). */
function inlineSlot(): Slot {
  const quantizer = GgmlWasmQuantizer.create();
  return {
    stage(type, rows, cols, importance, release) {
      const { rowBytes, blockValues } = rowBytesOf(type, cols);
      const count = rows * cols;
      const layout = quantLayout(quantizer.heapBase, type, count);
      const weights = importance === null ? null : weightsAt(type, cols, importance, layout.end);
      ensureMemory(quantizer.memory, weights?.end ?? layout.end);
      if (weights !== null && importance !== null) new Float32Array(quantizer.memory.buffer, weights.at, cols).set(importance);
      const values = new Float32Array(quantizer.memory.buffer, layout.input, count);
      let done = false;
      return {
        type,
        rows,
        cols,
        parts: [{ row: 0, rows, values }],
        quantize: async (bf16 = false) => {
          if (done) throw new QuantLensError('INTERNAL', 'a staged window was quantized twice');
          done = true;
          const blocks = count / blockValues;
          const nonFinite =
            weights !== null
              ? quantizer.runImatrixFinite(weights.type, layout.input, layout.output, rows, cols, weights.at, bf16)
              : bf16
                ? quantizer.runFromBf16(type, layout.input, layout.output, blocks, true)
                : quantizer.runFinite(type, layout.input, layout.output, blocks);
          if (nonFinite >= 0) return { bytes: [], nonFinite };
          return { bytes: [new Uint8Array(quantizer.memory.buffer, layout.output, rows * rowBytes)], nonFinite: -1 };
        },
        release,
      };
    },
  };
}

/** A slot over the pool: staged lane `index` of every worker, the window's rows split over them. */
function poolSlot(pool: QuantizePool, index: number): Slot {
  return {
    stage(type, rows, cols, importance, release) {
      const { rowBytes } = rowBytesOf(type, cols);
      const workers = Math.min(pool.threads, rows);
      const parts: Array<StagedPart & { worker: number; imatrix: StagedImatrix | null }> = [];
      let row = 0;
      for (let k = 0; k < workers; k++) {
        const n = Math.floor(rows / workers) + (k < rows % workers ? 1 : 0);
        const memory = pool.stagedLane(k, index);
        const layout = pool.stagedLayout(type, n * cols);
        const weights = importance === null ? null : weightsAt(type, cols, importance, layout.end);
        ensureMemory(memory, weights?.end ?? layout.end);
        if (weights !== null && importance !== null) new Float32Array(memory.buffer, weights.at, cols).set(importance);
        const imatrix = weights === null ? null : { rows: n, cols, weights: weights.at };
        parts.push({ row, rows: n, values: new Float32Array(memory.buffer, layout.input, n * cols), worker: k, imatrix });
        row += n;
      }
      let done = false;
      return {
        type,
        rows,
        cols,
        parts,
        quantize: async (bf16 = false) => {
          if (done) throw new QuantLensError('INTERNAL', 'a staged window was quantized twice');
          done = true;
          const found = await Promise.all(parts.map((p) => pool.quantizeStaged(p.worker, index, type, p.rows * cols, true, bf16, p.imatrix)));
          const bad = found.findIndex((f) => f >= 0);
          if (bad >= 0) return { bytes: [], nonFinite: parts[bad]!.row * cols + found[bad]! };
          return {
            bytes: parts.map((p) => {
              const layout = pool.stagedLayout(type, p.rows * cols);
              return new Uint8Array(pool.stagedLane(p.worker, index).buffer, layout.output, p.rows * rowBytes);
            }),
            nonFinite: -1,
          };
        },
        release,
      };
    },
  };
}

export class WindowQuantizer {
  private readonly free: number[];
  private readonly waiting: Array<() => void> = [];

  private constructor(
    private readonly slots: Slot[],
    /** The workers (null: this thread), also for quantizeRows callers beside the staged windows. */
    readonly pool: QuantizePool | null,
  ) {
    this.free = slots.map((_, i) => i);
  }

  /** `threads` > 1 quantizes on that many worker threads (inline when the worker script is missing). */
  static create(threads: number, depth = 3): WindowQuantizer {
    const pool = QuantizePool.create(threads);
    const count = Math.max(1, Math.floor(depth));
    const slots: Slot[] = [];
    for (let i = 0; i < count; i++) slots.push(pool === null ? inlineSlot() : poolSlot(pool, i));
    return new WindowQuantizer(slots, pool);
  }

  get threads(): number {
    return this.pool?.threads ?? 1;
  }

  /**
   * Memory for a window of `rows` x `cols` values (cols whole blocks of `type`); waits for a free slot.
   * `importance` (one row's weights, cols values; types with an importance-matrix path): the window is
   * quantized as llama-quantize --imatrix does (quantize_<type> with quant_weights), rows split as usual.
   */
  async stage(type: WasmQuantType, rows: number, cols: number, importance: Float32Array | null = null): Promise<StagedWindow> {
    let index = this.free.shift();
    while (index === undefined) {
      await new Promise<void>((resolve) => this.waiting.push(resolve));
      index = this.free.shift();
    }
    const slotIndex = index;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.free.push(slotIndex);
      this.waiting.shift()?.();
    };
    try {
      return this.slots[slotIndex]!.stage(type, rows, cols, importance, release);
    } catch (e) {
      release();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }
}
