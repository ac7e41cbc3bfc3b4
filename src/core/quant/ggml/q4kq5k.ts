/**
 * Q4_K and Q5_K (256-element super-blocks of 8 groups of 32): ports of dequantize_row_q4_K /
 * dequantize_row_q5_K (the quantizers are the WebAssembly ones, wasm/ggmlQuants.as).
 */
import * as half from '../../numeric/half';
import { getScaleMinK4 as getScaleMinK4Import, scaleMinOut as scaleMinOutImport } from './kquantSearch';
const { f16ToF32Table } = half;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const getScaleMinK4 = getScaleMinK4Import;
const scaleMinOut = scaleMinOutImport;
const fround = Math.fround;

const QK_K = 256;

export function dequantizeQ4_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    const d = table[src[o]! | (src[o + 1]! << 8)]!;
    const min = table[src[o + 2]! | (src[o + 3]! << 8)]!;
    let q = o + 16;
    let is = 0;
    for (let j = 0; j < QK_K; j += 64) {
      getScaleMinK4(is, src, o + 4);
      const d1 = fround(d * scaleMinOut.sc);
      const m1 = fround(min * scaleMinOut.m);
      getScaleMinK4(is + 1, src, o + 4);
      const d2 = fround(d * scaleMinOut.sc);
      const m2 = fround(min * scaleMinOut.m);
      for (let l = 0; l < 32; l++) dst[y++] = fround(d1 * (src[q + l]! & 0xf)) - m1;
      for (let l = 0; l < 32; l++) dst[y++] = fround(d2 * (src[q + l]! >>> 4)) - m2;
      q += 32;
      is += 2;
    }
  }
}

export function dequantizeQ5_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 176;
    const d = table[src[o]! | (src[o + 1]! << 8)]!;
    const min = table[src[o + 2]! | (src[o + 3]! << 8)]!;
    const qh = o + 16;
    let ql = o + 48;
    let is = 0;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0; j < QK_K; j += 64) {
      getScaleMinK4(is, src, o + 4);
      const d1 = fround(d * scaleMinOut.sc);
      const m1 = fround(min * scaleMinOut.m);
      getScaleMinK4(is + 1, src, o + 4);
      const d2 = fround(d * scaleMinOut.sc);
      const m2 = fround(min * scaleMinOut.m);
      for (let l = 0; l < 32; l++) dst[y++] = fround(d1 * ((src[ql + l]! & 0xf) + (src[qh + l]! & u1 ? 16 : 0))) - m1;
      for (let l = 0; l < 32; l++) dst[y++] = fround(d2 * ((src[ql + l]! >>> 4) + (src[qh + l]! & u2 ? 16 : 0))) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}
