/**
 * Host side of the job worker: starts a worker_threads Worker, waits for its ready handshake, runs
 * jobs with progress and cancellation, and turns a worker that dies (exit, uncaught error, terminate)
 * into a WorkerDiedError for every job it was running: no promise is left hanging, the host stays up.
 *
 * The worker script is found next to this module: `worker.js` beside dist/cli.js / dist/extension.js
 * in the bundles, or `workerMain.ts` (run through tsx) when this file runs from source in tests.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  CancelJobNotification,
  JobNoticeNotification,
  JobProgressNotification,
  StartJobRequest,
  type JobProgress,
  type JobSpec,
  type ResultFor,
} from '../../protocol/jobs';
import { RpcEndpoint, type MessageChannelLike } from '../../protocol/rpc';
import { CancelledError, QuantLensError, type QuantLensErrorCode } from '../errors';

/** The worker stopped (crashed, exited, was terminated) while jobs were running or before it was ready. */
export class WorkerDiedError extends QuantLensError {
  constructor(message: string) {
    super('INTERNAL', message);
  }
}

export interface RunJobOptions {
  onProgress?: (p: JobProgress) => void;
  /** One-line messages for the user (e.g. the CPU fallback). */
  onNotice?: (message: string) => void;
  signal?: AbortSignal;
}

export interface JobRunnerOptions {
  /** Path of the worker script; found next to this module when absent. */
  workerPath?: string;
  /** How long to wait for the worker's ready message (default 30 s). */
  readyTimeoutMs?: number;
  /**
   * Heap limit of the worker in MiB (V8's old generation). Tensor data lives in typed arrays outside
   * that heap, which the streaming jobs keep bounded by their windows instead.
   */
  maxHeapMb?: number;
}

/** The worker script beside this module: dist/worker.js in the bundles, workerMain.ts from source. */
export function defaultWorkerScript(): string {
  const here = dirname(__filename);
  const bundled = join(here, 'worker.js');
  if (existsSync(bundled)) return bundled;
  const source = join(here, 'workerMain.ts');
  if (existsSync(source)) return source;
  throw new QuantLensError('INTERNAL', `the job worker script is missing: expected ${bundled} (run the build)`);
}

/** A .ts worker (tests under tsx) starts through a one-line CommonJS shim that registers tsx first. */
function createWorker(script: string, maxHeapMb: number | undefined): Worker {
  const resourceLimits = maxHeapMb === undefined ? undefined : { maxOldGenerationSizeMb: maxHeapMb };
  if (!script.endsWith('.ts')) return new Worker(script, { resourceLimits });
  return new Worker(`require('tsx/cjs'); require(${JSON.stringify(script)});`, { eval: true, resourceLimits });
}

const KNOWN_CODES: readonly QuantLensErrorCode[] = ['FORMAT', 'UNSUPPORTED', 'IO', 'GPU_UNAVAILABLE', 'CANCELLED', 'INVALID_ARGUMENT', 'NUMERIC', 'INTERNAL'];

/** Rebuilds a typed error from a Result error reply. */
function errorFromReply(code: string, message: string): QuantLensError {
  if (code === 'CANCELLED') return new CancelledError(message);
  const known = KNOWN_CODES.find((c) => c === code);
  return new QuantLensError(known ?? 'INTERNAL', message);
}

interface RunningJob {
  kind: string;
  options: RunJobOptions;
}

export class JobRunner {
  private nextJobId = 1;
  private readonly jobs = new Map<number, RunningJob>();
  private deathReason: string | null = null;
  private lastError: string | null = null;

  private constructor(
    private readonly worker: Worker,
    private readonly endpoint: RpcEndpoint,
  ) {}

  static async start(options: JobRunnerOptions = {}): Promise<JobRunner> {
    const worker = createWorker(options.workerPath ?? defaultWorkerScript(), options.maxHeapMb);
    const channel: MessageChannelLike = {
      post: (m) => worker.postMessage(m),
      listen: (handler) => {
        worker.on('message', handler);
        return () => worker.off('message', handler);
      },
    };
    const endpoint = new RpcEndpoint(channel);
    const runner = new JobRunner(worker, endpoint);
    worker.on('error', (e) => {
      runner.lastError = e instanceof Error ? e.message : String(e);
    });
    const exited = new Promise<never>((_, reject) => {
      worker.once('exit', (code) => {
        const reason = runner.lastError !== null ? `uncaught error in the job worker: ${runner.lastError}` : `the job worker exited with code ${code}`;
        runner.deathReason = reason;
        endpoint.dispose(reason);
        reject(new WorkerDiedError(`${reason} before it was ready`));
      });
    });
    exited.catch(() => undefined);
    endpoint.onNotification(JobProgressNotification, (p) => runner.jobs.get(p.jobId)?.options.onProgress?.(p));
    endpoint.onNotification(JobNoticeNotification, (n) => runner.jobs.get(n.jobId)?.options.onNotice?.(n.message));
    const timeoutMs = options.readyTimeoutMs ?? 30_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new WorkerDiedError(`the job worker did not start within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([endpoint.whenReady(), exited, timeout]);
    } catch (e) {
      await worker.terminate();
      throw e;
    } finally {
      clearTimeout(timer);
    }
    return runner;
  }

  /** Whether the worker is still alive. */
  get alive(): boolean {
    return this.deathReason === null;
  }

  /** Whether a job is running on it now. */
  get busy(): boolean {
    return this.jobs.size > 0;
  }

  /** Runs a job; resolves with its result, rejects with a QuantLensError (CancelledError on cancel, WorkerDiedError on a crash). */
  async run<S extends JobSpec>(spec: S, options: RunJobOptions = {}): Promise<ResultFor<S>> {
    if (this.deathReason !== null) throw new WorkerDiedError(`${this.deathReason}; it cannot run ${spec.kind}`);
    if (options.signal?.aborted === true) throw new CancelledError();
    const jobId = this.nextJobId++;
    this.jobs.set(jobId, { kind: spec.kind, options });
    const onAbort = () => this.endpoint.notify(CancelJobNotification, { jobId });
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const reply = await this.endpoint.requestResult(StartJobRequest, { jobId, spec });
      if (!reply.ok) {
        if (reply.error.code === 'DISPOSED') throw new WorkerDiedError(`job ${spec.kind} failed: ${this.deathReason ?? reply.error.message}`);
        throw errorFromReply(reply.error.code, reply.error.message);
      }
      // The reply guard checked the shape; the worker answers a spec with its own kind of result.
      if (reply.value.kind !== spec.kind) throw new QuantLensError('INTERNAL', `job ${spec.kind} answered with a ${reply.value.kind} result`);
      return reply.value as ResultFor<S>;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
      this.jobs.delete(jobId);
    }
  }

  /** Stops the worker; jobs still running end with WorkerDiedError. */
  async dispose(): Promise<void> {
    if (this.deathReason === null) this.lastError = null;
    await this.worker.terminate();
  }

  /** Kills the worker without waiting (tests: a worker dying mid-job). */
  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** Starts a worker, runs one job, and always stops the worker. */
export async function runJobInWorker<S extends JobSpec>(spec: S, options: RunJobOptions & JobRunnerOptions = {}): Promise<ResultFor<S>> {
  const runner = await JobRunner.start(options);
  try {
    return await runner.run(spec, options);
  } finally {
    await runner.dispose();
  }
}
