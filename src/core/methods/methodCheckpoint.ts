/**
 * The hook between a calibrated method and the writers (GPTQ layout, GGUF export): a Checkpoint that
 * reads like the original except that the tensors the method rewrote (linear weights, and the norms
 * AWQ / SmoothQuant folded their scales into) come from the method's result, as F32. A writer that
 * quantizes what it reads then writes the method's weights; nothing else changes.
 */
import { InvalidArgumentError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import type { LinearRole, LlamaModel } from '../model/forward';
import { layerTensorShape, type LayerTensor } from './calibrate';
import type { MethodRun } from './quantizeWithMethod';

const ROLES: readonly LinearRole[] = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'];

function normNames(format: Checkpoint['format'], layer: number): { attn: string; ffn: string } {
  return format === 'gguf'
    ? { attn: `blk.${layer}.attn_norm.weight`, ffn: `blk.${layer}.ffn_norm.weight` }
    : { attn: `model.layers.${layer}.input_layernorm.weight`, ffn: `model.layers.${layer}.post_attention_layernorm.weight` };
}

function f32Bytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true);
  return out;
}

/**
 * Wraps `checkpoint` so that the tensors rewritten by `run` read as their new F32 values, read by row range from
 * the run's calibrated layers (in memory, or the spill file: then nothing but the rows asked for is in memory).
 * The view is valid while the run's spill file is (disposeMethodRun ends both).
 * GGUF note: llama.cpp stores attn_q / attn_k rows permuted; the runtime already reads GGUF weights in
 * that stored order, so the rewritten rows are in the file's order too.
 */
export function checkpointWithMethodWeights(checkpoint: Checkpoint, model: LlamaModel, run: MethodRun): Checkpoint {
  const layers = run.calibrated;
  if (layers === null) {
    if (run.method === 'rtn' || run.method === 'rtn-a8') return checkpoint;
    throw new InvalidArgumentError(`${run.method}: the calibrated layers were not kept (MethodRunOptions.layers 'discard') or their spill file is closed`);
  }
  const replaced = new Map<string, { layer: number; tensor: LayerTensor; rows: number; cols: number }>();
  for (let l = 0; l < model.config.numLayers; l++) {
    const norms = normNames(checkpoint.format, l);
    for (const [name, tensor] of [
      [norms.attn, 'attnNorm'],
      [norms.ffn, 'ffnNorm'],
    ] as const) {
      replaced.set(name, { layer: l, tensor, rows: 1, cols: model.config.hiddenSize });
    }
    for (const role of ROLES) {
      const name = model.linearTensorName(l, role);
      const entry = checkpoint.tensors.find((t) => t.name === name);
      if (entry === undefined) throw new InvalidArgumentError(`${checkpoint.path}: tensor '${name}' is missing`);
      const { rows, cols } = layerTensorShape(model.config, role);
      if (entry.shape[entry.shape.length - 1] !== cols) throw new InvalidArgumentError(`${checkpoint.path}: tensor '${name}' has ${entry.shape.join(' x ')}, the model's ${role} is ${rows} x ${cols}`);
      replaced.set(name, { layer: l, tensor: role, rows, cols });
    }
  }
  const tensors: TensorEntry[] = checkpoint.tensors.map((t) => {
    const r = replaced.get(t.name);
    return r === undefined ? t : { ...t, dtype: 'F32', nbytes: r.rows * r.cols * 4 };
  });
  return {
    ...checkpoint,
    tensors,
    // The rewritten values are not in the files: no direct file read (a spread would not copy the method anyway).
    readRowsF32Into: undefined,
    readRowsBf16Into: undefined,
    async readRowsF32(name, rowStart, rowCount) {
      const r = replaced.get(name);
      return r === undefined ? checkpoint.readRowsF32(name, rowStart, rowCount) : layers.readRows(r.layer, r.tensor, rowStart ?? 0, rowCount);
    },
    async readRawRows(name, rowStart, rowCount) {
      const r = replaced.get(name);
      return r === undefined ? checkpoint.readRawRows(name, rowStart, rowCount) : f32Bytes(await layers.readRows(r.layer, r.tensor, rowStart ?? 0, rowCount));
    },
    close: () => checkpoint.close(),
  };
}
