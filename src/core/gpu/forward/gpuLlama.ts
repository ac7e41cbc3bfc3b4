/**
 * The LLaMA forward pass on WebGPU: the same math as model/forward.ts (the CPU pass), layer at a
 * time, with the kernels of kernels/fwd_*.wgsl (RMSNorm, fused Q/K/V and gate/up projections on a
 * tiled matmul, RoPE, causal GQA attention, SwiGLU, the residual adds fused into the o/down
 * projections, the output head, and for perplexity the per-token loss).
 *
 * - Weights come from the CPU model's readers (`LlamaModel.readLayer`, any dtype or ggml type it
 *   decodes) as f32 and are uploaded per layer. When all of them fit in `residentWeightBytes`
 *   (default 1 GiB of f32) they stay on the device between passes; above it each pass uploads one
 *   layer at a time and frees it after the layer ran (as the CPU pass streams them).
 * - The hidden states of every window stay on the device for the whole pass (windows x ctx x
 *   hidden f32); the scratch buffers hold a chunk of whole windows sized to the binding limit.
 * - The embedding gather runs on the host (the CPU model's `embed`), then one upload per chunk.
 * - Perplexity (`windowLosses`) computes each token's loss next to the logits, so only one f32 per
 *   token comes back; `run` reads the logits back per window like the CPU pass's callback.
 * Fake quantization (model/fakeQuant.ts rules): weights on the host before the upload, as on the CPU;
 * activations (A<b>, per token) and the KV cache (KV<b>, per token and head) by kernels/fwd_fakequant.
 * Not on the GPU: activation hooks (UnsupportedError naming the option; `--device auto` runs those
 * passes on the CPU).
 * Agreement with the CPU pass (test/gpu/forward.test.ts): f32 accumulation in a different order, so
 * logits within 1e-3 absolute / 1e-4 of the logit range, perplexity within 1e-4 relative.
 * Any WebGPU failure (device lost or destroyed, out of memory, validation) is a GpuUnavailableError.
 */
import { CancelledError, InvalidArgumentError, UnsupportedError } from '../../errors';
import type { ForwardOptions, LayerWeights, LinearRole, LlamaModel } from '../../model/forward';
import { fakeQuantizeWeight, type QuantSetting } from '../../model/fakeQuant';
import { ropeTables } from '../../model/kernels';
import { isSoftwareAdapter } from '../../jobs/computeDevice';
import { guarded, type GpuContext } from '../device';
import { createStorageBuffer, readBack, type Kernel } from '../kernels';
import { encodeAttention, encodeFakeQuant, encodeMatmul, encodeNll, encodeRmsNorm, encodeRope, encodeSwiglu, UniformPool, type QkvLayout } from './encode';
import { GPU_MAX_HEAD_DIM, GPU_MAX_WINDOW, FORWARD_KERNELS } from './forwardKernels';
import { gpuLayerBytes, planGpuForward, type GpuForwardMemoryPlan } from './memoryPlan';

/** Default budget of f32 weight bytes kept on the device across layers and passes. */
export const DEFAULT_RESIDENT_WEIGHT_BYTES = 2 ** 30;

export type GpuMatmulVariant = 'tiled' | 'direct';

export interface GpuLlamaOptions {
  /** f32 weight bytes that may stay on the device (default 1 GiB); above it layers are streamed. */
  residentWeightBytes?: number;
  /**
   * `tiled` (workgroup-memory tiles, for GPUs) or `direct` (no barriers, for software adapters such
   * as lavapipe, where barriers are slow). Default: `direct` on a software adapter, else `tiled`.
   */
  matmul?: GpuMatmulVariant;
  /**
   * The device's memory in bytes when the caller knows it (WebGPU has no query for it): a pass whose
   * estimate exceeds it streams its layers, or is refused before any upload when even that does not fit.
   */
  deviceMemoryBytes?: number;
}


/** Rows of a matrix [rows, cols] split into parts that each fit one storage binding. */
interface DeviceMatrix {
  rows: number;
  cols: number;
  parts: { buffer: GPUBuffer; firstRow: number; rows: number; bias: GPUBuffer | null }[];
}

interface DeviceLayer {
  attnNorm: GPUBuffer;
  ffnNorm: GPUBuffer;
  /** q, k, v rows stacked: [qWidth + 2 kvWidth, hidden]. */
  qkv: DeviceMatrix;
  o: DeviceMatrix;
  /** gate, up rows stacked: [2 intermediate, hidden]. */
  gateUp: DeviceMatrix;
  down: DeviceMatrix;
}

interface DeviceHead {
  finalNorm: GPUBuffer;
  output: DeviceMatrix;
}

/** Throws UnsupportedError for what the GPU pass does not do; the caller may run it on the CPU. */
export function assertGpuForwardSupports(options: ForwardOptions): void {
  const hooks = options.hooks;
  if (hooks?.onActivation !== undefined || hooks?.onLayerWeights !== undefined) {
    throw new UnsupportedError('the GPU forward pass does not capture activations or layer weights (option hooks); run it on the CPU');
  }
}

/** Throws UnsupportedError for a model shape the GPU kernels do not hold. */
export function assertGpuForwardModel(model: LlamaModel): void {
  const c = model.config;
  if (c.headDim > GPU_MAX_HEAD_DIM) throw new UnsupportedError(`head_dim ${c.headDim} is larger than the GPU attention kernel's ${GPU_MAX_HEAD_DIM}; run it on the CPU`);
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new CancelledError('forward pass cancelled');
}

function weightKey(quant: QuantSetting | undefined): string {
  return quant?.weightBits == null ? 'as-stored' : `W${quant.weightBits}g${quant.weightGroup}`;
}

export class GpuLlama {
  private resident: { key: string; layers: DeviceLayer[]; head: DeviceHead } | null = null;
  private readonly dummy: GPUBuffer;
  private readonly residentWeightBytes: number;
  private readonly deviceMemoryBytes: number | null;
  /** The memory plan of the last pass (made before it created or uploaded anything). */
  lastPlan: GpuForwardMemoryPlan | null = null;
  readonly matmulVariant: GpuMatmulVariant;
  private readonly matmulKernel: Kernel;

  constructor(
    readonly gpu: GpuContext,
    readonly model: LlamaModel,
    options: GpuLlamaOptions = {},
  ) {
    assertGpuForwardModel(model);
    this.residentWeightBytes = options.residentWeightBytes ?? DEFAULT_RESIDENT_WEIGHT_BYTES;
    this.deviceMemoryBytes = options.deviceMemoryBytes ?? null;
    this.matmulVariant = options.matmul ?? (isSoftwareAdapter(gpu.description) ? 'direct' : 'tiled');
    this.matmulKernel = this.matmulVariant === 'direct' ? FORWARD_KERNELS.matmulDirect : FORWARD_KERNELS.matmul;
    this.dummy = createStorageBuffer(gpu, 'fwd unused binding', 4);
  }

  /** f32 bytes of every layer (q/k/v biases included), the final norm and the output head. */
  weightBytes(): number {
    const c = this.model.config;
    return c.numLayers * gpuLayerBytes(c) + 4 * (c.vocabSize * c.hiddenSize + c.hiddenSize);
  }

  /** Whether a pass keeps every weight on the device (true) or streams layers. */
  keepsWeightsResident(): boolean {
    return this.weightBytes() <= this.residentWeightBytes;
  }

  /**
   * The device memory a pass over `windows` windows of `ctx` tokens will need and whether its weights
   * stay resident or stream; throws UnsupportedError (naming the figure and the limit) when it cannot run.
   */
  memoryPlan(windows: number, ctx: number, head: 'nll' | 'logits' = 'nll'): GpuForwardMemoryPlan {
    return planGpuForward({
      config: this.model.config,
      windows,
      ctx,
      head,
      limits: this.gpu.limits,
      residentWeightBytes: this.residentWeightBytes,
      deviceMemoryBytes: this.deviceMemoryBytes,
    });
  }

  /** Frees the weights kept on the device. The GpuContext itself belongs to the caller. */
  dispose(): void {
    this.dropResident();
    this.dummy.destroy();
  }

  private dropResident(): void {
    if (this.resident === null) return;
    for (const l of this.resident.layers) destroyLayer(l);
    destroyHead(this.resident.head);
    this.resident = null;
  }

  /**
   * Same contract as LlamaModel.run: `onLogits(window, logits [rows, vocab], rows)` with a scratch
   * buffer per window, progress in layers done of layers + 1.
   */
  async run(windows: readonly Int32Array[], onLogits: (window: number, logits: Float32Array, rows: number) => void, options: ForwardOptions = {}): Promise<void> {
    await this.pass(windows, options, { kind: 'logits', onLogits });
  }

  /** The mean next-token loss of each window (its ctx - 1 predictions), computed on the device. */
  async windowLosses(windows: readonly Int32Array[], options: ForwardOptions = {}): Promise<number[]> {
    const losses: number[] = [];
    await this.pass(windows, options, { kind: 'nll', onLosses: (l) => losses.push(...l) });
    return losses;
  }

  private async pass(
    windows: readonly Int32Array[],
    options: ForwardOptions,
    head: { kind: 'logits'; onLogits: (window: number, logits: Float32Array, rows: number) => void } | { kind: 'nll'; onLosses: (losses: number[]) => void },
  ): Promise<void> {
    assertGpuForwardSupports(options);
    const c = this.model.config;
    const T = windows[0]?.length ?? 0;
    if (T === 0) throw new InvalidArgumentError('nothing to evaluate: no tokens');
    if (windows.some((w) => w.length !== T)) throw new InvalidArgumentError('all windows must have the same length');
    if (T > c.maxPositionEmbeddings) throw new InvalidArgumentError(`context of ${T} tokens is longer than the model's max_position_embeddings (${c.maxPositionEmbeddings})`);
    if (T > GPU_MAX_WINDOW) throw new UnsupportedError(`the GPU attention kernel holds windows of at most ${GPU_MAX_WINDOW} tokens, got ${T}; run it on the CPU`);
    for (const w of windows) for (const id of w) if (id < 0 || id >= c.vocabSize) throw new InvalidArgumentError(`token id ${id} is outside the vocabulary (${c.vocabSize})`);
    const signal = options.signal;
    throwIfAborted(signal);

    const gpu = this.gpu;
    const H = c.hiddenSize;
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKvHeads * c.headDim;
    const qkvWidth = qWidth + 2 * kvWidth;
    const I = c.intermediateSize;
    // Everything is sized (and refused) here, before the first buffer or upload.
    const plan = this.memoryPlan(windows.length, T, head.kind);
    this.lastPlan = plan;
    const windowsPerChunk = plan.windowsPerChunk;
    const chunks: { first: number; count: number }[] = [];
    for (let w = 0; w < windows.length; w += windowsPerChunk) chunks.push({ first: w, count: Math.min(windowsPerChunk, windows.length - w) });
    const maxRows = windowsPerChunk * T;
    const headRows = plan.headRows;
    const steps = c.numLayers + 1;
    const key = weightKey(options.quant);
    const resident = plan.mode === 'resident';
    if (this.resident !== null && this.resident.key !== key) this.dropResident();

    const owned: GPUBuffer[] = [];
    const buffer = (label: string, floats: number): GPUBuffer => {
      const b = createStorageBuffer(gpu, label, 4 * floats);
      owned.push(b);
      return b;
    };
    const uniforms = new UniformPool(gpu);
    const streamed: DeviceLayer[] = [];
    try {
      await guarded(gpu, 'GPU forward pass', async () => {
        const device = gpu.device;
        const tables = ropeTables(T, c.headDim, c.ropeTheta);
        const cosBuffer = buffer('fwd rope cos', tables.cos.length);
        const sinBuffer = buffer('fwd rope sin', tables.sin.length);
        device.queue.writeBuffer(cosBuffer, 0, tables.cos);
        device.queue.writeBuffer(sinBuffer, 0, tables.sin);
        const normed = buffer('fwd normed', maxRows * H);
        const qkv = buffer('fwd qkv', maxRows * qkvWidth);
        const context = buffer('fwd attention out', maxRows * qWidth);
        const gateUp = buffer('fwd gate/up', maxRows * 2 * I);
        const act = buffer('fwd swiglu', maxRows * I);
        const hidden = chunks.map((ch, i) => buffer(`fwd hidden ${i}`, ch.count * T * H));

        // Embeddings, gathered on the host one chunk at a time: one gather for all the chunk's
        // tokens, so each block of the table is read (and dequantized) once per chunk, not per window.
        for (let i = 0; i < chunks.length; i++) {
          throwIfAborted(signal);
          const ch = chunks[i]!;
          const ids = new Int32Array(ch.count * T);
          for (let w = 0; w < ch.count; w++) ids.set(windows[ch.first + w]!, w * T);
          const rows = new Float32Array(ch.count * T * H);
          await this.model.embed(ids, rows);
          device.queue.writeBuffer(hidden[i]!, 0, rows);
        }

        const interleaved = c.ropeLayout === 'interleaved';
        const actBits = options.quant?.activationBits ?? null;
        const kvBits = options.quant?.kvBits ?? null;
        for (let l = 0; l < c.numLayers; l++) {
          throwIfAborted(signal);
          let layer: DeviceLayer;
          if (resident && this.resident !== null && this.resident.key === key) layer = this.resident.layers[l]!;
          else {
            layer = await this.uploadLayer(l, options.quant);
            if (resident) (this.pendingResident ??= []).push(layer);
            else streamed.push(layer);
          }
          const encoder = device.createCommandEncoder({ label: `fwd layer ${l}` });
          for (let i = 0; i < chunks.length; i++) {
            const rows = chunks[i]!.count * T;
            const x = hidden[i]!;
            // Inputs of the linear layers fake-quantized per token when the setting has A<b>.
            const quantizeInput = (buffer: GPUBuffer, width: number): void => {
              if (actBits !== null) encodeFakeQuant(gpu, encoder, uniforms, buffer, { rows, rowStride: width, col0: 0, segLen: width, segs: 1, symmetric: true, levels: 2 ** (actBits - 1) - 1 });
            };
            this.rmsNorm(encoder, uniforms, x, layer.attnNorm, normed, rows, H);
            quantizeInput(normed, H);
            this.matmul(encoder, uniforms, normed, 0, rows, layer.qkv, qkv, qkvWidth, false);
            const layout: QkvLayout = { rows, rowStride: qkvWidth, qHeads: c.numHeads, kvHeads: c.numKvHeads, headDim: c.headDim, kCol: qWidth, vCol: qWidth + kvWidth, window: T };
            encodeRope(gpu, encoder, uniforms, qkv, cosBuffer, sinBuffer, layout, interleaved);
            // KV<b>: keys (after RoPE) and values per token and per KV head; K and V heads are adjacent in qkv.
            if (kvBits !== null) encodeFakeQuant(gpu, encoder, uniforms, qkv, { rows, rowStride: qkvWidth, col0: qWidth, segLen: c.headDim, segs: 2 * c.numKvHeads, symmetric: false, levels: 2 ** kvBits - 1 });
            encodeAttention(gpu, encoder, uniforms, qkv, context, layout, qWidth);
            quantizeInput(context, qWidth);
            this.matmul(encoder, uniforms, context, 0, rows, layer.o, x, H, true);
            this.rmsNorm(encoder, uniforms, x, layer.ffnNorm, normed, rows, H);
            quantizeInput(normed, H);
            this.matmul(encoder, uniforms, normed, 0, rows, layer.gateUp, gateUp, 2 * I, false);
            encodeSwiglu(gpu, encoder, uniforms, gateUp, act, rows, I);
            quantizeInput(act, I);
            this.matmul(encoder, uniforms, act, 0, rows, layer.down, x, H, true);
          }
          device.queue.submit([encoder.finish()]);
          await device.queue.onSubmittedWorkDone();
          gpu.assertAlive();
          // A streamed layer is freed once it ran (the CPU pass also holds one layer at a time).
          for (const s of streamed.splice(0)) destroyLayer(s);
          options.onProgress?.(l + 1, steps);
        }
        if (resident && this.pendingResident !== null) {
          this.resident = { key, layers: this.pendingResident, head: await this.uploadHead() };
          this.pendingResident = null;
        }
        throwIfAborted(signal);
        const outHead = resident && this.resident !== null ? this.resident.head : await this.uploadHead();
        try {
          await this.runHead(outHead, chunks, hidden, normed, T, headRows, windows, uniforms, buffer, head, signal);
        } finally {
          if (outHead !== this.resident?.head) destroyHead(outHead);
        }
        options.onProgress?.(steps, steps);
      });
    } finally {
      for (const s of streamed) destroyLayer(s);
      if (this.pendingResident !== null) {
        for (const s of this.pendingResident) destroyLayer(s);
        this.pendingResident = null;
      }
      for (const b of owned) b.destroy();
      uniforms.destroy();
    }
  }

  /** Layers uploaded during a pass that will stay resident once the pass completes. */
  private pendingResident: DeviceLayer[] | null = null;

  private async runHead(
    outHead: DeviceHead,
    chunks: readonly { first: number; count: number }[],
    hidden: readonly GPUBuffer[],
    normed: GPUBuffer,
    T: number,
    headRows: number,
    windows: readonly Int32Array[],
    uniforms: UniformPool,
    buffer: (label: string, floats: number) => GPUBuffer,
    head: { kind: 'logits'; onLogits: (window: number, logits: Float32Array, rows: number) => void } | { kind: 'nll'; onLosses: (losses: number[]) => void },
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const gpu = this.gpu;
    const device = gpu.device;
    const c = this.model.config;
    const H = c.hiddenSize;
    const V = c.vocabSize;
    const logits = buffer('fwd logits', headRows * V);
    const totalRows = windows.length * T;
    let targets: GPUBuffer | null = null;
    let nll: GPUBuffer | null = null;
    if (head.kind === 'nll') {
      const ids = new Int32Array(totalRows).fill(-1);
      windows.forEach((w, wi) => {
        for (let t = 0; t + 1 < T; t++) ids[wi * T + t] = w[t + 1]!;
      });
      targets = buffer('fwd targets', totalRows);
      device.queue.writeBuffer(targets, 0, ids);
      nll = buffer('fwd nll', totalRows);
    }
    const windowLogits = head.kind === 'logits' ? new Float32Array(T * V) : null;
    for (let i = 0; i < chunks.length; i++) {
      throwIfAborted(signal);
      const ch = chunks[i]!;
      const rows = ch.count * T;
      const encoder = device.createCommandEncoder({ label: 'fwd head' });
      this.rmsNorm(encoder, uniforms, hidden[i]!, outHead.finalNorm, normed, rows, H);
      if (head.kind === 'nll') {
        for (let r0 = 0; r0 < rows; r0 += headRows) {
          const n = Math.min(headRows, rows - r0);
          this.matmul(encoder, uniforms, normed, r0, n, outHead.output, logits, V, false);
          encodeNll(gpu, encoder, uniforms, logits, targets!, nll!, n, V, ch.first * T + r0);
        }
        device.queue.submit([encoder.finish()]);
        continue;
      }
      device.queue.submit([encoder.finish()]);
      // Logits back to the host, a block of rows at a time, handed over per window.
      for (let r0 = 0; r0 < rows; r0 += headRows) {
        throwIfAborted(signal);
        const n = Math.min(headRows, rows - r0);
        const enc = device.createCommandEncoder({ label: 'fwd logits' });
        this.matmul(enc, uniforms, normed, r0, n, outHead.output, logits, V, false);
        device.queue.submit([enc.finish()]);
        const block = new Float32Array(await readBack(gpu, logits, n * V * 4));
        for (let r = 0; r < n; r++) {
          const row = r0 + r;
          const t = row % T;
          windowLogits!.set(block.subarray(r * V, (r + 1) * V), t * V);
          if (t === T - 1) head.onLogits(ch.first + Math.floor(row / T), windowLogits!, T);
        }
      }
    }
    if (head.kind === 'nll') {
      const values = new Float32Array(await readBack(gpu, nll!, totalRows * 4));
      const losses: number[] = [];
      for (let w = 0; w < windows.length; w++) {
        let sum = 0;
        for (let t = 0; t + 1 < T; t++) sum += values[w * T + t]!;
        losses.push(sum / (T - 1));
      }
      head.onLosses(losses);
    }
  }

  private rmsNorm(encoder: GPUCommandEncoder, uniforms: UniformPool, x: GPUBuffer, weight: GPUBuffer, out: GPUBuffer, rows: number, width: number): void {
    encodeRmsNorm(this.gpu, encoder, uniforms, x, weight, out, rows, width, this.model.config.rmsNormEps);
  }

  /** out[m, n] (+)= x[xRow0 + m, :] . w[n, :] for m < rows, over every part of w. */
  private matmul(encoder: GPUCommandEncoder, uniforms: UniformPool, x: GPUBuffer, xRow0: number, rows: number, w: DeviceMatrix, out: GPUBuffer, outStride: number, accumulate: boolean): void {
    for (const part of w.parts) {
      encodeMatmul(this.gpu, encoder, uniforms, this.matmulKernel, {
        x,
        xRow0,
        rows,
        w: part.buffer,
        outs: part.rows,
        inner: w.cols,
        bias: part.bias,
        unused: this.dummy,
        out,
        outStride,
        outCol: part.firstRow,
        accumulate,
      });
    }
  }

  /** Uploads [rows, cols] stacked from `pieces` (each [rows_i, cols]) in parts that fit one binding. */
  private uploadMatrix(label: string, pieces: readonly Float32Array[], cols: number, biases: readonly (Float32Array | null)[] | null): DeviceMatrix {
    const rows = pieces.reduce((n, p) => n + p.length / cols, 0);
    const perPart = Math.max(1, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (4 * cols)));
    const parts: DeviceMatrix['parts'] = [];
    for (let first = 0; first < rows; first += perPart) {
      const n = Math.min(perPart, rows - first);
      const buffer = createStorageBuffer(this.gpu, `${label} rows ${first}..${first + n}`, 4 * n * cols);
      const bias = biases === null ? null : createStorageBuffer(this.gpu, `${label} bias`, 4 * n);
      parts.push({ buffer, firstRow: first, rows: n, bias });
    }
    let row = 0;
    pieces.forEach((piece, pi) => {
      const pieceRows = piece.length / cols;
      for (const part of parts) {
        const from = Math.max(row, part.firstRow);
        const to = Math.min(row + pieceRows, part.firstRow + part.rows);
        if (from >= to) continue;
        this.gpu.device.queue.writeBuffer(part.buffer, 4 * (from - part.firstRow) * cols, piece, (from - row) * cols, (to - from) * cols);
        const b = biases?.[pi] ?? null;
        if (part.bias !== null) {
          if (b !== null) this.gpu.device.queue.writeBuffer(part.bias, 4 * (from - part.firstRow), b, from - row, to - from);
          else this.gpu.device.queue.writeBuffer(part.bias, 4 * (from - part.firstRow), new Float32Array(to - from));
        }
      }
      row += pieceRows;
    });
    return { rows, cols, parts };
  }

  private uploadVector(label: string, v: Float32Array): GPUBuffer {
    const b = createStorageBuffer(this.gpu, label, 4 * v.length);
    this.gpu.device.queue.writeBuffer(b, 0, v);
    return b;
  }

  private async uploadLayer(l: number, quant: QuantSetting | undefined): Promise<DeviceLayer> {
    const c = this.model.config;
    const weights: LayerWeights = await this.model.readLayer(l);
    const H = c.hiddenSize;
    const qWidth = c.numHeads * c.headDim;
    if (quant?.weightBits != null) {
      // The CPU pass's rule, on the host before the upload (model/fakeQuant.ts).
      for (const role of ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const satisfies readonly LinearRole[]) {
        const wt = weights.linear[role];
        const cols = role === 'o' ? qWidth : role === 'down' ? c.intermediateSize : H;
        fakeQuantizeWeight(wt, wt.length / cols, cols, quant.weightBits, quant.weightGroup);
      }
    }
    const L = weights.linear;
    const biases = layerBiases(weights);
    return {
      attnNorm: this.uploadVector(`layer ${l} attn norm`, weights.attnNorm),
      ffnNorm: this.uploadVector(`layer ${l} ffn norm`, weights.ffnNorm),
      qkv: this.uploadMatrix(`layer ${l} qkv`, [L.q, L.k, L.v], H, biases),
      o: this.uploadMatrix(`layer ${l} o`, [L.o], qWidth, null),
      gateUp: this.uploadMatrix(`layer ${l} gate/up`, [L.gate, L.up], H, null),
      down: this.uploadMatrix(`layer ${l} down`, [L.down], c.intermediateSize, null),
    };
  }

  /** The final norm and the output head, the head read from the file in parts of one binding each. */
  private async uploadHead(): Promise<DeviceHead> {
    const c = this.model.config;
    const H = c.hiddenSize;
    const ck = this.model.checkpoint;
    const finalNorm = this.uploadVector('final norm', await ck.readRowsF32(this.model.finalNormTensorName));
    const perPart = Math.max(1, Math.floor(this.gpu.limits.maxStorageBufferBindingSize / (4 * H)));
    const parts: DeviceMatrix['parts'] = [];
    try {
      for (let first = 0; first < c.vocabSize; first += perPart) {
        const n = Math.min(perPart, c.vocabSize - first);
        const rows = await ck.readRowsF32(this.model.outputTensorName, first, n);
        const buffer = createStorageBuffer(this.gpu, `output rows ${first}..${first + n}`, 4 * n * H);
        this.gpu.device.queue.writeBuffer(buffer, 0, rows);
        parts.push({ buffer, firstRow: first, rows: n, bias: null });
      }
    } catch (e) {
      finalNorm.destroy();
      for (const p of parts) p.buffer.destroy();
      throw e;
    }
    return { finalNorm, output: { rows: c.vocabSize, cols: H, parts } };
  }
}

/** q/k/v biases when the layer has them (Qwen2 attention), stacked as the qkv rows are; else null. */
function layerBiases(weights: LayerWeights): (Float32Array | null)[] | null {
  const b = weights.bias;
  return b === undefined ? null : [b.q, b.k, b.v];
}

function destroyMatrix(m: DeviceMatrix): void {
  for (const p of m.parts) {
    p.buffer.destroy();
    p.bias?.destroy();
  }
}

function destroyLayer(l: DeviceLayer): void {
  l.attnNorm.destroy();
  l.ffnNorm.destroy();
  destroyMatrix(l.qkv);
  destroyMatrix(l.o);
  destroyMatrix(l.gateUp);
  destroyMatrix(l.down);
}

function destroyHead(h: DeviceHead): void {
  h.finalNorm.destroy();
  destroyMatrix(h.output);
}
