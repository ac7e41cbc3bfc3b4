/**
 * Q6_K (256-element super-blocks of 16 groups of 16, 210 bytes: ql[128], qh[64], int8 scales[16], f16 d):
 * port of dequantize_row_q6_K (the quantizer is the WebAssembly one, wasm/ggmlQuants.as).
 */
import * as half from '../../numeric/half';
const { f16ToF32Table } = half;
const fround = Math.fround;

const QK_K = 256;

export function dequantizeQ6_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 210;
    const d = table[src[o + 208]! | (src[o + 209]! << 8)]!;
    let ql = o;
    let qh = o + 128;
    let sc = o + 192;
    for (let n = 0; n < QK_K; n += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l]!;
        const q1 = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const s0 = (src[sc + is]! << 24) >> 24;
        const s2 = (src[sc + is + 2]! << 24) >> 24;
        const s4 = (src[sc + is + 4]! << 24) >> 24;
        const s6 = (src[sc + is + 6]! << 24) >> 24;
        dst[y + l] = fround(d * s0) * q1;
        dst[y + l + 32] = fround(d * s2) * q2;
        dst[y + l + 64] = fround(d * s4) * q3;
        dst[y + l + 96] = fround(d * s6) * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}
