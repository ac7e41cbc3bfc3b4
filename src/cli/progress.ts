/**
 * The progress display every CLI command uses for a job: on a terminal one line redrawn in place
 * (at most ~8 times a second), otherwise plain lines, one per tensor, fit for logs and CI.
 * Everything goes to stderr (io.err), so stdout stays clean for results and --json.
 */
import type { JobProgress } from '../protocol/jobs';
import type { CliIo } from './cliTypes';
import { formatBytes } from '../core/util/format';

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 10) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** `[ 4/21] name  1.2 MiB / 2.3 MiB  52%  10.0 MiB/s  ETA 3 s` (a bar in front when `barWidth` > 0). */
export function formatProgressLine(p: JobProgress, barWidth = 0): string {
  const fraction = p.bytesTotal > 0 ? p.bytesDone / p.bytesTotal : p.phase === 'done' ? 1 : 0;
  const pct = `${Math.floor(fraction * 100)}%`.padStart(4);
  const width = String(p.tensorCount).length;
  const step = p.phase === 'done' ? `[done]` : `[${String(Math.min(p.tensorIndex + 1, p.tensorCount)).padStart(width)}/${p.tensorCount}]`;
  const filled = Math.round(fraction * barWidth);
  const bar = barWidth > 0 ? `${'#'.repeat(filled)}${'.'.repeat(barWidth - filled)} ` : '';
  const rate = p.bytesPerSecond > 0 ? `  ${formatBytes(p.bytesPerSecond, 1)}/s` : '';
  const eta = p.phase !== 'done' && p.etaSeconds !== null ? `  ETA ${formatDuration(p.etaSeconds)}` : '';
  return `${bar}${step} ${p.tensorName}${p.phase === 'done' ? '' : ` (${p.phase})`}  ${formatBytes(p.bytesDone, 1)} / ${formatBytes(p.bytesTotal, 1)} ${pct}${rate}${eta}`;
}

export interface ProgressRenderer {
  update(p: JobProgress): void;
  /** A one-line message (e.g. the CPU fallback) printed above the bar. */
  notice(message: string): void;
  /** Draws the last state for good. */
  finish(): void;
}

const CLEAR_PREVIOUS_LINE = '\x1b[1A\x1b[2K';

export function createProgressRenderer(io: CliIo, now: () => number = () => Date.now()): ProgressRenderer {
  let last: JobProgress | null = null;
  let drawn = false;
  let lastDraw = -Infinity;
  let lastTensor = -1;
  const drawTty = (p: JobProgress) => {
    io.err(`${drawn ? CLEAR_PREVIOUS_LINE : ''}${formatProgressLine(p, 24)}`);
    drawn = true;
    lastDraw = now();
  };
  return {
    update(p) {
      last = p;
      if (io.isTTY) {
        if (now() - lastDraw >= 125 || p.phase === 'done') drawTty(p);
        return;
      }
      // Plain lines: one per tensor, and the end.
      if (p.tensorIndex !== lastTensor || p.phase === 'done') {
        if (p.phase === 'open') return;
        lastTensor = p.tensorIndex;
        io.err(formatProgressLine(p));
      }
    },
    notice(message) {
      if (io.isTTY && drawn) io.err(`${CLEAR_PREVIOUS_LINE}${message}`);
      else io.err(message);
      drawn = false;
      if (io.isTTY && last !== null) drawTty(last);
    },
    finish() {
      if (io.isTTY && last !== null && now() - lastDraw > 0) drawTty(last);
    },
  };
}
