/**
 * Host-side queue of long jobs (quantize, batch items). Jobs run one at a time in submission order
 * (each one already runs in a worker and may use every core); at most one queued or running job may
 * write a given output path, so a second quantize to the same file is refused instead of corrupting it.
 * No vscode import: the queue is plain TypeScript so that it can be tested on its own.
 */
import { EventEmitter } from 'node:events';
import { resolve } from 'node:path';
import { CancelledError, QuantLensError } from '../core/errors';

export interface JobProgress {
  /** One line for the user: the tensor being written, the batch item. */
  message: string;
  /** 0..1 of the whole job, when known. */
  fraction?: number;
}

export interface JobContext {
  signal: AbortSignal;
  report(progress: JobProgress): void;
}

export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface JobInfo {
  id: number;
  label: string;
  outputPath: string;
  state: JobState;
  progress: JobProgress | undefined;
  error: string | undefined;
}

export interface JobSpec<T> {
  label: string;
  /** The file the job writes; the queue's key. */
  outputPath: string;
  run(context: JobContext): Promise<T>;
}

export interface Job<T> {
  readonly id: number;
  info(): JobInfo;
  /** Settles when the job ends; rejects with CancelledError when cancelled, also while still queued. */
  readonly result: Promise<T>;
  cancel(): void;
  onProgress(listener: (progress: JobProgress) => void): () => void;
}

/** A job for this output path is already queued or running. */
export class OutputBusyError extends QuantLensError {
  readonly outputPath: string;
  constructor(outputPath: string, label: string) {
    super('INVALID_ARGUMENT', `${outputPath} is already being written by a running job (${label}); wait for it to finish or cancel it`);
    this.outputPath = outputPath;
  }
}

interface Entry {
  info: JobInfo;
  controller: AbortController;
  start(): void;
  events: EventEmitter;
}

export class JobQueue {
  private nextId = 1;
  private readonly entries: Entry[] = [];
  private readonly changes = new EventEmitter();
  private running = 0;
  private disposed = false;

  constructor(private readonly concurrency = 1) {}

  /** Queues a job; throws OutputBusyError when another live job writes the same path. */
  enqueue<T>(spec: JobSpec<T>): Job<T> {
    if (this.disposed) throw new CancelledError('the job queue is shutting down');
    const outputPath = resolve(spec.outputPath);
    const busy = this.entries.find((e) => e.info.outputPath === outputPath && isLive(e.info.state));
    if (busy) throw new OutputBusyError(outputPath, busy.info.label);

    const info: JobInfo = { id: this.nextId++, label: spec.label, outputPath, state: 'queued', progress: undefined, error: undefined };
    const controller = new AbortController();
    const events = new EventEmitter();
    let settle: { resolve(value: T): void; reject(error: unknown): void } | undefined;
    const result = new Promise<T>((resolvePromise, rejectPromise) => {
      settle = { resolve: resolvePromise, reject: rejectPromise };
    });
    // Callers that only cancel must not see an unhandled rejection.
    result.catch(() => undefined);

    const finish = (state: JobState, error?: unknown): void => {
      info.state = state;
      if (error !== undefined) info.error = error instanceof Error ? error.message : String(error);
      this.changes.emit('change');
      this.pump();
    };

    const entry: Entry = {
      info,
      controller,
      events,
      start: () => {
        info.state = 'running';
        this.running++;
        this.changes.emit('change');
        const context: JobContext = {
          signal: controller.signal,
          report: (progress) => {
            info.progress = progress;
            events.emit('progress', progress);
            this.changes.emit('change');
          },
        };
        let work: Promise<T>;
        try {
          work = spec.run(context);
        } catch (error) {
          work = Promise.reject(error);
        }
        work.then(
          (value) => {
            this.running--;
            // A cancel that arrives after the last tensor was written still leaves a complete output: success.
            finish('succeeded');
            settle?.resolve(value);
          },
          (error: unknown) => {
            this.running--;
            const cancelled = controller.signal.aborted || error instanceof CancelledError;
            finish(cancelled ? 'cancelled' : 'failed', error);
            settle?.reject(cancelled && !(error instanceof CancelledError) ? new CancelledError() : error);
          },
        );
      },
    };
    controller.signal.addEventListener('abort', () => {
      if (info.state === 'queued') {
        finish('cancelled', new CancelledError());
        settle?.reject(new CancelledError());
      }
    });
    this.entries.push(entry);
    this.changes.emit('change');
    this.pump();

    return {
      id: info.id,
      info: () => ({ ...info }),
      result,
      cancel: () => controller.abort(),
      onProgress: (listener) => {
        events.on('progress', listener);
        return () => events.off('progress', listener);
      },
    };
  }

  list(): JobInfo[] {
    return this.entries.map((e) => ({ ...e.info }));
  }

  /** Jobs queued or running. */
  active(): JobInfo[] {
    return this.list().filter((info) => isLive(info.state));
  }

  cancel(id: number): boolean {
    const entry = this.entries.find((e) => e.info.id === id);
    if (!entry || !isLive(entry.info.state)) return false;
    entry.controller.abort();
    return true;
  }

  cancelAll(): number {
    const live = this.entries.filter((e) => isLive(e.info.state));
    for (const e of live) e.controller.abort();
    return live.length;
  }

  onDidChange(listener: () => void): { dispose(): void } {
    this.changes.on('change', listener);
    return { dispose: () => this.changes.off('change', listener) };
  }

  /** Resolves once no job is queued or running (used on shutdown so temp files are removed). */
  async whenIdle(): Promise<void> {
    while (this.active().length > 0) {
      await new Promise<void>((resolveWait) => {
        const sub = this.onDidChange(() => {
          sub.dispose();
          resolveWait();
        });
      });
    }
  }

  dispose(): void {
    this.disposed = true;
    this.cancelAll();
  }

  private pump(): void {
    // Forget finished jobs beyond a short history so a long session does not grow without bound.
    const finished = this.entries.filter((e) => !isLive(e.info.state));
    for (const e of finished.slice(0, Math.max(0, finished.length - 50))) this.entries.splice(this.entries.indexOf(e), 1);
    while (this.running < this.concurrency) {
      const next = this.entries.find((e) => e.info.state === 'queued');
      if (!next) return;
      next.start();
    }
  }
}

function isLive(state: JobState): boolean {
  return state === 'queued' || state === 'running';
}
