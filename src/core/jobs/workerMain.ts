/**
 * The job worker (a worker_threads Worker; bundled to dist/worker.js). It speaks the RPC protocol
 * of src/protocol: posts `ready`, answers `job.start` with the job's Result (always, also on error
 * or cancel), streams `job.progress` / `job.notice`, and aborts a job on `job.cancel`.
 * GPU devices are created and destroyed per job inside this thread.
 */
import { parentPort } from 'node:worker_threads';
import { CancelJobNotification, JobNoticeNotification, JobProgressNotification, StartJobRequest } from '../../protocol/jobs';
import { RpcEndpoint, type MessageChannelLike } from '../../protocol/rpc';
import { runJob } from './runJob';

function serveJobs(port: NonNullable<typeof parentPort>): void {
  const channel: MessageChannelLike = {
    post: (m) => port.postMessage(m),
    listen: (handler) => {
      port.on('message', handler);
      return () => port.off('message', handler);
    },
  };
  const endpoint = new RpcEndpoint(channel);
  const running = new Map<number, AbortController>();
  endpoint.handle(StartJobRequest, async ({ jobId, spec }) => {
    const controller = new AbortController();
    running.set(jobId, controller);
    try {
      return await runJob(spec, {
        jobId,
        signal: controller.signal,
        progress: (p) => endpoint.notify(JobProgressNotification, p),
        notice: (message) => endpoint.notify(JobNoticeNotification, { jobId, message }),
      });
    } finally {
      running.delete(jobId);
    }
  });
  endpoint.onNotification(CancelJobNotification, ({ jobId }) => running.get(jobId)?.abort());
  endpoint.ready();
}

if (parentPort !== null) serveJobs(parentPort);
