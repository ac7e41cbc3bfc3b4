/**
 * The error heatmap of a quantize run, filled in while it runs: each tensor the pipeline finishes comes
 * with its card metrics on the run's progress (QuantRunEvent.result), and becomes one heatmap cell posted
 * to the webview (ErrorCellNotification) before the run ends. No vscode import: tests drive it directly.
 */
import { resolve } from 'node:path';
import type { QuantizedTensorResult } from '../core/quant/quantCard';
import type { ErrorCell, ErrorCellParams } from '../protocol/webview';
import { classifyTensorName } from '../protocol/viewModels';

export type QuantRunEvent =
  | { kind: 'started'; input: string; output: string; target: string }
  | { kind: 'progress'; input: string; output: string; target: string; tensor: string; done: number; total: number; result?: QuantizedTensorResult }
  | { kind: 'finished'; input: string; output: string; target: string }
  | { kind: 'failed'; input: string; output: string; target: string };

/** The heatmap cell of a finished tensor (layer and role from its name, as errorsFromQuantCard does). */
export function errorCellFromResult(result: QuantizedTensorResult): ErrorCell {
  const { layer, role } = classifyTensorName(result.name);
  return { layer, role, tensor: result.name, type: result.type, sqnrDb: result.sqnrDb, relError: result.relRmse, maxAbsError: result.maxAbsError, bitsPerWeight: result.bitsPerWeight };
}

/**
 * Follows the quantize runs of one checkpoint and posts a cell per finished tensor. Each run gets its own
 * id (`run`), so the webview starts a fresh heatmap for a new run instead of mixing it with the last one.
 */
export class LiveHeatmapFeed {
  private readonly input: string;
  private runs = 0;
  private current: { output: string; run: string } | undefined;
  private postedInRun = 0;

  constructor(
    input: string,
    private readonly post: (params: ErrorCellParams) => void,
  ) {
    this.input = resolve(input);
  }

  /** Feed every QuantRunEvent; events of other checkpoints are ignored. */
  handle(event: QuantRunEvent): void {
    if (resolve(event.input) !== this.input) return;
    const output = resolve(event.output);
    if (event.kind === 'started') {
      this.runs += 1;
      this.current = { output, run: `${output}#${this.runs}` };
      this.postedInRun = 0;
      return;
    }
    if (this.current === undefined || this.current.output !== output) return;
    if (event.kind === 'progress') {
      if (event.result === undefined) return;
      this.postedInRun += 1;
      // A result comes once its tensor is done: `done` of the run's progress counts the tensors started before it.
      this.post({ target: event.target, run: this.current.run, cell: errorCellFromResult(event.result), done: Math.min(event.total, event.done + 1), total: event.total });
      return;
    }
    this.current = undefined;
  }

  /** Cells posted while the last run of this checkpoint was going on (the host reports it to tests and the log). */
  get cellsOfLastRun(): number {
    return this.postedInRun;
  }

  /** Whether a run of this checkpoint is being followed. */
  get live(): boolean {
    return this.current !== undefined;
  }
}
