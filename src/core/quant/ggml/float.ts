/**
 * The unquantized ggml types: F32 (copy, little-endian), F16 (ggml's fp32->fp16: round to nearest even,
 * NaN -> 0x7E00), BF16 (ggml_compute_fp32_to_bf16: round to nearest even, NaN forced quiet).
 */
import * as half from '../../numeric/half';

// bound once: under a CommonJS transform (tsx) each use of an imported name would go through an export getter
const { bf16BitsToF32, f16ToF32Table, f32ToBf16Bits, f32ToF16Bits } = half;

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export function quantizeF32(src: Float32Array, dst: Uint8Array): void {
  if (littleEndian) {
    dst.set(new Uint8Array(src.buffer, src.byteOffset, src.length * 4));
    return;
  }
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  for (let i = 0; i < src.length; i++) view.setFloat32(i * 4, src[i]!, true);
}

export function dequantizeF32(src: Uint8Array, dst: Float32Array): void {
  if (littleEndian) {
    new Uint8Array(dst.buffer, dst.byteOffset, dst.length * 4).set(src.subarray(0, dst.length * 4));
    return;
  }
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  for (let i = 0; i < dst.length; i++) dst[i] = view.getFloat32(i * 4, true);
}

export function quantizeF16(src: Float32Array, dst: Uint8Array): void {
  for (let i = 0; i < src.length; i++) {
    const h = f32ToF16Bits(src[i]!);
    dst[2 * i] = h & 0xff;
    dst[2 * i + 1] = h >>> 8;
  }
}

export function dequantizeF16(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  for (let i = 0; i < dst.length; i++) dst[i] = table[src[2 * i]! | (src[2 * i + 1]! << 8)]!;
}

export function quantizeBF16(src: Float32Array, dst: Uint8Array): void {
  for (let i = 0; i < src.length; i++) {
    const h = f32ToBf16Bits(src[i]!);
    dst[2 * i] = h & 0xff;
    dst[2 * i + 1] = h >>> 8;
  }
}

export function dequantizeBF16(src: Uint8Array, dst: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] = bf16BitsToF32(src[2 * i]! | (src[2 * i + 1]! << 8));
}
