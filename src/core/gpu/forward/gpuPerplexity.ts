/**
 * Perplexity on the GPU: the same definition as model/perplexity.ts (no BOS, every next-token
 * prediction of every window scored, ppl = exp(mean loss)), with each token's loss computed on the
 * device next to the logits (kernels/fwd_nll.wgsl) and the per-window means summed on the host in f64.
 */
import type { ForwardOptions } from '../../model/forward';
import { perplexityFromLosses, type PerplexityResult } from '../../model/perplexity';
import type { GpuLlama } from './gpuLlama';

export async function perplexityOnGpu(model: GpuLlama, windows: readonly Int32Array[], options: ForwardOptions = {}): Promise<PerplexityResult> {
  const started = performance.now();
  const losses = await model.windowLosses(windows, options);
  return perplexityFromLosses(losses, windows[0]?.length ?? 0, started);
}
