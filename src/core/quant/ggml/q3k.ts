/**
 * Q3_K (256-element super-blocks of 16 groups of 16, 110 bytes: hmask[32], qs[64], scales[12], f16 d):
 * port of quantize_row_q3_K_ref / dequantize_row_q3_K.
 * Rounding: per group make_q3_quants(nmax 4, rmse with w = x^2, ties to even); 6-bit signed scales by
 * nearest_int(-32/max_scale * s) clamped to -32..31; d = f16(1/iscale) (RNE); values re-quantized as
 * nearest_int(x / d) clamped to -4..3.
 */
import * as half from '../../numeric/half';
import { makeQ3Quants as makeQ3QuantsImport } from './kquantSearch';
import { nearestInt as nearestIntImport } from './rounding';
const { f16ToF32Table, f32ToF16Bits } = half;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const makeQ3Quants = makeQ3QuantsImport;
const fround = Math.fround;
const nearestInt = nearestIntImport;

const QK_K = 256;
const L = new Int8Array(QK_K);
const scales = new Float32Array(QK_K / 16);

export function quantizeQ3_K(src: Float32Array, dst: Uint8Array): void {
  const table = f16ToF32Table();
  const nb = src.length / QK_K;
  for (let i = 0; i < nb; i++) {
    const xo = i * QK_K;
    const o = i * 110;
    const sOff = o + 96;
    let maxScale = 0;
    let amax = 0;
    for (let j = 0; j < QK_K / 16; j++) {
      scales[j] = makeQ3Quants(16, 4, src, xo + 16 * j, L, 16 * j);
      const scale = Math.abs(scales[j]!);
      if (scale > amax) {
        amax = scale;
        maxScale = scales[j]!;
      }
    }
    dst.fill(0, sOff, sOff + 12);
    let dBits: number;
    if (maxScale !== 0) {
      const iscale = fround(-32 / maxScale);
      for (let j = 0; j < QK_K / 16; j++) {
        // int8_t l = nearest_int(...); the int8 wrap cannot matter here (|l| <= 32)
        let l = (nearestInt(fround(iscale * scales[j]!)) << 24) >> 24;
        l = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
        if (j < 8) {
          dst[sOff + j] = l & 0xf;
        } else {
          dst[sOff + j - 8] = dst[sOff + j - 8]! | ((l & 0xf) << 4);
        }
        l >>= 4;
        dst[sOff + (j % 4) + 8] = dst[sOff + (j % 4) + 8]! | (l << (2 * Math.floor(j / 4)));
      }
      dBits = f32ToF16Bits(fround(1 / iscale));
    } else {
      dBits = f32ToF16Bits(0);
    }
    dst[o + 108] = dBits & 0xff;
    dst[o + 109] = dBits >>> 8;
    const dStored = table[dBits]!;
    for (let j = 0; j < QK_K / 16; j++) {
      let sc = j < 8 ? dst[sOff + j]! & 0xf : dst[sOff + j - 8]! >>> 4;
      sc = (sc | (((dst[sOff + 8 + (j % 4)]! >>> (2 * Math.floor(j / 4))) & 3) << 4)) - 32;
      const d = fround(dStored * sc);
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(fround(src[xo + 16 * j + ii]! / d));
        L[16 * j + ii] = (l < -4 ? -4 : l > 3 ? 3 : l) + 4;
      }
    }
    dst.fill(0, o, o + 32);
    let m = 0;
    let hm = 1;
    for (let j = 0; j < QK_K; j++) {
      if (L[j]! > 3) {
        dst[o + m] = dst[o + m]! | hm;
        L[j] = L[j]! - 4;
      }
      if (++m === QK_K / 8) {
        m = 0;
        hm <<= 1;
      }
    }
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        dst[o + 32 + j / 4 + l] = (L[j + l]! | (L[j + l + 32]! << 2) | (L[j + l + 64]! << 4) | (L[j + l + 96]! << 6)) & 0xff;
      }
    }
  }
}

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
