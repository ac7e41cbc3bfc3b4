/**
 * f32 <-> f16 and f32 <-> bf16, bit for bit as ggml does it (ggml-impl.h).
 *
 * - f32 -> f16: ggml_compute_fp32_to_fp16 (from Maratyszcza/FP16): round to nearest, ties to even;
 *   overflow gives +-Inf; any NaN gives 0x7E00 with the sign kept.
 * - f16 -> f32: exact (every f16 is an f32).
 * - f32 -> bf16: ggml_compute_fp32_to_bf16: round to nearest, ties to even, by adding 0x7FFF + lsb;
 *   NaN keeps its top 16 bits and is forced quiet (| 0x40). Subnormals are kept, not flushed.
 * - bf16 -> f32: `bits << 16`.
 *
 * All functions are allocation-free: they share one scratch word for bit casts.
 */

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The bits of `value` rounded to f32. */
export function f32ToBits(value: number): number {
  scratchF32[0] = value;
  return scratchU32[0]!;
}

export function bitsToF32(bits: number): number {
  scratchU32[0] = bits >>> 0;
  return scratchF32[0]!;
}

const SCALE_TO_INF = 2 ** 112;
const SCALE_TO_ZERO = 2 ** -110;

/**
 * GGML_FP32_TO_FP16. The input is taken as an f32 (rounded first if it is not one).
 * The float steps are the C ones, each rounded to f32 with Math.fround.
 */
export function f32ToF16Bits(value: number): number {
  scratchF32[0] = value;
  const f = scratchF32[0]!;
  const w = scratchU32[0]!;
  let base = Math.fround(Math.fround(Math.abs(f) * SCALE_TO_INF) * SCALE_TO_ZERO);
  const shl1W = (w + w) >>> 0;
  const sign = w & 0x80000000;
  let bias = (shl1W & 0xff000000) >>> 0;
  if (bias < 0x71000000) bias = 0x71000000;
  scratchU32[0] = ((bias >>> 1) + 0x07800000) >>> 0;
  base = Math.fround(scratchF32[0]! + base);
  scratchF32[0] = base;
  const bits = scratchU32[0]!;
  const expBits = (bits >>> 13) & 0x00007c00;
  const mantissaBits = bits & 0x00000fff;
  const nonsign = expBits + mantissaBits;
  return ((sign >>> 16) | (shl1W > 0xff000000 ? 0x7e00 : nonsign)) & 0xffff;
}

/** GGML_FP16_TO_FP32: exact. */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mantissa) * 2 ** (exponent - 25);
}

/** A 64 K-entry table of f16 -> f32, built on first use (dequantizers read scales through it). */
let f16Table: Float32Array | undefined;
export function f16ToF32Table(): Float32Array {
  if (f16Table === undefined) {
    const table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = f16BitsToF32(h);
    f16Table = table;
  }
  return f16Table;
}

/** The f32 value that an f16 round trip gives (what C sees after GGML_FP16_TO_FP32(GGML_FP32_TO_FP16(x))). */
export function roundToF16(value: number): number {
  return f16BitsToF32(f32ToF16Bits(value));
}

/** ggml_compute_fp32_to_bf16. */
export function f32ToBf16Bits(value: number): number {
  scratchF32[0] = value;
  const u = scratchU32[0]!;
  if ((u & 0x7fffffff) >>> 0 > 0x7f800000) return ((u >>> 16) | 64) & 0xffff;
  return Math.floor((u + (0x7fff + ((u >>> 16) & 1))) / 65536) & 0xffff;
}

/** ggml_compute_bf16_to_fp32. */
export function bf16BitsToF32(h: number): number {
  scratchU32[0] = (h & 0xffff) << 16;
  return scratchF32[0]!;
}
