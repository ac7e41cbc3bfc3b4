/**
 * GPTQ's columns rounded into ggml blocks (issue #6): the block types llama-quantize's presets use.
 *
 * When GPTQ reaches the first column of a block (32 columns; 256 for the K types' super-blocks) the
 * block's parameters are computed from the CURRENT, error-updated weights of its columns exactly as
 * ggml's `quantize_row_*_ref` does: the WebAssembly port of those quantizers (quant/ggml, bytes identical
 * to llama-quantize) quantizes the block, which writes d / dmin / m and the sub-block scales; the K types'
 * per-sub-block d and dm are read back from those bytes, the 32-value types' f32 `min` and `id = 1/d`
 * (which the bytes do not hold) are recomputed by the same float steps. Each column is then rounded with
 * those fixed parameters by the type's own last rounding step (written next to each type below) and its
 * code written into the block's bit layout; the value GPTQ propagates the error of is the one ggml's
 * `dequantize_row_*` gives for that code (the same f32 steps, checked against the real dequantizer in
 * test/unit/methodsGptqGgml.test.ts).
 *
 * Without error compensation (a diagonal Hessian) every column keeps its value, and the blocks equal the
 * `_ref` quantizer's bytes: the rounding steps below are the `_ref` ones.
 */
import { InvalidArgumentError, NumericError } from '../errors';
import { findNonFinite, quantizeGgml } from '../quant/ggml/index';
import { nearestInt } from '../quant/ggml/rounding';
import { f16BitsToF32 } from './grids';

/** The ggml block types GPTQ compensates into: the quantized types of llama.cpp's non-imatrix presets. */
export const GPTQ_GGML_TYPES = ['Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q8_0', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type GptqGgmlType = (typeof GPTQ_GGML_TYPES)[number];

export function isGptqGgmlType(s: string): s is GptqGgmlType {
  return (GPTQ_GGML_TYPES as readonly string[]).includes(s);
}

/** Values per block, bytes per block, values per sub-block (one scale each). */
export interface GgmlBlockShape {
  readonly values: number;
  readonly bytes: number;
  readonly subBlock: number;
}

const SHAPES: Record<GptqGgmlType, GgmlBlockShape> = {
  Q4_0: { values: 32, bytes: 18, subBlock: 32 },
  Q4_1: { values: 32, bytes: 20, subBlock: 32 },
  Q5_0: { values: 32, bytes: 22, subBlock: 32 },
  Q5_1: { values: 32, bytes: 24, subBlock: 32 },
  Q8_0: { values: 32, bytes: 34, subBlock: 32 },
  Q2_K: { values: 256, bytes: 84, subBlock: 16 },
  Q3_K: { values: 256, bytes: 110, subBlock: 16 },
  Q4_K: { values: 256, bytes: 144, subBlock: 32 },
  Q5_K: { values: 256, bytes: 176, subBlock: 32 },
  Q6_K: { values: 256, bytes: 210, subBlock: 16 },
};

export function ggmlBlockShape(type: GptqGgmlType): GgmlBlockShape {
  return SHAPES[type];
}

const fround = Math.fround;

/** nearest_int (ties to even) of an f32 value, saturating where ggml's bit trick would give garbage (GPTQ can push a value far off the grid; the clamp that follows then picks the end). */
function nearestIntSaturating(v: number): number {
  if (v <= 4194303 && v >= -4194303) return nearestInt(v);
  return v > 0 ? 4194304 : -4194304;
}

/** C's float -> int conversion (truncation toward zero) for a code: without JS's -0. */
function truncToInt8Code(v: number): number {
  return Math.trunc(v) | 0;
}

function clamp(v: number, lo: number, hi: number): number {
  return v < lo ? lo : v > hi ? hi : v;
}

function readF16(bytes: Uint8Array, at: number): number {
  return f16BitsToF32(bytes[at]! | (bytes[at + 1]! << 8));
}

/** get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K / Q5_K block's 12 scale bytes at `at`. */
function scaleMinK4(bytes: Uint8Array, at: number, j: number): { sc: number; m: number } {
  if (j < 4) return { sc: bytes[at + j]! & 63, m: bytes[at + j + 4]! & 63 };
  return {
    sc: (bytes[at + j + 4]! & 0xf) | ((bytes[at + j - 4]! >> 6) << 4),
    m: (bytes[at + j + 4]! >> 4) | ((bytes[at + j]! >> 6) << 4),
  };
}

/**
 * The blocks of one weight matrix (rows x cols, rows one after another, as ggml stores a tensor) while
 * GPTQ fills them column by column. `startBlock` fixes a block's parameters for every row; `quantize`
 * rounds one value of a row into the current block and returns its dequantized value.
 */
export class GgmlBlockWriter {
  readonly shape: GgmlBlockShape;
  /** rows * (cols / values) blocks in ggml layout. */
  readonly bytes: Uint8Array;
  private readonly blocksPerRow: number;
  private readonly subsPerBlock: number;
  /** Per row and sub-block of the current block: the step d (f32), the offset (K: dm; Q4_1 / Q5_1: the f32 min), 1/d (32-value types). */
  private readonly step: Float64Array;
  private readonly offset: Float64Array;
  private readonly inverse: Float64Array;
  /** Per row, the dequantization scale and min as stored in f16 (32-value types). */
  private readonly storedD: Float64Array;
  private readonly storedM: Float64Array;
  private readonly scratchValues: Float32Array;
  private readonly scratchBytes: Uint8Array;
  private block = -1;

  constructor(
    readonly type: GptqGgmlType,
    readonly rows: number,
    readonly cols: number,
  ) {
    this.shape = SHAPES[type];
    if (cols % this.shape.values !== 0) throw new InvalidArgumentError(`GPTQ into ${type}: ${cols} columns are not a multiple of its block of ${this.shape.values}`);
    this.blocksPerRow = cols / this.shape.values;
    this.subsPerBlock = this.shape.values / this.shape.subBlock;
    this.bytes = new Uint8Array(rows * this.blocksPerRow * this.shape.bytes);
    this.step = new Float64Array(rows * this.subsPerBlock);
    this.offset = new Float64Array(rows * this.subsPerBlock);
    this.inverse = new Float64Array(rows * this.subsPerBlock);
    this.storedD = new Float64Array(rows);
    this.storedM = new Float64Array(rows);
    this.scratchValues = new Float32Array(rows * this.shape.values);
    this.scratchBytes = new Uint8Array(rows * this.shape.bytes);
  }

  /**
   * Fixes block `block` (columns [block * values, (block + 1) * values)) of every row from `valueOf(r, j)`,
   * the current value of row r's j-th column in the block: quantizes them with the `_ref` quantizer (the
   * bytes hold the parameters and the codes `_ref` gives) and reads the parameters back.
   */
  startBlock(block: number, valueOf: (row: number, j: number) => number): void {
    const { rows, shape } = this;
    const n = shape.values;
    const values = this.scratchValues;
    for (let r = 0; r < rows; r++) for (let j = 0; j < n; j++) values[r * n + j] = valueOf(r, j);
    // ggml has no defined output for NaN / Inf (the exporter refuses them in plain tensors; here they could only come from a broken Hessian).
    const bad = findNonFinite(values);
    if (bad >= 0) throw new NumericError(`GPTQ into ${this.type}: row ${Math.floor(bad / n)}, column ${block * n + (bad % n)} is ${values[bad]} after error compensation`);
    quantizeGgml(this.type, values, this.scratchBytes);
    for (let r = 0; r < rows; r++) {
      const at = this.blockOffset(r, block);
      this.bytes.set(this.scratchBytes.subarray(r * shape.bytes, (r + 1) * shape.bytes), at);
      this.readParameters(r, at, values.subarray(r * n, (r + 1) * n));
    }
    this.block = block;
  }

  private blockOffset(row: number, block: number): number {
    return (row * this.blocksPerRow + block) * this.shape.bytes;
  }

  private readParameters(r: number, at: number, x: Float32Array): void {
    const bytes = this.bytes;
    const s = r * this.subsPerBlock;
    switch (this.type) {
      case 'Q4_0':
      case 'Q5_0':
      case 'Q8_0': {
        // The block's max (value of largest magnitude, first wins) / amax as quantize_row_q*_ref, and its id = 1/d in f32.
        let amax = 0;
        let max = 0;
        for (let j = 0; j < 32; j++) {
          const a = Math.abs(x[j]!);
          if (amax < a) {
            amax = a;
            max = x[j]!;
          }
        }
        const d = this.type === 'Q4_0' ? fround(max / -8) : this.type === 'Q5_0' ? fround(max / -16) : fround(amax / 127);
        this.inverse[s] = d !== 0 ? fround(1 / d) : 0;
        this.storedD[r] = readF16(bytes, at);
        return;
      }
      case 'Q4_1':
      case 'Q5_1': {
        let min = 3.4028234663852886e38;
        let max = -3.4028234663852886e38;
        for (let j = 0; j < 32; j++) {
          const v = x[j]!;
          if (v < min) min = v;
          if (v > max) max = v;
        }
        const d = fround(fround(max - min) / (this.type === 'Q4_1' ? 15 : 31));
        this.inverse[s] = d !== 0 ? fround(1 / d) : 0;
        this.offset[s] = min;
        this.storedD[r] = readF16(bytes, at);
        this.storedM[r] = readF16(bytes, at + 2);
        return;
      }
      case 'Q2_K': {
        // scales[16] at 0 (low nibble scale, high nibble min), d at 80, dmin at 82.
        const d = readF16(bytes, at + 80);
        const dmin = readF16(bytes, at + 82);
        for (let j = 0; j < 16; j++) {
          const sc = bytes[at + j]!;
          this.step[s + j] = fround(d * (sc & 0xf));
          this.offset[s + j] = fround(dmin * (sc >> 4));
        }
        return;
      }
      case 'Q3_K': {
        // scales[12] at 96 (16 six-bit values, minus 32), d at 108.
        const d = readF16(bytes, at + 108);
        const sc12 = at + 96;
        for (let j = 0; j < 16; j++) {
          let sc = j < 8 ? bytes[sc12 + j]! & 0xf : bytes[sc12 + j - 8]! >> 4;
          sc = (sc | (((bytes[sc12 + 8 + (j % 4)]! >> (2 * (j >> 2))) & 3) << 4)) - 32;
          this.step[s + j] = fround(d * sc);
        }
        return;
      }
      case 'Q4_K':
      case 'Q5_K': {
        // d at 0, dmin at 2, scales[12] at 4.
        const d = readF16(bytes, at);
        const dmin = readF16(bytes, at + 2);
        for (let j = 0; j < 8; j++) {
          const { sc, m } = scaleMinK4(bytes, at + 4, j);
          this.step[s + j] = fround(d * sc);
          this.offset[s + j] = fround(dmin * m);
        }
        return;
      }
      case 'Q6_K': {
        // scales int8[16] at 192, d at 208.
        const d = readF16(bytes, at + 208);
        for (let j = 0; j < 16; j++) this.step[s + j] = fround(d * ((bytes[at + 192 + j]! << 24) >> 24));
        return;
      }
    }
  }

  /**
   * Rounds `value` (taken as f32, as llama-quantize reads f32 weights) into column `col` of row `row`, whose
   * block must be the one startBlock fixed last; writes the code and returns ggml's dequantized value of it.
   */
  quantize(row: number, col: number, value: number): number {
    const { shape } = this;
    const block = Math.floor(col / shape.values);
    if (block !== this.block) throw new InvalidArgumentError(`GPTQ into ${this.type}: column ${col} is outside the block being filled (${this.block})`);
    const j = col - block * shape.values;
    const at = this.blockOffset(row, block);
    const s = row * this.subsPerBlock + Math.floor(j / shape.subBlock);
    const x = fround(value);
    const bytes = this.bytes;
    switch (this.type) {
      case 'Q4_0': {
        // Rounding: (int8_t)(x*id + 8.5f), i.e. truncation of x/d + 8.5, clamped to [0, 15] (quantize_row_q4_0_ref; the clamp below 0 only bites for GPTQ-moved values).
        const code = clamp(truncToInt8Code(fround(fround(x * this.inverse[s]!) + 8.5)), 0, 15);
        writeNibble(bytes, at + 2, j, code);
        return fround((code - 8) * this.storedD[row]!);
      }
      case 'Q4_1': {
        // Rounding: (int8_t)((x - min)*id + 0.5f) clamped to [0, 15] (quantize_row_q4_1_ref), min and id in f32 (not the stored f16 m).
        const code = clamp(truncToInt8Code(fround(fround(fround(x - this.offset[s]!) * this.inverse[s]!) + 0.5)), 0, 15);
        writeNibble(bytes, at + 4, j, code);
        return fround(fround(code * this.storedD[row]!) + this.storedM[row]!);
      }
      case 'Q5_0': {
        // Rounding: (int8_t)(x*id + 16.5f) clamped to [0, 31] (quantize_row_q5_0_ref); 5th bit in qh.
        const code = clamp(truncToInt8Code(fround(fround(x * this.inverse[s]!) + 16.5)), 0, 31);
        writeNibble(bytes, at + 6, j, code & 15);
        writeQh32(bytes, at + 2, j, code >> 4);
        return fround((code - 16) * this.storedD[row]!);
      }
      case 'Q5_1': {
        // Rounding: (uint8_t)((x - min)*id + 0.5f) clamped to [0, 31] (quantize_row_q5_1_ref).
        const code = clamp(truncToInt8Code(fround(fround(fround(x - this.offset[s]!) * this.inverse[s]!) + 0.5)), 0, 31);
        writeNibble(bytes, at + 8, j, code & 15);
        writeQh32(bytes, at + 4, j, code >> 4);
        return fround(fround(code * this.storedD[row]!) + this.storedM[row]!);
      }
      case 'Q8_0': {
        // Rounding: roundf(x*id), half away from zero (quantize_row_q8_0_ref), clamped to [-127, 127].
        const v = fround(x * this.inverse[s]!);
        // (| 0: an int8 code has no -0, and -0 * d would give -0 where ggml's int * float gives +0.)
        const code = clamp(v < 0 ? -Math.floor(-v + 0.5) : Math.floor(v + 0.5), -127, 127) | 0;
        bytes[at + 2 + j] = code & 0xff;
        return fround(code * this.storedD[row]!);
      }
      case 'Q2_K': {
        // Rounding: l = nearest_int((x + dm)/d) clamped to [0, 3], d = d_super*sc, dm = dmin*m (quantize_row_q2_K_ref's
        // last pass); a sub-block with d == 0 keeps the codes _ref chose (its values are -dm whatever the code).
        const d = this.step[s]!;
        const dm = this.offset[s]!;
        const code = d !== 0 ? clamp(nearestIntSaturating(fround(fround(x + dm) / d)), 0, 3) : readCrumb(bytes, at + 16, j);
        writeCrumb(bytes, at + 16, j, code);
        return fround(fround(d * code) - dm);
      }
      case 'Q3_K': {
        // Rounding: l = nearest_int(x/d) clamped to [-4, 3], stored l + 4 (3rd bit in hmask), d = d_super*(sc - 32)
        // (quantize_row_q3_K_ref's last pass); d == 0 keeps _ref's codes.
        const d = this.step[s]!;
        let code: number;
        if (d !== 0) code = clamp(nearestIntSaturating(fround(x / d)), -4, 3) + 4;
        else code = readCrumb(bytes, at + 32, j) | (((bytes[at + (j & 31)]! >> (j >> 5)) & 1) << 2);
        writeCrumb(bytes, at + 32, j, code & 3);
        const bit = 1 << (j >> 5);
        bytes[at + (j & 31)] = code > 3 ? bytes[at + (j & 31)]! | bit : bytes[at + (j & 31)]! & ~bit;
        return fround(d * (code - 4));
      }
      case 'Q4_K': {
        // Rounding: l = nearest_int((x + dm)/d) clamped to [0, 15], d = d_super*sc, dm = dmin*m (6-bit sc, m;
        // quantize_row_q4_K_ref's last pass); d == 0 keeps _ref's codes.
        const d = this.step[s]!;
        const dm = this.offset[s]!;
        const q = at + 16 + 32 * (j >> 6) + (j & 31);
        const high = (j & 32) !== 0;
        const code = d !== 0 ? clamp(nearestIntSaturating(fround(fround(x + dm) / d)), 0, 15) : high ? bytes[q]! >> 4 : bytes[q]! & 15;
        bytes[q] = high ? (bytes[q]! & 0x0f) | (code << 4) : (bytes[q]! & 0xf0) | code;
        return fround(fround(d * code) - dm);
      }
      case 'Q5_K': {
        // Rounding: as Q4_K clamped to [0, 31] (quantize_row_q5_K_ref's last pass); the 5th bit goes to qh[j % 32], bit 2*(j/64) + (j/32 odd).
        const d = this.step[s]!;
        const dm = this.offset[s]!;
        const q = at + 48 + 32 * (j >> 6) + (j & 31);
        const high = (j & 32) !== 0;
        const qh = at + 16 + (j & 31);
        const bit = 1 << (2 * (j >> 6) + (high ? 1 : 0));
        let code: number;
        if (d !== 0) code = clamp(nearestIntSaturating(fround(fround(x + dm) / d)), 0, 31);
        else code = (high ? bytes[q]! >> 4 : bytes[q]! & 15) | ((bytes[qh]! & bit) !== 0 ? 16 : 0);
        bytes[q] = high ? (bytes[q]! & 0x0f) | ((code & 15) << 4) : (bytes[q]! & 0xf0) | (code & 15);
        bytes[qh] = code > 15 ? bytes[qh]! | bit : bytes[qh]! & ~bit;
        return fround(fround(d * code) - dm);
      }
      case 'Q6_K': {
        // Rounding: l = nearest_int(x/d) clamped to [-32, 31], stored l + 32 (low 4 bits in ql, high 2 in qh),
        // d = d_super*sc with int8 sc (quantize_row_q6_K_ref's last pass); d == 0 keeps _ref's codes.
        const d = this.step[s]!;
        const half = j >> 7;
        const quarter = (j >> 5) & 3;
        const l = j & 31;
        const ql = at + 64 * half + l + 32 * (quarter & 1);
        const qlShift = (quarter >> 1) * 4;
        const qh = at + 128 + 32 * half + l;
        const qhShift = 2 * quarter;
        let code: number;
        if (d !== 0) code = clamp(nearestIntSaturating(fround(x / d)), -32, 31) + 32;
        else code = ((bytes[ql]! >> qlShift) & 15) | (((bytes[qh]! >> qhShift) & 3) << 4);
        bytes[ql] = (bytes[ql]! & ~(15 << qlShift)) | ((code & 15) << qlShift);
        bytes[qh] = (bytes[qh]! & ~(3 << qhShift)) | ((code >> 4) << qhShift);
        return fround(d * (code - 32));
      }
    }
  }
}

/** 32-value blocks: element j < 16 is the low nibble of qs[j], j >= 16 the high nibble of qs[j - 16]. */
function writeNibble(bytes: Uint8Array, qs: number, j: number, code: number): void {
  if (j < 16) bytes[qs + j] = (bytes[qs + j]! & 0xf0) | code;
  else bytes[qs + j - 16] = (bytes[qs + j - 16]! & 0x0f) | (code << 4);
}

/** Q5_0 / Q5_1: bit j of the little-endian u32 qh is element j's 5th bit. */
function writeQh32(bytes: Uint8Array, qh: number, j: number, bit: number): void {
  const at = qh + (j >> 3);
  const mask = 1 << (j & 7);
  bytes[at] = bit !== 0 ? bytes[at]! | mask : bytes[at]! & ~mask;
}

/** Q2_K / Q3_K 2-bit codes: element j of the 256 is bits 2*((j%128)/32) of qs[32*(j/128) + j%32]. */
function readCrumb(bytes: Uint8Array, qs: number, j: number): number {
  return (bytes[qs + 32 * (j >> 7) + (j & 31)]! >> (2 * ((j >> 5) & 3))) & 3;
}

function writeCrumb(bytes: Uint8Array, qs: number, j: number, code: number): void {
  const at = qs + 32 * (j >> 7) + (j & 31);
  const shift = 2 * ((j >> 5) & 3);
  bytes[at] = (bytes[at]! & ~(3 << shift)) | (code << shift);
}
