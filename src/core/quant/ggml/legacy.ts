/**
 * The 32-element block types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: ports of ggml-quants.c's `dequantize_row_*`
 * (y = d * q, or d * q + m with the product rounded to f32 before the add). The quantizers are the
 * WebAssembly ones (wasm/ggmlQuants.as). All functions process `dst.length / 32` blocks and allocate nothing.
 */
import * as half from '../../numeric/half';
const { f16ToF32Table } = half;
const fround = Math.fround;

const QK = 32;

function readF16(table: Float32Array, src: Uint8Array, offset: number): number {
  return table[src[offset]! | (src[offset + 1]! << 8)]!;
}

export function dequantizeQ8_0(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 34;
    const d = readF16(table, src, o);
    for (let j = 0; j < QK; j++) {
      const q = src[o + 2 + j]!;
      dst[i * QK + j] = (q > 127 ? q - 256 : q) * d;
    }
  }
}

export function dequantizeQ4_0(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    const d = readF16(table, src, o);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 2 + j]!;
      dst[i * QK + j] = ((q & 0x0f) - 8) * d;
      dst[i * QK + j + QK / 2] = ((q >>> 4) - 8) * d;
    }
  }
}

export function dequantizeQ4_1(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 20;
    const d = readF16(table, src, o);
    const m = readF16(table, src, o + 2);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 4 + j]!;
      dst[i * QK + j] = fround((q & 0x0f) * d) + m;
      dst[i * QK + j + QK / 2] = fround((q >>> 4) * d) + m;
    }
  }
}

export function dequantizeQ5_0(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 22;
    const d = readF16(table, src, o);
    const qh = (src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24)) >>> 0;
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 6 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[i * QK + j] = (((q & 0x0f) | h0) - 16) * d;
      dst[i * QK + j + QK / 2] = (((q >>> 4) | h1) - 16) * d;
    }
  }
}

export function dequantizeQ5_1(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 24;
    const d = readF16(table, src, o);
    const m = readF16(table, src, o + 2);
    const qh = (src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24)) >>> 0;
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 8 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[i * QK + j] = fround(((q & 0x0f) | h0) * d) + m;
      dst[i * QK + j + QK / 2] = fround(((q >>> 4) | h1) * d) + m;
    }
  }
}
