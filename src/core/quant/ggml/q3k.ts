/**
 * Q3_K (256-element super-blocks of 16 groups of 16, 110 bytes: hmask[32], qs[64], scales[12], f16 d):
 * port of dequantize_row_q3_K (the quantizer is the WebAssembly one, wasm/ggmlQuants.as).
 */
import * as half from '../../numeric/half';
const { f16ToF32Table } = half;
const fround = Math.fround;

const QK_K = 256;

/** The 16 six-bit scales of a Q3_K block, unpacked (values 0..63; subtract 32). */
const unpacked = new Int32Array(16);
function unpackQ3Scales(src: Uint8Array, s: number): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? src[s + j]! & 0xf : src[s + j - 8]! >>> 4;
    const high = (src[s + 8 + (j % 4)]! >>> (2 * Math.floor(j / 4))) & 3;
    unpacked[j] = low | (high << 4);
  }
}

export function dequantizeQ3_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 110;
    const dAll = table[src[o + 108]! | (src[o + 109]! << 8)]!;
    unpackQ3Scales(src, o + 96);
    let q = o + 32;
    const hm = o;
    let m = 1;
    let is = 0;
    for (let n = 0; n < QK_K; n += 128) {
      let shift = 0;
      for (let j = 0; j < 4; j++) {
        let dl = fround(dAll * (unpacked[is++]! - 32));
        for (let l = 0; l < 16; l++) dst[y++] = dl * (((src[q + l]! >>> shift) & 3) - (src[hm + l]! & m ? 0 : 4));
        dl = fround(dAll * (unpacked[is++]! - 32));
        for (let l = 0; l < 16; l++) dst[y++] = dl * (((src[q + l + 16]! >>> shift) & 3) - (src[hm + l + 16]! & m ? 0 : 4));
        shift += 2;
        m <<= 1;
      }
      q += 32;
    }
  }
}
