/**
 * The hook between a calibrated method and the writers (GPTQ layout, GGUF export): a Checkpoint that
 * reads like the original except that the tensors the method rewrote (linear weights, and the norms
 * AWQ / SmoothQuant folded their scales into) come from the method's result, as F32. A writer that
 * quantizes what it reads then writes the method's weights; nothing else changes.
 */
import { InvalidArgumentError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import type { LinearRole, LlamaModel } from '../model/forward';
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
 * Wraps `checkpoint` so that the tensors rewritten by `run` read as their new F32 values.
 * GGUF note: llama.cpp stores attn_q / attn_k rows permuted; the runtime already reads GGUF weights in
 * that stored order, so the rewritten rows are in the file's order too.
 */
export function checkpointWithMethodWeights(checkpoint: Checkpoint, model: LlamaModel, run: MethodRun): Checkpoint {
  const layers = run.layers;
  if (layers === null) return checkpoint;
  const replaced = new Map<string, { values: Float32Array; cols: number }>();
  layers.forEach((weights, l) => {
    const norms = normNames(checkpoint.format, l);
    replaced.set(norms.attn, { values: weights.attnNorm, cols: weights.attnNorm.length });
    replaced.set(norms.ffn, { values: weights.ffnNorm, cols: weights.ffnNorm.length });
    for (const role of ROLES) {
      const name = model.linearTensorName(l, role);
      const entry = checkpoint.tensors.find((t) => t.name === name);
      if (entry === undefined) throw new InvalidArgumentError(`${checkpoint.path}: tensor '${name}' is missing`);
      const cols = entry.shape[entry.shape.length - 1]!;
      replaced.set(name, { values: weights.linear[role], cols });
    }
  });
  const tensors: TensorEntry[] = checkpoint.tensors.map((t) => {
    const r = replaced.get(t.name);
    return r === undefined ? t : { ...t, dtype: 'F32', nbytes: r.values.length * 4 };
  });
  const rowsOf = (name: string, values: Float32Array, cols: number, rowStart = 0, rowCount?: number): Float32Array => {
    const rows = values.length / cols;
    const count = rowCount ?? rows - rowStart;
    if (rowStart < 0 || count < 0 || rowStart + count > rows) throw new InvalidArgumentError(`${name}: rows [${rowStart}, ${rowStart + count}) are outside [0, ${rows})`);
    return values.slice(rowStart * cols, (rowStart + count) * cols);
  };
  return {
    ...checkpoint,
    tensors,
    // The rewritten values are not in the files: no direct file read (a spread would not copy the method anyway).
    readRowsF32Into: undefined,
    async readRowsF32(name, rowStart, rowCount) {
      const r = replaced.get(name);
      return r === undefined ? checkpoint.readRowsF32(name, rowStart, rowCount) : rowsOf(name, r.values, r.cols, rowStart, rowCount);
    },
    async readRawRows(name, rowStart, rowCount) {
      const r = replaced.get(name);
      return r === undefined ? checkpoint.readRawRows(name, rowStart, rowCount) : f32Bytes(rowsOf(name, r.values, r.cols, rowStart, rowCount));
    },
    close: () => checkpoint.close(),
  };
}
