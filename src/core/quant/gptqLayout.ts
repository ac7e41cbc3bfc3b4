/**
 * The GPTQ checkpoint layout (AutoGPTQ / GPTQModel `checkpoint_format: "gptq"`, what transformers,
 * vLLM and exllama load) for a group-wise quantized linear weight W [out, in]:
 *
 *   <prefix>.qweight  I32 [in * bits / 32, out]   levels packed along the INPUT dimension
 *   <prefix>.qzeros   I32 [groups, out * bits / 32] zero points packed along the OUTPUT dimension
 *   <prefix>.scales   F16 [groups, out]
 *   <prefix>.g_idx    I32 [in]                     group of each input channel: i // group_size, or with act-order
 *                                                  (desc_act) the channel's position in GPTQ's processing order
 *                                                  // group_size (AutoGPTQ's g_idx[invperm]); groups =
 *                                                  ceil(in / group_size), the last one may be shorter
 *
 * Packing: for each column of qweight (one output channel), the levels of input channels 0, 1, 2...
 * form a little-endian bit stream: value k occupies bits [k*bits, (k+1)*bits) of the stream, word
 * w = bits [32w, 32w + 32). For 2, 4 and 8 bits that is 32/bits values per word, value j of a
 * word at bit j*bits; for 3 bits a value may straddle two words, which is exactly AutoGPTQ's 3-bit
 * packing (10 values + 2 bits | 1 bit + 10 values + 1 bit | 2 bits + 10 values per 3 words).
 * qzeros uses the same stream along the output dimension.
 *
 * Zero-point convention (the v1 "gptq" format): qzeros holds zero - 1, masked to `bits` bits, and
 * every loader adds 1 back after unpacking (dequant: (q - (stored_zero + 1)) * scale). This is the
 * AutoGPTQ off-by-one that broke asymmetric models: a group whose zero is 0 would be written as -1
 * (all ones after masking) and read back as 2^bits. We keep loaders' convention and avoid the bug
 * by quantizing with zero >= 1 (GPTQ_MIN_ZERO); `packGptq` refuses a zero of 0. Symmetric schemes
 * have zero 2^(bits-1), stored as 2^(bits-1) - 1 (0x77777777 for 4 bits), as sym GPTQ files do.
 *
 * Scales are rounded to f16 (round to nearest even) on the way out: dequantize through the
 * unpacked layout to see what a loader computes.
 */
import { FormatError, InvalidArgumentError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { groupCount, type IntBits, type IntNQuantized } from './intN';

/**
 * Codes to pack: group-wise levels, scales and zeros [rows, groups]; `gIdx` (act-order) gives each input
 * channel's group, else channel i is in group i // groupSize.
 */
export interface GptqCodes extends IntNQuantized {
  gIdx?: Int32Array;
}

/** The smallest zero point the v1 layout can store (it writes zero - 1). */
export const GPTQ_MIN_ZERO = 1;

export interface GptqTensors {
  bits: IntBits;
  inFeatures: number;
  outFeatures: number;
  groupSize: number;
  qweight: Int32Array;
  qzeros: Int32Array;
  /** f16 bit patterns. */
  scales: Uint16Array;
  gIdx: Int32Array;
}

export interface GptqQuantizeConfig {
  bits: IntBits;
  group_size: number;
  desc_act: boolean;
  sym: boolean;
  static_groups: boolean;
  true_sequential: boolean;
  damp_percent: number;
  model_file_base_name: string;
  checkpoint_format: 'gptq';
  quant_method: 'gptq';
}

export function gptqQuantizeConfig(bits: IntBits, groupSize: number, sym: boolean, modelFileBaseName = 'model', descAct = false): GptqQuantizeConfig {
  return {
    bits,
    group_size: groupSize,
    desc_act: descAct,
    sym,
    static_groups: false,
    true_sequential: true,
    damp_percent: 0.01,
    model_file_base_name: modelFileBaseName,
    checkpoint_format: 'gptq',
    quant_method: 'gptq',
  };
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** f32 -> f16 bits, round to nearest even; overflow to Inf; NaN -> quiet NaN. */
export function f32ToF16Bits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  let e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    const rest = mantissa & ((1 << shift) - 1);
    let m = mantissa >>> shift;
    if (rest > half || (rest === half && (m & 1) === 1)) m += 1;
    return sign | m;
  }
  const rest = mantissa & 0x1fff;
  let m = mantissa >>> 13;
  if (rest > 0x1000 || (rest === 0x1000 && (m & 1) === 1)) {
    m += 1;
    if (m === 0x400) {
      m = 0;
      e += 1;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function checkPackable(bits: IntBits, inFeatures: number, outFeatures: number, name: string): void {
  if ((inFeatures * bits) % 32 !== 0) throw new InvalidArgumentError(`${name}: ${inFeatures} input channels x ${bits} bits do not fill whole 32-bit words (GPTQ layout)`);
  if ((outFeatures * bits) % 32 !== 0) throw new InvalidArgumentError(`${name}: ${outFeatures} output channels x ${bits} bits do not fill whole 32-bit words (GPTQ qzeros)`);
}

/** Writes `value` (< 2^bits) at bit position `bit` of a stream of 32-bit words at words[base + word * stride]. */
function putBits(words: Int32Array, base: number, stride: number, bit: number, bits: number, value: number): void {
  const word = bit >>> 5;
  const shift = bit & 31;
  words[base + word * stride]! |= value << shift;
  if (shift + bits > 32) words[base + (word + 1) * stride]! |= value >>> (32 - shift);
}

function getBits(words: Int32Array, base: number, stride: number, bit: number, bits: number): number {
  const word = bit >>> 5;
  const shift = bit & 31;
  const mask = (1 << bits) - 1;
  let v = words[base + word * stride]! >>> shift;
  if (shift + bits > 32) v |= words[base + (word + 1) * stride]! << (32 - shift);
  return v & mask;
}

/**
 * Checks an act-order g_idx against the group size: one entry per input channel, each group holding
 * exactly groupSize channels (the last one the rest), as GPTQ's processing order cut into groups gives.
 */
export function checkGIdx(gIdx: Int32Array, inFeatures: number, groupSize: number, fail: (defect: string) => Error): void {
  const groups = groupCount(inFeatures, groupSize);
  if (gIdx.length !== inFeatures) throw fail(`g_idx has ${gIdx.length} entries, expected ${inFeatures}`);
  const members = new Int32Array(groups);
  for (let i = 0; i < inFeatures; i++) {
    const g = gIdx[i]!;
    if (!(g >= 0 && g < groups)) throw fail(`g_idx[${i}] = ${g} is outside [0, ${groups})`);
    members[g]! += 1;
  }
  for (let g = 0; g < groups; g++) {
    const expected = Math.min(groupSize, inFeatures - g * groupSize);
    if (members[g] !== expected) throw fail(`g_idx puts ${members[g]} channels in group ${g}, expected ${expected} (group size ${groupSize})`);
  }
}

/**
 * Empty GPTQ tensors for a weight [outFeatures, inFeatures], g_idx filled: `gIdx` when given (act-order),
 * else i // groupSize. Throws for shapes the layout cannot take.
 */
export function allocateGptq(bits: IntBits, outFeatures: number, inFeatures: number, groupSize: number, name = 'tensor', actOrderGIdx?: Int32Array): GptqTensors {
  checkPackable(bits, inFeatures, outFeatures, name);
  const effectiveGroup = groupSize === -1 ? inFeatures : groupSize;
  const groups = groupCount(inFeatures, effectiveGroup);
  const gIdx = new Int32Array(inFeatures);
  if (actOrderGIdx !== undefined) {
    checkGIdx(actOrderGIdx, inFeatures, effectiveGroup, (d) => new InvalidArgumentError(`${name}: ${d}`));
    gIdx.set(actOrderGIdx);
  } else for (let i = 0; i < inFeatures; i++) gIdx[i] = Math.floor(i / effectiveGroup);
  return {
    bits,
    inFeatures,
    outFeatures,
    groupSize: effectiveGroup,
    qweight: new Int32Array(((inFeatures * bits) / 32) * outFeatures),
    qzeros: new Int32Array((groups * outFeatures * bits) / 32),
    scales: new Uint16Array(groups * outFeatures),
    gIdx,
  };
}

/**
 * Packs rows [rowStart, rowStart + q.rows) of the weight (output channels), quantized by intN.ts with
 * minZero = GPTQ_MIN_ZERO (or GPTQ's own codes), into `target`: the pipeline quantizes a large weight
 * window by window. Levels go in channel order; scales and zeros by group, the group of each channel
 * being target.gIdx's (allocateGptq), so act-order codes pack the same way.
 */
export function packGptqRows(q: IntNQuantized, rowStart: number, target: GptqTensors, name = 'tensor'): void {
  const { bits, rows, cols: inFeatures } = q;
  const { outFeatures } = target;
  if (bits !== target.bits || inFeatures !== target.inFeatures || q.groupSize !== target.groupSize || rowStart < 0 || rowStart + rows > outFeatures) {
    throw new InvalidArgumentError(`${name}: rows [${rowStart}, ${rowStart + rows}) at ${bits} bits / group ${q.groupSize} do not fit the GPTQ tensors being packed`);
  }
  const groups = groupCount(inFeatures, q.groupSize);
  const maxq = (1 << bits) - 1;
  const zeroWords = (outFeatures * bits) / 32;
  for (let r = 0; r < rows; r++) {
    const o = rowStart + r;
    const row = r * inFeatures;
    for (let i = 0; i < inFeatures; i++) putBits(target.qweight, o, outFeatures, i * bits, bits, q.levels[row + i]!);
    for (let g = 0; g < groups; g++) {
      const zero = q.zeros[r * groups + g]!;
      if (zero < GPTQ_MIN_ZERO || zero > maxq) {
        throw new InvalidArgumentError(`${name}: zero point ${zero} (row ${o}, group ${g}) cannot be stored in the GPTQ v1 layout, which writes zero - 1; quantize with minZero = ${GPTQ_MIN_ZERO}`);
      }
      putBits(target.qzeros, g * zeroWords, 1, o * bits, bits, (zero - 1) & maxq);
      target.scales[g * outFeatures + o] = f32ToF16Bits(q.scales[r * groups + g]!);
    }
  }
}

/** Packs a whole group-wise quantized weight (quantized with minZero = GPTQ_MIN_ZERO, or GPTQ's codes with their g_idx) into the GPTQ layout. */
export function packGptq(q: GptqCodes, name = 'tensor'): GptqTensors {
  const target = allocateGptq(q.bits, q.rows, q.cols, q.groupSize, name, q.gIdx);
  packGptqRows(q, 0, target, name);
  return target;
}

/**
 * What a loader reconstructs for rows quantized by intN.ts (or GPTQ) once their scales are stored as f16:
 * (level - zero) * f16(scale) of the channel's group, g_idx's when the codes have one (act-order).
 */
export function dequantizeRowsWithF16Scales(q: GptqCodes, out: Float32Array = new Float32Array(q.rows * q.cols)): Float32Array {
  const groups = groupCount(q.cols, q.groupSize);
  const stored = Float32Array.from(q.scales, (s) => f16BitsToF32(f32ToF16Bits(s)));
  const gIdx = q.gIdx;
  for (let r = 0; r < q.rows; r++) {
    for (let c = 0; c < q.cols; c++) {
      const g = r * groups + (gIdx === undefined ? Math.floor(c / q.groupSize) : gIdx[c]!);
      out[r * q.cols + c] = Math.fround((q.levels[r * q.cols + c]! - q.zeros[g]!) * stored[g]!);
    }
  }
  return out;
}

export interface GptqUnpacked {
  /** [out, in] levels. */
  levels: Uint8Array;
  /** [out, groups] zero points, the +1 of the v1 convention already added back. */
  zeros: Uint16Array;
  /** [out, groups] f32 scales (from f16). */
  scales: Float32Array;
  groups: number;
}

/** Reads the layout back: levels, zero points (stored + 1) and scales. Validates sizes and g_idx. */
export function unpackGptq(t: GptqTensors, file = '<gptq>'): GptqUnpacked {
  const { bits, inFeatures, outFeatures } = t;
  if ((inFeatures * bits) % 32 !== 0 || (outFeatures * bits) % 32 !== 0) throw new FormatError(file, `shape [${outFeatures}, ${inFeatures}] cannot be packed at ${bits} bits`);
  if (t.qweight.length !== ((inFeatures * bits) / 32) * outFeatures) throw new FormatError(file, `qweight has ${t.qweight.length} words, expected ${((inFeatures * bits) / 32) * outFeatures}`);
  if (t.gIdx.length !== inFeatures) throw new FormatError(file, `g_idx has ${t.gIdx.length} entries, expected ${inFeatures}`);
  let groups = 0;
  for (let i = 0; i < inFeatures; i++) {
    const g = t.gIdx[i]!;
    if (g < 0) throw new FormatError(file, `g_idx[${i}] = ${g} is negative`);
    if (g + 1 > groups) groups = g + 1;
  }
  const zeroWords = (outFeatures * bits) / 32;
  if (t.qzeros.length !== groups * zeroWords) throw new FormatError(file, `qzeros has ${t.qzeros.length} words, expected ${groups * zeroWords} for ${groups} groups`);
  if (t.scales.length !== groups * outFeatures) throw new FormatError(file, `scales has ${t.scales.length} entries, expected ${groups * outFeatures}`);
  const levels = new Uint8Array(outFeatures * inFeatures);
  for (let o = 0; o < outFeatures; o++) {
    for (let i = 0; i < inFeatures; i++) levels[o * inFeatures + i] = getBits(t.qweight, o, outFeatures, i * bits, bits);
  }
  const zeros = new Uint16Array(outFeatures * groups);
  const scales = new Float32Array(outFeatures * groups);
  for (let g = 0; g < groups; g++) {
    for (let o = 0; o < outFeatures; o++) {
      zeros[o * groups + g] = getBits(t.qzeros, g * zeroWords, 1, o * bits, bits) + 1;
      scales[o * groups + g] = f16BitsToF32(t.scales[g * outFeatures + o]!);
    }
  }
  return { levels, zeros, scales, groups };
}

/** What a GPTQ loader computes: W[o, i] = (q - zero) * scale with the group from g_idx; [out, in] f32. */
export function dequantizeGptq(t: GptqTensors, file = '<gptq>'): Float32Array {
  const u = unpackGptq(t, file);
  const { inFeatures, outFeatures } = t;
  const out = new Float32Array(outFeatures * inFeatures);
  for (let o = 0; o < outFeatures; o++) {
    for (let i = 0; i < inFeatures; i++) {
      const g = o * u.groups + t.gIdx[i]!;
      out[o * inFeatures + i] = Math.fround((u.levels[o * inFeatures + i]! - u.zeros[g]!) * u.scales[g]!);
    }
  }
  return out;
}

function typedView<T>(raw: Uint8Array, make: (buffer: ArrayBuffer, offset: number, length: number) => T, elementBytes: number): T {
  // A copy: the stored bytes may not be aligned for the typed view.
  const copy = raw.slice();
  return make(copy.buffer, copy.byteOffset, copy.byteLength / elementBytes);
}

/**
 * Reads one GPTQ-layout linear layer (`<prefix>.qweight`, `.qzeros`, `.scales`, `.g_idx`) from a
 * checkpoint, checking dtypes and shapes; in/out features and the group size come from the shapes.
 */
export async function readGptqLinear(ckpt: Checkpoint, prefix: string, bits: IntBits): Promise<GptqTensors> {
  const entry = (suffix: string, dtype: string): { shape: number[] } => {
    const t = ckpt.tensors.find((x) => x.name === `${prefix}.${suffix}`);
    if (t === undefined) throw new FormatError(ckpt.path, `no tensor ${prefix}.${suffix}`, prefix);
    if (t.dtype !== dtype) throw new FormatError(ckpt.path, `${prefix}.${suffix} is ${t.dtype}, the GPTQ layout stores ${dtype}`, prefix);
    if (t.shape.length !== (suffix === 'g_idx' ? 1 : 2)) throw new FormatError(ckpt.path, `${prefix}.${suffix} has shape [${t.shape.join(', ')}]`, prefix);
    return t;
  };
  const qweightShape = entry('qweight', 'I32').shape;
  const qzerosShape = entry('qzeros', 'I32').shape;
  entry('scales', 'F16');
  const gIdxShape = entry('g_idx', 'I32').shape;
  const outFeatures = qweightShape[1]!;
  const inFeatures = (qweightShape[0]! * 32) / bits;
  if (gIdxShape[0] !== inFeatures) throw new FormatError(ckpt.path, `g_idx has ${gIdxShape[0]} entries, qweight packs ${inFeatures} input channels at ${bits} bits`, prefix);
  const groups = qzerosShape[0]!;
  const t: GptqTensors = {
    bits,
    inFeatures,
    outFeatures,
    groupSize: Math.ceil(inFeatures / groups),
    qweight: typedView(await ckpt.readRawRows(`${prefix}.qweight`), (b, o, n) => new Int32Array(b, o, n), 4),
    qzeros: typedView(await ckpt.readRawRows(`${prefix}.qzeros`), (b, o, n) => new Int32Array(b, o, n), 4),
    scales: typedView(await ckpt.readRawRows(`${prefix}.scales`), (b, o, n) => new Uint16Array(b, o, n), 2),
    gIdx: typedView(await ckpt.readRawRows(`${prefix}.g_idx`), (b, o, n) => new Int32Array(b, o, n), 4),
  };
  unpackGptq(t, ckpt.path); // validates every size against g_idx
  return t;
}
