/**
 * The 32-element block types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1: ports of `quantize_row_*_ref` and
 * `dequantize_row_*` from ggml-quants.c. Every float step is rounded to f32 as C does.
 * All functions process `src.length / 32` blocks and allocate nothing.
 */
import * as half from '../../numeric/half';
import { roundHalfAway as roundHalfAwayImport, toInt8 as toInt8Import, truncToInt as truncToIntImport } from './rounding';
const { f16ToF32Table, f32ToF16Bits } = half;
const fround = Math.fround;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const roundHalfAway = roundHalfAwayImport;
const toInt8 = toInt8Import;
const truncToInt = truncToIntImport;

const QK = 32;

function writeF16(dst: Uint8Array, offset: number, value: number): void {
  const h = f32ToF16Bits(value);
  dst[offset] = h & 0xff;
  dst[offset + 1] = h >>> 8;
}

function readF16(table: Float32Array, src: Uint8Array, offset: number): number {
  return table[src[offset]! | (src[offset + 1]! << 8)]!;
}

/**
 * Q8_0: d = amax / 127, q = roundf(x * (1/d)) — roundf rounds ties AWAY from zero.
 * Block: f16 d, int8 qs[32] (34 bytes).
 */
export function quantizeQ8_0(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK;
  for (let i = 0; i < nb; i++) {
    const x0 = i * QK;
    let amax = 0;
    for (let j = 0; j < QK; j++) {
      const a = Math.abs(src[x0 + j]!);
      if (a > amax) amax = a;
    }
    const d = fround(amax / 127);
    const id = d !== 0 ? fround(1 / d) : 0;
    const o = i * 34;
    writeF16(dst, o, d);
    for (let j = 0; j < QK; j++) {
      const v = fround(src[x0 + j]! * id);
      // roundf (ties away from zero) without a branch on the sign, which random signs mispredict:
      // floor(v + 0.5) is exact in doubles for an f32 v and equals roundf(v) except at negative ties
      // (v = -k - 0.5), moved down here. Outside int32 (NaN / Inf from a subnormal d) C's conversion.
      let r = Math.floor(v + 0.5);
      if (r - v === 0.5 && v < 0) r -= 1;
      const q = r > -2147483649 && r < 2147483648 ? r | 0 : truncToInt(roundHalfAway(v));
      dst[o + 2 + j] = q & 0xff;
    }
  }
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

/**
 * Q4_0: max = the signed value of largest magnitude (first one wins), d = max / -8,
 * q = min(15, (int)(x * (1/d) + 8.5f)) — TRUNCATION of x*id + 8.5, i.e. round half up then clamp.
 * Block: f16 d, qs[16] (elem j low nibble, elem j+16 high nibble), 18 bytes.
 */
export function quantizeQ4_0(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK;
  for (let i = 0; i < nb; i++) {
    const x0 = i * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = src[x0 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -8);
    const id = d !== 0 ? fround(1 / d) : 0;
    const o = i * 18;
    writeF16(dst, o, d);
    for (let j = 0; j < QK / 2; j++) {
      const a = fround(src[x0 + j]! * id);
      const b = fround(src[x0 + QK / 2 + j]! * id);
      const ta = fround(a + 8.5);
      const tb = fround(b + 8.5);
      // `| 0` truncates like cvttss2si inside int32; outside it (NaN / Inf / huge) C gives INT32_MIN
      const ia = ta > -2147483649 && ta < 2147483648 ? ta | 0 : truncToInt(ta);
      const ib = tb > -2147483649 && tb < 2147483648 ? tb | 0 : truncToInt(tb);
      const qa = Math.min(15, (ia << 24) >> 24) & 0xff;
      const qb = Math.min(15, (ib << 24) >> 24) & 0xff;
      dst[o + 2 + j] = (qa | (qb << 4)) & 0xff;
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

/**
 * Q4_1: d = (max - min) / 15, m = min, q = min(15, (int)((x - min) * (1/d) + 0.5f)) — truncation,
 * i.e. round half up. Block: f16 d, f16 m, qs[16], 20 bytes.
 */
export function quantizeQ4_1(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK;
  for (let i = 0; i < nb; i++) {
    const x0 = i * QK;
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < QK; j++) {
      const v = src[x0 + j]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = fround(fround(max - min) / 15);
    const id = d !== 0 ? fround(1 / d) : 0;
    const o = i * 20;
    writeF16(dst, o, d);
    writeF16(dst, o + 2, min);
    for (let j = 0; j < QK / 2; j++) {
      const a = fround(fround(src[x0 + j]! - min) * id);
      const b = fround(fround(src[x0 + QK / 2 + j]! - min) * id);
      const qa = Math.min(15, toInt8(truncToInt(fround(a + 0.5)))) & 0xff;
      const qb = Math.min(15, toInt8(truncToInt(fround(b + 0.5)))) & 0xff;
      dst[o + 4 + j] = (qa | (qb << 4)) & 0xff;
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

/**
 * Q5_0: as Q4_0 with d = max / -16 and q = min(31, (int)(x * (1/d) + 16.5f)) — truncation.
 * Block: f16 d, u32 qh (bit j = 5th bit of elem j), qs[16], 22 bytes.
 */
export function quantizeQ5_0(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK;
  for (let i = 0; i < nb; i++) {
    const x0 = i * QK;
    let amax = 0;
    let max = 0;
    for (let j = 0; j < QK; j++) {
      const v = src[x0 + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fround(max / -16);
    const id = d !== 0 ? fround(1 / d) : 0;
    const o = i * 22;
    writeF16(dst, o, d);
    let qh = 0;
    for (let j = 0; j < QK / 2; j++) {
      const a = fround(src[x0 + j]! * id);
      const b = fround(src[x0 + QK / 2 + j]! * id);
      const qa = Math.min(31, toInt8(truncToInt(fround(a + 16.5)))) & 0xff;
      const qb = Math.min(31, toInt8(truncToInt(fround(b + 16.5)))) & 0xff;
      dst[o + 6 + j] = ((qa & 0x0f) | ((qb & 0x0f) << 4)) & 0xff;
      qh |= ((qa & 0x10) >>> 4) << j;
      qh |= ((qb & 0x10) >>> 4) << (j + QK / 2);
    }
    dst[o + 2] = qh & 0xff;
    dst[o + 3] = (qh >>> 8) & 0xff;
    dst[o + 4] = (qh >>> 16) & 0xff;
    dst[o + 5] = (qh >>> 24) & 0xff;
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

/**
 * Q5_1: d = (max - min) / 31, m = min, q = (uint8)((x - min) * (1/d) + 0.5f) — truncation, no clamp
 * (as in C). Block: f16 d, f16 m, u32 qh, qs[16], 24 bytes.
 */
export function quantizeQ5_1(src: Float32Array, dst: Uint8Array): void {
  const nb = src.length / QK;
  for (let i = 0; i < nb; i++) {
    const x0 = i * QK;
    let min = Infinity;
    let max = -Infinity;
    for (let j = 0; j < QK; j++) {
      const v = src[x0 + j]!;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    const d = fround(fround(max - min) / 31);
    const id = d !== 0 ? fround(1 / d) : 0;
    const o = i * 24;
    writeF16(dst, o, d);
    writeF16(dst, o + 2, min);
    let qh = 0;
    for (let j = 0; j < QK / 2; j++) {
      const a = fround(fround(src[x0 + j]! - min) * id);
      const b = fround(fround(src[x0 + QK / 2 + j]! - min) * id);
      const qa = truncToInt(fround(a + 0.5)) & 0xff;
      const qb = truncToInt(fround(b + 0.5)) & 0xff;
      dst[o + 8 + j] = ((qa & 0x0f) | ((qb & 0x0f) << 4)) & 0xff;
      qh |= ((qa & 0x10) >>> 4) << j;
      qh |= ((qb & 0x10) >>> 4) << (j + QK / 2);
    }
    dst[o + 4] = qh & 0xff;
    dst[o + 5] = (qh >>> 8) & 0xff;
    dst[o + 6] = (qh >>> 16) & 0xff;
    dst[o + 7] = (qh >>> 24) & 0xff;
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
