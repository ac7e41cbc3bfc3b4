/**
 * Q2_K (256-element super-blocks of 16 groups of 16, 84 bytes: scales[16], qs[64], f16 d, f16 dmin):
 * port of dequantize_row_q2_K (the quantizer is the WebAssembly one, wasm/ggmlQuants.as).
 */
import * as half from '../../numeric/half';
const { f16ToF32Table } = half;
const fround = Math.fround;

const QK_K = 256;

export function dequantizeQ2_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 84;
    const d = table[src[o + 80]! | (src[o + 81]! << 8)]!;
    const min = table[src[o + 82]! | (src[o + 83]! << 8)]!;
    let q = o + 16;
    let is = 0;
    for (let n = 0; n < QK_K; n += 128) {
      let shift = 0;
      for (let j = 0; j < 4; j++) {
        let sc = src[o + is++]!;
        let dl = fround(d * (sc & 0xf));
        let ml = fround(min * (sc >>> 4));
        for (let l = 0; l < 16; l++) dst[y++] = fround(dl * ((src[q + l]! >>> shift) & 3)) - ml;
        sc = src[o + is++]!;
        dl = fround(d * (sc & 0xf));
        ml = fround(min * (sc >>> 4));
        for (let l = 0; l < 16; l++) dst[y++] = fround(dl * ((src[q + l + 16]! >>> shift) & 3)) - ml;
        shift += 2;
      }
      q += 32;
    }
  }
}
