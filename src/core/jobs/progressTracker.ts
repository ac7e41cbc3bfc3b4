/**
 * Turns "tensor i of n, bytes done" into JobProgress messages with the rate since the job started
 * and an ETA at that rate. bytesDone never goes backwards.
 */
import type { JobPhase, JobProgress } from '../../protocol/jobs';

export class ProgressTracker {
  private readonly started: number;
  private bytesDone = 0;

  constructor(
    private readonly jobId: number,
    private tensorCount: number,
    readonly bytesTotal: number,
    private readonly emit: (p: JobProgress) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.started = now();
  }

  /** Reports a phase of tensor `tensorIndex`; `bytesDone` (cumulative) only moves forward. */
  update(phase: JobPhase, tensorIndex: number, tensorName: string, bytesDone = this.bytesDone): void {
    this.bytesDone = Math.min(this.bytesTotal, Math.max(this.bytesDone, bytesDone));
    const seconds = (this.now() - this.started) / 1000;
    const bytesPerSecond = seconds > 0 ? this.bytesDone / seconds : 0;
    const etaSeconds = bytesPerSecond > 0 ? (this.bytesTotal - this.bytesDone) / bytesPerSecond : null;
    this.emit({ jobId: this.jobId, phase, tensorIndex, tensorCount: this.tensorCount, tensorName, bytesDone: this.bytesDone, bytesTotal: this.bytesTotal, bytesPerSecond, etaSeconds });
  }

  /** For jobs whose step count is known only once work starts (the quantize pipeline). */
  setTensorCount(count: number): void {
    this.tensorCount = count;
  }

  get done(): number {
    return this.bytesDone;
  }

  secondsSinceStart(): number {
    return (this.now() - this.started) / 1000;
  }
}
