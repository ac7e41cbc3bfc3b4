import type { JobProgress } from '../../protocol/jobs';

/** What a running job gets from whoever runs it (the worker, or a test in-process). */
export interface JobContext {
  jobId: number;
  signal: AbortSignal;
  progress(p: JobProgress): void;
  notice(message: string): void;
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
