/**
 * Quantizes windows of rows on worker threads, as llama-quantize splits rows over its threads. The bytes
 * are the same as quantizeGgml on the main thread: every block is quantized independently by the same
 * code, and each worker gets whole rows. The caller keeps I/O on the main thread and writes results in
 * order; `quantizeRows` copies the input before it returns (the caller may overwrite it at once) and
 * resolves with the window's bytes.
 *
 * The worker script is `quantWorker.js` beside this module in the bundles (dist/), or quantWorker.ts run
 * through tsx from source (tests). `QuantizePool.create` returns null (quantize inline) for one thread or
 * when the script is missing.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { QuantLensError } from '../../errors';
import type { GgmlTypeName } from '../../formats/gguf/ggmlTypes';

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
  values?: Float32Array;
  out?: Uint8Array;
  error?: string;
}

interface Slot {
  worker: Worker;
  /** Buffers the worker handed back, reused for the next task when large enough. */
  values: Float32Array | null;
  out: Uint8Array | null;
  waiting: Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>;
  dead: Error | null;
}

export class QuantizePool {
  private nextId = 0;

  private constructor(private readonly slots: Slot[]) {}

  /** A pool of `threads` workers, or null when `threads` <= 1 or no worker script is found. */
  static create(threads: number): QuantizePool | null {
    if (!(threads > 1)) return null;
    const script = quantWorkerScript();
    if (script === null) return null;
    const slots: Slot[] = [];
    for (let i = 0; i < threads; i++) {
      const worker = script.endsWith('.ts') ? new Worker(`require('tsx/cjs'); require(${JSON.stringify(script)});`, { eval: true }) : new Worker(script);
      const slot: Slot = { worker, values: null, out: null, waiting: new Map(), dead: null };
      worker.on('message', (m: unknown) => {
        const r = m as Reply;
        const w = slot.waiting.get(r.id);
        if (w === undefined) return;
        slot.waiting.delete(r.id);
        w.resolve(r);
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
    const parts = Math.min(this.slots.length, rows);
    const result = new Uint8Array(rows * rowBytes);
    const jobs: Array<Promise<void>> = [];
    let r0 = 0;
    for (let k = 0; k < parts; k++) {
      const n = Math.floor(rows / parts) + (k < rows % parts ? 1 : 0);
      const slot = this.slots[k]!;
      const from = r0;
      jobs.push(this.runOn(slot, type, values.subarray(from * cols, (from + n) * cols), n * rowBytes, (bytes) => result.set(bytes, from * rowBytes)));
      r0 += n;
    }
    return Promise.all(jobs).then(() => result);
  }

  /** Runs one slice on `slot`; `deliver` copies the bytes out before the buffers go back to the slot. */
  private runOn(slot: Slot, type: GgmlTypeName, input: Float32Array, outBytes: number, deliver: (bytes: Uint8Array) => void): Promise<void> {
    if (slot.dead !== null) return Promise.reject(slot.dead);
    // a buffer the worker returned is reused when it is big enough (it is ours again after the reply)
    const valuesBuffer = slot.values !== null && slot.values.buffer.byteLength >= input.byteLength ? new Float32Array(slot.values.buffer, 0, input.length) : new Float32Array(input.length);
    const outBuffer = slot.out !== null && slot.out.buffer.byteLength >= outBytes ? new Uint8Array(slot.out.buffer, 0, outBytes) : new Uint8Array(outBytes);
    slot.values = null;
    slot.out = null;
    valuesBuffer.set(input);
    const id = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      slot.waiting.set(id, { resolve, reject });
      slot.worker.postMessage({ id, type, values: valuesBuffer, out: outBuffer }, [valuesBuffer.buffer as ArrayBuffer, outBuffer.buffer as ArrayBuffer]);
    }).then((r) => {
      if (r.error !== undefined || r.values === undefined || r.out === undefined) throw new QuantLensError('INTERNAL', `quantize worker failed: ${r.error ?? 'no result'}`);
      deliver(r.out);
      slot.values = r.values;
      slot.out = r.out;
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }
}
