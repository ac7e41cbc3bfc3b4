/**
 * Q2_K (256-element super-blocks of 16 groups of 16, 84 bytes: scales[16], qs[64], f16 d, f16 dmin):
 * port of quantize_row_q2_K_ref / dequantize_row_q2_K.
 * Rounding: per group make_qkx2_quants(nmax 3, weights |x|, rmin -0.5, rdelta 0.1, 15 steps,
 * mean ABSOLUTE error); 4-bit scales and mins by nearest_int (ties to even) against max/15; d, dmin f16 (RNE);
 * values re-quantized as nearest_int((x + dm) / d) clamped to 0..3.
 */
import * as half from '../../numeric/half';
import { makeQkx2Quants as makeQkx2QuantsImport, qkx2Out as qkx2OutImport } from './kquantSearch';
import { nearestInt as nearestIntImport } from './rounding';
const { f16ToF32Table, f32ToF16Bits } = half;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const makeQkx2Quants = makeQkx2QuantsImport;
const qkx2Out = qkx2OutImport;
const fround = Math.fround;
const nearestInt = nearestIntImport;

const QK_K = 256;
const RDELTA = Math.fround(0.1);
const L = new Uint8Array(QK_K);
const Laux = new Uint8Array(16);
const weights = new Float32Array(16);
const mins = new Float32Array(QK_K / 16);
const scales = new Float32Array(QK_K / 16);

export function quantizeQ2_K(src: Float32Array, dst: Uint8Array): void {
  const table = f16ToF32Table();
  const nb = src.length / QK_K;
  for (let i = 0; i < nb; i++) {
    const xo = i * QK_K;
    const o = i * 84;
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < QK_K / 16; j++) {
      for (let l = 0; l < 16; l++) weights[l] = Math.abs(src[xo + 16 * j + l]!);
      const scale = makeQkx2Quants(16, 3, src, xo + 16 * j, weights, L, 16 * j, Laux, -0.5, RDELTA, 15, true);
      scales[j] = scale;
      mins[j] = qkx2Out.theMin;
      if (scale > maxScale) maxScale = scale;
      if (mins[j]! > maxMin) maxMin = mins[j]!;
    }
    let dBits: number;
    if (maxScale > 0) {
      const iscale = fround(15 / maxScale);
      for (let j = 0; j < QK_K / 16; j++) dst[o + j] = nearestInt(fround(iscale * scales[j]!)) & 0xff;
      dBits = f32ToF16Bits(fround(maxScale / 15));
    } else {
      for (let j = 0; j < QK_K / 16; j++) dst[o + j] = 0;
      dBits = f32ToF16Bits(0);
    }
    let dminBits: number;
    if (maxMin > 0) {
      const iscale = fround(15 / maxMin);
      for (let j = 0; j < QK_K / 16; j++) dst[o + j] = (dst[o + j]! | (nearestInt(fround(iscale * mins[j]!)) << 4)) & 0xff;
      dminBits = f32ToF16Bits(fround(maxMin / 15));
    } else {
      dminBits = f32ToF16Bits(0);
    }
    dst[o + 80] = dBits & 0xff;
    dst[o + 81] = dBits >>> 8;
    dst[o + 82] = dminBits & 0xff;
    dst[o + 83] = dminBits >>> 8;
    const dStored = table[dBits]!;
    const dminStored = table[dminBits]!;
    for (let j = 0; j < QK_K / 16; j++) {
      const sc = dst[o + j]!;
      const d = fround(dStored * (sc & 0xf));
      if (d === 0) continue;
      const dm = fround(dminStored * (sc >>> 4));
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(fround(fround(src[xo + 16 * j + ii]! + dm) / d));
        L[16 * j + ii] = l < 0 ? 0 : l > 3 ? 3 : l;
      }
    }
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        dst[o + 16 + j / 4 + l] = L[j + l]! | (L[j + l + 32]! << 2) | (L[j + l + 64]! << 4) | (L[j + l + 96]! << 6);
      }
    }
  }
}

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
