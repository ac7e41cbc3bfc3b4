/**
 * NF4 as bitsandbytes writes it (`bnb.functional.quantize_4bit(quant_type="nf4", blocksize=64)`,
 * CUDA kernel kQuantizeBlockwise + dQuantizeNF4), on the flattened tensor:
 *
 * - Blocks of 64 consecutive values (row-major flattening); absmax = max|x| per block, f32.
 * - Each value is multiplied by the f32 reciprocal f32(1 / absmax) and mapped to a 4-bit code by
 *   bnb's decision tree: the thresholds are the midpoints of neighbouring NF4 values, compared with
 *   `x > t` (f32), so a value exactly on a midpoint takes the lower code. An all-zero block gives
 *   1/0 = Inf, 0 * Inf = NaN, every comparison false: code 0b0000 (dequantizes to -1 * 0 = 0).
 * - Packing: two codes per byte, the first element of each pair in the HIGH nibble.
 *   A tensor with an odd element count gets a final low nibble of 0.
 * - Dequantize: NF4_CODE[code] * absmax (f32).
 *
 * Double quantization (bnb `compress_statistics=True`): offset = mean(absmax) (f32, as torch.mean);
 * the centred absmax values (absmax - offset) are quantized with `quantize_blockwise` in blocks of
 * 256 against bnb's signed 8-bit "dynamic" code (create_dynamic_map(signed=True), rebuilt here in
 * f32 exactly as torch.linspace computes it), using the kernel's binary search with midpoint
 * rounding (dQuantize<0>). The nested absmax (one f32 per 256 absmax values) stays f32. Decode:
 * absmax = DYNAMIC_CODE[q] * nestedAbsmax[block] + offset.
 */
import { InvalidArgumentError } from '../errors';

export const NF4_BLOCK_SIZE = 64;
export const NF4_NESTED_BLOCK_SIZE = 256;

/** The 16 NF4 values (bitsandbytes `get_4bit_type("nf4")` / dDequantizeNF4), as f32. */
export const NF4_CODE: Float32Array = Float32Array.from([
  -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
  0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
]);

/** dQuantizeNF4's thresholds (f32 literals in the kernel): code c+1 is chosen when x > NF4_THRESHOLDS[c]. */
const NF4_THRESHOLDS: Float32Array = Float32Array.from([
  -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984, -0.13791173323988914,
  -0.045525018125772476, 0.03979014977812767, 0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
  0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
]);

const f32 = Math.fround;

/** The NF4 code for a normalised value, exactly as bnb's decision tree (NaN -> 0). */
export function nf4CodeOf(x: number): number {
  // Every comparison is `x > threshold`; the tree is equivalent to counting the thresholds below x.
  if (!(x > NF4_THRESHOLDS[7]!)) {
    if (!(x > NF4_THRESHOLDS[3]!)) {
      if (!(x > NF4_THRESHOLDS[1]!)) return x > NF4_THRESHOLDS[0]! ? 1 : 0;
      return x > NF4_THRESHOLDS[2]! ? 3 : 2;
    }
    if (!(x > NF4_THRESHOLDS[5]!)) return x > NF4_THRESHOLDS[4]! ? 5 : 4;
    return x > NF4_THRESHOLDS[6]! ? 7 : 6;
  }
  if (!(x > NF4_THRESHOLDS[11]!)) {
    if (!(x > NF4_THRESHOLDS[9]!)) return x > NF4_THRESHOLDS[8]! ? 9 : 8;
    return x > NF4_THRESHOLDS[10]! ? 11 : 10;
  }
  if (!(x > NF4_THRESHOLDS[13]!)) return x > NF4_THRESHOLDS[12]! ? 13 : 12;
  return x > NF4_THRESHOLDS[14]! ? 15 : 14;
}

/** f32 torch.linspace(start, end, steps) (ATen's CPU kernel: the two halves are computed from each end). */
function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  const s = f32(start);
  const e = f32(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = f32(f32(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  for (let i = 0; i < steps; i++) out[i] = i < halfway ? f32(s + f32(step * i)) : f32(e - f32(step * (steps - i - 1)));
  return out;
}

/** bnb `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`, sorted ascending, f32. */
export function createDynamicMap(): Float32Array {
  const maxExponentBits = 7;
  const nonSignBits = 7;
  const data: number[] = [];
  for (let i = 0; i < maxExponentBits; i++) {
    const fractionItems = 2 ** (i + nonSignBits - maxExponentBits) + 1;
    const boundaries = linspaceF32(0.1, 1, fractionItems);
    const magnitude = f32(10 ** (-(maxExponentBits - 1) + i));
    for (let k = 0; k + 1 < boundaries.length; k++) {
      const mean = f32(f32(boundaries[k]! + boundaries[k + 1]!) / 2);
      data.push(f32(magnitude * mean));
      data.push(f32(-magnitude * mean));
    }
  }
  data.push(0, 1);
  data.sort((a, b) => a - b);
  if (data.length !== 256) throw new Error(`dynamic map has ${data.length} entries`);
  return Float32Array.from(data);
}

export const DYNAMIC_CODE: Float32Array = createDynamicMap();

/** bnb dQuantize<STOCHASTIC=0>: binary search over the sorted 256-entry code, midpoint rounding. */
export function dynamicCodeOf(code: Float32Array, x: number): number {
  let pivot = 127;
  let upperPivot = 255;
  let lowerPivot = 0;
  let lower = -1;
  let upper = 1;
  let val = code[pivot]!;
  for (let i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lowerPivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upperPivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot]!;
  }
  if (upperPivot === 255) upper = code[upperPivot]!;
  if (lowerPivot === 0) lower = code[lowerPivot]!;
  if (x > val) {
    const midpoint = f32(f32(upper + val) * 0.5);
    return x > midpoint ? upperPivot : pivot;
  }
  const midpoint = f32(f32(lower + val) * 0.5);
  return x < midpoint ? lowerPivot : pivot;
}

export interface Nf4DoubleQuant {
  /** absmax quantized with DYNAMIC_CODE, one byte per NF4 block. */
  quantizedAbsmax: Uint8Array;
  /** One f32 absmax per 256 absmax values. */
  nestedAbsmax: Float32Array;
  /** mean(absmax), added back on decode. */
  offset: number;
}

export interface Nf4Quantized {
  /** Element count of the original tensor. */
  count: number;
  /** ceil(count / 2) bytes, first of each pair in the high nibble. */
  packed: Uint8Array;
  /** One f32 per block of 64 (the plain absmax; kept even with double quant, for measuring). */
  absmax: Float32Array;
  doubleQuant: Nf4DoubleQuant | null;
}

/** Blockwise absmax + NF4 codes (see the header for the exact rule). */
export function quantizeNf4(values: Float32Array, options: { doubleQuant?: boolean } = {}): Nf4Quantized {
  const count = values.length;
  if (count === 0) throw new InvalidArgumentError('cannot NF4-quantize an empty tensor');
  const blocks = Math.ceil(count / NF4_BLOCK_SIZE);
  const absmax = new Float32Array(blocks);
  const packed = new Uint8Array(Math.ceil(count / 2));
  for (let b = 0; b < blocks; b++) {
    const start = b * NF4_BLOCK_SIZE;
    const end = Math.min(count, start + NF4_BLOCK_SIZE);
    let m = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(values[i]!);
      if (a > m) m = a;
    }
    absmax[b] = m;
    const inverse = f32(1 / m); // Inf for an all-zero block: NaN products give code 0, as in bnb
    for (let i = start; i < end; i++) {
      const code = nf4CodeOf(f32(values[i]! * inverse));
      if ((i & 1) === 0) packed[i >> 1] = code << 4;
      else packed[i >> 1]! |= code;
    }
  }
  return { count, packed, absmax, doubleQuant: options.doubleQuant === true ? doubleQuantizeAbsmax(absmax) : null };
}

/** f32 mean as torch.mean computes it closely enough: sum in f64, one rounding. */
function meanF32(values: Float32Array): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return f32(sum / values.length);
}

export function doubleQuantizeAbsmax(absmax: Float32Array): Nf4DoubleQuant {
  const offset = meanF32(absmax);
  const count = absmax.length;
  const nestedBlocks = Math.ceil(count / NF4_NESTED_BLOCK_SIZE);
  const nestedAbsmax = new Float32Array(nestedBlocks);
  const quantizedAbsmax = new Uint8Array(count);
  for (let b = 0; b < nestedBlocks; b++) {
    const start = b * NF4_NESTED_BLOCK_SIZE;
    const end = Math.min(count, start + NF4_NESTED_BLOCK_SIZE);
    let m = 0;
    for (let i = start; i < end; i++) {
      const a = Math.abs(f32(absmax[i]! - offset));
      if (a > m) m = a;
    }
    nestedAbsmax[b] = m;
    const inverse = f32(1 / m);
    for (let i = start; i < end; i++) {
      const x = f32(f32(absmax[i]! - offset) * inverse);
      quantizedAbsmax[i] = Number.isNaN(x) ? dynamicCodeOf(DYNAMIC_CODE, 0) : dynamicCodeOf(DYNAMIC_CODE, x);
    }
  }
  return { quantizedAbsmax, nestedAbsmax, offset };
}

/** The absmax values a loader reconstructs: plain, or decoded from the double quantization. */
export function effectiveAbsmax(q: Nf4Quantized): Float32Array {
  return q.doubleQuant === null ? q.absmax : decodeDoubleQuantAbsmax(q.doubleQuant);
}

/** absmax = f32(f32(DYNAMIC_CODE[q] * nestedAbsmax[block]) + offset), as bnb's dequantize_blockwise + offset. */
export function decodeDoubleQuantAbsmax(dq: Nf4DoubleQuant): Float32Array {
  const { quantizedAbsmax, nestedAbsmax, offset } = dq;
  const out = new Float32Array(quantizedAbsmax.length);
  for (let i = 0; i < out.length; i++) {
    out[i] = f32(f32(DYNAMIC_CODE[quantizedAbsmax[i]!]! * nestedAbsmax[(i / NF4_NESTED_BLOCK_SIZE) | 0]!) + offset);
  }
  return out;
}

/** Unpacks codes and multiplies by the (decoded) absmax of each block. */
export function dequantizeNf4Packed(packed: Uint8Array, absmax: Float32Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  if (packed.length < Math.ceil(count / 2)) throw new InvalidArgumentError(`NF4 data holds ${packed.length * 2} codes, need ${count}`);
  if (absmax.length < Math.ceil(count / NF4_BLOCK_SIZE)) throw new InvalidArgumentError(`NF4 absmax holds ${absmax.length} blocks, need ${Math.ceil(count / NF4_BLOCK_SIZE)}`);
  for (let i = 0; i < count; i++) {
    const byte = packed[i >> 1]!;
    const code = (i & 1) === 0 ? byte >> 4 : byte & 0x0f;
    out[i] = f32(NF4_CODE[code]! * absmax[(i / NF4_BLOCK_SIZE) | 0]!);
  }
  return out;
}

export function dequantizeNf4(q: Nf4Quantized): Float32Array {
  return dequantizeNf4Packed(q.packed, effectiveAbsmax(q), q.count);
}
