/**
 * Q6_K (256-element super-blocks of 16 groups of 16, 210 bytes: ql[128], qh[64], int8 scales[16], f16 d):
 * port of quantize_row_q6_K_ref / dequantize_row_q6_K.
 * Rounding: per group make_qx_quants(nmax 32, rmse_type 1: w = x^2, ties to even); 8-bit signed scales
 * min(127, nearest_int(-128/max_scale * s)); d = f16(1/iscale) (RNE); values re-quantized as
 * nearest_int(x / d) clamped to -32..31. A super-block whose scales are all below 1e-15 is all zero bytes.
 */
import * as half from '../../numeric/half';
import { makeQxQuantsRmse1 as makeQxQuantsRmse1Import } from './kquantSearch';
import { GROUP_MAX_EPS as GROUP_MAX_EPSImport, nearestInt as nearestIntImport } from './rounding';
const { f16ToF32Table, f32ToF16Bits } = half;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const makeQxQuantsRmse1 = makeQxQuantsRmse1Import;
const fround = Math.fround;
const GROUP_MAX_EPS = GROUP_MAX_EPSImport;
const nearestInt = nearestIntImport;

const QK_K = 256;
const L = new Int8Array(QK_K);
const scales = new Float32Array(QK_K / 16);

export function quantizeQ6_K(src: Float32Array, dst: Uint8Array): void {
  const table = f16ToF32Table();
  const nb = src.length / QK_K;
  for (let i = 0; i < nb; i++) {
    const xo = i * QK_K;
    const o = i * 210;
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < QK_K / 16; ib++) {
      const scale = makeQxQuantsRmse1(16, 32, src, xo + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      const absScale = Math.abs(scale);
      if (absScale > maxAbsScale) {
        maxAbsScale = absScale;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      dst.fill(0, o, o + 210);
      continue;
    }
    const iscale = fround(-128 / maxScale);
    const dBits = f32ToF16Bits(fround(1 / iscale));
    dst[o + 208] = dBits & 0xff;
    dst[o + 209] = dBits >>> 8;
    const sOff = o + 192;
    for (let ib = 0; ib < QK_K / 16; ib++) {
      dst[sOff + ib] = Math.min(127, nearestInt(fround(iscale * scales[ib]!))) & 0xff;
    }
    const dStored = table[dBits]!;
    for (let j = 0; j < QK_K / 16; j++) {
      const s = dst[sOff + j]!;
      const d = fround(dStored * (s > 127 ? s - 256 : s));
      if (d === 0) continue;
      for (let ii = 0; ii < 16; ii++) {
        const l = nearestInt(fround(src[xo + 16 * j + ii]! / d));
        L[16 * j + ii] = (l < -32 ? -32 : l > 31 ? 31 : l) + 32;
      }
    }
    let ql = o;
    let qh = o + 128;
    for (let j = 0; j < QK_K; j += 128) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l]! & 0xf;
        const q2 = L[j + l + 32]! & 0xf;
        const q3 = L[j + l + 64]! & 0xf;
        const q4 = L[j + l + 96]! & 0xf;
        dst[ql + l] = q1 | (q3 << 4);
        dst[ql + l + 32] = q2 | (q4 << 4);
        dst[qh + l] = ((L[j + l]! >> 4) | ((L[j + l + 32]! >> 4) << 2) | ((L[j + l + 64]! >> 4) << 4) | ((L[j + l + 96]! >> 4) << 6)) & 0xff;
      }
      ql += 64;
      qh += 32;
    }
  }
}

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
