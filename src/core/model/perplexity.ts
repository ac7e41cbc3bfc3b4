/**
 * Perplexity exactly as test/fixtures/micro-llama-reference.json `how` describes it: the text is
 * tokenized without BOS; `windows` consecutive non-overlapping windows of `ctx` tokens start at
 * token 0; each window is scored on its ctx - 1 next-token predictions (all positions); the loss is
 * averaged over every prediction of every window and ppl = exp(mean loss).
 */
import { InvalidArgumentError, NumericError } from '../errors';
import type { ForwardOptions, LlamaModel } from './forward';
import { logSumExpRows } from './wasmMatmul';

export interface PerplexityResult {
  perplexity: number;
  meanLoss: number;
  windows: number;
  ctx: number;
  predictions: number;
  /** Mean loss of each window. */
  windowLosses: number[];
  seconds: number;
  tokensPerSecond: number;
}

/** Splits `ids` into `windows` windows of `ctx` tokens starting at token 0. */
export function makeWindows(ids: readonly number[], ctx: number, windows: number): Int32Array[] {
  if (!Number.isSafeInteger(ctx) || ctx < 2) throw new InvalidArgumentError(`--ctx must be an integer >= 2, got ${ctx}`);
  if (!Number.isSafeInteger(windows) || windows < 1) throw new InvalidArgumentError(`--windows must be a positive integer, got ${windows}`);
  const need = ctx * windows;
  if (ids.length < need) {
    throw new InvalidArgumentError(`the text has ${ids.length} tokens; ${windows} windows of ${ctx} need ${need} (it fits ${Math.floor(ids.length / ctx)} windows)`);
  }
  const out: Int32Array[] = [];
  for (let w = 0; w < windows; w++) out.push(Int32Array.from(ids.slice(w * ctx, (w + 1) * ctx)));
  return out;
}

/** Sum over rows t < rows-1 of -log softmax(logits[t])[ids[t+1]], in f64. */
export function windowNll(logits: Float32Array, rows: number, vocab: number, ids: Int32Array): number {
  // log(sum(exp(z - max))) + max per row, in a SIMD kernel (f32 exp, f64 sum): 1e-11 relative to the JS loop.
  const logSumExp = new Float64Array(Math.max(0, rows - 1));
  logSumExpRows(logits, rows - 1, vocab, logSumExp);
  let total = 0;
  for (let t = 0; t + 1 < rows; t++) total += logSumExp[t]! - logits[t * vocab + ids[t + 1]!]!;
  return total;
}

export async function perplexity(model: LlamaModel, windows: readonly Int32Array[], options: ForwardOptions = {}): Promise<PerplexityResult> {
  const started = performance.now();
  const windowLosses: number[] = new Array<number>(windows.length).fill(NaN);
  // The head scores each window in the kernels' heap (LlamaModel.runNll): same values as windowNll over run's logits.
  await model.runNll(
    windows,
    (w, nll) => {
      windowLosses[w] = nll / (windows[w]!.length - 1);
    },
    options,
  );
  return perplexityFromLosses(windowLosses, windows[0]!.length, started);
}

/** The result from each window's mean loss (windows of `ctx` tokens), timed from `started` (performance.now()). */
export function perplexityFromLosses(windowLosses: number[], ctx: number, started: number): PerplexityResult {
  const meanLoss = windowLosses.reduce((a, b) => a + b, 0) / windowLosses.length;
  if (!Number.isFinite(meanLoss)) throw new NumericError(`perplexity is not finite (mean loss ${meanLoss}): the model produced NaN or Inf logits`);
  const seconds = (performance.now() - started) / 1000;
  return {
    perplexity: Math.exp(meanLoss),
    meanLoss,
    windows: windowLosses.length,
    ctx,
    predictions: windowLosses.length * (ctx - 1),
    windowLosses,
    seconds,
    tokensPerSecond: (windowLosses.length * ctx) / seconds,
  };
}
