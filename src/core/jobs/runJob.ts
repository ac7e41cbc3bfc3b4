/** Runs one job spec to its result: the dispatch the worker uses (and tests can call in-process). */
import type { DiagnosticJobSpec, JobResult, JobSpec } from '../../protocol/jobs';
import { CancelledError } from '../errors';
import { runAnalyzeJob } from './analyzeJob';
import { sleep, type JobContext } from './jobContext';
import { runQuantizeJob } from './quantizeJob';
import { runQuantizeTensorsJob } from './quantizeTensorsJob';
import { runStatsJob } from './statsJob';

export async function runJob(spec: JobSpec, ctx: JobContext): Promise<JobResult> {
  switch (spec.kind) {
    case 'stats':
      return runStatsJob(spec, ctx);
    case 'quantizeTensors':
      return runQuantizeTensorsJob(spec, ctx);
    case 'quantize':
      return runQuantizeJob(spec, ctx);
    case 'analyze':
      return runAnalyzeJob(spec, ctx);
    case 'diagnostic':
      return runDiagnostic(spec, ctx);
  }
}

async function runDiagnostic(spec: DiagnosticJobSpec, ctx: JobContext): Promise<JobResult> {
  switch (spec.action) {
    case 'exit':
      // Ends the worker thread as a crash would (inside a worker, process.exit stops only the thread).
      setTimeout(() => process.exit(3), spec.ms);
      await sleep(spec.ms + 60_000, ctx.signal);
      break;
    case 'uncaught':
      setTimeout(() => {
        throw new Error('diagnostic: an uncaught exception in the worker');
      }, spec.ms);
      await sleep(spec.ms + 60_000, ctx.signal);
      break;
    case 'allocate': {
      // Small JS objects live on the V8 heap that resourceLimits caps (typed arrays would not).
      const hoard: number[][] = [];
      for (;;) {
        hoard.push(Array.from({ length: 1024 }, (_, i) => i + hoard.length));
        if (hoard.length % 1024 === 0) await sleep(0, ctx.signal);
        if (ctx.signal.aborted) break;
      }
      break;
    }
    case 'sleep':
      ctx.progress({ jobId: ctx.jobId, phase: 'compute', tensorIndex: 0, tensorCount: 1, tensorName: 'sleep', bytesDone: 0, bytesTotal: 1, bytesPerSecond: 0, etaSeconds: null });
      await sleep(spec.ms, ctx.signal);
      break;
  }
  if (ctx.signal.aborted) throw new CancelledError();
  return { kind: 'diagnostic' };
}
