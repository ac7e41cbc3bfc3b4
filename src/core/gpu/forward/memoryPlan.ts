/**
 * The device memory a WebGPU forward pass (gpuLlama.ts) will need, computed before anything is
 * created or uploaded, and the choice it leads to: every weight resident on the device, layers
 * streamed one at a time, or a refusal that names the figure needed and the limit it exceeds.
 *
 * What is counted (all f32, as the pass holds it):
 *  - weights: each layer's q/k/v (stacked), o, gate/up (stacked), down, two norms and q/k/v biases;
 *    the output head and final norm. Resident: all of them; streamed: the largest layer or the head
 *    (a streamed layer is freed before the next is uploaded; the head comes after the last layer);
 *  - activations: the hidden states of every window (they stay on the device for the whole pass),
 *    the scratch of one chunk of windows (normed, q/k/v, attention output, gate/up, SwiGLU) and the
 *    RoPE tables; the KV "cache" of a chunk is the k/v columns of its q/k/v scratch (given apart);
 *  - logits: one block of head rows; for perplexity the per-token targets and losses;
 *  - staging: Dawn copies each `queue.writeBuffer` into a staging area until the GPU has read it;
 *    a layer's (or the head's) uploads are queued together, so up to one layer of weights, plus the
 *    readback buffer of a logits block.
 * WebGPU has no query for a device's total memory: only the per-buffer limits (maxBufferSize,
 * maxStorageBufferBindingSize) are known, so those are the refusals made here; the total is compared
 * only with a figure the caller gives (`deviceMemoryBytes`), and otherwise printed for the user.
 */
import { UnsupportedError } from '../../errors';
import type { LlamaConfig } from '../../model/llamaConfig';
import type { GpuLimits } from '../device';

/** Largest activation scratch buffer (also capped by the device's binding limit). */
export const MAX_SCRATCH_BYTES = 256 * 2 ** 20;
/** Largest block of logits computed at once. */
export const MAX_LOGITS_BYTES = 128 * 2 ** 20;

export interface GpuForwardMemoryPlan {
  /** resident: every weight stays on the device (and across passes); streamed: one layer at a time. */
  mode: 'resident' | 'streamed';
  /** Why this mode (the budget comparison). */
  reason: string;
  weights: {
    /** f32 bytes of each layer as uploaded. */
    perLayer: number;
    /** The output head and the final norm. */
    head: number;
    /** Every layer and the head. */
    all: number;
    /** What the chosen mode keeps on the device at once. */
    onDevice: number;
  };
  /** Hidden states of every window + one chunk's scratch + RoPE tables. */
  activationBytes: number;
  /** The k/v columns of one chunk's q/k/v scratch (included in activationBytes). */
  kvBytes: number;
  /** One block of logits, plus targets and per-token losses when scoring. */
  logitsBytes: number;
  /** Upload staging (one layer or the head) and the logits readback. */
  stagingBytes: number;
  /** weights.onDevice + activations + logits + staging. */
  peakBytes: number;
  /** Largest single buffer and largest single binding the pass creates. */
  largestBufferBytes: number;
  largestBindingBytes: number;
  windowsPerChunk: number;
  headRows: number;
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number; deviceMemoryBytes: number | null };
}

export interface GpuForwardPlanInput {
  config: LlamaConfig;
  windows: number;
  /** Tokens per window. */
  ctx: number;
  /** 'nll' (perplexity: targets and losses on the device) or 'logits' (read back per block). */
  head: 'nll' | 'logits';
  limits: Pick<GpuLimits, 'maxBufferSize' | 'maxStorageBufferBindingSize'>;
  /** f32 weight bytes that may stay resident (GpuLlama's residentWeightBytes). */
  residentWeightBytes: number;
  /** The device's memory when the caller knows it (WebGPU cannot tell); null: not checked. */
  deviceMemoryBytes?: number | null;
}

const MIB = 2 ** 20;
export const mib = (bytes: number): string => (bytes / MIB).toFixed(bytes < 10 * MIB ? 2 : 1);

/** f32 bytes of one layer on the device: qkv, o, gate/up, down, two norms, q/k/v biases. */
export function gpuLayerBytes(c: LlamaConfig): number {
  const qWidth = c.numHeads * c.headDim;
  const kvWidth = c.numKvHeads * c.headDim;
  const qkv = (qWidth + 2 * kvWidth) * c.hiddenSize + (c.attentionBias ? qWidth + 2 * kvWidth : 0);
  return 4 * (qkv + c.hiddenSize * qWidth + 3 * c.hiddenSize * c.intermediateSize + 2 * c.hiddenSize);
}

/**
 * The plan for a pass of `windows` x `ctx` tokens, or an UnsupportedError (before any upload) naming
 * what does not fit: a row of a weight, one window's activations or a row of logits in one binding,
 * a buffer over maxBufferSize, or the whole pass over `deviceMemoryBytes`.
 */
export function planGpuForward(input: GpuForwardPlanInput): GpuForwardMemoryPlan {
  const { config: c, windows, ctx: T, limits } = input;
  const binding = limits.maxStorageBufferBindingSize;
  const maxBuffer = limits.maxBufferSize;
  const H = c.hiddenSize;
  const qWidth = c.numHeads * c.headDim;
  const kvWidth = c.numKvHeads * c.headDim;
  const qkvWidth = qWidth + 2 * kvWidth;
  const I = c.intermediateSize;
  const V = c.vocabSize;

  // Hard limits of one binding: a weight row, one window's widest activation, one row of logits.
  const widestRow = 4 * Math.max(H, qWidth, I);
  if (widestRow > binding) throw new UnsupportedError(`one weight row needs ${widestRow} bytes in one binding; the adapter's maxStorageBufferBindingSize is ${binding}`);
  const widest = Math.max(qkvWidth, 2 * I, H, qWidth);
  if (T * widest * 4 > binding) throw new UnsupportedError(`one window of ${T} tokens needs ${T * widest * 4} bytes of activations in one binding; the adapter's maxStorageBufferBindingSize is ${binding}`);
  if (V * 4 > binding) throw new UnsupportedError(`one row of ${V} logits needs ${V * 4} bytes in one binding; the adapter's maxStorageBufferBindingSize is ${binding}`);

  const scratchBytes = Math.min(binding, MAX_SCRATCH_BYTES);
  const windowsPerChunk = Math.max(1, Math.min(windows, Math.floor(scratchBytes / (T * widest * 4))));
  const maxRows = windowsPerChunk * T;
  const headRows = Math.max(1, Math.min(maxRows, Math.floor(Math.min(binding, MAX_LOGITS_BYTES) / (V * 4))));
  const totalRows = windows * T;

  const perLayer = gpuLayerBytes(c);
  const head = 4 * (V * H + H);
  const all = c.numLayers * perLayer + head;

  const hidden = 4 * totalRows * H;
  const scratch = 4 * maxRows * (H + qkvWidth + qWidth + 2 * I + I);
  const rope = 2 * 4 * T * (c.headDim / 2);
  const activationBytes = hidden + scratch + rope;
  const kvBytes = 4 * maxRows * 2 * kvWidth;
  const logitsBytes = 4 * headRows * V + (input.head === 'nll' ? 2 * 4 * totalRows : 0);
  const readback = input.head === 'nll' ? 4 * totalRows : 4 * headRows * V;
  const stagingBytes = Math.max(perLayer, head, 4 * windowsPerChunk * T * H) + readback;

  // Per-buffer limits. Weight matrices are cut into parts of at most one binding each; the scratch,
  // hidden, logits (and for perplexity the targets and losses) are one binding each; the readback
  // buffer of a logits block is a buffer but no binding.
  const largestMatrix = 4 * H * Math.max(qkvWidth, qWidth, 2 * I, V);
  const bindingBuffers = [4 * maxRows * Math.max(qkvWidth, qWidth, 2 * I, I, H), 4 * maxRows * H, 4 * headRows * V, Math.min(binding, largestMatrix)];
  if (input.head === 'nll') {
    if (4 * totalRows > binding) {
      throw new UnsupportedError(`the per-token losses of ${windows} x ${T} tokens need ${4 * totalRows} bytes in one binding; the adapter's maxStorageBufferBindingSize is ${binding}: use fewer windows`);
    }
    bindingBuffers.push(4 * totalRows);
  }
  const largestBindingBytes = Math.max(...bindingBuffers);
  const largestBufferBytes = Math.max(largestBindingBytes, readback);
  if (largestBufferBytes > maxBuffer) throw new UnsupportedError(`the pass needs a buffer of ${mib(largestBufferBytes)} MiB; the adapter's maxBufferSize is ${mib(maxBuffer)} MiB`);

  const deviceMemoryBytes = input.deviceMemoryBytes ?? null;
  const others = activationBytes + logitsBytes + stagingBytes;
  const residentPeak = all + others;
  const streamedPeak = Math.max(perLayer, head) + others;
  let mode: 'resident' | 'streamed';
  let reason: string;
  if (all > input.residentWeightBytes) {
    mode = 'streamed';
    reason = `all weights as f32 (${mib(all)} MiB) exceed the resident budget (${mib(input.residentWeightBytes)} MiB)`;
  } else if (deviceMemoryBytes !== null && residentPeak > deviceMemoryBytes) {
    mode = 'streamed';
    reason = `resident, the pass would need ${mib(residentPeak)} MiB; the device has ${mib(deviceMemoryBytes)} MiB`;
  } else {
    mode = 'resident';
    reason = `all weights as f32 (${mib(all)} MiB) fit the resident budget (${mib(input.residentWeightBytes)} MiB)`;
  }
  const peakBytes = mode === 'resident' ? residentPeak : streamedPeak;
  if (deviceMemoryBytes !== null && peakBytes > deviceMemoryBytes) {
    throw new UnsupportedError(
      `the GPU pass needs ${mib(peakBytes)} MiB even streaming one layer at a time (${mib(Math.max(perLayer, head))} MiB per layer as f32 + ${mib(activationBytes)} MiB activations of ${windows} x ${T} tokens + ${mib(logitsBytes)} MiB logits + ${mib(stagingBytes)} MiB staging); the device has ${mib(deviceMemoryBytes)} MiB`,
    );
  }
  return {
    mode,
    reason,
    weights: { perLayer, head, all, onDevice: mode === 'resident' ? all : Math.max(perLayer, head) },
    activationBytes,
    kvBytes,
    logitsBytes,
    stagingBytes,
    peakBytes,
    largestBufferBytes,
    largestBindingBytes,
    windowsPerChunk,
    headRows,
    limits: { maxBufferSize: maxBuffer, maxStorageBufferBindingSize: binding, deviceMemoryBytes },
  };
}

/** One line for eval's output. */
export function describeGpuMemoryPlan(plan: GpuForwardMemoryPlan): string {
  const w = plan.weights;
  const limit = plan.limits.deviceMemoryBytes === null ? 'WebGPU reports no total device memory' : `device memory given: ${mib(plan.limits.deviceMemoryBytes)} MiB`;
  return (
    `GPU memory estimate: ${mib(plan.peakBytes)} MiB, weights ${plan.mode} (${mib(w.onDevice)} MiB on the device; ${mib(w.perLayer)} MiB per layer, head ${mib(w.head)} MiB, all ${mib(w.all)} MiB: ${plan.reason}), ` +
    `activations ${mib(plan.activationBytes)} MiB (KV ${mib(plan.kvBytes)} MiB), logits ${mib(plan.logitsBytes)} MiB, staging ${mib(plan.stagingBytes)} MiB; ` +
    `largest buffer ${mib(plan.largestBufferBytes)} MiB of maxBufferSize ${mib(plan.limits.maxBufferSize)} MiB, largest binding ${mib(plan.largestBindingBytes)} MiB of maxStorageBufferBindingSize ${mib(plan.limits.maxStorageBufferBindingSize)} MiB; ${limit}`
  );
}
