/**
 * A checkpoint in one of our research layouts (GPTQ `qweight/qzeros/scales/g_idx`, INT8 / INT8 zero-point /
 * FP8 `weight` + `weight_scale`, LLM.int8() `weight` + `SCB` (+ kept 16-bit columns), bitsandbytes NF4), seen
 * as the float model a loader reconstructs: every quantized `<p>.weight` appears as an F32 [out, in] tensor
 * whose rows are readResearchWeight's dequantization, and the layout's own tensors are hidden. Everything
 * else (norms, embeddings, biases) passes through unchanged. The model runtime reads a quantize output
 * through this view, so `quantlens eval` measures the weights a loader of the file would compute with.
 */
import { FormatError, InvalidArgumentError } from '../errors';
import type { Checkpoint, TensorEntry } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { INT_BITS, type IntBits } from './intN';
import { readResearchWeight } from './pipeline';

/** How a layout is recognised (the tensor that only it has) and which tensors of `<p>` it consists of. */
const LAYOUTS = [
  { marker: '.qweight', parts: ['qweight', 'qzeros', 'scales', 'g_idx'] },
  { marker: '.SCB', parts: ['weight', 'SCB', 'weight_outlier_idx', 'weight_outlier', 'weight_format'] },
  { marker: '.weight.quant_state.bitsandbytes__nf4', parts: ['weight', 'weight.absmax', 'weight.quant_map', 'weight.nested_absmax', 'weight.nested_quant_map', 'weight.quant_state.bitsandbytes__nf4'] },
  { marker: '.weight_scale', parts: ['weight', 'weight_scale', 'weight_zero_point'] },
] as const;

interface DequantizedWeight {
  entry: TensorEntry;
  /** GPTQ only: bits from the packed shapes. */
  gptqBits?: IntBits;
}

/** True when the checkpoint holds at least one weight in a research layout. */
export function hasResearchLayout(ckpt: Checkpoint): boolean {
  return ckpt.tensors.some((t) => LAYOUTS.some((l) => t.name.endsWith(l.marker)));
}

function shapeOf(byName: ReadonlyMap<string, TensorEntry>, ckpt: Checkpoint, name: string): number[] {
  const t = byName.get(name);
  if (t === undefined) throw new FormatError(ckpt.path, `no tensor ${name}`, name);
  return t.shape;
}

async function nf4Shape(ckpt: Checkpoint, stateName: string): Promise<number[]> {
  let state: unknown;
  try {
    state = JSON.parse(new TextDecoder().decode(await ckpt.readRawRows(stateName)));
  } catch (e) {
    if (e instanceof SyntaxError) throw new FormatError(ckpt.path, 'NF4 quant state is not JSON', stateName);
    throw e;
  }
  const shape = typeof state === 'object' && state !== null ? (state as Record<string, unknown>).shape : undefined;
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isSafeInteger(d) && (d as number) > 0)) throw new FormatError(ckpt.path, 'NF4 quant state has no 2-D shape', stateName);
  return shape as number[];
}

/**
 * The float view of `ckpt` (see the file comment). The caller keeps owning `ckpt`: closing the view closes it.
 * Throws FormatError for a layout whose tensors are missing or mis-shaped.
 */
export async function dequantizedResearchView(ckpt: Checkpoint): Promise<Checkpoint> {
  const byName = new Map(ckpt.tensors.map((t) => [t.name, t]));
  const hidden = new Set<string>();
  const weights = new Map<string, DequantizedWeight>();
  for (const t of ckpt.tensors) {
    const layout = LAYOUTS.find((l) => t.name.endsWith(l.marker));
    if (layout === undefined) continue;
    const prefix = t.name.slice(0, -layout.marker.length);
    const name = `${prefix}.weight`;
    if (weights.has(name)) continue;
    let shape: number[];
    let gptqBits: IntBits | undefined;
    if (layout.marker === '.qweight') {
      const packed = shapeOf(byName, ckpt, `${prefix}.qweight`);
      const gIdx = shapeOf(byName, ckpt, `${prefix}.g_idx`);
      if (packed.length !== 2 || gIdx.length !== 1) throw new FormatError(ckpt.path, `GPTQ tensors of ${prefix} have shapes [${packed.join(', ')}] and [${gIdx.join(', ')}]`, prefix);
      const bits = (packed[0]! * 32) / gIdx[0]!;
      if (!(INT_BITS as readonly number[]).includes(bits)) throw new FormatError(ckpt.path, `${prefix}.qweight packs ${packed[0]} words per ${gIdx[0]} input channels: ${bits} bits is not a GPTQ width`, prefix);
      gptqBits = bits as IntBits;
      shape = [packed[1]!, gIdx[0]!];
    } else if (layout.marker === '.weight.quant_state.bitsandbytes__nf4') {
      shape = await nf4Shape(ckpt, t.name);
    } else {
      shape = shapeOf(byName, ckpt, name);
      if (shape.length !== 2) throw new FormatError(ckpt.path, `${name} has shape [${shape.join(', ')}], expected a 2-D quantized weight`, name);
    }
    for (const part of layout.parts) hidden.add(`${prefix}.${part}`);
    const [rows, cols] = shape as [number, number];
    const file = byName.get(t.name)!.file;
    const dequantized: DequantizedWeight = { entry: { name, dtype: 'F32', shape: [rows, cols], nbytes: rows * cols * 4, file, offset: 0 } };
    if (gptqBits !== undefined) dequantized.gptqBits = gptqBits;
    weights.set(name, dequantized);
  }
  const tensors: TensorEntry[] = [];
  for (const t of ckpt.tensors) {
    const w = weights.get(t.name);
    if (w !== undefined) tensors.push(w.entry);
    else if (!hidden.has(t.name)) tensors.push(t);
  }
  for (const [name, w] of weights) if (!byName.has(name)) tensors.push(w.entry);
  // One dequantized weight at a time: the runtime reads a weight whole, then the next.
  let cached: { name: string; values: Float32Array } | null = null;
  const dequantize = async (w: DequantizedWeight): Promise<Float32Array> => {
    if (cached?.name !== w.entry.name) {
      const values = await readResearchWeight(ckpt, w.entry.name, w.gptqBits);
      if (values.length !== w.entry.nbytes / 4) throw new FormatError(ckpt.path, `${w.entry.name} dequantizes to ${values.length} values, expected ${w.entry.nbytes / 4}`, w.entry.name);
      cached = { name: w.entry.name, values };
    }
    return cached.values;
  };
  const rowsOf = async (name: string, rowStart?: number, rowCount?: number): Promise<Float32Array | null> => {
    const w = weights.get(name);
    if (w === undefined) return null;
    const [rows, cols] = w.entry.shape as [number, number];
    const start = rowStart ?? 0;
    const count = rowCount ?? rows - start;
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 0 || start + count > rows) {
      throw new InvalidArgumentError(`${ckpt.path}: tensor '${name}' has ${rows} rows; rows [${start}, ${start + count}) are out of range`);
    }
    return (await dequantize(w)).slice(start * cols, (start + count) * cols);
  };
  const refuseHidden = (name: string): void => {
    if (hidden.has(name)) throw new InvalidArgumentError(`${ckpt.path}: '${name}' is part of a quantized layout; read its weight '${name.slice(0, name.lastIndexOf('.'))}.weight' instead`);
  };
  return {
    format: ckpt.format,
    path: ckpt.path,
    files: ckpt.files,
    metadata: ckpt.metadata,
    config: ckpt.config,
    tensors,
    async readRowsF32(name, rowStart, rowCount) {
      const rows = await rowsOf(name, rowStart, rowCount);
      if (rows !== null) return rows;
      refuseHidden(name);
      return ckpt.readRowsF32(name, rowStart, rowCount);
    },
    async readRawRows(name, rowStart, rowCount) {
      const rows = await rowsOf(name, rowStart, rowCount);
      if (rows !== null) return new Uint8Array(rows.buffer, rows.byteOffset, rows.byteLength);
      refuseHidden(name);
      return ckpt.readRawRows(name, rowStart, rowCount);
    },
    close: () => ckpt.close(),
  };
}

/** Opens `path` as openCheckpoint does; a checkpoint in a research layout comes back as its float view. */
export async function openDequantizedCheckpoint(path: string): Promise<Checkpoint> {
  const ckpt = await openCheckpoint(path);
  try {
    return hasResearchLayout(ckpt) ? await dequantizedResearchView(ckpt) : ckpt;
  } catch (e) {
    await ckpt.close();
    throw e;
  }
}
