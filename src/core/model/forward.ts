/**
 * LLaMA-family forward pass on the CPU, layer at a time: the hidden states of every window go
 * through layer l before layer l+1's weights are read, so only one layer's weights (plus the
 * embedding rows in bounded chunks, and lm_head at the end) are in memory at once. Weights come
 * through `Checkpoint.readRowsF32`, so any dtype a reader decodes (BF16, F16, F32, ggml quants) works.
 *
 * The math is in kernels.ts (RMSNorm, RoPE, attention, SwiGLU) and wasmMatmul.ts (the WebAssembly
 * SIMD matmul, with kernels.ts's JS matmul as fallback) so that GPU kernels can replace it function
 * by function.
 */
import { totalmem } from 'node:os';
import { CancelledError, FormatError, InvalidArgumentError, UnsupportedError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import type { ActivationSiteKind } from '../../protocol/analysis';
import { ropeTables } from './kernels';
import {
  applyRopeRows,
  attentionByMatmul,
  attentionScratch,
  headNll,
  matmulResident,
  matmulResidentAdd,
  matmulResidentShared,
  matmulSwiglu,
  residentWeight,
  rmsNormRows,
  trimWasmHeap,
  type ResidentWeight,
} from './wasmMatmul';
import { fakeQuantizeActivations, fakeQuantizeKv, fakeQuantizeWeight, type QuantSetting } from './fakeQuant';
import { llamaConfigFromGguf, llamaConfigFromHf, type LlamaConfig } from './llamaConfig';

export type LinearRole = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';
export const LINEAR_ROLES: readonly LinearRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

const HF_LINEAR: Record<LinearRole, string> = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
};
const GGUF_LINEAR: Record<LinearRole, string> = {
  q: 'attn_q',
  k: 'attn_k',
  v: 'attn_v',
  o: 'attn_output',
  gate: 'ffn_gate',
  up: 'ffn_up',
  down: 'ffn_down',
};

/** The HF-style module name of a linear layer (used in reports whatever the file format). */
export function linearModuleName(layer: number, role: LinearRole): string {
  return `model.layers.${layer}.${HF_LINEAR[role]}`;
}

/** Which site feeds each linear role. */
/** Site kinds that exist once per layer. */
export type LayerSiteKind = Exclude<ActivationSiteKind, 'final_norm'>;

export const SITE_OF_ROLE: Record<LinearRole, LayerSiteKind> = {
  q: 'attn_in',
  k: 'attn_in',
  v: 'attn_in',
  o: 'attn_out',
  gate: 'mlp_in',
  up: 'mlp_in',
  down: 'mlp_act',
};

/** Projections that may carry a bias (Qwen2's q/k/v; a bias on o or the MLP is refused). */
export type BiasedRole = 'q' | 'k' | 'v';
export const BIASED_ROLES: readonly BiasedRole[] = ['q', 'k', 'v'];

export interface LayerWeights {
  attnNorm: Float32Array;
  ffnNorm: Float32Array;
  linear: Record<LinearRole, Float32Array>;
  /** q/k/v biases [outs] when the model has them (config.attentionBias), else absent. */
  bias?: Record<BiasedRole, Float32Array>;
}

/** out[t, :] += bias for every row t: the bias of an nn.Linear, added after the matmul as PyTorch does (f32). */
export function addRowBias(out: Float32Array, bias: Float32Array, rows: number): void {
  const width = bias.length;
  for (let t = 0; t < rows; t++) {
    const base = t * width;
    for (let i = 0; i < width; i++) out[base + i] = out[base + i]! + bias[i]!;
  }
}

/** Adds the layer's q/k/v biases (if any) to freshly projected q, k, v [rows, width]. */
export function addQkvBiases(weights: LayerWeights, q: Float32Array, k: Float32Array, v: Float32Array, rows: number): void {
  if (weights.bias === undefined) return;
  addRowBias(q, weights.bias.q, rows);
  addRowBias(k, weights.bias.k, rows);
  addRowBias(v, weights.bias.v, rows);
}

/** One activation capture point (see protocol/analysis.ts for what each kind is). */
export interface ActivationSite {
  id: string;
  kind: ActivationSiteKind;
  layer: number;
  /** HF-style names of the linear layers reading this site; `lm_head` for final_norm. */
  consumers: string[];
}

export interface ForwardHooks {
  /**
   * Called once per window and site with the activation [rows, width] before any activation
   * fake-quantization. `x` is a scratch buffer: read it during the call, never keep it.
   */
  onActivation?(site: ActivationSite, x: Float32Array, rows: number, width: number, window: number): void;
  /** Called with a layer's weights after they are read (and fake-quantized, when a setting asks). */
  onLayerWeights?(layer: number, weights: LayerWeights): void;
}

export interface ForwardOptions {
  quant?: QuantSetting;
  hooks?: ForwardHooks;
  signal?: AbortSignal;
  /** Progress in layers done of (layers + 1) (the last step is the output head). */
  onProgress?(done: number, total: number): void;
  /** Skip the output head (calibration passes that only need activations). */
  skipLogits?: boolean;
  /** Refuse a pass whose estimated peak exceeds this many bytes (default 80% of the machine's memory). */
  memoryLimitBytes?: number;
}

interface TensorNames {
  embed: string;
  finalNorm: string;
  output: string;
  attnNorm(layer: number): string;
  ffnNorm(layer: number): string;
  linear(layer: number, role: LinearRole): string;
  linearBias(layer: number, role: LinearRole): string;
}

function hfNames(tensors: Map<string, TensorEntry>): TensorNames {
  return {
    embed: 'model.embed_tokens.weight',
    finalNorm: 'model.norm.weight',
    output: tensors.has('lm_head.weight') ? 'lm_head.weight' : 'model.embed_tokens.weight',
    attnNorm: (l) => `model.layers.${l}.input_layernorm.weight`,
    ffnNorm: (l) => `model.layers.${l}.post_attention_layernorm.weight`,
    linear: (l, r) => `model.layers.${l}.${HF_LINEAR[r]}.weight`,
    linearBias: (l, r) => `model.layers.${l}.${HF_LINEAR[r]}.bias`,
  };
}

function ggufNames(tensors: Map<string, TensorEntry>): TensorNames {
  return {
    embed: 'token_embd.weight',
    finalNorm: 'output_norm.weight',
    output: tensors.has('output.weight') ? 'output.weight' : 'token_embd.weight',
    attnNorm: (l) => `blk.${l}.attn_norm.weight`,
    ffnNorm: (l) => `blk.${l}.ffn_norm.weight`,
    linear: (l, r) => `blk.${l}.${GGUF_LINEAR[r]}.weight`,
    linearBias: (l, r) => `blk.${l}.${GGUF_LINEAR[r]}.bias`,
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw new CancelledError('forward pass cancelled');
}

/** Rows of the embedding read per chunk while gathering token vectors. */
const EMBED_CHUNK_ROWS = 4096;

export class LlamaModel {
  private readonly tensorsByName: Map<string, TensorEntry>;
  private readonly names: TensorNames;

  private constructor(
    readonly checkpoint: Checkpoint,
    readonly config: LlamaConfig,
  ) {
    this.tensorsByName = new Map(checkpoint.tensors.map((t) => [t.name, t]));
    this.names = checkpoint.format === 'gguf' ? ggufNames(this.tensorsByName) : hfNames(this.tensorsByName);
    if (this.names.output === this.names.embed) this.config = { ...config, tieWordEmbeddings: true };
    this.checkShapes();
  }

  /** Reads the config (HF config.json or GGUF metadata) and checks every tensor the pass will need. */
  static fromCheckpoint(checkpoint: Checkpoint): LlamaModel {
    let config: LlamaConfig;
    if (checkpoint.format === 'gguf') config = llamaConfigFromGguf(checkpoint.metadata, checkpoint.path);
    else {
      if (checkpoint.config === null) throw new FormatError(checkpoint.path, 'no config.json next to the weights; the forward pass needs the model hyper-parameters');
      config = llamaConfigFromHf(checkpoint.config, `${checkpoint.path} (config.json)`);
    }
    return new LlamaModel(checkpoint, config);
  }

  get outputTensorName(): string {
    return this.names.output;
  }

  /** Name of the final norm's weight in this file (the GPU pass reads it too). */
  get finalNormTensorName(): string {
    return this.names.finalNorm;
  }

  /** Name of a linear layer's weight tensor in this file. */
  linearTensorName(layer: number, role: LinearRole): string {
    return this.names.linear(layer, role);
  }

  private expectShape(name: string, shape: number[]): void {
    const t = this.tensorsByName.get(name);
    if (t === undefined) throw new FormatError(this.checkpoint.path, `tensor '${name}' is missing`);
    const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    // GGUF may store a 1-D norm as [n]; safetensors too. Anything else must match exactly.
    if (!same) throw new FormatError(this.checkpoint.path, `tensor '${name}' has shape [${t.shape.join(', ')}], expected [${shape.join(', ')}]`, name);
  }

  private checkShapes(): void {
    const c = this.config;
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKvHeads * c.headDim;
    this.expectShape(this.names.embed, [c.vocabSize, c.hiddenSize]);
    this.expectShape(this.names.finalNorm, [c.hiddenSize]);
    this.expectShape(this.names.output, [c.vocabSize, c.hiddenSize]);
    const linearShapes: Record<LinearRole, number[]> = {
      q: [qWidth, c.hiddenSize],
      k: [kvWidth, c.hiddenSize],
      v: [kvWidth, c.hiddenSize],
      o: [c.hiddenSize, qWidth],
      gate: [c.intermediateSize, c.hiddenSize],
      up: [c.intermediateSize, c.hiddenSize],
      down: [c.hiddenSize, c.intermediateSize],
    };
    for (let l = 0; l < c.numLayers; l++) {
      this.expectShape(this.names.attnNorm(l), [c.hiddenSize]);
      this.expectShape(this.names.ffnNorm(l), [c.hiddenSize]);
      for (const role of LINEAR_ROLES) this.expectShape(this.names.linear(l, role), linearShapes[role]);
      this.checkBiases(l, linearShapes);
    }
    for (const name of ['lm_head.bias', 'output.bias']) {
      if (this.tensorsByName.has(name)) throw new UnsupportedError(`${this.checkpoint.path}: tensor '${name}' (a bias on the output head) is not applied by the forward pass`);
    }
  }

  /** q/k/v biases are required when the config says so and refused when it does not (or on o / the MLP). */
  private checkBiases(l: number, linearShapes: Record<LinearRole, number[]>): void {
    for (const role of LINEAR_ROLES) {
      const name = this.names.linearBias(l, role);
      const biased = (BIASED_ROLES as readonly LinearRole[]).includes(role) && this.config.attentionBias;
      if (biased) this.expectShape(name, [linearShapes[role][0]!]);
      else if (this.tensorsByName.has(name)) {
        throw new UnsupportedError(`${this.checkpoint.path}: tensor '${name}' is a bias this model's config does not declare; the forward pass does not apply it`);
      }
    }
  }

  /** f32 bytes of the largest single layer (or the output head), for the memory estimate. */
  largestLayerBytes(): number {
    const c = this.config;
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKvHeads * c.headDim;
    const layer = c.hiddenSize * (2 * qWidth + 2 * kvWidth) + 3 * c.hiddenSize * c.intermediateSize + 2 * c.hiddenSize;
    return 4 * Math.max(layer, c.vocabSize * c.hiddenSize);
  }

  /**
   * Peak bytes of a pass over `windows` windows of `rows` tokens: one layer twice (as read, and its
   * copy in the wasm heap that the matmul kernels read) + activations + logits.
   */
  estimatePeakBytes(windows: number, rows: number): number {
    const c = this.config;
    const qWidth = c.numHeads * c.headDim;
    const hiddenStates = 4 * windows * rows * c.hiddenSize;
    const scratch = 4 * rows * (3 * c.hiddenSize + 2 * qWidth + 2 * c.numKvHeads * c.headDim + 2 * c.intermediateSize + c.vocabSize);
    return 2 * this.largestLayerBytes() + hiddenStates + scratch;
  }

  /** Reads layer `l`'s weights as f32 (the only layer in memory during its step). */
  async readLayer(l: number): Promise<LayerWeights> {
    const read = (name: string): Promise<Float32Array> => this.checkpoint.readRowsF32(name);
    const linear = {} as Record<LinearRole, Float32Array>;
    for (const role of LINEAR_ROLES) linear[role] = await read(this.names.linear(l, role));
    const weights: LayerWeights = { attnNorm: await read(this.names.attnNorm(l)), ffnNorm: await read(this.names.ffnNorm(l)), linear };
    if (this.config.attentionBias) {
      weights.bias = { q: await read(this.names.linearBias(l, 'q')), k: await read(this.names.linearBias(l, 'k')), v: await read(this.names.linearBias(l, 'v')) };
    }
    return weights;
  }

  /** Gathers the embedding rows of `ids` into out [ids.length, hidden], reading the table in chunks. */
  async embed(ids: Int32Array, out: Float32Array): Promise<void> {
    const c = this.config;
    const order = Array.from(ids.keys()).sort((a, b) => ids[a]! - ids[b]!);
    let at = 0;
    while (at < order.length) {
      const first = ids[order[at]!]!;
      if (first < 0 || first >= c.vocabSize) throw new InvalidArgumentError(`token id ${first} is outside the vocabulary (${c.vocabSize})`);
      const chunkStart = first - (first % EMBED_CHUNK_ROWS);
      const chunkRows = Math.min(EMBED_CHUNK_ROWS, c.vocabSize - chunkStart);
      const table = await this.checkpoint.readRowsF32(this.names.embed, chunkStart, chunkRows);
      while (at < order.length) {
        const pos = order[at]!;
        const id = ids[pos]!;
        if (id >= chunkStart + chunkRows) break;
        out.set(table.subarray((id - chunkStart) * c.hiddenSize, (id - chunkStart + 1) * c.hiddenSize), pos * c.hiddenSize);
        at++;
      }
    }
  }

  /**
   * Runs every window (each a sequence of token ids starting at position 0, all of the same
   * length) through the model. `onLogits(window, logits [rows, vocab])` gets a scratch buffer per
   * window: consume it during the call.
   */
  async run(
    windows: readonly Int32Array[],
    onLogits: (window: number, logits: Float32Array, rows: number) => void,
    options: ForwardOptions = {},
  ): Promise<void> {
    let logits: Float32Array | null = null;
    await this.runPass(windows, options, (w, normed, head, rows) => {
      logits ??= new Float32Array(rows * this.config.vocabSize);
      matmulResident(normed, head, logits, rows);
      onLogits(w, logits, rows);
    });
  }

  /**
   * Runs every window like `run` and scores it instead of handing out logits: `onWindowNll(window,
   * nll)` gets the sum over t < rows - 1 of -log softmax(logits[t])[ids[t + 1]] (f64). The output
   * head runs only for the rows - 1 scored positions and its logits never leave the kernels' heap
   * (wasmMatmul.headNll); the logits are the same bits `run` hands out.
   */
  async runNll(windows: readonly Int32Array[], onWindowNll: (window: number, nll: number) => void, options: ForwardOptions = {}): Promise<void> {
    let targets: Int32Array | null = null;
    await this.runPass(windows, options, (w, normed, head, rows) => {
      targets ??= new Int32Array(rows - 1);
      targets.set(windows[w]!.subarray(1));
      onWindowNll(w, headNll(normed, head, rows - 1, targets));
    });
  }

  /** The layer loop shared by run and runNll; `applyHead(window, finalNormed, head, rows)` runs once per window. */
  private async runPass(
    windows: readonly Int32Array[],
    options: ForwardOptions,
    applyHead: (window: number, normed: Float32Array, head: ResidentWeight, rows: number) => void,
  ): Promise<void> {
    const c = this.config;
    const rows = windows[0]?.length ?? 0;
    if (rows === 0) throw new InvalidArgumentError('nothing to evaluate: no tokens');
    if (windows.some((w) => w.length !== rows)) throw new InvalidArgumentError('all windows must have the same length');
    if (rows > c.maxPositionEmbeddings) {
      throw new InvalidArgumentError(`context of ${rows} tokens is longer than the model's max_position_embeddings (${c.maxPositionEmbeddings})`);
    }
    const peak = this.estimatePeakBytes(windows.length, rows);
    const limit = options.memoryLimitBytes ?? 0.8 * totalmem();
    if (peak > limit) {
      const gib = (n: number): string => (n / 2 ** 30).toFixed(3);
      throw new UnsupportedError(
        `this pass needs about ${gib(peak)} GiB (largest layer ${gib(this.largestLayerBytes())} GiB as f32, twice: as read and in the kernels' heap, + activations of ${windows.length} x ${rows} tokens); the limit is ${gib(limit)} GiB: use fewer windows or a machine with more memory`,
      );
    }
    const signal = options.signal;
    const quant = options.quant;
    const hooks = options.hooks;
    const H = c.hiddenSize;
    const qWidth = c.numHeads * c.headDim;
    const kvWidth = c.numKvHeads * c.headDim;
    const I = c.intermediateSize;
    const steps = c.numLayers + 1;

    throwIfAborted(signal);
    const hidden = new Float32Array(windows.length * rows * H);
    // Every window's ids in one gather: each chunk of the embedding table is read (and decoded) once per pass, not once per window.
    const allIds = new Int32Array(windows.length * rows);
    windows.forEach((ids, w) => allIds.set(ids, w * rows));
    await this.embed(allIds, hidden);

    const tables = ropeTables(rows, c.headDim, c.ropeTheta);
    const normed = new Float32Array(rows * H);
    const q = new Float32Array(rows * qWidth);
    const k = new Float32Array(rows * kvWidth);
    const v = new Float32Array(rows * kvWidth);
    const context = new Float32Array(rows * qWidth);
    const gate = new Float32Array(rows * I);
    const attention = attentionScratch(rows, c.headDim);

    const actBits = quant?.activationBits ?? null;
    const quantizeInput = (x: Float32Array, width: number): void => {
      if (actBits !== null) fakeQuantizeActivations(x, rows, width, actBits);
    };

    for (let l = 0; l < c.numLayers; l++) {
      throwIfAborted(signal);
      const weights = await this.readLayer(l);
      if (quant?.weightBits != null) {
        for (const role of LINEAR_ROLES) {
          const wt = weights.linear[role];
          const cols = role === 'o' ? qWidth : role === 'down' ? I : H;
          fakeQuantizeWeight(wt, wt.length / cols, cols, quant.weightBits, quant.weightGroup);
        }
      }
      hooks?.onLayerWeights?.(l, weights);
      const sites = layerSites(l);
      // The layer's projections go into the wasm heap once and serve every window.
      const L = residentLayer(weights.linear, H, qWidth, kvWidth, I);
      try {
        for (let w = 0; w < windows.length; w++) {
          throwIfAborted(signal);
          const x = hidden.subarray(w * rows * H, (w + 1) * rows * H);
          // Attention block.
          rmsNormRows(x, weights.attnNorm, normed, rows, H, c.rmsNormEps);
          hooks?.onActivation?.(sites.attn_in, normed, rows, H, w);
          quantizeInput(normed, H);
          matmulResidentShared(normed, [L.q, L.k, L.v], [q, k, v], rows);
          addQkvBiases(weights, q, k, v, rows);
          applyRopeRows(q, rows, c.numHeads, c.headDim, tables, c.ropeLayout);
          applyRopeRows(k, rows, c.numKvHeads, c.headDim, tables, c.ropeLayout);
          if (quant?.kvBits != null) {
            fakeQuantizeKv(k, rows, c.numKvHeads, c.headDim, quant.kvBits);
            fakeQuantizeKv(v, rows, c.numKvHeads, c.headDim, quant.kvBits);
          }
          attentionByMatmul(q, k, v, context, rows, c.numHeads, c.numKvHeads, c.headDim, attention);
          hooks?.onActivation?.(sites.attn_out, context, rows, qWidth, w);
          quantizeInput(context, qWidth);
          // x += o_proj(context); MLP block: normed = RMSNorm(x).
          matmulResidentAdd(context, L.o, x, rows, { weight: weights.ffnNorm, eps: c.rmsNormEps, out: normed });
          hooks?.onActivation?.(sites.mlp_in, normed, rows, H, w);
          quantizeInput(normed, H);
          matmulSwiglu(normed, L.gate, L.up, gate, rows);
          hooks?.onActivation?.(sites.mlp_act, gate, rows, I, w);
          quantizeInput(gate, I);
          matmulResidentAdd(gate, L.down, x, rows);
          hooks?.onActivation?.(sites.residual, x, rows, H, w);
        }
      } finally {
        for (const role of LINEAR_ROLES) L[role].release();
      }
      options.onProgress?.(l + 1, steps);
    }

    if (options.skipLogits === true) {
      // Still report the final norm's input statistics to hooks (input of lm_head).
      if (hooks?.onActivation !== undefined) {
        const finalNorm = await this.checkpoint.readRowsF32(this.names.finalNorm);
        const site = finalSite(c.numLayers);
        for (let w = 0; w < windows.length; w++) {
          throwIfAborted(signal);
          rmsNormRows(hidden.subarray(w * rows * H, (w + 1) * rows * H), finalNorm, normed, rows, H, c.rmsNormEps);
          hooks.onActivation(site, normed, rows, H, w);
        }
      }
      trimWasmHeap();
      options.onProgress?.(steps, steps);
      return;
    }
    throwIfAborted(signal);
    const finalNorm = await this.checkpoint.readRowsF32(this.names.finalNorm);
    const output = await this.checkpoint.readRowsF32(this.names.output);
    const site = finalSite(c.numLayers);
    const head = residentWeight(output, c.vocabSize, H);
    try {
      for (let w = 0; w < windows.length; w++) {
        throwIfAborted(signal);
        rmsNormRows(hidden.subarray(w * rows * H, (w + 1) * rows * H), finalNorm, normed, rows, H, c.rmsNormEps);
        hooks?.onActivation?.(site, normed, rows, H, w);
        applyHead(w, normed, head, rows);
      }
    } finally {
      head.release();
    }
    trimWasmHeap();
    options.onProgress?.(steps, steps);
  }
}

/** A layer's projections as resident weights (release each when the layer is done). */
function residentLayer(linear: Record<LinearRole, Float32Array>, hidden: number, qWidth: number, kvWidth: number, intermediate: number): Record<LinearRole, ResidentWeight> {
  const shapes: Record<LinearRole, [number, number]> = {
    q: [qWidth, hidden],
    k: [kvWidth, hidden],
    v: [kvWidth, hidden],
    o: [hidden, qWidth],
    gate: [intermediate, hidden],
    up: [intermediate, hidden],
    down: [hidden, intermediate],
  };
  const out = {} as Record<LinearRole, ResidentWeight>;
  for (const role of LINEAR_ROLES) out[role] = residentWeight(linear[role], shapes[role][0], shapes[role][1]);
  return out;
}

export function layerSites(l: number): Record<LayerSiteKind, ActivationSite> {
  const consumers = (roles: LinearRole[]): string[] => roles.map((r) => linearModuleName(l, r));
  return {
    attn_in: { id: `layers.${l}.attn_in`, kind: 'attn_in', layer: l, consumers: consumers(['q', 'k', 'v']) },
    attn_out: { id: `layers.${l}.attn_out`, kind: 'attn_out', layer: l, consumers: consumers(['o']) },
    mlp_in: { id: `layers.${l}.mlp_in`, kind: 'mlp_in', layer: l, consumers: consumers(['gate', 'up']) },
    mlp_act: { id: `layers.${l}.mlp_act`, kind: 'mlp_act', layer: l, consumers: consumers(['down']) },
    residual: { id: `layers.${l}.residual`, kind: 'residual', layer: l, consumers: [] },
  };
}

export function finalSite(numLayers: number): ActivationSite {
  return { id: 'final_norm', kind: 'final_norm', layer: numLayers, consumers: ['lm_head'] };
}
