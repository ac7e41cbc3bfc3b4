/**
 * Q4_K and Q5_K (256-element super-blocks of 8 groups of 32): ports of quantize_row_q4_K_ref /
 * quantize_row_q5_K_ref and their dequantizers.
 * Rounding: per group make_qkx2_quants with weights av_x + |x| (Q4_K: nmax 15, rmin -1, rdelta 0.1,
 * 20 steps; Q5_K: nmax 31, rmin -0.5, rdelta 0.1, 15 steps); the 8 scales and mins are then
 * quantized to 6 bits with nearest_int (ties to even) against max/63, d and dmin stored as f16 (RNE),
 * and every value re-quantized as nearest_int((x + dm) / d) against the stored f16 scales.
 */
import * as half from '../../numeric/half';
import { getScaleMinK4 as getScaleMinK4Import, makeQkx2Quants as makeQkx2QuantsImport, qkx2Out as qkx2OutImport, scaleMinOut as scaleMinOutImport } from './kquantSearch';
import { nearestInt as nearestIntImport } from './rounding';
const { f16ToF32Table, f32ToF16Bits } = half;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const getScaleMinK4 = getScaleMinK4Import;
const makeQkx2Quants = makeQkx2QuantsImport;
const qkx2Out = qkx2OutImport;
const scaleMinOut = scaleMinOutImport;
const fround = Math.fround;
const nearestInt = nearestIntImport;

const QK_K = 256;
const RDELTA = Math.fround(0.1);

const L = new Uint8Array(QK_K);
const Laux = new Uint8Array(32);
const weights = new Float32Array(32);
const mins = new Float32Array(QK_K / 32);
const scales = new Float32Array(QK_K / 32);

/** Fills L, scales bytes, d and dmin for one super-block; shared by Q4_K (nmax 15) and Q5_K (nmax 31). */
function quantizeSuperBlock(x: Float32Array, xo: number, dst: Uint8Array, o: number, nmax: number, rmin: number, nstep: number): void {
  let maxScale = 0;
  let maxMin = 0;
  for (let j = 0; j < QK_K / 32; j++) {
    const g = xo + 32 * j;
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = fround(sumX2 + fround(x[g + l]! * x[g + l]!));
    const avX = fround(Math.sqrt(fround(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = avX + Math.abs(x[g + l]!);
    const scale = makeQkx2Quants(32, nmax, x, g, weights, L, 32 * j, Laux, rmin, RDELTA, nstep, false);
    scales[j] = scale;
    mins[j] = qkx2Out.theMin;
    if (scale > maxScale) maxScale = scale;
    if (mins[j]! > maxMin) maxMin = mins[j]!;
  }
  maxScale = fround(maxScale);
  maxMin = fround(maxMin);
  const invScale = maxScale > 0 ? fround(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? fround(63 / maxMin) : 0;
  const sOff = o + 4;
  for (let j = 0; j < QK_K / 32; j++) {
    let ls = nearestInt(fround(invScale * scales[j]!)) & 0xff;
    let lm = nearestInt(fround(invMin * mins[j]!)) & 0xff;
    if (ls > 63) ls = 63;
    if (lm > 63) lm = 63;
    if (j < 4) {
      dst[sOff + j] = ls;
      dst[sOff + j + 4] = lm;
    } else {
      dst[sOff + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      dst[sOff + j - 4] = dst[sOff + j - 4]! | ((ls >>> 4) << 6);
      dst[sOff + j] = dst[sOff + j]! | ((lm >>> 4) << 6);
    }
  }
  const dBits = f32ToF16Bits(fround(maxScale / 63));
  const dminBits = f32ToF16Bits(fround(maxMin / 63));
  dst[o] = dBits & 0xff;
  dst[o + 1] = dBits >>> 8;
  dst[o + 2] = dminBits & 0xff;
  dst[o + 3] = dminBits >>> 8;
  const table = f16ToF32Table();
  const dStored = table[dBits]!;
  const dminStored = table[dminBits]!;
  for (let j = 0; j < QK_K / 32; j++) {
    getScaleMinK4(j, dst, sOff);
    const d = fround(dStored * scaleMinOut.sc);
    if (d === 0) continue;
    const dm = fround(dminStored * scaleMinOut.m);
    for (let ii = 0; ii < 32; ii++) {
      const l = nearestInt(fround(fround(x[xo + 32 * j + ii]! + dm) / d));
      L[32 * j + ii] = l < 0 ? 0 : l > nmax ? nmax : l;
    }
  }
}

/** Q4_K block (144 bytes): f16 d, f16 dmin, scales[12], qs[128]. */
export function quantizeQ4_K(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK_K;
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    dst.fill(0, o + 4, o + 16);
    quantizeSuperBlock(src, i * QK_K, dst, o, 15, -1, 20);
    let q = o + 16;
    for (let j = 0; j < QK_K; j += 64) {
      for (let l = 0; l < 32; l++) dst[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
      q += 32;
    }
  }
}

/** Q5_K block (176 bytes): f16 d, f16 dmin, scales[12], qh[32], qs[128]. */
export function quantizeQ5_K(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK_K;
  for (let i = 0; i < nb; i++) {
    const o = i * 176;
    dst.fill(0, o + 4, o + 48);
    quantizeSuperBlock(src, i * QK_K, dst, o, 31, -0.5, 15);
    const qh = o + 16;
    let ql = o + 48;
    let m1 = 1;
    let m2 = 2;
    for (let n = 0; n < QK_K; n += 64) {
      for (let j = 0; j < 32; j++) {
        let l1 = L[n + j]!;
        if (l1 > 15) {
          l1 -= 16;
          dst[qh + j] = dst[qh + j]! | m1;
        }
        let l2 = L[n + j + 32]!;
        if (l2 > 15) {
          l2 -= 16;
          dst[qh + j] = dst[qh + j]! | m2;
        }
        dst[ql + j] = l1 | (l2 << 4);
      }
      m1 <<= 2;
      m2 <<= 2;
      ql += 32;
    }
  }
}

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
