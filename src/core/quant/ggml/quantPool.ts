/**
 * Quantizes windows of rows on worker threads, as llama-quantize splits rows over its threads. The bytes
 * are the same as quantizeGgml on the main thread: every block is quantized independently by the same
 * WebAssembly code, and each worker gets whole rows. The caller keeps I/O on the main thread and writes
 * results in order; `quantizeRows` copies the input before it returns (the caller may overwrite it at
 * once) and resolves with the window's bytes.
 *
 * Zero-copy: each worker runs WebAssembly instances over shared memories ("lanes") that this thread
 * created. This thread writes a slice's values straight into a lane's memory, the worker quantizes them
 * there, and the bytes are read back from there: no transfer buffers, no per-block allocation. A lane is
 * grown once to the largest slice it sees. A slot gets a second lane when a window is quantized while
 * the previous one is still in flight (exportGguf reads window w + 1 while w is quantized).
 *
 * The worker script is `quantWorker.js` beside this module in the bundles (dist/), or quantWorker.ts run
 * through tsx from source (tests). `QuantizePool.create` returns null (quantize inline) for one thread or
 * when the script is missing.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { QuantLensError } from '../../errors';
import { ggmlTypeByName, type GgmlTypeName } from '../../formats/gguf/ggmlTypes';
import { quantizeGgml } from './index';
import {
  createQuantMemory,
  ensureMemory,
  isImatrixQuantType,
  isWasmQuantType,
  localWasmQuantizer,
  quantLayout,
  type QuantLayout,
  type QuantMemory,
  type WasmQuantType,
} from './wasm/ggmlWasm';

/** Worker script beside this module: quantWorker.js in the bundles, quantWorker.ts from source. */
export function quantWorkerScript(): string | null {
  const here = dirname(__filename);
  const bundled = join(here, 'quantWorker.js');
  if (existsSync(bundled)) return bundled;
  const source = join(here, 'quantWorker.ts');
  if (existsSync(source)) return source;
  return null;
}

interface Reply {
  id: number;
  error?: string;
  /** For a task with `check`: index (from the task's first value) of the first NaN / Inf, or -1. */
  nonFinite?: number;
}

interface Lane {
  memory: QuantMemory;
  busy: boolean;
}

interface Slot {
  worker: Worker;
  lanes: Lane[];
  /** Lanes the caller names (stagedLane), apart from quantizeRows' own: worker lane id STAGED_LANE_BASE + index. */
  stagedLanes: QuantMemory[];
  waiting: Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>;
  dead: Error | null;
}

/** The importance-matrix path for a staged task: its values are `rows` x `cols`, one row's weights at byte `weights` of the lane. */
export interface StagedImatrix {
  rows: number;
  cols: number;
  weights: number;
}

/** Worker lane ids of staged lanes start here (quantizeRows' own lanes count up from 0). */
const STAGED_LANE_BASE = 1 << 16;

function isReply(m: unknown): m is Reply {
  return typeof m === 'object' && m !== null && typeof (m as { id?: unknown }).id === 'number';
}

export class QuantizePool {
  private nextId = 0;
  /** Where a lane's input starts (the WebAssembly module's heap base, the same for every instance). */
  private readonly heapBase = localWasmQuantizer().heapBase;

  private constructor(private readonly slots: Slot[]) {}

  /** A pool of `threads` workers, or null when `threads` <= 1 or no worker script is found. */
  static create(threads: number): QuantizePool | null {
    if (!(threads > 1)) return null;
    const script = quantWorkerScript();
    if (script === null) return null;
    const slots: Slot[] = [];
    for (let i = 0; i < threads; i++) {
      const worker = script.endsWith('.ts') ? new Worker(`require('tsx/cjs'); require(${JSON.stringify(script)});`, { eval: true }) : new Worker(script);
      const slot: Slot = { worker, lanes: [], stagedLanes: [], waiting: new Map(), dead: null };
      worker.on('message', (m: unknown) => {
        if (!isReply(m)) return;
        const w = slot.waiting.get(m.id);
        if (w === undefined) return;
        slot.waiting.delete(m.id);
        w.resolve(m);
      });
      const fail = (e: Error): void => {
        slot.dead = e;
        for (const w of slot.waiting.values()) w.reject(e);
        slot.waiting.clear();
      };
      worker.on('error', (e: Error) => fail(e));
      worker.on('exit', (code) => {
        if (slot.waiting.size > 0) fail(new QuantLensError('INTERNAL', `a quantize worker exited (code ${code}) with work pending`));
      });
      slots.push(slot);
    }
    return new QuantizePool(slots);
  }

  get threads(): number {
    return this.slots.length;
  }

  /**
   * Quantizes `rows` rows of `cols` values (`values`, row-major) to `type`, `rowBytes` bytes per row.
   * The input is copied before this returns; the promise gives the window's bytes.
   */
  quantizeRows(type: GgmlTypeName, values: Float32Array, rows: number, cols: number, rowBytes: number): Promise<Uint8Array> {
    const result = new Uint8Array(rows * rowBytes);
    if (!isWasmQuantType(type)) {
      // the float types are cheaper than a round trip to a worker
      try {
        quantizeGgml(type, values.subarray(0, rows * cols), result);
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
      return Promise.resolve(result);
    }
    const blockValues = ggmlTypeByName(type)?.blockSize ?? 0;
    if (blockValues <= 0 || cols % blockValues !== 0) return Promise.reject(new QuantLensError('INTERNAL', `quantize pool: rows of ${cols} values are not whole ${type} blocks`));
    const parts = Math.min(this.slots.length, rows);
    const jobs: Array<Promise<void>> = [];
    let r0 = 0;
    for (let k = 0; k < parts; k++) {
      const n = Math.floor(rows / parts) + (k < rows % parts ? 1 : 0);
      const from = r0;
      const slot = this.slots[k]!;
      if (slot.dead !== null) {
        jobs.push(Promise.reject(slot.dead));
        r0 += n;
        continue;
      }
      // write the slice into a free lane of this slot now (so `values` may be reused when we return)
      const laneIndex = this.freeLane(slot);
      const lane = slot.lanes[laneIndex]!;
      const count = n * cols;
      const layout = quantLayout(this.heapBase, type, count);
      ensureMemory(lane.memory, layout.end);
      new Float32Array(lane.memory.buffer, layout.input, count).set(values.subarray(from * cols, from * cols + count));
      lane.busy = true;
      const id = this.nextId++;
      const done = new Promise<Reply>((resolve, reject) => {
        slot.waiting.set(id, { resolve, reject });
        slot.worker.postMessage({ kind: 'task', id, lane: laneIndex, type, input: layout.input, output: layout.output, blocks: count / blockValues });
      }).then(
        (r) => {
          lane.busy = false;
          if (r.error !== undefined) throw new QuantLensError('INTERNAL', `quantize worker failed: ${r.error}`);
          result.set(new Uint8Array(lane.memory.buffer, layout.output, n * rowBytes), from * rowBytes);
        },
        (e: unknown) => {
          lane.busy = false;
          throw e;
        },
      );
      jobs.push(done);
      r0 += n;
    }
    return Promise.all(jobs).then(() => result);
  }

  /**
   * The memory of staged lane `lane` of worker `worker` (created and handed to the worker on first use):
   * a caller that reads values straight into WebAssembly memory stages them there (at quantLayout(heapBase,
   * ...).input) and calls quantizeStaged. Staged lanes are the caller's to keep apart; quantizeRows never
   * uses them.
   */
  stagedLane(worker: number, lane: number): QuantMemory {
    const slot = this.slots[worker];
    if (slot === undefined) throw new QuantLensError('INTERNAL', `quantize pool: no worker ${worker} of ${this.slots.length}`);
    while (slot.stagedLanes.length <= lane) {
      const memory = createQuantMemory();
      slot.stagedLanes.push(memory);
      slot.worker.postMessage({ kind: 'lane', lane: STAGED_LANE_BASE + slot.stagedLanes.length - 1, memory });
    }
    return slot.stagedLanes[lane]!;
  }

  /** Where staged values and bytes go in a lane's memory. */
  stagedLayout(type: WasmQuantType, values: number): QuantLayout {
    return quantLayout(this.heapBase, type, values);
  }

  /**
   * Quantizes `values` values already staged in lane `lane` of worker `worker` (at stagedLayout's input;
   * the bytes go to its output). With `check`, NaN / Inf are refused (GgmlWasmQuantizer.runFinite): resolves
   * with the first one's index (from the first staged value; the bytes are then not to be used), or -1.
   * With `bf16`, the values are staged as BF16 in the upper half of their room (Checkpoint.readRowsBf16Into)
   * and the worker widens them in place first (GgmlWasmQuantizer.runFromBf16): f32 there afterwards.
   * With `imatrix`, the values are `rows` rows of `cols` quantized by the importance-matrix path with one row's
   * weights staged at byte `weights` of the lane (GgmlWasmQuantizer.runImatrixFinite; NaN / Inf always refused).
   */
  quantizeStaged(
    worker: number,
    lane: number,
    type: WasmQuantType,
    values: number,
    check: boolean,
    bf16 = false,
    imatrix: StagedImatrix | null = null,
  ): Promise<number> {
    const slot = this.slots[worker];
    if (slot === undefined) return Promise.reject(new QuantLensError('INTERNAL', `quantize pool: no worker ${worker}`));
    if (slot.dead !== null) return Promise.reject(slot.dead);
    const blockValues = ggmlTypeByName(type)?.blockSize ?? 0;
    if (blockValues <= 0 || values % blockValues !== 0) return Promise.reject(new QuantLensError('INTERNAL', `quantize pool: ${values} values are not whole ${type} blocks`));
    if (imatrix !== null && (!isImatrixQuantType(type) || imatrix.rows * imatrix.cols !== values)) {
      return Promise.reject(new QuantLensError('INTERNAL', `quantize pool: no importance-matrix path for ${values} values of ${type} as ${imatrix.rows} x ${imatrix.cols}`));
    }
    const layout = quantLayout(this.heapBase, type, values);
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      slot.waiting.set(id, { resolve, reject });
      const task = { kind: 'task', id, lane: STAGED_LANE_BASE + lane, type, input: layout.input, output: layout.output, blocks: values / blockValues, check, bf16 };
      slot.worker.postMessage(imatrix === null ? task : { ...task, rows: imatrix.rows, cols: imatrix.cols, weights: imatrix.weights });
    }).then((r) => {
      if (r.error !== undefined) throw new QuantLensError('INTERNAL', `quantize worker failed: ${r.error}`);
      return r.nonFinite ?? -1;
    });
  }

  /** Index of a lane of `slot` with no task in flight, adding one (and telling the worker) when all are busy. */
  private freeLane(slot: Slot): number {
    const free = slot.lanes.findIndex((l) => !l.busy);
    if (free >= 0) return free;
    const memory = createQuantMemory();
    slot.lanes.push({ memory, busy: false });
    const index = slot.lanes.length - 1;
    slot.worker.postMessage({ kind: 'lane', lane: index, memory });
    return index;
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
