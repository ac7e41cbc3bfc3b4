// AssemblyScript source of the ggml quantizers (compiled to WebAssembly by build.ts; the extension is
// .as so that the TypeScript project does not type-check it: build.ts hands asc a .ts copy).
//
// Ports of ggml-quants.c's quantize_row_*_ref. WebAssembly f32 arithmetic is IEEE single precision
// with no excess precision and no fused multiply-add, exactly what llama.cpp's C does on x86-64 (SSE,
// no FMA contraction in ggml-base), so every step here is the C step and the bytes are llama-quantize's.
// What differs from C and is written out by hand:
//   - float -> int conversion: x86 cvttss2si gives INT32_MIN for NaN / Inf / out of range, wasm traps
//     or saturates: truncToInt below.
//   - roundf (ties AWAY from zero): wasm f32.nearest rounds ties to even: roundHalfAway below.
//   - GGML_FP32_TO_FP16: ggml_compute_fp32_to_fp16 (the FP16 library's float trick, round to nearest
//     even), ported operation for operation: f32ToF16Bits.
// nearest_int (add 1.5 * 2^23 in f32, read the low mantissa bits: ties to even) and sqrtf (f32.sqrt is
// correctly rounded), fabsf (f32.abs), division (f32.div) are the same operations as in C.
// SIMD: an f32x4 operation is the f32 operation in each lane (no relaxed-simd, so no FMA either). The
// K-quant scale searches run four groups in the four lanes, each lane doing the scalar C steps in C's
// order (sums stay sequential within a group); Q8_0 / Q4_0 vectorize over the values of a block only
// where the lanes provably give C's result, and fall back to the scalar block code elsewhere.
//
// Memory: the caller places the f32 input and the output bytes anywhere above heapBase(); every
// function processes `nb` whole blocks and allocates nothing (scratch is static).

const GROUP_MAX_EPS: f32 = 1e-15;
const RDELTA: f32 = 0.1;

// Static scratch (bytes): levels, the K-quant group scales and mins.
const L_PTR: usize = memory.data(256);
const SCALES_PTR: usize = memory.data(16 * 4);
const MINS_PTR: usize = memory.data(16 * 4);
// A 32-value block's [min, max] (minMax32).
const MINMAX_PTR: usize = memory.data(8, 8);
// Four groups side by side for the SIMD searches: element i of group k at [16 * i + 4 * k] (v128 i).
const XT_PTR: usize = memory.data(32 * 16, 16);
const WT_PTR: usize = memory.data(32 * 16, 16);
const LT_PTR: usize = memory.data(32 * 16, 16);
const BEST_LT_PTR: usize = memory.data(32 * 16, 16);
const PREV_LT_PTR: usize = memory.data(32 * 16, 16);
const MASK_PTR: usize = memory.data(16, 16);

/** First byte the caller may use. */
export function heapBase(): usize {
  return __heap_base;
}

// ---------------------------------------------------------------------------------------------
// Scalar rules

/** ggml's nearest_int: ties to even for |v| <= 4194303, C's deterministic bits beyond. */
@inline function nearestInt(v: f32): i32 {
  const t: f32 = v + <f32>12582912.0;
  return (reinterpret<i32>(t) & 0x007fffff) - 0x00400000;
}

/** C (int)float on x86-64: truncation, INT32_MIN for NaN, +-Inf and anything outside int32. */
@inline function truncToInt(v: f32): i32 {
  if (v >= <f32>-2147483648.0 && v < <f32>2147483648.0) return <i32>v;
  return i32.MIN_VALUE;
}

/** C roundf: to nearest, ties AWAY from zero (x - trunc(x) is exact in f32). */
@inline function roundHalfAway(v: f32): f32 {
  const t = Mathf.trunc(v);
  if (Mathf.abs(v - t) >= <f32>0.5) return t + copysign<f32>(<f32>1.0, v);
  return t;
}

/** ggml_compute_fp32_to_fp16: round to nearest even, NaN -> 0x7E00 (with the sign). */
function f32ToF16Bits(f: f32): u32 {
  const scaleToInf = reinterpret<f32>(<u32>0x77800000); // 0x1.0p+112f
  const scaleToZero = reinterpret<f32>(<u32>0x08800000); // 0x1.0p-110f
  let base: f32 = (Mathf.abs(f) * scaleToInf) * scaleToZero;
  const w = reinterpret<u32>(f);
  const shl1W: u32 = w + w;
  const sign: u32 = w & 0x80000000;
  let bias: u32 = shl1W & 0xff000000;
  if (bias < 0x71000000) bias = 0x71000000;
  base = reinterpret<f32>((bias >> 1) + 0x07800000) + base;
  const bits = reinterpret<u32>(base);
  const expBits: u32 = (bits >> 13) & 0x00007c00;
  const mantissaBits: u32 = bits & 0x00000fff;
  const nonsign: u32 = expBits + mantissaBits;
  return ((sign >> 16) | (shl1W > 0xff000000 ? <u32>0x7e00 : nonsign)) & 0xffff;
}

/** GGML_FP16_TO_FP32: exact. */
function f16BitsToF32(h: u32): f32 {
  const sign: u32 = (h & 0x8000) << 16;
  const exponent: u32 = (h >> 10) & 0x1f;
  const mantissa: u32 = h & 0x3ff;
  if (exponent == 0) {
    const v: f32 = <f32>mantissa * reinterpret<f32>(<u32>0x33800000); // 2^-24, exact
    return reinterpret<f32>(sign | reinterpret<u32>(v));
  }
  if (exponent == 31) return reinterpret<f32>(sign | 0x7f800000 | (mantissa << 13));
  return reinterpret<f32>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

/** Stores f32ToF16Bits(v) little-endian at p and returns the f32 value the stored half stands for. */
@inline function storeF16(p: usize, v: f32): f32 {
  const h = f32ToF16Bits(v);
  store<u16>(p, <u16>h);
  return f16BitsToF32(h);
}

@inline function clampInt(v: i32, lo: i32, hi: i32): i32 {
  return v < lo ? lo : v > hi ? hi : v;
}

@inline function xAt(x: usize, i: i32): f32 {
  return load<f32>(x + (<usize>i << 2));
}

// ---------------------------------------------------------------------------------------------
// 32-element block types

/** Largest |x| of the 32 values at x (f32x4.max: order does not matter for finite values). */
@inline function absMax32(x: usize): f32 {
  let m = f32x4.abs(v128.load(x));
  for (let k: usize = 16; k < 128; k += 16) m = f32x4.max(m, f32x4.abs(v128.load(x + k)));
  return max<f32>(max<f32>(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)), max<f32>(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
}

/** 16 i32 lanes (four v128, values in -128..127) to 16 bytes. */
@inline function narrow16(a: v128, b: v128, c: v128, d: v128): v128 {
  return i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(a, b), i16x8.narrow_i32x4_s(c, d));
}

/** C roundf on four lanes, then to int: ties AWAY from zero (x - trunc(x) is exact in f32). */
@inline function roundHalfAway4(v: v128): v128 {
  const t = f32x4.trunc(v);
  const away = f32x4.ge(f32x4.abs(f32x4.sub(v, t)), f32x4.splat(0.5));
  const one = v128.or(v128.and(v, i32x4.splat(0x80000000)), f32x4.splat(1)); // copysign(1, v)
  return i32x4.trunc_sat_f32x4_s(f32x4.add(t, v128.and(one, away)));
}

/**
 * Q8_0 (34 bytes: f16 d, int8 qs[32]): d = amax / 127, q = roundf(x * (1/d)), roundf = ties AWAY
 * from zero, then C's float -> int8 conversion (low byte of cvttss2si).
 */
function quantizeQ8_0Block(x: usize, o: usize): void {
  let amax: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const a = Mathf.abs(xAt(x, j));
    if (a > amax) amax = a;
  }
  const d: f32 = amax / <f32>127.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  storeF16(o, d);
  for (let j = 0; j < 32; j++) {
    store<u8>(o + 2 + <usize>j, <u8>truncToInt(roundHalfAway(xAt(x, j) * id)));
  }
}

// The first block of the last quantizeQ8_0 / quantizeQ4_0 call holding a NaN or +-Inf, or -1: those two
// find it on the way (their block maximum is NaN or Inf then), so a caller that refuses such values needs
// no second pass over the input (see nonFiniteBlock, firstNonFinite for the other types).
let nonFiniteSeen: i32 = -1;

export function nonFiniteBlock(): i32 {
  return nonFiniteSeen;
}

/** Index of the first NaN or +-Inf (exponent bits all ones) among the n f32 values at src, or -1. */
export function firstNonFinite(src: usize, n: i32): i32 {
  const exp = i32x4.splat(0x7f800000);
  const whole = n & ~15;
  for (let i = 0; i < whole; i += 16) {
    const p = src + (<usize>i << 2);
    const a = i32x4.eq(v128.and(v128.load(p), exp), exp);
    const b = i32x4.eq(v128.and(v128.load(p + 16), exp), exp);
    const c = i32x4.eq(v128.and(v128.load(p + 32), exp), exp);
    const d = i32x4.eq(v128.and(v128.load(p + 48), exp), exp);
    if (v128.any_true(v128.or(v128.or(a, b), v128.or(c, d)))) {
      for (let j = i; ; j++) if ((load<u32>(src + (<usize>j << 2)) & 0x7f800000) == 0x7f800000) return j;
    }
  }
  for (let j = whole; j < n; j++) if ((load<u32>(src + (<usize>j << 2)) & 0x7f800000) == 0x7f800000) return j;
  return -1;
}

/**
 * Widens `n` BF16 values (little-endian u16 at src) to f32 at dst: exact, a bf16 is the top half of an
 * f32 (u16 << 16), NaN payloads included. In place front to back is safe when src = dst + 2 * m for some
 * m >= n (the window's values read into the upper half of its f32 room): the 8 values read from
 * [src + 16k, src + 16k + 16) are written to [dst + 32k, dst + 32k + 32) after the read, and
 * 32k + 32 <= 2m + 16(k + 1) for every k < n / 8, so no later unread value is overwritten; the tail (one
 * value at a time) likewise. The quantize workers widen a chunk, then quantize it while it is in cache.
 */
export function widenBf16(dst: usize, src: usize, n: i32): void {
  const zero = i32x4.splat(0);
  const whole = n & ~7;
  for (let i = 0; i < whole; i += 8) {
    const h = v128.load(src + (<usize>i << 1));
    // bytes of h: [b0 b1 | b2 b3 | ...]: put each u16 in the upper half of a zeroed u32
    v128.store(dst + (<usize>i << 2), i8x16.shuffle(zero, h, 0, 1, 16, 17, 0, 1, 18, 19, 0, 1, 20, 21, 0, 1, 22, 23));
    v128.store(dst + (<usize>i << 2) + 16, i8x16.shuffle(zero, h, 0, 1, 24, 25, 0, 1, 26, 27, 0, 1, 28, 29, 0, 1, 30, 31));
  }
  for (let i = whole; i < n; i++) store<u32>(dst + (<usize>i << 2), <u32>load<u16>(src + (<usize>i << 1)) << 16);
}

/**
 * Q8_0 with SIMD where that is the same computation: for a block of finite values with a finite 1/d,
 * every |x * id| is at most 127 plus a few ulp, so the lanes' roundf and conversion (trunc_sat, narrow)
 * give C's bytes; any other block (NaN, Inf, 1/d overflowing) takes the scalar path.
 */
export function quantizeQ8_0(src: usize, dst: usize, nb: i32): void {
  nonFiniteSeen = -1;
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 128;
    const o = dst + <usize>i * 34;
    const amax = absMax32(x);
    const d: f32 = amax / <f32>127.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
    if (!(amax <= f32.MAX_VALUE) || !(id <= f32.MAX_VALUE)) {
      if (!(amax <= f32.MAX_VALUE) && nonFiniteSeen < 0) nonFiniteSeen = i;
      quantizeQ8_0Block(x, o);
      continue;
    }
    storeF16(o, d);
    const idv = f32x4.splat(id);
    for (let h: usize = 0; h < 2; h++) {
      const p = x + h * 64;
      const q = narrow16(
        roundHalfAway4(f32x4.mul(v128.load(p), idv)),
        roundHalfAway4(f32x4.mul(v128.load(p + 16), idv)),
        roundHalfAway4(f32x4.mul(v128.load(p + 32), idv)),
        roundHalfAway4(f32x4.mul(v128.load(p + 48), idv)),
      );
      v128.store(o + 2 + h * 16, q);
    }
  }
}

/**
 * Q4_0 (18 bytes: f16 d, qs[16], element j in the low nibble, j + 16 in the high one): max = the signed
 * value of largest magnitude (first wins), d = max / -8, q = MIN(15, (int8)(x * (1/d) + 8.5f)):
 * TRUNCATION of x*id + 8.5, i.e. round half up, then clamp.
 */
function quantizeQ4_0Block(x: usize, o: usize): void {
  let amax: f32 = 0;
  let max: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const v = xAt(x, j);
    if (amax < Mathf.abs(v)) {
      amax = Mathf.abs(v);
      max = v;
    }
  }
  const d: f32 = max / <f32>-8.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  storeF16(o, d);
  for (let j = 0; j < 16; j++) {
    const a: f32 = xAt(x, j) * id;
    const b: f32 = xAt(x, j + 16) * id;
    const qa = min<i32>(15, <i32><i8>truncToInt(a + <f32>8.5)) & 0xff;
    const qb = min<i32>(15, <i32><i8>truncToInt(b + <f32>8.5)) & 0xff;
    store<u8>(o + 2 + <usize>j, <u8>(qa | (qb << 4)));
  }
}

/**
 * C's `max` of Q4_0 / Q5_0: the first value (in element order) whose |x| is the block's largest, amax
 * (0 when amax is 0). Every such value is +amax or -amax, so the order matters only when both signs occur:
 * one SIMD pass tells which occur, and only a block with both walks the values in order.
 */
@inline function signedMax32(x: usize, amax: f32): f32 {
  if (!(amax > 0)) return 0;
  const pos = f32x4.splat(amax);
  const neg = f32x4.splat(-amax);
  let anyPos = f32x4.eq(v128.load(x), pos);
  let anyNeg = f32x4.eq(v128.load(x), neg);
  for (let k: usize = 16; k < 128; k += 16) {
    const v = v128.load(x + k);
    anyPos = v128.or(anyPos, f32x4.eq(v, pos));
    anyNeg = v128.or(anyNeg, f32x4.eq(v, neg));
  }
  const hasPos = v128.any_true(anyPos);
  const hasNeg = v128.any_true(anyNeg);
  if (hasPos && !hasNeg) return amax;
  if (hasNeg && !hasPos) return -amax;
  for (let j = 0; j < 32; j++) {
    const v = xAt(x, j);
    if (Mathf.abs(v) == amax) return v;
  }
  return 0;
}

/** MIN(15, trunc(x * id + 8.5f)) on four lanes (values in 0..16 before the clamp, see quantizeQ4_0). */
@inline function q4_0Lanes(p: usize, idv: v128): v128 {
  const t = f32x4.add(f32x4.mul(v128.load(p), idv), f32x4.splat(8.5));
  return i32x4.min_s(i32x4.trunc_sat_f32x4_s(t), i32x4.splat(15));
}

/**
 * Q4_0 with SIMD where that is the same computation: the signed max is the first value whose |x| equals
 * the block's largest (as C's strict `amax < fabsf(v)` keeps the first); for finite values and a finite
 * 1/d, x * id lies in [-8, 8] up to a few ulp, so + 8.5 and truncation stay in 0..16 and the lanes give
 * C's nibbles. Other blocks take the scalar path.
 */
export function quantizeQ4_0(src: usize, dst: usize, nb: i32): void {
  nonFiniteSeen = -1;
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 128;
    const o = dst + <usize>i * 18;
    const amax = absMax32(x);
    const max = signedMax32(x, amax);
    const d: f32 = max / <f32>-8.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
    if (!(amax <= f32.MAX_VALUE) || !(Mathf.abs(id) <= f32.MAX_VALUE)) {
      if (!(amax <= f32.MAX_VALUE) && nonFiniteSeen < 0) nonFiniteSeen = i;
      quantizeQ4_0Block(x, o);
      continue;
    }
    storeF16(o, d);
    const idv = f32x4.splat(id);
    const lo = narrow16(q4_0Lanes(x, idv), q4_0Lanes(x + 16, idv), q4_0Lanes(x + 32, idv), q4_0Lanes(x + 48, idv));
    const hi = narrow16(q4_0Lanes(x + 64, idv), q4_0Lanes(x + 80, idv), q4_0Lanes(x + 96, idv), q4_0Lanes(x + 112, idv));
    v128.store(o + 2, v128.or(lo, i8x16.shl(hi, 4)));
  }
}

/**
 * Q4_1 (20 bytes: f16 d, f16 m, qs[16]): d = (max - min) / 15, m = min,
 * q = MIN(15, (int8)((x - min) * (1/d) + 0.5f)): truncation, i.e. round half up.
 */
function quantizeQ4_1Block(x: usize, o: usize): void {
  let vmin: f32 = f32.MAX_VALUE;
  let vmax: f32 = -f32.MAX_VALUE;
  for (let j = 0; j < 32; j++) {
    const v = xAt(x, j);
    if (v < vmin) vmin = v;
    if (v > vmax) vmax = v;
  }
  const d: f32 = (vmax - vmin) / <f32>15.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  storeF16(o, d);
  storeF16(o + 2, vmin);
  for (let j = 0; j < 16; j++) {
    const a: f32 = (xAt(x, j) - vmin) * id;
    const b: f32 = (xAt(x, j + 16) - vmin) * id;
    const qa = min<i32>(15, <i32><i8>truncToInt(a + <f32>0.5)) & 0xff;
    const qb = min<i32>(15, <i32><i8>truncToInt(b + <f32>0.5)) & 0xff;
    store<u8>(o + 4 + <usize>j, <u8>(qa | (qb << 4)));
  }
}

/**
 * The block's min and max as C's sequential `v < min` / `v > max` give them, when SIMD gives the same:
 * f32x4.min / max agree with the sequential scan on finite values except for the sign of a zero (C keeps
 * the first of -0 / +0, the lanes prefer -0 / +0), so a zero min or max, and anything non-finite, returns
 * false (take the scalar block). `out` gets [min, max].
 */
@inline function minMax32(x: usize, out: usize): bool {
  let lo = v128.load(x);
  let hi = lo;
  for (let k: usize = 16; k < 128; k += 16) {
    const v = v128.load(x + k);
    lo = f32x4.min(lo, v);
    hi = f32x4.max(hi, v);
  }
  const vmin = min<f32>(min<f32>(f32x4.extract_lane(lo, 0), f32x4.extract_lane(lo, 1)), min<f32>(f32x4.extract_lane(lo, 2), f32x4.extract_lane(lo, 3)));
  const vmax = max<f32>(max<f32>(f32x4.extract_lane(hi, 0), f32x4.extract_lane(hi, 1)), max<f32>(f32x4.extract_lane(hi, 2), f32x4.extract_lane(hi, 3)));
  if (!(Mathf.abs(vmin) <= f32.MAX_VALUE) || !(Mathf.abs(vmax) <= f32.MAX_VALUE) || vmin == 0 || vmax == 0) return false;
  store<f32>(out, vmin);
  store<f32>(out + 4, vmax);
  return true;
}

/** trunc((x - min) * id + 0.5f) on four lanes (values in 0..31.5 for finite blocks, see quantizeQ4_1 / Q5_1). */
@inline function minLanes(p: usize, minv: v128, idv: v128): v128 {
  return i32x4.trunc_sat_f32x4_s(f32x4.add(f32x4.mul(f32x4.sub(v128.load(p), minv), idv), f32x4.splat(0.5)));
}

/**
 * Q4_1 with SIMD where that is the same computation: for finite values with a finite, non-zero-limited
 * min / max and finite d and 1/d, (x - min) * id lies in [0, 15] up to a few ulp, so + 0.5 and truncation
 * stay in 0..15 (then MIN 15) and the lanes give C's nibbles. Other blocks take the scalar path.
 */
export function quantizeQ4_1(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 128;
    const o = dst + <usize>i * 20;
    if (!minMax32(x, MINMAX_PTR)) {
      quantizeQ4_1Block(x, o);
      continue;
    }
    const vmin = load<f32>(MINMAX_PTR);
    const d: f32 = (load<f32>(MINMAX_PTR + 4) - vmin) / <f32>15.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
    if (!(d <= f32.MAX_VALUE) || !(id <= f32.MAX_VALUE)) {
      quantizeQ4_1Block(x, o);
      continue;
    }
    storeF16(o, d);
    storeF16(o + 2, vmin);
    const minv = f32x4.splat(vmin);
    const idv = f32x4.splat(id);
    const fifteen = i32x4.splat(15);
    const lo = narrow16(
      i32x4.min_s(minLanes(x, minv, idv), fifteen),
      i32x4.min_s(minLanes(x + 16, minv, idv), fifteen),
      i32x4.min_s(minLanes(x + 32, minv, idv), fifteen),
      i32x4.min_s(minLanes(x + 48, minv, idv), fifteen),
    );
    const hi = narrow16(
      i32x4.min_s(minLanes(x + 64, minv, idv), fifteen),
      i32x4.min_s(minLanes(x + 80, minv, idv), fifteen),
      i32x4.min_s(minLanes(x + 96, minv, idv), fifteen),
      i32x4.min_s(minLanes(x + 112, minv, idv), fifteen),
    );
    v128.store(o + 4, v128.or(lo, i8x16.shl(hi, 4)));
  }
}

/**
 * Q5_0 (22 bytes: f16 d, u32 qh, qs[16]): as Q4_0 with d = max / -16 and
 * q = MIN(31, (int8)(x * (1/d) + 16.5f)): truncation.
 */
function quantizeQ5_0Block(x: usize, o: usize): void {
  let amax: f32 = 0;
  let max: f32 = 0;
  for (let j = 0; j < 32; j++) {
    const v = xAt(x, j);
    if (amax < Mathf.abs(v)) {
      amax = Mathf.abs(v);
      max = v;
    }
  }
  const d: f32 = max / <f32>-16.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  storeF16(o, d);
  let qh: u32 = 0;
  for (let j = 0; j < 16; j++) {
    const a: f32 = xAt(x, j) * id;
    const b: f32 = xAt(x, j + 16) * id;
    const qa = <u32>(min<i32>(31, <i32><i8>truncToInt(a + <f32>16.5)) & 0xff);
    const qb = <u32>(min<i32>(31, <i32><i8>truncToInt(b + <f32>16.5)) & 0xff);
    store<u8>(o + 6 + <usize>j, <u8>((qa & 0x0f) | ((qb & 0x0f) << 4)));
    qh |= ((qa & 0x10) >> 4) << (<u32>j);
    qh |= ((qb & 0x10) >> 4) << (<u32>j + 16);
  }
  store<u32>(o + 2, qh);
}

/** MIN(31, trunc(x * id + 16.5f)) on four lanes (values in 0..32 before the clamp, see quantizeQ5_0). */
@inline function q5_0Lanes(p: usize, idv: v128): v128 {
  const t = f32x4.add(f32x4.mul(v128.load(p), idv), f32x4.splat(16.5));
  return i32x4.min_s(i32x4.trunc_sat_f32x4_s(t), i32x4.splat(31));
}

/**
 * Stores 32 five-bit values (lo: elements 0..15, hi: 16..31, one per byte) as ggml packs them: low nibbles
 * at qs (element j low, j + 16 high), bit 4 of element j at bit j of the u32 qh.
 */
@inline function store5Bits(lo: v128, hi: v128, qh: usize, qs: usize): void {
  const nibble = i8x16.splat(0x0f);
  v128.store(qs, v128.or(v128.and(lo, nibble), i8x16.shl(v128.and(hi, nibble), 4)));
  // bit 4 moved to each byte's top bit, gathered by bitmask
  const low = <u32>i8x16.bitmask(i8x16.shl(lo, 3));
  const high = <u32>i8x16.bitmask(i8x16.shl(hi, 3));
  store<u32>(qh, low | (high << 16));
}

/**
 * Q5_0 with SIMD where that is the same computation (as quantizeQ4_0: the signed max from one pass, and
 * for finite values and a finite 1/d, x * id + 16.5 lies in [0.5, 32.5] up to a few ulp). Other blocks take
 * the scalar path.
 */
export function quantizeQ5_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 128;
    const o = dst + <usize>i * 22;
    const amax = absMax32(x);
    const max = signedMax32(x, amax);
    const d: f32 = max / <f32>-16.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
    if (!(amax <= f32.MAX_VALUE) || !(Mathf.abs(id) <= f32.MAX_VALUE)) {
      quantizeQ5_0Block(x, o);
      continue;
    }
    storeF16(o, d);
    const idv = f32x4.splat(id);
    const lo = narrow16(q5_0Lanes(x, idv), q5_0Lanes(x + 16, idv), q5_0Lanes(x + 32, idv), q5_0Lanes(x + 48, idv));
    const hi = narrow16(q5_0Lanes(x + 64, idv), q5_0Lanes(x + 80, idv), q5_0Lanes(x + 96, idv), q5_0Lanes(x + 112, idv));
    store5Bits(lo, hi, o + 2, o + 6);
  }
}

/**
 * Q5_1 (24 bytes: f16 d, f16 m, u32 qh, qs[16]): d = (max - min) / 31, m = min,
 * q = (uint8)(int)((x - min) * (1/d) + 0.5f): truncation, no clamp (as in C).
 */
function quantizeQ5_1Block(x: usize, o: usize): void {
  let vmin: f32 = f32.MAX_VALUE;
  let vmax: f32 = -f32.MAX_VALUE;
  for (let j = 0; j < 32; j++) {
    const v = xAt(x, j);
    if (v < vmin) vmin = v;
    if (v > vmax) vmax = v;
  }
  const d: f32 = (vmax - vmin) / <f32>31.0;
  const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
  storeF16(o, d);
  storeF16(o + 2, vmin);
  let qh: u32 = 0;
  for (let j = 0; j < 16; j++) {
    const a: f32 = (xAt(x, j) - vmin) * id;
    const b: f32 = (xAt(x, j + 16) - vmin) * id;
    const qa = <u32>truncToInt(a + <f32>0.5) & 0xff;
    const qb = <u32>truncToInt(b + <f32>0.5) & 0xff;
    store<u8>(o + 8 + <usize>j, <u8>((qa & 0x0f) | ((qb & 0x0f) << 4)));
    qh |= ((qa & 0x10) >> 4) << (<u32>j);
    qh |= ((qb & 0x10) >> 4) << (<u32>j + 16);
  }
  store<u32>(o + 4, qh);
}

/**
 * Q5_1 with SIMD where that is the same computation (as quantizeQ4_1: (x - min) * id + 0.5 lies in
 * [0.5, 31.5] up to a few ulp, so truncation gives 0..31 and no clamp is needed, as in C). Other blocks
 * take the scalar path.
 */
export function quantizeQ5_1(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 128;
    const o = dst + <usize>i * 24;
    if (!minMax32(x, MINMAX_PTR)) {
      quantizeQ5_1Block(x, o);
      continue;
    }
    const vmin = load<f32>(MINMAX_PTR);
    const d: f32 = (load<f32>(MINMAX_PTR + 4) - vmin) / <f32>31.0;
    const id: f32 = d != 0 ? <f32>1.0 / d : <f32>0.0;
    if (!(d <= f32.MAX_VALUE) || !(id <= f32.MAX_VALUE)) {
      quantizeQ5_1Block(x, o);
      continue;
    }
    storeF16(o, d);
    storeF16(o + 2, vmin);
    const minv = f32x4.splat(vmin);
    const idv = f32x4.splat(id);
    const lo = narrow16(minLanes(x, minv, idv), minLanes(x + 16, minv, idv), minLanes(x + 32, minv, idv), minLanes(x + 48, minv, idv));
    const hi = narrow16(minLanes(x + 64, minv, idv), minLanes(x + 80, minv, idv), minLanes(x + 96, minv, idv), minLanes(x + 112, minv, idv));
    store5Bits(lo, hi, o + 4, o + 8);
  }
}

// ---------------------------------------------------------------------------------------------
// K-quant scale searches

/**
 * make_q3_quants(n, nmax, x, L, do_rmse = true): symmetric, up to 5 passes of coordinate descent on the
 * x^2-weighted error; levels by nearest_int (ties to even). Writes L (int8) at l in 0..2*nmax-1.
 */
function makeQ3Quants(n: i32, nmax: i32, x: usize, l: usize): f32 {
  let max: f32 = 0;
  let amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = Mathf.abs(xAt(x, i));
    if (ax > amax) {
      amax = ax;
      max = xAt(x, i);
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) store<i8>(l + <usize>i, 0);
    return 0;
  }
  const iscale: f32 = <f32>(-nmax) / max;
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = xAt(x, i);
    const li = clampInt(nearestInt(iscale * xi), -nmax, nmax - 1);
    store<i8>(l + <usize>i, <i8>li);
    const w: f32 = xi * xi;
    const lf = <f32>li;
    sumlx += w * xi * lf;
    suml2 += w * lf * lf;
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const xi = xAt(x, i);
      const w: f32 = xi * xi;
      const li = <i32>load<i8>(l + <usize>i);
      const lf = <f32>li;
      let slx: f32 = sumlx - w * xi * lf;
      if (slx > 0) {
        let sl2: f32 = suml2 - w * lf * lf;
        const newL = clampInt(nearestInt(xi * sl2 / slx), -nmax, nmax - 1);
        if (newL != li) {
          const nf = <f32>newL;
          slx += w * xi * nf;
          sl2 += w * nf * nf;
          if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
            store<i8>(l + <usize>i, <i8>newL);
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (nChanged == 0) break;
  }
  for (let i = 0; i < n; i++) store<i8>(l + <usize>i, <i8>(<i32>load<i8>(l + <usize>i) + nmax));
  return suml2 > 0 ? sumlx / suml2 : 0;
}

/** ggml's nearest_int on four lanes (the same f32 add and bit operations as nearestInt). */
@inline function nearestInt4(v: v128): v128 {
  const t = f32x4.add(v, f32x4.splat(<f32>12582912.0));
  return i32x4.sub(v128.and(t, i32x4.splat(0x007fffff)), i32x4.splat(0x00400000));
}

@inline function clamp4(v: v128, lo: i32, hi: i32): v128 {
  return i32x4.max_s(i32x4.min_s(v, i32x4.splat(hi)), i32x4.splat(lo));
}

/** Copies four groups of n values (group k at x + k * groupStride bytes) side by side into XT_PTR. */
function transpose4(x: usize, n: i32, groupStride: usize): void {
  for (let k = 0; k < 4; k++) {
    const g = x + <usize>k * groupStride;
    for (let i = 0; i < n; i++) store<f32>(XT_PTR + (<usize>i << 4) + (<usize>k << 2), xAt(g, i));
  }
}

/**
 * makeQxQuantsRmse1 for four groups of 16 at once, one group per SIMD lane (groups at x, x + 64, ...,
 * already side by side in XT_PTR). Every lane performs exactly the scalar function's f32 operations in
 * the same order (sums stay sequential over i within a lane); branches become per-lane selects. Writes the
 * four groups' L (int8, 0..2*nmax-1) at l, l + 16, ... and their scales at scales[0..3].
 */
function makeQxQuantsRmse1x4(nmax: i32, l: usize, scales: usize): void {
  const n = 16;
  let max = f32x4.splat(0);
  let amax = f32x4.splat(0);
  for (let i = 0; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    const ax = f32x4.abs(xi);
    const bigger = f32x4.gt(ax, amax);
    amax = v128.bitselect(ax, amax, bigger);
    max = v128.bitselect(xi, max, bigger);
  }
  const negNmax = f32x4.splat(<f32>(-nmax));
  const lo = -nmax;
  const hi = nmax - 1;
  let iscale = f32x4.div(negNmax, max);
  let sumlx = f32x4.splat(0);
  let suml2 = f32x4.splat(0);
  for (let i = 0; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    const w = f32x4.mul(xi, xi);
    v128.store(WT_PTR + (<usize>i << 4), w);
    const li = clamp4(nearestInt4(f32x4.mul(iscale, xi)), lo, hi);
    v128.store(BEST_LT_PTR + (<usize>i << 4), li);
    const lf = f32x4.convert_i32x4_s(li);
    sumlx = f32x4.add(sumlx, f32x4.mul(f32x4.mul(w, xi), lf));
    suml2 = f32x4.add(suml2, f32x4.mul(f32x4.mul(w, lf), lf));
  }
  // scale = suml2 != 0 ? sumlx / suml2 : 0
  let scale = v128.and(f32x4.div(sumlx, suml2), f32x4.ne(suml2, f32x4.splat(0)));
  let best = f32x4.mul(scale, sumlx);
  const fnmax = <f32>nmax;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = f32x4.div(f32x4.splat(-(fnmax + <f32>0.1 * <f32>is)), max);
    // this candidate's levels and their sums in one pass (C's order within each lane), every candidate
    // evaluated as C does (a skip of candidates whose levels had not changed cost more than it saved)
    let lx = f32x4.splat(0);
    let l2 = f32x4.splat(0);
    for (let i = 0; i < n; i++) {
      const xi = v128.load(XT_PTR + (<usize>i << 4));
      const li = clamp4(nearestInt4(f32x4.mul(iscale, xi)), lo, hi);
      v128.store(LT_PTR + (<usize>i << 4), li);
      const lf = f32x4.convert_i32x4_s(li);
      const w = v128.load(WT_PTR + (<usize>i << 4));
      lx = f32x4.add(lx, f32x4.mul(f32x4.mul(w, xi), lf));
      l2 = f32x4.add(l2, f32x4.mul(f32x4.mul(w, lf), lf));
    }
    const take = v128.and(f32x4.gt(l2, f32x4.splat(0)), f32x4.gt(f32x4.mul(lx, lx), f32x4.mul(best, l2)));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < n; i++) {
      const p = BEST_LT_PTR + (<usize>i << 4);
      v128.store(p, v128.bitselect(v128.load(LT_PTR + (<usize>i << 4)), v128.load(p), take));
    }
    const newScale = f32x4.div(lx, l2);
    scale = v128.bitselect(newScale, scale, take);
    best = v128.bitselect(f32x4.mul(newScale, lx), best, take);
  }
  // lanes whose group is all (near) zero: L = 0, scale 0, as the scalar early return
  const zero = f32x4.lt(amax, f32x4.splat(GROUP_MAX_EPS));
  scale = v128.bitselect(f32x4.splat(0), scale, zero);
  v128.store(scales, scale);
  v128.store(MASK_PTR, zero);
  for (let k = 0; k < 4; k++) {
    const laneZero = load<i32>(MASK_PTR + (<usize>k << 2)) != 0;
    const g = l + <usize>k * 16;
    for (let i = 0; i < n; i++) {
      const li = load<i32>(BEST_LT_PTR + (<usize>i << 4) + (<usize>k << 2));
      store<i8>(g + <usize>i, laneZero ? 0 : <i8>(li + nmax));
    }
  }
}

/**
 * makeQkx2Quants for four groups of n at once, one group per SIMD lane (values side by side in XT_PTR,
 * weights in WT_PTR). Every lane performs the scalar function's f32 operations in the same order (the
 * sums stay sequential over i within a lane; a lane's min changes only when its own step wins); branches
 * become per-lane selects, and only the exact shortcut "no lane's levels changed since the previous step"
 * is kept. Writes the groups' L (0..nmax) at l, l + n, ..., their scales at scales[0..3] and their
 * C `the_min` (= -min) at mins[0..3].
 */
function makeQkx2Quantsx4(n: i32, nmax: i32, l: usize, rmin: f32, nstep: i32, useMad: bool, scales: usize, mins: usize): void {
  const x0 = v128.load(XT_PTR);
  let vmin = x0;
  let vmax = x0;
  let sumW = v128.load(WT_PTR);
  let sumX = f32x4.mul(sumW, x0);
  for (let i = 1; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    vmin = v128.bitselect(xi, vmin, f32x4.lt(xi, vmin));
    vmax = v128.bitselect(xi, vmax, f32x4.gt(xi, vmax));
    const wi = v128.load(WT_PTR + (<usize>i << 4));
    sumW = f32x4.add(sumW, wi);
    sumX = f32x4.add(sumX, f32x4.mul(wi, xi));
  }
  const zero = f32x4.splat(0);
  vmin = v128.bitselect(zero, vmin, f32x4.gt(vmin, zero));
  // lanes with max == min return at once in C (L = 0, scale 0): they are frozen below
  const flat = f32x4.eq(vmax, vmin);
  const live = v128.not(flat);
  const fnmax = f32x4.splat(<f32>nmax);
  let iscale = f32x4.div(fnmax, f32x4.sub(vmax, vmin));
  let scale = f32x4.div(f32x4.splat(1), iscale);
  let bestError = zero;
  for (let i = 0; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    const li = clamp4(nearestInt4(f32x4.mul(iscale, f32x4.sub(xi, vmin))), 0, nmax);
    v128.store(BEST_LT_PTR + (<usize>i << 4), li);
    let diff = f32x4.sub(f32x4.add(f32x4.mul(scale, f32x4.convert_i32x4_s(li)), vmin), xi);
    diff = useMad ? f32x4.abs(diff) : f32x4.mul(diff, diff);
    bestError = f32x4.add(bestError, f32x4.mul(v128.load(WT_PTR + (<usize>i << 4)), diff));
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = f32x4.div(f32x4.splat(rmin + RDELTA * <f32>is + <f32>nmax), f32x4.sub(vmax, vmin));
    let changed = is == 0 ? i32x4.splat(-1) : i32x4.splat(0);
    for (let i = 0; i < n; i++) {
      const xi = v128.load(XT_PTR + (<usize>i << 4));
      const li = clamp4(nearestInt4(f32x4.mul(iscale, f32x4.sub(xi, vmin))), 0, nmax);
      const p = LT_PTR + (<usize>i << 4);
      changed = v128.or(changed, v128.xor(li, v128.load(p)));
      v128.store(p, li);
    }
    if (!v128.any_true(v128.and(changed, live))) continue;
    let sumL = zero;
    let sumL2 = zero;
    let sumXL = zero;
    for (let i = 0; i < n; i++) {
      const lf = f32x4.convert_i32x4_s(v128.load(LT_PTR + (<usize>i << 4)));
      const wl = f32x4.mul(v128.load(WT_PTR + (<usize>i << 4)), lf);
      sumL = f32x4.add(sumL, wl);
      sumL2 = f32x4.add(sumL2, f32x4.mul(wl, lf));
      sumXL = f32x4.add(sumXL, f32x4.mul(wl, v128.load(XT_PTR + (<usize>i << 4))));
    }
    const D = f32x4.sub(f32x4.mul(sumW, sumL2), f32x4.mul(sumL, sumL));
    const positive = v128.and(f32x4.gt(D, zero), live);
    if (!v128.any_true(positive)) continue;
    let thisScale = f32x4.div(f32x4.sub(f32x4.mul(sumW, sumXL), f32x4.mul(sumX, sumL)), D);
    let thisMin = f32x4.div(f32x4.sub(f32x4.mul(sumL2, sumX), f32x4.mul(sumL, sumXL)), D);
    const minAbove = f32x4.gt(thisMin, zero);
    thisMin = v128.bitselect(zero, thisMin, minAbove);
    thisScale = v128.bitselect(f32x4.div(sumXL, sumL2), thisScale, minAbove);
    let curError = zero;
    for (let i = 0; i < n; i++) {
      const lf = f32x4.convert_i32x4_s(v128.load(LT_PTR + (<usize>i << 4)));
      let diff = f32x4.sub(f32x4.add(f32x4.mul(thisScale, lf), thisMin), v128.load(XT_PTR + (<usize>i << 4)));
      diff = useMad ? f32x4.abs(diff) : f32x4.mul(diff, diff);
      curError = f32x4.add(curError, f32x4.mul(v128.load(WT_PTR + (<usize>i << 4)), diff));
    }
    const take = v128.and(positive, f32x4.lt(curError, bestError));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < n; i++) {
      const p = BEST_LT_PTR + (<usize>i << 4);
      v128.store(p, v128.bitselect(v128.load(LT_PTR + (<usize>i << 4)), v128.load(p), take));
    }
    bestError = v128.bitselect(curError, bestError, take);
    scale = v128.bitselect(thisScale, scale, take);
    vmin = v128.bitselect(thisMin, vmin, take);
  }
  v128.store(scales, v128.bitselect(zero, scale, flat));
  v128.store(mins, f32x4.neg(vmin));
  v128.store(MASK_PTR, flat);
  for (let k = 0; k < 4; k++) {
    const laneFlat = load<i32>(MASK_PTR + (<usize>k << 2)) != 0;
    const g = l + <usize>(k * n);
    for (let i = 0; i < n; i++) {
      store<u8>(g + <usize>i, laneFlat ? 0 : <u8>load<i32>(BEST_LT_PTR + (<usize>i << 4) + (<usize>k << 2)));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// K-quant super-blocks (256 values)

/**
 * Q2_K (84 bytes: scales[16], qs[64], f16 d, f16 dmin). Per group of 16: make_qkx2_quants(nmax 3,
 * weights |x|, rmin -0.5, rdelta 0.1, 15 steps, mean ABSOLUTE error); 4-bit scales and mins by
 * nearest_int (ties to even) against max/15; d, dmin f16 (RNE); values re-quantized as
 * nearest_int((x + dm) / d) clamped to 0..3.
 */
export function quantizeQ2_K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 1024;
    const o = dst + <usize>i * 84;
    let maxScale: f32 = 0;
    let maxMin: f32 = 0;
    for (let q = 0; q < 4; q++) {
      transpose4(x + <usize>q * 256, 16, 64);
      for (let i = 0; i < 16; i++) v128.store(WT_PTR + (<usize>i << 4), f32x4.abs(v128.load(XT_PTR + (<usize>i << 4))));
      makeQkx2Quantsx4(16, 3, L_PTR + <usize>q * 64, <f32>-0.5, 15, true, SCALES_PTR + <usize>q * 16, MINS_PTR + <usize>q * 16);
    }
    for (let j = 0; j < 16; j++) {
      const scale = load<f32>(SCALES_PTR + (<usize>j << 2));
      const theMin = load<f32>(MINS_PTR + (<usize>j << 2));
      if (scale > maxScale) maxScale = scale;
      if (theMin > maxMin) maxMin = theMin;
    }
    let dStored: f32;
    if (maxScale > 0) {
      const iscale: f32 = <f32>15.0 / maxScale;
      for (let j = 0; j < 16; j++) store<u8>(o + <usize>j, <u8>nearestInt(iscale * load<f32>(SCALES_PTR + (<usize>j << 2))));
      dStored = storeF16(o + 80, maxScale / <f32>15.0);
    } else {
      for (let j = 0; j < 16; j++) store<u8>(o + <usize>j, 0);
      dStored = storeF16(o + 80, 0);
    }
    let dminStored: f32;
    if (maxMin > 0) {
      const iscale: f32 = <f32>15.0 / maxMin;
      for (let j = 0; j < 16; j++) {
        const lm = nearestInt(iscale * load<f32>(MINS_PTR + (<usize>j << 2)));
        store<u8>(o + <usize>j, <u8>(<i32>load<u8>(o + <usize>j) | (lm << 4)));
      }
      dminStored = storeF16(o + 82, maxMin / <f32>15.0);
    } else {
      dminStored = storeF16(o + 82, 0);
    }
    for (let j = 0; j < 16; j++) {
      const sc = <i32>load<u8>(o + <usize>j);
      const d: f32 = dStored * <f32>(sc & 0xf);
      if (d == 0) continue;
      const dm: f32 = dminStored * <f32>(sc >> 4);
      const g = x + <usize>j * 64;
      for (let ii = 0; ii < 16; ii++) {
        store<u8>(L_PTR + <usize>(16 * j + ii), <u8>clampInt(nearestInt((xAt(g, ii) + dm) / d), 0, 3));
      }
    }
    for (let j = 0; j < 256; j += 128) {
      for (let k = 0; k < 32; k++) {
        const p = L_PTR + <usize>(j + k);
        const b = <i32>load<u8>(p) | (<i32>load<u8>(p + 32) << 2) | (<i32>load<u8>(p + 64) << 4) | (<i32>load<u8>(p + 96) << 6);
        store<u8>(o + 16 + <usize>(j / 4 + k), <u8>b);
      }
    }
  }
}

/**
 * Q3_K (110 bytes: hmask[32], qs[64], scales[12], f16 d). Per group of 16: make_q3_quants(nmax 4); 6-bit
 * signed scales by nearest_int(-32/max_scale * s) (ties to even) clamped to -32..31; d = f16(1/iscale)
 * (RNE); values re-quantized as nearest_int(x / d) clamped to -4..3.
 */
export function quantizeQ3_K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 1024;
    const o = dst + <usize>i * 110;
    const s = o + 96;
    let maxScale: f32 = 0;
    let amax: f32 = 0;
    for (let j = 0; j < 16; j++) {
      const scale = makeQ3Quants(16, 4, x + <usize>j * 64, L_PTR + <usize>j * 16);
      store<f32>(SCALES_PTR + (<usize>j << 2), scale);
      const a = Mathf.abs(scale);
      if (a > amax) {
        amax = a;
        maxScale = scale;
      }
    }
    memory.fill(s, 0, 12);
    let dStored: f32;
    if (maxScale != 0) {
      const iscale: f32 = <f32>-32.0 / maxScale;
      for (let j = 0; j < 16; j++) {
        let lv = <i32><i8>nearestInt(iscale * load<f32>(SCALES_PTR + (<usize>j << 2)));
        lv = clampInt(lv, -32, 31) + 32;
        if (j < 8) {
          store<u8>(s + <usize>j, <u8>(lv & 0xf));
        } else {
          store<u8>(s + <usize>(j - 8), <u8>(<i32>load<u8>(s + <usize>(j - 8)) | ((lv & 0xf) << 4)));
        }
        lv >>= 4;
        const at = s + 8 + <usize>(j % 4);
        store<u8>(at, <u8>(<i32>load<u8>(at) | (lv << (2 * (j / 4)))));
      }
      dStored = storeF16(o + 108, <f32>1.0 / iscale);
    } else {
      dStored = storeF16(o + 108, 0);
    }
    for (let j = 0; j < 16; j++) {
      let sc = j < 8 ? <i32>load<u8>(s + <usize>j) & 0xf : <i32>load<u8>(s + <usize>(j - 8)) >> 4;
      sc = (sc | (((<i32>load<u8>(s + 8 + <usize>(j % 4)) >> (2 * (j / 4))) & 3) << 4)) - 32;
      const d: f32 = dStored * <f32>sc;
      if (d == 0) continue;
      const g = x + <usize>j * 64;
      for (let ii = 0; ii < 16; ii++) {
        store<i8>(L_PTR + <usize>(16 * j + ii), <i8>(clampInt(nearestInt(xAt(g, ii) / d), -4, 3) + 4));
      }
    }
    memory.fill(o, 0, 32);
    let m = 0;
    let hm = 1;
    for (let j = 0; j < 256; j++) {
      const p = L_PTR + <usize>j;
      const lv = <i32>load<i8>(p);
      if (lv > 3) {
        store<u8>(o + <usize>m, <u8>(<i32>load<u8>(o + <usize>m) | hm));
        store<i8>(p, <i8>(lv - 4));
      }
      if (++m == 32) {
        m = 0;
        hm <<= 1;
      }
    }
    for (let j = 0; j < 256; j += 128) {
      for (let k = 0; k < 32; k++) {
        const p = L_PTR + <usize>(j + k);
        const b = <i32>load<u8>(p) | (<i32>load<u8>(p + 32) << 2) | (<i32>load<u8>(p + 64) << 4) | (<i32>load<u8>(p + 96) << 6);
        store<u8>(o + 32 + <usize>(j / 4 + k), <u8>b);
      }
    }
  }
}

/**
 * Q4_K / Q5_K super-block: per group of 32 make_qkx2_quants with weights av_x + |x|,
 * av_x = sqrtf(sum x^2 / 32) (Q4_K: nmax 15, rmin -1, 20 steps; Q5_K: nmax 31, rmin -0.5, 15 steps;
 * rdelta 0.1, squared error); the 8 scales and mins to 6 bits by nearest_int (ties to even) against
 * max/63, d and dmin f16 (RNE); every value re-quantized as nearest_int((x + dm) / d) against the
 * stored scales. Writes d, dmin, scales[12] at o, the levels to L_PTR.
 */
function quantizeSuperBlockK(x: usize, o: usize, nmax: i32, rmin: f32, nstep: i32): void {
  let maxScale: f32 = 0;
  let maxMin: f32 = 0;
  for (let q = 0; q < 2; q++) {
    transpose4(x + <usize>q * 512, 32, 128);
    // weights av_x + |x|, av_x = sqrtf(sum x^2 / 32) summed in order within each lane
    let sumX2 = f32x4.splat(0);
    for (let i = 0; i < 32; i++) {
      const v = v128.load(XT_PTR + (<usize>i << 4));
      sumX2 = f32x4.add(sumX2, f32x4.mul(v, v));
    }
    const avX = f32x4.sqrt(f32x4.div(sumX2, f32x4.splat(32)));
    for (let i = 0; i < 32; i++) v128.store(WT_PTR + (<usize>i << 4), f32x4.add(avX, f32x4.abs(v128.load(XT_PTR + (<usize>i << 4)))));
    makeQkx2Quantsx4(32, nmax, L_PTR + <usize>q * 128, rmin, nstep, false, SCALES_PTR + <usize>q * 16, MINS_PTR + <usize>q * 16);
  }
  for (let j = 0; j < 8; j++) {
    const scale = load<f32>(SCALES_PTR + (<usize>j << 2));
    const theMin = load<f32>(MINS_PTR + (<usize>j << 2));
    if (scale > maxScale) maxScale = scale;
    if (theMin > maxMin) maxMin = theMin;
  }
  const invScale: f32 = maxScale > 0 ? <f32>63.0 / maxScale : <f32>0.0;
  const invMin: f32 = maxMin > 0 ? <f32>63.0 / maxMin : <f32>0.0;
  const s = o + 4;
  memory.fill(s, 0, 12);
  for (let j = 0; j < 8; j++) {
    const ls = min<i32>(63, nearestInt(invScale * load<f32>(SCALES_PTR + (<usize>j << 2))) & 0xff);
    const lm = min<i32>(63, nearestInt(invMin * load<f32>(MINS_PTR + (<usize>j << 2))) & 0xff);
    if (j < 4) {
      store<u8>(s + <usize>j, <u8>ls);
      store<u8>(s + <usize>(j + 4), <u8>lm);
    } else {
      store<u8>(s + <usize>(j + 4), <u8>((ls & 0xf) | ((lm & 0xf) << 4)));
      store<u8>(s + <usize>(j - 4), <u8>(<i32>load<u8>(s + <usize>(j - 4)) | ((ls >> 4) << 6)));
      store<u8>(s + <usize>j, <u8>(<i32>load<u8>(s + <usize>j) | ((lm >> 4) << 6)));
    }
  }
  const dStored = storeF16(o, maxScale / <f32>63.0);
  const dminStored = storeF16(o + 2, maxMin / <f32>63.0);
  for (let j = 0; j < 8; j++) {
    // get_scale_min_k4
    let sc: i32;
    let m: i32;
    if (j < 4) {
      sc = <i32>load<u8>(s + <usize>j) & 63;
      m = <i32>load<u8>(s + <usize>(j + 4)) & 63;
    } else {
      sc = (<i32>load<u8>(s + <usize>(j + 4)) & 0xf) | ((<i32>load<u8>(s + <usize>(j - 4)) >> 6) << 4);
      m = (<i32>load<u8>(s + <usize>(j + 4)) >> 4) | ((<i32>load<u8>(s + <usize>j) >> 6) << 4);
    }
    const d: f32 = dStored * <f32>sc;
    if (d == 0) continue;
    const dm: f32 = dminStored * <f32>m;
    const g = x + <usize>j * 128;
    for (let ii = 0; ii < 32; ii++) {
      store<u8>(L_PTR + <usize>(32 * j + ii), <u8>clampInt(nearestInt((xAt(g, ii) + dm) / d), 0, nmax));
    }
  }
}

/** Q4_K (144 bytes: f16 d, f16 dmin, scales[12], qs[128]); rounding in quantizeSuperBlockK. */
export function quantizeQ4_K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const o = dst + <usize>i * 144;
    quantizeSuperBlockK(src + <usize>i * 1024, o, 15, <f32>-1.0, 20);
    let q = o + 16;
    for (let j = 0; j < 256; j += 64) {
      for (let k = 0; k < 32; k++) {
        const p = L_PTR + <usize>(j + k);
        store<u8>(q + <usize>k, <u8>(<i32>load<u8>(p) | (<i32>load<u8>(p + 32) << 4)));
      }
      q += 32;
    }
  }
}

/** Q5_K (176 bytes: f16 d, f16 dmin, scales[12], qh[32], qs[128]); rounding in quantizeSuperBlockK. */
export function quantizeQ5_K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const o = dst + <usize>i * 176;
    quantizeSuperBlockK(src + <usize>i * 1024, o, 31, <f32>-0.5, 15);
    const qh = o + 16;
    memory.fill(qh, 0, 32);
    let ql = o + 48;
    let m1 = 1;
    let m2 = 2;
    for (let n = 0; n < 256; n += 64) {
      for (let j = 0; j < 32; j++) {
        let l1 = <i32>load<u8>(L_PTR + <usize>(n + j));
        if (l1 > 15) {
          l1 -= 16;
          store<u8>(qh + <usize>j, <u8>(<i32>load<u8>(qh + <usize>j) | m1));
        }
        let l2 = <i32>load<u8>(L_PTR + <usize>(n + j + 32));
        if (l2 > 15) {
          l2 -= 16;
          store<u8>(qh + <usize>j, <u8>(<i32>load<u8>(qh + <usize>j) | m2));
        }
        store<u8>(ql + <usize>j, <u8>(l1 | (l2 << 4)));
      }
      m1 <<= 2;
      m2 <<= 2;
      ql += 32;
    }
  }
}

/**
 * Q6_K (210 bytes: ql[128], qh[64], int8 scales[16], f16 d). Per group of 16 make_qx_quants(nmax 32,
 * rmse_type 1); 8-bit signed scales MIN(127, nearest_int(-128/max_scale * s)) (ties to even);
 * d = f16(1/iscale) (RNE); values re-quantized as nearest_int(x / d) clamped to -32..31. A super-block
 * whose scales are all below 1e-15 is all zero bytes.
 */
export function quantizeQ6_K(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const x = src + <usize>i * 1024;
    const o = dst + <usize>i * 210;
    let maxScale: f32 = 0;
    let maxAbsScale: f32 = 0;
    for (let q = 0; q < 4; q++) {
      transpose4(x + <usize>q * 256, 16, 64);
      makeQxQuantsRmse1x4(32, L_PTR + <usize>q * 64, SCALES_PTR + <usize>q * 16);
    }
    for (let ib = 0; ib < 16; ib++) {
      const scale = load<f32>(SCALES_PTR + (<usize>ib << 2));
      const a = Mathf.abs(scale);
      if (a > maxAbsScale) {
        maxAbsScale = a;
        maxScale = scale;
      }
    }
    if (maxAbsScale < GROUP_MAX_EPS) {
      memory.fill(o, 0, 210);
      continue;
    }
    const iscale: f32 = <f32>-128.0 / maxScale;
    const dStored = storeF16(o + 208, <f32>1.0 / iscale);
    const s = o + 192;
    for (let ib = 0; ib < 16; ib++) {
      store<u8>(s + <usize>ib, <u8>min<i32>(127, nearestInt(iscale * load<f32>(SCALES_PTR + (<usize>ib << 2)))));
    }
    for (let j = 0; j < 16; j++) {
      const d: f32 = dStored * <f32>load<i8>(s + <usize>j);
      if (d == 0) continue;
      const g = x + <usize>j * 64;
      // nearest_int(x / d) clamped to -32..31, plus 32: f32x4.div is the scalar division in each lane
      const dv = f32x4.splat(d);
      const bias = i32x4.splat(32);
      const q0 = i32x4.add(clamp4(nearestInt4(f32x4.div(v128.load(g), dv)), -32, 31), bias);
      const q1 = i32x4.add(clamp4(nearestInt4(f32x4.div(v128.load(g + 16), dv)), -32, 31), bias);
      const q2 = i32x4.add(clamp4(nearestInt4(f32x4.div(v128.load(g + 32), dv)), -32, 31), bias);
      const q3 = i32x4.add(clamp4(nearestInt4(f32x4.div(v128.load(g + 48), dv)), -32, 31), bias);
      v128.store(L_PTR + <usize>(16 * j), narrow16(q0, q1, q2, q3));
    }
    let ql = o;
    let qh = o + 128;
    for (let j = 0; j < 256; j += 128) {
      for (let k = 0; k < 32; k++) {
        const p = L_PTR + <usize>(j + k);
        const l0 = <i32>load<u8>(p);
        const l1 = <i32>load<u8>(p + 32);
        const l2 = <i32>load<u8>(p + 64);
        const l3 = <i32>load<u8>(p + 96);
        store<u8>(ql + <usize>k, <u8>((l0 & 0xf) | ((l2 & 0xf) << 4)));
        store<u8>(ql + <usize>(k + 32), <u8>((l1 & 0xf) | ((l3 & 0xf) << 4)));
        store<u8>(qh + <usize>k, <u8>((l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6)));
      }
      ql += 64;
      qh += 32;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Dequantizers: ports of ggml-quants.c's dequantize_row_* (every product and add an f32 step in C's
// order, so the values are ggml's). `nb` whole blocks from the bytes at src to the f32 values at dst.

@inline function halfAt(p: usize): f32 {
  return f16BitsToF32(<u32>load<u16>(p));
}

/** Q8_0: y = d * q. */
export function dequantizeQ8_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const b = src + <usize>i * 34;
    const y = dst + (<usize>i << 7);
    const d = halfAt(b);
    for (let j = 0; j < 32; j++) store<f32>(y + (<usize>j << 2), <f32>load<i8>(b + 2 + j) * d);
  }
}

/** Q4_0: y = d * (q - 8). */
export function dequantizeQ4_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const b = src + <usize>i * 18;
    const y = dst + (<usize>i << 7);
    const d = halfAt(b);
    for (let j = 0; j < 16; j++) {
      const q = <i32>load<u8>(b + 2 + j);
      store<f32>(y + (<usize>j << 2), <f32>((q & 0x0f) - 8) * d);
      store<f32>(y + (<usize>(j + 16) << 2), <f32>((q >> 4) - 8) * d);
    }
  }
}

/** Q4_1: y = f32(d * q) + m. */
export function dequantizeQ4_1(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const b = src + <usize>i * 20;
    const y = dst + (<usize>i << 7);
    const d = halfAt(b);
    const m = halfAt(b + 2);
    for (let j = 0; j < 16; j++) {
      const q = <i32>load<u8>(b + 4 + j);
      store<f32>(y + (<usize>j << 2), <f32>(q & 0x0f) * d + m);
      store<f32>(y + (<usize>(j + 16) << 2), <f32>(q >> 4) * d + m);
    }
  }
}

/** Q5_0: y = d * (q - 16), q with its fifth bit from qh. */
export function dequantizeQ5_0(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const b = src + <usize>i * 22;
    const y = dst + (<usize>i << 7);
    const d = halfAt(b);
    const qh = load<u32>(b + 2);
    for (let j = 0; j < 16; j++) {
      const q = <i32>load<u8>(b + 6 + j);
      const h0 = <i32>(((qh >> <u32>j) << 4) & 0x10);
      const h1 = <i32>((qh >> <u32>(j + 12)) & 0x10);
      store<f32>(y + (<usize>j << 2), <f32>(((q & 0x0f) | h0) - 16) * d);
      store<f32>(y + (<usize>(j + 16) << 2), <f32>(((q >> 4) | h1) - 16) * d);
    }
  }
}

/** Q5_1: y = f32(d * q) + m. */
export function dequantizeQ5_1(src: usize, dst: usize, nb: i32): void {
  for (let i = 0; i < nb; i++) {
    const b = src + <usize>i * 24;
    const y = dst + (<usize>i << 7);
    const d = halfAt(b);
    const m = halfAt(b + 2);
    const qh = load<u32>(b + 4);
    for (let j = 0; j < 16; j++) {
      const q = <i32>load<u8>(b + 8 + j);
      const h0 = <i32>(((qh >> <u32>j) << 4) & 0x10);
      const h1 = <i32>((qh >> <u32>(j + 12)) & 0x10);
      store<f32>(y + (<usize>j << 2), <f32>((q & 0x0f) | h0) * d + m);
      store<f32>(y + (<usize>(j + 16) << 2), <f32>((q >> 4) | h1) * d + m);
    }
  }
}

/** Q2_K: y = f32(dl * q) - ml, dl = d * (sc & 15), ml = dmin * (sc >> 4). */
export function dequantizeQ2_K(src: usize, dst: usize, nb: i32): void {
  let y = dst;
  for (let i = 0; i < nb; i++) {
    const o = src + <usize>i * 84;
    const d = halfAt(o + 80);
    const min = halfAt(o + 82);
    let q = o + 16;
    let is: usize = 0;
    for (let n = 0; n < 256; n += 128) {
      let shift: u32 = 0;
      for (let j = 0; j < 4; j++) {
        let sc = <u32>load<u8>(o + is++);
        let dl = d * <f32>(sc & 0xf);
        let ml = min * <f32>(sc >> 4);
        for (let l: usize = 0; l < 16; l++) {
          store<f32>(y, dl * <f32>((<u32>load<u8>(q + l) >> shift) & 3) - ml);
          y += 4;
        }
        sc = <u32>load<u8>(o + is++);
        dl = d * <f32>(sc & 0xf);
        ml = min * <f32>(sc >> 4);
        for (let l: usize = 0; l < 16; l++) {
          store<f32>(y, dl * <f32>((<u32>load<u8>(q + l + 16) >> shift) & 3) - ml);
          y += 4;
        }
        shift += 2;
      }
      q += 32;
    }
  }
}

/** Q3_K scale j (0..15) of the 12 packed bytes at s, 0..63 (subtract 32). */
@inline function q3Scale(s: usize, j: i32): i32 {
  const low = j < 8 ? <i32>load<u8>(s + j) & 0xf : <i32>load<u8>(s + j - 8) >> 4;
  const high = (<i32>load<u8>(s + 8 + (j & 3)) >> (2 * (j >> 2))) & 3;
  return low | (high << 4);
}

/** Q3_K: y = dl * (q - (hmask bit ? 0 : 4)), dl = d * (scale - 32). */
export function dequantizeQ3_K(src: usize, dst: usize, nb: i32): void {
  let y = dst;
  for (let i = 0; i < nb; i++) {
    const o = src + <usize>i * 110;
    const dAll = halfAt(o + 108);
    let q = o + 32;
    const hm = o;
    let m: u32 = 1;
    let is = 0;
    for (let n = 0; n < 256; n += 128) {
      let shift: u32 = 0;
      for (let j = 0; j < 4; j++) {
        let dl = dAll * <f32>(q3Scale(o + 96, is++) - 32);
        for (let l: usize = 0; l < 16; l++) {
          const v = <i32>((<u32>load<u8>(q + l) >> shift) & 3) - ((<u32>load<u8>(hm + l) & m) != 0 ? 0 : 4);
          store<f32>(y, dl * <f32>v);
          y += 4;
        }
        dl = dAll * <f32>(q3Scale(o + 96, is++) - 32);
        for (let l: usize = 0; l < 16; l++) {
          const v = <i32>((<u32>load<u8>(q + l + 16) >> shift) & 3) - ((<u32>load<u8>(hm + l + 16) & m) != 0 ? 0 : 4);
          store<f32>(y, dl * <f32>v);
          y += 4;
        }
        shift += 2;
        m <<= 1;
      }
      q += 32;
    }
  }
}

/** ggml's get_scale_min_k4: 6-bit scale (low 8 bits) and min (next 8) j of the 12 packed bytes at s. */
@inline function scaleMinK4(j: i32, s: usize): u32 {
  if (j < 4) return (<u32>load<u8>(s + j) & 63) | ((<u32>load<u8>(s + j + 4) & 63) << 8);
  const sc = (<u32>load<u8>(s + j + 4) & 0xf) | ((<u32>load<u8>(s + j - 4) >> 6) << 4);
  const mn = (<u32>load<u8>(s + j + 4) >> 4) | ((<u32>load<u8>(s + j) >> 6) << 4);
  return sc | (mn << 8);
}

/** Q4_K / Q5_K: y = f32(d1 * q) - m1, d1 = d * sc, m1 = dmin * m; Q5_K adds 16 when its qh bit is set. */
function dequantizeQ45K(src: usize, dst: usize, nb: i32, five: bool): void {
  const blockBytes: usize = five ? 176 : 144;
  let y = dst;
  for (let i = 0; i < nb; i++) {
    const o = src + <usize>i * blockBytes;
    const d = halfAt(o);
    const min = halfAt(o + 2);
    const qh = o + 16;
    let ql = o + (five ? 48 : 16);
    let is = 0;
    let u1: u32 = 1;
    let u2: u32 = 2;
    for (let j = 0; j < 256; j += 64) {
      const sm1 = scaleMinK4(is, o + 4);
      const d1 = d * <f32>(sm1 & 0xff);
      const m1 = min * <f32>(sm1 >> 8);
      const sm2 = scaleMinK4(is + 1, o + 4);
      const d2 = d * <f32>(sm2 & 0xff);
      const m2 = min * <f32>(sm2 >> 8);
      for (let l: usize = 0; l < 32; l++) {
        const h: u32 = five && (<u32>load<u8>(qh + l) & u1) != 0 ? 16 : 0;
        store<f32>(y, d1 * <f32>((<u32>load<u8>(ql + l) & 0xf) + h) - m1);
        y += 4;
      }
      for (let l: usize = 0; l < 32; l++) {
        const h: u32 = five && (<u32>load<u8>(qh + l) & u2) != 0 ? 16 : 0;
        store<f32>(y, d2 * <f32>((<u32>load<u8>(ql + l) >> 4) + h) - m2);
        y += 4;
      }
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

export function dequantizeQ4_K(src: usize, dst: usize, nb: i32): void {
  dequantizeQ45K(src, dst, nb, false);
}

export function dequantizeQ5_K(src: usize, dst: usize, nb: i32): void {
  dequantizeQ45K(src, dst, nb, true);
}

/** Q6_K: y = f32(d * sc) * (q - 32), sc int8. */
export function dequantizeQ6_K(src: usize, dst: usize, nb: i32): void {
  let y = dst;
  for (let i = 0; i < nb; i++) {
    const o = src + <usize>i * 210;
    const d = halfAt(o + 208);
    let ql = o;
    let qh = o + 128;
    let sc = o + 192;
    for (let n = 0; n < 256; n += 128) {
      for (let l: usize = 0; l < 32; l++) {
        const is = l >> 4;
        const h = <i32>load<u8>(qh + l);
        const a = <i32>load<u8>(ql + l);
        const b = <i32>load<u8>(ql + l + 32);
        const q1 = ((a & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((b & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((a >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((b >> 4) | (((h >> 6) & 3) << 4)) - 32;
        store<f32>(y + (l << 2), (d * <f32>load<i8>(sc + is)) * <f32>q1);
        store<f32>(y + ((l + 32) << 2), (d * <f32>load<i8>(sc + is + 2)) * <f32>q2);
        store<f32>(y + ((l + 64) << 2), (d * <f32>load<i8>(sc + is + 4)) * <f32>q3);
        store<f32>(y + ((l + 96) << 2), (d * <f32>load<i8>(sc + is + 6)) * <f32>q4);
      }
      y += 512;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Error accumulation: analysis/errorMetrics.ts ErrorAccumulator.addRows, step for step in f64 (the JS
// numbers): d = x - y, the four sums in element order, max |d|, the block-error cells and the error
// histogram's fine bins. Cell sums are carried in a local within a run of columns of one cell: the same
// f64 adds in the same order as adding to the cell each time. The histogram's first range uses the
// host's Math.log2 / Math.pow (imported), so it is the JS value to the bit.
// SIMD without changing a bit: products and differences are per-lane f64 operations (the scalar ones);
// every running sum stays one sequential chain in element order (a lane of sumA / sumB, or the local
// `cell`); only order-free results are combined across lanes: max of non-negative finite values, and
// integer counts (zeros, the u32 histogram copies). The one reference is the JS loop the tests keep
// (test/unit/cardMetrics.test.ts), compared field by field on real tensors.

@external("env", "log2") declare function hostLog2(x: f64): f64;
@external("env", "pow") declare function hostPow(x: f64, y: f64): f64;

const FINE_PER_SIDE: i32 = 512;
const FINE_BINS: i32 = 1024;
const MERGED_PTR: usize = memory.data(1024 * 8, 16);

// Accumulator state (f64 slots at `state`): the running sums and the histogram's half range.
const S_SSE: usize = 0;
const S_SSX: usize = 8;
const S_SSY: usize = 16;
const S_SXY: usize = 24;
const S_MAX: usize = 32;
const S_HALF: usize = 40;
const S_ZEROS: usize = 48;

// Fine-bin counts of the current call in u32, four interleaved copies (value k counts in copy k & 3) so
// that neighbouring values landing in the same bin do not wait on each other's store; folded into the
// f64 counts (exact integers) before the range grows and at the end of the call.
const HIST_PTR: usize = memory.data(4 * 1024 * 4, 16);
const BAND_END_PTR: usize = memory.data(64 * 4, 16);

function foldHistogram(fine: usize): void {
  for (let i = 0; i < FINE_BINS; i++) {
    const h = HIST_PTR + (<usize>i << 2);
    const total = load<u32>(h) + load<u32>(h + 4096) + load<u32>(h + 8192) + load<u32>(h + 12288);
    if (total != 0) {
      const at = fine + (<usize>i << 3);
      store<f64>(at, load<f64>(at) + <f64>total);
    }
  }
  memory.fill(HIST_PTR, 0, 4 * 1024 * 4);
}

/** ErrorHistogramAccumulator.grow: widens the half range at `state` until it holds a (> 0). */
function growHistogram(fine: usize, state: usize, a: f64): void {
  let halfRange = load<f64>(state + S_HALF);
  if (halfRange == 0) {
    halfRange = hostPow(2, Math.ceil(hostLog2(a)));
    while (halfRange < a) halfRange *= 2;
    store<f64>(state + S_HALF, halfRange);
    return;
  }
  while (halfRange < a) {
    // Double R: new fine bin F/2 + (i >> 1) for old bin i (integer counts: exact).
    memory.fill(MERGED_PTR, 0, <usize>FINE_BINS * 8);
    for (let i = 0; i < FINE_BINS; i++) {
      const to = MERGED_PTR + (<usize>(FINE_PER_SIDE / 2 + (i >> 1)) << 3);
      store<f64>(to, load<f64>(to) + load<f64>(fine + (<usize>i << 3)));
    }
    memory.copy(fine, MERGED_PTR, <usize>FINE_BINS * 8);
    halfRange *= 2;
  }
  store<f64>(state + S_HALF, halfRange);
}

/**
 * Adds `blockRows` rows of `cols` (original f32 at x, reconstructed f32 at y), the first of them row
 * `firstRow` of `rows`. colBandOf: u8 per column; cellError / cellCount: f64 [rowBands * colBands];
 * fine: f64 [1024]; state: f64 slots above. Returns -1, or the index (from x) of the first value whose
 * error is not finite (the state is then partly updated: the caller throws).
 */
export function accumulateError(
  x: usize, y: usize, blockRows: i32, cols: i32, firstRow: f64, rows: f64, rowBands: f64, colBands: i32,
  colBandOf: usize, cellError: usize, cellCount: usize, fine: usize, state: usize,
): i32 {
  // Two running sums per vector, each lane its own sequential f64 sum: [sum d^2, sum x^2], [sum y^2, sum x y].
  let sumA = f64x2.replace_lane(f64x2.splat(load<f64>(state + S_SSE)), 1, load<f64>(state + S_SSX));
  let sumB = f64x2.replace_lane(f64x2.splat(load<f64>(state + S_SSY)), 1, load<f64>(state + S_SXY));
  let maxAbs = load<f64>(state + S_MAX);
  let halfRange = load<f64>(state + S_HALF);
  let scale: f64 = halfRange > 0 ? <f64>FINE_PER_SIDE / halfRange : 0;
  let zeros: i32 = 0;
  let maxPair = f64x2.splat(0);
  let zeroLanes = i64x2.splat(0);
  let bad: i32 = -1;
  memory.fill(HIST_PTR, 0, 4 * 1024 * 4);
  // End column of each band (colBandOf is non-decreasing: band b is one run of columns).
  for (let c = 0; c < cols; c++) store<i32>(BAND_END_PTR + (<usize>load<u8>(colBandOf + c) << 2), c + 1);
  for (let r = 0; r < blockRows && bad < 0; r++) {
    const cellBase = <i32>Math.floor(((firstRow + <f64>r) * rowBands) / rows) * colBands;
    const rowX = x + ((<usize>r * <usize>cols) << 2);
    const rowY = y + ((<usize>r * <usize>cols) << 2);
    let c = 0;
    while (c < cols) {
      const band = <i32>load<u8>(colBandOf + c);
      const end = load<i32>(BAND_END_PTR + (<usize>band << 2));
      const cellAt = cellError + (<usize>(cellBase + band) << 3);
      let cell = load<f64>(cellAt);
      let k = c;
      while (k < end) {
        if (k + 3 < end) {
          // Four values per step in two f64x2 pairs (each lane the scalar f64 operation), the sums then
          // taken from the lanes in element order; the steps below take values that are not finite or grow R.
          const xa = f64x2.promote_low_f32x4(v128.load64_zero(rowX + (<usize>k << 2)));
          const ya = f64x2.promote_low_f32x4(v128.load64_zero(rowY + (<usize>k << 2)));
          const xb = f64x2.promote_low_f32x4(v128.load64_zero(rowX + (<usize>k << 2) + 8));
          const yb = f64x2.promote_low_f32x4(v128.load64_zero(rowY + (<usize>k << 2) + 8));
          const da = f64x2.sub(xa, ya);
          const db = f64x2.sub(xb, yb);
          const aa = f64x2.abs(da);
          const ab = f64x2.abs(db);
          const zero = f64x2.splat(0);
          const range = f64x2.splat(halfRange);
          // |d| <= R: finite (NaN compares false, Inf > R) and within the histogram's range
          if (v128.all_true<i64>(v128.and(f64x2.le(aa, range), f64x2.le(ab, range)))) {
            const d2a = f64x2.mul(da, da);
            const d2b = f64x2.mul(db, db);
            const xxa = f64x2.mul(xa, xa);
            const xxb = f64x2.mul(xb, xb);
            const yya = f64x2.mul(ya, ya);
            const yyb = f64x2.mul(yb, yb);
            const xya = f64x2.mul(xa, ya);
            const xyb = f64x2.mul(xb, yb);
            // values 0, 1, 2, 3 in turn: [d^2, x^2] into sumA, [y^2, x y] into sumB
            sumA = f64x2.add(sumA, i8x16.shuffle(d2a, xxa, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
            sumA = f64x2.add(sumA, i8x16.shuffle(d2a, xxa, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
            sumA = f64x2.add(sumA, i8x16.shuffle(d2b, xxb, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
            sumA = f64x2.add(sumA, i8x16.shuffle(d2b, xxb, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
            sumB = f64x2.add(sumB, i8x16.shuffle(yya, xya, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
            sumB = f64x2.add(sumB, i8x16.shuffle(yya, xya, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
            sumB = f64x2.add(sumB, i8x16.shuffle(yyb, xyb, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
            sumB = f64x2.add(sumB, i8x16.shuffle(yyb, xyb, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
            cell += f64x2.extract_lane(d2a, 0);
            cell += f64x2.extract_lane(d2a, 1);
            cell += f64x2.extract_lane(d2b, 0);
            cell += f64x2.extract_lane(d2b, 1);
            // max of finite non-negative values: any order gives the same value (pmax: maxpd, no NaN here)
            maxPair = f64x2.pmax(maxPair, f64x2.pmax(aa, ab));
            // eq is all ones (-1) in a lane where d = 0
            zeroLanes = i64x2.sub(zeroLanes, i64x2.add(f64x2.eq(da, zero), f64x2.eq(db, zero)));
            // Fine bin floor(min(F - d F / R, 2F - 1)): the argument is in [0, 2F], so the floor is the
            // truncation of the scalar step, and min before floor = min after (2F - 1 is an integer). The
            // floor plus 2^52 holds the bin in its low 32 bits (i32 lanes 0 and 2).
            const f = f64x2.splat(<f64>FINE_PER_SIDE);
            const sc = f64x2.splat(scale);
            const last = f64x2.splat(<f64>(FINE_BINS - 1));
            const magic = f64x2.splat(4503599627370496.0);
            const ia = f64x2.add(f64x2.floor(f64x2.pmin(f64x2.sub(f, f64x2.mul(da, sc)), last)), magic);
            const ib = f64x2.add(f64x2.floor(f64x2.pmin(f64x2.sub(f, f64x2.mul(db, sc)), last)), magic);
            // the four values go to the four interleaved copies
            const at0 = HIST_PTR + (<usize>i32x4.extract_lane(ia, 0) << 2);
            store<u32>(at0, load<u32>(at0) + 1);
            const at1 = HIST_PTR + 4096 + (<usize>i32x4.extract_lane(ia, 2) << 2);
            store<u32>(at1, load<u32>(at1) + 1);
            const at2 = HIST_PTR + 8192 + (<usize>i32x4.extract_lane(ib, 0) << 2);
            store<u32>(at2, load<u32>(at2) + 1);
            const at3 = HIST_PTR + 12288 + (<usize>i32x4.extract_lane(ib, 2) << 2);
            store<u32>(at3, load<u32>(at3) + 1);
            k += 4;
            continue;
          }
        }
        if (k + 1 < end) {
          // Two values per step in f64x2 lanes (each lane the scalar f64 operation), then the sums in
          // element order from the lanes; the scalar step below takes pairs that are not finite or grow R.
          const xv2 = f64x2.promote_low_f32x4(v128.load64_zero(rowX + (<usize>k << 2)));
          const yv2 = f64x2.promote_low_f32x4(v128.load64_zero(rowY + (<usize>k << 2)));
          const d = f64x2.sub(xv2, yv2);
          const a = f64x2.abs(d);
          const finite = v128.all_true<i64>(f64x2.eq(f64x2.sub(d, d), f64x2.splat(0)));
          if (finite && !v128.any_true(f64x2.gt(a, f64x2.splat(halfRange)))) {
            const d2 = f64x2.mul(d, d);
            const xx = f64x2.mul(xv2, xv2);
            const yy = f64x2.mul(yv2, yv2);
            const xy = f64x2.mul(xv2, yv2);
            sumA = f64x2.add(sumA, i8x16.shuffle(d2, xx, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
            sumA = f64x2.add(sumA, i8x16.shuffle(d2, xx, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
            sumB = f64x2.add(sumB, i8x16.shuffle(yy, xy, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23));
            sumB = f64x2.add(sumB, i8x16.shuffle(yy, xy, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31));
            cell += f64x2.extract_lane(d2, 0);
            cell += f64x2.extract_lane(d2, 1);
            // max of finite non-negative values: any order gives the same value
            maxPair = f64x2.max(maxPair, a);
            zeros += <i32>popcnt<i32>(i64x2.bitmask(f64x2.eq(d, f64x2.splat(0))));
            const index = i32x4.min_s(i32x4.trunc_sat_f64x2_s_zero(f64x2.sub(f64x2.splat(<f64>FINE_PER_SIDE), f64x2.mul(d, f64x2.splat(scale)))), i32x4.splat(FINE_BINS - 1));
            const at0 = HIST_PTR + (<usize>(k & 3) << 12) + (<usize>i32x4.extract_lane(index, 0) << 2);
            store<u32>(at0, load<u32>(at0) + 1);
            const at1 = HIST_PTR + (<usize>((k + 1) & 3) << 12) + (<usize>i32x4.extract_lane(index, 1) << 2);
            store<u32>(at1, load<u32>(at1) + 1);
            k += 2;
            continue;
          }
        }
        const xv = <f64>load<f32>(rowX + (<usize>k << 2));
        const yv = <f64>load<f32>(rowY + (<usize>k << 2));
        const d = xv - yv;
        if (!isFinite<f64>(d)) {
          bad = r * cols + k;
          break;
        }
        const d2 = d * d;
        sumA = f64x2.add(sumA, f64x2.replace_lane(f64x2.splat(d2), 1, xv * xv));
        sumB = f64x2.add(sumB, f64x2.replace_lane(f64x2.splat(yv * yv), 1, xv * yv));
        const a = Math.abs(d);
        maxAbs = a > maxAbs ? a : maxAbs;
        cell += d2;
        zeros += <i32>(d == 0);
        if (a > halfRange) {
          foldHistogram(fine);
          growHistogram(fine, state, a);
          halfRange = load<f64>(state + S_HALF);
          scale = <f64>FINE_PER_SIDE / halfRange;
        }
        // e = y - x = -d goes to fine bin floor(F - d F / R); 0 <= F - d F / R <= 2F, so truncation is the
        // floor, and d = 0 lands in bin F (the centre) whatever R is. e = R is clamped into the last bin.
        let index = <i32>(<f64>FINE_PER_SIDE - d * scale);
        index = index > FINE_BINS - 1 ? FINE_BINS - 1 : index;
        const at = HIST_PTR + (<usize>(k & 3) << 12) + (<usize>index << 2);
        store<u32>(at, load<u32>(at) + 1);
        k += 1;
      }
      store<f64>(cellAt, cell);
      const countAt = cellCount + (<usize>(cellBase + band) << 3);
      store<f64>(countAt, load<f64>(countAt) + <f64>(end - c));
      if (bad >= 0) break;
      c = end;
    }
  }
  foldHistogram(fine);
  maxAbs = max<f64>(maxAbs, max<f64>(f64x2.extract_lane(maxPair, 0), f64x2.extract_lane(maxPair, 1)));
  zeros += <i32>(i64x2.extract_lane(zeroLanes, 0) + i64x2.extract_lane(zeroLanes, 1));
  store<f64>(state + S_SSE, f64x2.extract_lane(sumA, 0));
  store<f64>(state + S_SSX, f64x2.extract_lane(sumA, 1));
  store<f64>(state + S_SSY, f64x2.extract_lane(sumB, 0));
  store<f64>(state + S_SXY, f64x2.extract_lane(sumB, 1));
  store<f64>(state + S_MAX, maxAbs);
  store<f64>(state + S_ZEROS, load<f64>(state + S_ZEROS) + <f64>zeros);
  return bad;
}

// ---------------------------------------------------------------------------------------------
// Importance-matrix paths: ports of ggml-quants.c's quantize_row_<type>_impl with quant_weights (what
// llama-quantize --imatrix runs for a tensor that has an imatrix entry). One C step per f32 step in
// C's order; the scale searches run four groups in the four SIMD lanes (imMakeQkx3Quantsx4,
// imMakeQxQuantsx4), each lane the scalar steps; make_qp_quants and leftover blocks are scalar. `qw`
// points at n_per_row f32 importance weights, the same for every row (llama.cpp passes one row's worth).
// Rounding: nearest_int (ties to even) everywhere; scales and mins to f16 round-to-nearest-even; Q4_0 /
// Q5_0 levels from make_qx_quants (no truncation rule, unlike their _ref paths).

const IM_L_PTR: usize = memory.data(256);
const IM_LAUX_PTR: usize = memory.data(32);
const IM_W_PTR: usize = memory.data(32 * 4, 16);
const IM_SW_PTR: usize = memory.data(16 * 4, 16);
const IM_SCALES_PTR: usize = memory.data(16 * 4, 16);
const IM_MINS_PTR: usize = memory.data(16 * 4, 16);
const IM_LS_PTR: usize = memory.data(16);
const IM_LM_PTR: usize = memory.data(16);
/** make_qkx3_quants' *the_min. */
let imTheMin: f32 = 0;

@inline function fAt(p: usize, i: i32): f32 {
  return load<f32>(p + (<usize>i << 2));
}

/** make_qx_quants(n, nmax, x, L, rmse_type = 1, qw) with qw given: int8 L gets l + nmax; all-|x| < 1e-15 gives L = 0, scale 0. */
function imMakeQxQuants(n: i32, nmax: i32, x: usize, l: usize, qw: usize): f32 {
  let maxv: f32 = 0;
  let amax: f32 = 0;
  for (let i = 0; i < n; i++) {
    const ax = Mathf.abs(fAt(x, i));
    if (ax > amax) {
      amax = ax;
      maxv = fAt(x, i);
    }
  }
  if (amax < GROUP_MAX_EPS) {
    memory.fill(l, 0, <usize>n);
    return 0;
  }
  let iscale: f32 = <f32>(-nmax) / maxv;
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = fAt(x, i);
    const q = clampInt(nearestInt(iscale * xi), -nmax, nmax - 1);
    store<i8>(l + <usize>i, <i8>(q + nmax));
    const w = fAt(qw, i);
    sumlx += w * xi * <f32>q;
    suml2 += w * <f32>q * <f32>q;
  }
  let scale: f32 = suml2 != 0 ? sumlx / suml2 : <f32>0;
  let best: f32 = scale * sumlx;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = -(<f32>nmax + <f32>0.1 * <f32>is) / maxv;
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = fAt(x, i);
      const q = clampInt(nearestInt(iscale * xi), -nmax, nmax - 1);
      const w = fAt(qw, i);
      sumlx += w * xi * <f32>q;
      suml2 += w * <f32>q * <f32>q;
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (let i = 0; i < n; i++) {
        store<i8>(l + <usize>i, <i8>(nmax + clampInt(nearestInt(iscale * fAt(x, i)), -nmax, nmax - 1)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/** make_qkx3_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta, nstep, use_mad = false); the min in imTheMin. */
function imMakeQkx3Quants(n: i32, nmax: i32, x: usize, weights: usize, l: usize, laux: usize, rmin: f32, rdelta: f32, nstep: i32): f32 {
  let minv = fAt(x, 0);
  let maxv = fAt(x, 0);
  let sumW = fAt(weights, 0);
  let sumX = sumW * fAt(x, 0);
  for (let i = 1; i < n; i++) {
    const xi = fAt(x, i);
    if (xi < minv) minv = xi;
    if (xi > maxv) maxv = xi;
    const w = fAt(weights, i);
    sumW += w;
    sumX += w * xi;
  }
  if (minv > 0) minv = 0;
  if (maxv <= minv) {
    memory.fill(l, 0, <usize>n);
    imTheMin = -minv;
    return 0;
  }
  let iscale: f32 = <f32>nmax / (maxv - minv);
  let scale: f32 = <f32>1.0 / iscale;
  let bestMad: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = fAt(x, i);
    const q = clampInt(nearestInt(iscale * (xi - minv)), 0, nmax);
    store<u8>(l + <usize>i, <u8>q);
    let diff: f32 = scale * <f32>q + minv - xi;
    diff = diff * diff;
    bestMad += fAt(weights, i) * diff;
  }
  for (let is = 0; is <= nstep; is++) {
    // `minv` (and so the range) may already be a better this_min here, as in C
    iscale = (rmin + rdelta * <f32>is + <f32>nmax) / (maxv - minv);
    let sumL: f32 = 0;
    let sumL2: f32 = 0;
    let sumXL: f32 = 0;
    for (let i = 0; i < n; i++) {
      const xi = fAt(x, i);
      const q = clampInt(nearestInt(iscale * (xi - minv)), 0, nmax);
      store<u8>(laux + <usize>i, <u8>q);
      const w = fAt(weights, i);
      sumL += w * <f32>q;
      sumL2 += w * <f32>q * <f32>q;
      sumXL += w * <f32>q * xi;
    }
    const D: f32 = sumW * sumL2 - sumL * sumL;
    if (D > 0) {
      let thisScale: f32 = (sumW * sumXL - sumX * sumL) / D;
      let thisMin: f32 = (sumL2 * sumX - sumL * sumXL) / D;
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = sumXL / sumL2;
      }
      let mad: f32 = 0;
      for (let i = 0; i < n; i++) {
        let diff: f32 = thisScale * <f32>load<u8>(laux + <usize>i) + thisMin - fAt(x, i);
        diff = diff * diff;
        mad += fAt(weights, i) * diff;
      }
      if (mad < bestMad) {
        memory.copy(l, laux, <usize>n);
        bestMad = mad;
        scale = thisScale;
        minv = thisMin;
      }
    }
  }
  imTheMin = -minv;
  return scale;
}

/**
 * imMakeQkx3Quants for four groups of n at once, one group per SIMD lane (values side by side in XT_PTR,
 * weights in WT_PTR, as makeQkx2Quantsx4; make_qkx3_quants with weights is make_qkx2_quants with rdelta
 * as a parameter). Every lane does the scalar function's f32 operations in C's order (sums sequential over
 * i within a lane; a lane's min changes only when its own step wins); branches are per-lane selects; the one
 * shortcut is exact: when no lane's levels changed since the previous step, its sums, candidate and error
 * are the previous step's, which cannot beat the best. Writes L (0..nmax) at l, l + n, ..., the scales at
 * scales[0..3] and C's the_min (= -min) at mins[0..3].
 */
function imMakeQkx3Quantsx4(n: i32, nmax: i32, l: usize, rmin: f32, rdelta: f32, nstep: i32, scales: usize, mins: usize): void {
  const x0 = v128.load(XT_PTR);
  let vmin = x0;
  let vmax = x0;
  let sumW = v128.load(WT_PTR);
  let sumX = f32x4.mul(sumW, x0);
  for (let i = 1; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    vmin = v128.bitselect(xi, vmin, f32x4.lt(xi, vmin));
    vmax = v128.bitselect(xi, vmax, f32x4.gt(xi, vmax));
    const wi = v128.load(WT_PTR + (<usize>i << 4));
    sumW = f32x4.add(sumW, wi);
    sumX = f32x4.add(sumX, f32x4.mul(wi, xi));
  }
  const zero = f32x4.splat(0);
  vmin = v128.bitselect(zero, vmin, f32x4.gt(vmin, zero));
  // lanes with max <= min (max == min once min <= 0) return at once in C: L = 0, scale 0
  const flat = f32x4.le(vmax, vmin);
  const live = v128.not(flat);
  let iscale = f32x4.div(f32x4.splat(<f32>nmax), f32x4.sub(vmax, vmin));
  let scale = f32x4.div(f32x4.splat(1), iscale);
  let bestMad = zero;
  for (let i = 0; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    const li = clamp4(nearestInt4(f32x4.mul(iscale, f32x4.sub(xi, vmin))), 0, nmax);
    v128.store(BEST_LT_PTR + (<usize>i << 4), li);
    let diff = f32x4.sub(f32x4.add(f32x4.mul(scale, f32x4.convert_i32x4_s(li)), vmin), xi);
    diff = f32x4.mul(diff, diff);
    bestMad = f32x4.add(bestMad, f32x4.mul(v128.load(WT_PTR + (<usize>i << 4)), diff));
  }
  for (let is = 0; is <= nstep; is++) {
    iscale = f32x4.div(f32x4.splat(rmin + rdelta * <f32>is + <f32>nmax), f32x4.sub(vmax, vmin));
    let changed = is == 0 ? i32x4.splat(-1) : i32x4.splat(0);
    for (let i = 0; i < n; i++) {
      const xi = v128.load(XT_PTR + (<usize>i << 4));
      const li = clamp4(nearestInt4(f32x4.mul(iscale, f32x4.sub(xi, vmin))), 0, nmax);
      const p = LT_PTR + (<usize>i << 4);
      changed = v128.or(changed, v128.xor(li, v128.load(p)));
      v128.store(p, li);
    }
    if (!v128.any_true(v128.and(changed, live))) continue;
    let sumL = zero;
    let sumL2 = zero;
    let sumXL = zero;
    for (let i = 0; i < n; i++) {
      const lf = f32x4.convert_i32x4_s(v128.load(LT_PTR + (<usize>i << 4)));
      const wl = f32x4.mul(v128.load(WT_PTR + (<usize>i << 4)), lf);
      sumL = f32x4.add(sumL, wl);
      sumL2 = f32x4.add(sumL2, f32x4.mul(wl, lf));
      sumXL = f32x4.add(sumXL, f32x4.mul(wl, v128.load(XT_PTR + (<usize>i << 4))));
    }
    const D = f32x4.sub(f32x4.mul(sumW, sumL2), f32x4.mul(sumL, sumL));
    const positive = v128.and(f32x4.gt(D, zero), live);
    if (!v128.any_true(positive)) continue;
    let thisScale = f32x4.div(f32x4.sub(f32x4.mul(sumW, sumXL), f32x4.mul(sumX, sumL)), D);
    let thisMin = f32x4.div(f32x4.sub(f32x4.mul(sumL2, sumX), f32x4.mul(sumL, sumXL)), D);
    const minAbove = f32x4.gt(thisMin, zero);
    thisMin = v128.bitselect(zero, thisMin, minAbove);
    thisScale = v128.bitselect(f32x4.div(sumXL, sumL2), thisScale, minAbove);
    let mad = zero;
    for (let i = 0; i < n; i++) {
      const lf = f32x4.convert_i32x4_s(v128.load(LT_PTR + (<usize>i << 4)));
      let diff = f32x4.sub(f32x4.add(f32x4.mul(thisScale, lf), thisMin), v128.load(XT_PTR + (<usize>i << 4)));
      diff = f32x4.mul(diff, diff);
      mad = f32x4.add(mad, f32x4.mul(v128.load(WT_PTR + (<usize>i << 4)), diff));
    }
    const take = v128.and(positive, f32x4.lt(mad, bestMad));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < n; i++) {
      const p = BEST_LT_PTR + (<usize>i << 4);
      v128.store(p, v128.bitselect(v128.load(LT_PTR + (<usize>i << 4)), v128.load(p), take));
    }
    bestMad = v128.bitselect(mad, bestMad, take);
    scale = v128.bitselect(thisScale, scale, take);
    vmin = v128.bitselect(thisMin, vmin, take);
  }
  v128.store(scales, v128.bitselect(zero, scale, flat));
  v128.store(mins, f32x4.neg(vmin));
  v128.store(MASK_PTR, flat);
  for (let k = 0; k < 4; k++) {
    const laneFlat = load<i32>(MASK_PTR + (<usize>k << 2)) != 0;
    const g = l + <usize>(k * n);
    for (let i = 0; i < n; i++) {
      store<u8>(g + <usize>i, laneFlat ? 0 : <u8>load<i32>(BEST_LT_PTR + (<usize>i << 4) + (<usize>k << 2)));
    }
  }
}

/**
 * Four groups of n values (group k at x + k * n * 4) side by side in XT_PTR, their weights
 * qw_i * sqrtf(sigma2 + x_i^2) side by side in WT_PTR, and each group's weight sum (in order) at sw[0..3].
 */
function imTranspose4Weighted(x: usize, qw: usize, n: i32, sigma2: f32, sw: usize): void {
  transpose4(x, n, <usize>n << 2);
  for (let k = 0; k < 4; k++) {
    const g = x + <usize>(k * n * 4);
    const q = qw + <usize>(k * n * 4);
    let sumw: f32 = 0;
    for (let i = 0; i < n; i++) {
      const v = fAt(g, i);
      const w: f32 = fAt(q, i) * Mathf.sqrt(sigma2 + v * v);
      store<f32>(WT_PTR + (<usize>i << 4) + (<usize>k << 2), w);
      sumw += w;
    }
    store<f32>(sw + (<usize>k << 2), sumw);
  }
}

/**
 * imMakeQxQuants for four groups of n at once, one group per SIMD lane (values in XT_PTR, weights in WT_PTR,
 * side by side): each lane does the scalar function's f32 steps in C's order; branches are per-lane selects;
 * a candidate whose levels equal the previous candidate's in every lane is skipped (same sums, so the same
 * decision and the same result). Writes int8 L (l + nmax; 0 for an all-|x| < 1e-15 group) at l, l + n, ...
 * and the scales at scales[0..3].
 */
function imMakeQxQuantsx4(n: i32, nmax: i32, l: usize, scales: usize): void {
  let max = f32x4.splat(0);
  let amax = f32x4.splat(0);
  for (let i = 0; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    const ax = f32x4.abs(xi);
    const bigger = f32x4.gt(ax, amax);
    amax = v128.bitselect(ax, amax, bigger);
    max = v128.bitselect(xi, max, bigger);
  }
  const lo = -nmax;
  const hi = nmax - 1;
  let iscale = f32x4.div(f32x4.splat(<f32>(-nmax)), max);
  let sumlx = f32x4.splat(0);
  let suml2 = f32x4.splat(0);
  for (let i = 0; i < n; i++) {
    const xi = v128.load(XT_PTR + (<usize>i << 4));
    const w = v128.load(WT_PTR + (<usize>i << 4));
    const li = clamp4(nearestInt4(f32x4.mul(iscale, xi)), lo, hi);
    v128.store(BEST_LT_PTR + (<usize>i << 4), li);
    v128.store(PREV_LT_PTR + (<usize>i << 4), li);
    const lf = f32x4.convert_i32x4_s(li);
    sumlx = f32x4.add(sumlx, f32x4.mul(f32x4.mul(w, xi), lf));
    suml2 = f32x4.add(suml2, f32x4.mul(f32x4.mul(w, lf), lf));
  }
  // scale = suml2 != 0 ? sumlx / suml2 : 0
  let scale = v128.and(f32x4.div(sumlx, suml2), f32x4.ne(suml2, f32x4.splat(0)));
  let best = f32x4.mul(scale, sumlx);
  const fnmax = <f32>nmax;
  for (let is = -9; is <= 9; is++) {
    if (is == 0) continue;
    iscale = f32x4.div(f32x4.splat(-(fnmax + <f32>0.1 * <f32>is)), max);
    let changed = i32x4.splat(0);
    for (let i = 0; i < n; i++) {
      const xi = v128.load(XT_PTR + (<usize>i << 4));
      const li = clamp4(nearestInt4(f32x4.mul(iscale, xi)), lo, hi);
      const p = PREV_LT_PTR + (<usize>i << 4);
      changed = v128.or(changed, v128.xor(li, v128.load(p)));
      v128.store(LT_PTR + (<usize>i << 4), li);
      v128.store(p, li);
    }
    if (!v128.any_true(changed)) continue;
    let lx = f32x4.splat(0);
    let l2 = f32x4.splat(0);
    for (let i = 0; i < n; i++) {
      const xi = v128.load(XT_PTR + (<usize>i << 4));
      const w = v128.load(WT_PTR + (<usize>i << 4));
      const lf = f32x4.convert_i32x4_s(v128.load(LT_PTR + (<usize>i << 4)));
      lx = f32x4.add(lx, f32x4.mul(f32x4.mul(w, xi), lf));
      l2 = f32x4.add(l2, f32x4.mul(f32x4.mul(w, lf), lf));
    }
    const take = v128.and(f32x4.gt(l2, f32x4.splat(0)), f32x4.gt(f32x4.mul(lx, lx), f32x4.mul(best, l2)));
    if (!v128.any_true(take)) continue;
    for (let i = 0; i < n; i++) {
      const p = BEST_LT_PTR + (<usize>i << 4);
      v128.store(p, v128.bitselect(v128.load(LT_PTR + (<usize>i << 4)), v128.load(p), take));
    }
    const newScale = f32x4.div(lx, l2);
    scale = v128.bitselect(newScale, scale, take);
    best = v128.bitselect(f32x4.mul(newScale, lx), best, take);
  }
  const zero = f32x4.lt(amax, f32x4.splat(GROUP_MAX_EPS));
  v128.store(scales, v128.bitselect(f32x4.splat(0), scale, zero));
  v128.store(MASK_PTR, zero);
  for (let k = 0; k < 4; k++) {
    const laneZero = load<i32>(MASK_PTR + (<usize>k << 2)) != 0;
    const g = l + <usize>(k * n);
    for (let i = 0; i < n; i++) {
      const li = load<i32>(BEST_LT_PTR + (<usize>i << 4) + (<usize>k << 2));
      store<i8>(g + <usize>i, laneZero ? 0 : <i8>(li + nmax));
    }
  }
}

/** Four groups of n importance weights (group k at qw + k * n * 4) side by side in WT_PTR, as they are. */
function imTranspose4Raw(qw: usize, n: i32): void {
  for (let k = 0; k < 4; k++) {
    const q = qw + <usize>(k * n * 4);
    for (let i = 0; i < n; i++) store<f32>(WT_PTR + (<usize>i << 4) + (<usize>k << 2), fAt(q, i));
  }
}

/** make_qp_quants(n, nmax, x, L, quant_weights): non-negative scales on an nmax grid, uint8 L (C's wrap kept). */
function imMakeQpQuants(n: i32, nmax: i32, x: usize, l: usize, qw: usize): f32 {
  let maxv: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = fAt(x, i);
    maxv = maxv > xi ? maxv : xi;
  }
  if (maxv < GROUP_MAX_EPS) {
    memory.fill(l, 0, <usize>n);
    return 0;
  }
  let iscale: f32 = <f32>nmax / maxv;
  for (let i = 0; i < n; i++) store<u8>(l + <usize>i, <u8>nearestInt(iscale * fAt(x, i)));
  const scale: f32 = <f32>1.0 / iscale;
  let bestMse: f32 = 0;
  for (let i = 0; i < n; i++) {
    const diff: f32 = fAt(x, i) - scale * <f32>load<u8>(l + <usize>i);
    bestMse += fAt(qw, i) * diff * diff;
  }
  for (let is = -4; is <= 4; is++) {
    if (is == 0) continue;
    const iscaleIs: f32 = (<f32>0.1 * <f32>is + <f32>nmax) / maxv;
    const scaleIs: f32 = <f32>1.0 / iscaleIs;
    let mse: f32 = 0;
    for (let i = 0; i < n; i++) {
      const q = min<i32>(nmax, nearestInt(iscaleIs * fAt(x, i)));
      const diff: f32 = fAt(x, i) - scaleIs * <f32>q;
      mse += fAt(qw, i) * diff * diff;
    }
    if (mse < bestMse) {
      bestMse = mse;
      iscale = iscaleIs;
    }
  }
  let sumlx: f32 = 0;
  let suml2: f32 = 0;
  for (let i = 0; i < n; i++) {
    const xi = fAt(x, i);
    const q = min<i32>(nmax, nearestInt(iscale * xi));
    store<u8>(l + <usize>i, <u8>q);
    const w = fAt(qw, i);
    sumlx += w * xi * <f32>q;
    suml2 += w * <f32>q * <f32>q;
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const w = fAt(qw, i);
      const xi = fAt(x, i);
      const li = <f32>load<u8>(l + <usize>i);
      let slx: f32 = sumlx - w * xi * li;
      let sl2: f32 = suml2 - w * li * li;
      if (slx > 0 && sl2 > 0) {
        const newL = min<i32>(nmax, nearestInt(xi * sl2 / slx));
        if (newL != <i32>load<u8>(l + <usize>i)) {
          slx += w * xi * <f32>newL;
          sl2 += w * <f32>newL * <f32>newL;
          if (slx * slx * suml2 > sumlx * sumlx * sl2) {
            store<u8>(l + <usize>i, <u8>newL);
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (nChanged == 0) break;
  }
  return suml2 > 0 ? sumlx / suml2 : <f32>0;
}

/** sum of x^2 over n values in order (every row / super-block statistic of the _impl paths). */
@inline function imSumX2(x: usize, n: i32): f32 {
  let s: f32 = 0;
  for (let j = 0; j < n; j++) {
    const v = fAt(x, j);
    s += v * v;
  }
  return s;
}

/** weight_l = qw_l * sqrtf(sigma2 + x_l^2) for n values into IM_W_PTR; returns their sum in order. */
@inline function imBlockWeights(x: usize, qw: usize, n: i32, sigma2: f32): f32 {
  let sumw: f32 = 0;
  for (let l = 0; l < n; l++) {
    const v = fAt(x, l);
    const w: f32 = fAt(qw, l) * Mathf.sqrt(sigma2 + v * v);
    store<f32>(IM_W_PTR + (<usize>l << 2), w);
    sumw += w;
  }
  return sumw;
}

/** quantize_row_q4_0/q4_1/q5_0/q5_1_impl for one row: sigma2 = sum x^2 / n_per_row over the whole row. */
function imRow32(kind: i32, x: usize, o: usize, nPerRow: i32, qw: usize): void {
  const sigma2: f32 = imSumX2(x, nPerRow) / <f32>nPerRow;
  const nb = nPerRow / 32;
  const blockBytes: usize = kind == 0 ? 18 : kind == 1 ? 20 : kind == 2 ? 22 : 24;
  // four blocks per SIMD pass (imMakeQkx3Quantsx4 / imMakeQxQuantsx4, C's scalar steps in each lane); the rest one by one
  // Q4_0 / Q5_0 likewise with imMakeQxQuantsx4
  const nbx4 = nb & ~3;
  for (let ib = 0; ib < nbx4; ib += 4) {
    imTranspose4Weighted(x + <usize>ib * 128, qw + <usize>ib * 128, 32, sigma2, IM_SW_PTR);
    if (kind == 1 || kind == 3) {
      imMakeQkx3Quantsx4(32, kind == 1 ? 15 : 31, IM_L_PTR, <f32>-0.9, <f32>0.05, 36, IM_SCALES_PTR, IM_MINS_PTR);
    } else {
      imMakeQxQuantsx4(32, kind == 0 ? 8 : 16, IM_L_PTR, IM_SCALES_PTR);
    }
    for (let k = 0; k < 4; k++) {
      const y = o + <usize>(ib + k) * blockBytes;
      storeF16(y, fAt(IM_SCALES_PTR, k));
      if (kind == 1 || kind == 3) {
        storeF16(y + 2, -fAt(IM_MINS_PTR, k));
        imPackQ41Q51(kind, y, IM_L_PTR + <usize>k * 32);
      } else {
        imPackQ40Q50(kind, y, IM_L_PTR + <usize>k * 32);
      }
    }
  }
  for (let ib = nbx4; ib < nb; ib++) {
    const xb = x + <usize>ib * 128;
    const y = o + <usize>ib * blockBytes;
    imBlockWeights(xb, qw + <usize>ib * 128, 32, sigma2);
    if (kind == 0 || kind == 2) {
      const d = imMakeQxQuants(32, kind == 0 ? 8 : 16, xb, IM_L_PTR, IM_W_PTR);
      storeF16(y, d);
      imPackQ40Q50(kind, y, IM_L_PTR);
    } else {
      const d = imMakeQkx3Quants(32, kind == 1 ? 15 : 31, xb, IM_W_PTR, IM_L_PTR, IM_LAUX_PTR, <f32>-0.9, <f32>0.05, 36);
      storeF16(y, d);
      storeF16(y + 2, -imTheMin);
      imPackQ41Q51(kind, y, IM_L_PTR);
    }
  }
}

/** The 32 levels at l into a Q4_0 (qs at 2) or Q5_0 (qh at 2, qs at 6) block at y. */
function imPackQ40Q50(kind: i32, y: usize, l: usize): void {
  if (kind == 0) {
    for (let j = 0; j < 16; j++) {
      store<u8>(y + 2 + <usize>j, <u8>(<i32>load<u8>(l + <usize>j) | (<i32>load<u8>(l + <usize>(j + 16)) << 4)));
    }
    return;
  }
  let qh: u32 = 0;
  for (let j = 0; j < 16; j++) {
    const a = <u32>load<u8>(l + <usize>j);
    const b = <u32>load<u8>(l + <usize>(j + 16));
    store<u8>(y + 6 + <usize>j, <u8>((a & 0x0f) | ((b & 0x0f) << 4)));
    qh |= ((a & 0x10) >> 4) << <u32>j;
    qh |= ((b & 0x10) >> 4) << <u32>(j + 16);
  }
  store<u32>(y + 2, qh);
}

/** The 32 levels at l into a Q4_1 (qs at 4) or Q5_1 (qh at 4, qs at 8) block at y. */
function imPackQ41Q51(kind: i32, y: usize, l: usize): void {
  if (kind == 1) {
    for (let j = 0; j < 16; j++) {
      store<u8>(y + 4 + <usize>j, <u8>(<i32>load<u8>(l + <usize>j) | (<i32>load<u8>(l + <usize>(j + 16)) << 4)));
    }
    return;
  }
  let qh: u32 = 0;
  for (let j = 0; j < 16; j++) {
    const a = <u32>load<u8>(l + <usize>j);
    const b = <u32>load<u8>(l + <usize>(j + 16));
    store<u8>(y + 8 + <usize>j, <u8>((a & 0x0f) | ((b & 0x0f) << 4)));
    qh |= ((a & 0x10) >> 4) << <u32>j;
    qh |= ((b & 0x10) >> 4) << <u32>(j + 16);
  }
  store<u32>(y + 4, qh);
}

/** Packs 256 2-bit levels (L at IM_L_PTR) as Q2_K / Q3_K qs: byte j/4 + l holds L[j+l], L[j+l+32] << 2, ... */
@inline function imPack2Bit(qs: usize): void {
  for (let j = 0; j < 256; j += 128) {
    for (let k = 0; k < 32; k++) {
      const p = IM_L_PTR + <usize>(j + k);
      store<u8>(qs + <usize>(j / 4 + k), <u8>(<i32>load<u8>(p) | (<i32>load<u8>(p + 32) << 2) | (<i32>load<u8>(p + 64) << 4) | (<i32>load<u8>(p + 96) << 6)));
    }
  }
}

/**
 * quantize_row_q2_K_impl, one super-block (84 bytes: scales[16], qs[64], f16 d, f16 dmin). sigma2 =
 * sum x^2 / 256 of the super-block; per 16: make_qkx3_quants(nmax 3, rmin -0.9, rdelta 0.05, 36 steps,
 * squared error); 4-bit scales and mins by make_qp_quants(nmax 15, weights = the groups' weight sums);
 * d, dmin f16 (RNE); levels re-quantized as nearest_int((x + m) / d) clamped to 0..3.
 */
function imSuperQ2_K(x: usize, y: usize, qw: usize): void {
  const sigma2: f32 = imSumX2(x, 256) / <f32>256.0;
  // four groups of 16 per pass, one per SIMD lane (imMakeQkx3Quantsx4: the scalar steps in each lane)
  for (let q = 0; q < 4; q++) {
    imTranspose4Weighted(x + <usize>q * 256, qw + <usize>q * 256, 16, sigma2, IM_SW_PTR + <usize>q * 16);
    imMakeQkx3Quantsx4(16, 3, IM_L_PTR + <usize>q * 64, <f32>-0.9, <f32>0.05, 36, IM_SCALES_PTR + <usize>q * 16, IM_MINS_PTR + <usize>q * 16);
  }
  const dm = storeF16(y + 80, imMakeQpQuants(16, 15, IM_SCALES_PTR, IM_LS_PTR, IM_SW_PTR));
  const mm = storeF16(y + 82, imMakeQpQuants(16, 15, IM_MINS_PTR, IM_LM_PTR, IM_SW_PTR));
  for (let j = 0; j < 16; j++) {
    store<u8>(y + <usize>j, <u8>(<i32>load<u8>(IM_LS_PTR + <usize>j) | (<i32>load<u8>(IM_LM_PTR + <usize>j) << 4)));
  }
  for (let j = 0; j < 16; j++) {
    const sc = <i32>load<u8>(y + <usize>j);
    const d: f32 = dm * <f32>(sc & 0xf);
    if (d == 0) continue;
    const m: f32 = mm * <f32>(sc >> 4);
    const g = x + <usize>j * 64;
    for (let ii = 0; ii < 16; ii++) {
      store<u8>(IM_L_PTR + <usize>(16 * j + ii), <u8>clampInt(nearestInt((fAt(g, ii) + m) / d), 0, 3));
    }
  }
  imPack2Bit(y + 16);
}

/**
 * quantize_row_q3_K_impl, one super-block (110 bytes: hmask[32], qs[64], scales[12], f16 d). sigma2 =
 * 2 sum x^2 / 256; per 16: make_qx_quants(nmax 4, weights); 6-bit scales by make_qx_quants(nmax 32,
 * weights = group sums); d f16 (RNE); levels nearest_int(x / d) clamped to -4..3.
 */
function imSuperQ3_K(x: usize, y: usize, qw: usize): void {
  const sigma2: f32 = (<f32>2.0 * imSumX2(x, 256)) / <f32>256.0;
  for (let q = 0; q < 4; q++) {
    imTranspose4Weighted(x + <usize>q * 256, qw + <usize>q * 256, 16, sigma2, IM_SW_PTR + <usize>q * 16);
    imMakeQxQuantsx4(16, 4, IM_L_PTR + <usize>q * 64, IM_SCALES_PTR + <usize>q * 16);
  }
  const s = y + 96;
  memory.fill(s, 0, 12);
  const dBlock = imMakeQxQuants(16, 32, IM_SCALES_PTR, IM_LS_PTR, IM_SW_PTR);
  for (let j = 0; j < 16; j++) {
    let l = <i32>load<i8>(IM_LS_PTR + <usize>j);
    if (j < 8) store<u8>(s + <usize>j, <u8>(l & 0xf));
    else store<u8>(s + <usize>(j - 8), <u8>(<i32>load<u8>(s + <usize>(j - 8)) | ((l & 0xf) << 4)));
    l >>= 4;
    const at = s + <usize>(j % 4 + 8);
    store<u8>(at, <u8>(<i32>load<u8>(at) | (l << (2 * (j / 4)))));
  }
  const dStored = storeF16(y + 108, dBlock);
  for (let j = 0; j < 16; j++) {
    let sc: i32 = j < 8 ? <i32>load<u8>(s + <usize>j) & 0xf : <i32>load<u8>(s + <usize>(j - 8)) >> 4;
    sc = <i32><i8>((sc | (((<i32>load<u8>(s + <usize>(8 + (j % 4))) >> (2 * (j / 4))) & 3) << 4)) - 32);
    const d: f32 = dStored * <f32>sc;
    if (d == 0) continue;
    const g = x + <usize>j * 64;
    for (let ii = 0; ii < 16; ii++) {
      store<i8>(IM_L_PTR + <usize>(16 * j + ii), <i8>(clampInt(nearestInt(fAt(g, ii) / d), -4, 3) + 4));
    }
  }
  memory.fill(y, 0, 32);
  let m = 0;
  let hm: i32 = 1;
  for (let j = 0; j < 256; j++) {
    const p = IM_L_PTR + <usize>j;
    if (<i32>load<i8>(p) > 3) {
      store<u8>(y + <usize>m, <u8>(<i32>load<u8>(y + <usize>m) | hm));
      store<i8>(p, <i8>(<i32>load<i8>(p) - 4));
    }
    if (++m == 32) {
      m = 0;
      hm <<= 1;
    }
  }
  imPack2Bit(y + 32);
}

/**
 * quantize_row_q4_K_impl / q5_K_impl, one super-block's scales (Q4_K 144 bytes: f16 d, f16 dmin,
 * scales[12], qs[128]; Q5_K 176: d, dmin, scales[12], qh[32], qs[128]). sigma2 = 2 sum x^2 / 256; per 32:
 * make_qkx3_quants(nmax 15 / 31, rmin -0.9, rdelta 0.05, 36 steps); 6-bit scales and mins by
 * make_qp_quants(nmax 63, weights = group sums) (Q5_K clamps them to 63); d, dmin f16 (RNE); levels
 * nearest_int((x + dm) / d) clamped to 0..nmax into IM_L_PTR.
 */
function imSuperQ45_K(x: usize, y: usize, qw: usize, nmax: i32): void {
  const sigma2: f32 = (<f32>2.0 * imSumX2(x, 256)) / <f32>256.0;
  for (let q = 0; q < 2; q++) {
    imTranspose4Weighted(x + <usize>q * 512, qw + <usize>q * 512, 32, sigma2, IM_SW_PTR + <usize>q * 16);
    imMakeQkx3Quantsx4(32, nmax, IM_L_PTR + <usize>q * 128, <f32>-0.9, <f32>0.05, 36, IM_SCALES_PTR + <usize>q * 16, IM_MINS_PTR + <usize>q * 16);
  }
  const dBlock = imMakeQpQuants(8, 63, IM_SCALES_PTR, IM_LS_PTR, IM_SW_PTR);
  const mBlock = imMakeQpQuants(8, 63, IM_MINS_PTR, IM_LM_PTR, IM_SW_PTR);
  const s = y + 4;
  for (let j = 0; j < 8; j++) {
    let ls = <i32>load<u8>(IM_LS_PTR + <usize>j);
    let lm = <i32>load<u8>(IM_LM_PTR + <usize>j);
    if (nmax == 31) {
      ls = min<i32>(63, ls);
      lm = min<i32>(63, lm);
    }
    if (j < 4) {
      store<u8>(s + <usize>j, <u8>ls);
      store<u8>(s + <usize>(j + 4), <u8>lm);
    } else {
      store<u8>(s + <usize>(j + 4), <u8>((ls & 0xf) | ((lm & 0xf) << 4)));
      store<u8>(s + <usize>(j - 4), <u8>(<i32>load<u8>(s + <usize>(j - 4)) | ((ls >> 4) << 6)));
      store<u8>(s + <usize>j, <u8>(<i32>load<u8>(s + <usize>j) | ((lm >> 4) << 6)));
    }
  }
  const dStored = storeF16(y, dBlock);
  const dminStored = storeF16(y + 2, mBlock);
  for (let j = 0; j < 8; j++) {
    let sc: i32;
    let m: i32;
    if (j < 4) {
      sc = <i32>load<u8>(s + <usize>j) & 63;
      m = <i32>load<u8>(s + <usize>(j + 4)) & 63;
    } else {
      sc = (<i32>load<u8>(s + <usize>(j + 4)) & 0xf) | ((<i32>load<u8>(s + <usize>(j - 4)) >> 6) << 4);
      m = (<i32>load<u8>(s + <usize>(j + 4)) >> 4) | ((<i32>load<u8>(s + <usize>j) >> 6) << 4);
    }
    const d: f32 = dStored * <f32>sc;
    if (d == 0) continue;
    const dm: f32 = dminStored * <f32>m;
    const g = x + <usize>j * 128;
    for (let ii = 0; ii < 32; ii++) {
      store<u8>(IM_L_PTR + <usize>(32 * j + ii), <u8>clampInt(nearestInt((fAt(g, ii) + dm) / d), 0, nmax));
    }
  }
}

function imSuperQ4_K(x: usize, y: usize, qw: usize): void {
  imSuperQ45_K(x, y, qw, 15);
  let q = y + 16;
  for (let j = 0; j < 256; j += 64) {
    for (let k = 0; k < 32; k++) {
      const p = IM_L_PTR + <usize>(j + k);
      store<u8>(q + <usize>k, <u8>(<i32>load<u8>(p) | (<i32>load<u8>(p + 32) << 4)));
    }
    q += 32;
  }
}

function imSuperQ5_K(x: usize, y: usize, qw: usize): void {
  imSuperQ45_K(x, y, qw, 31);
  const qh = y + 16;
  let ql = y + 48;
  memory.fill(qh, 0, 32);
  let m1: i32 = 1;
  let m2: i32 = 2;
  for (let n = 0; n < 256; n += 64) {
    for (let j = 0; j < 32; j++) {
      let l1 = <i32>load<u8>(IM_L_PTR + <usize>(n + j));
      if (l1 > 15) {
        l1 -= 16;
        store<u8>(qh + <usize>j, <u8>(<i32>load<u8>(qh + <usize>j) | m1));
      }
      let l2 = <i32>load<u8>(IM_L_PTR + <usize>(n + j + 32));
      if (l2 > 15) {
        l2 -= 16;
        store<u8>(qh + <usize>j, <u8>(<i32>load<u8>(qh + <usize>j) | m2));
      }
      store<u8>(ql + <usize>j, <u8>(l1 | (l2 << 4)));
    }
    m1 <<= 2;
    m2 <<= 2;
    ql += 32;
  }
}

/**
 * quantize_row_q6_K_impl, one super-block (210 bytes: ql[128], qh[64], int8 scales[16], f16 d): per 16
 * make_qx_quants(nmax 32, rmse_type 1) weighted by the importance weights as they are (no sigma2
 * term); then as the _ref path: scales MIN(127, nearest_int(-128/max_scale * s)), d = f16(1/iscale),
 * levels nearest_int(x / d) clamped to -32..31; all scales below 1e-15: a zero block.
 */
function imSuperQ6_K(x: usize, y: usize, qw: usize): void {
  let maxScale: f32 = 0;
  let maxAbsScale: f32 = 0;
  for (let q = 0; q < 4; q++) {
    transpose4(x + <usize>q * 256, 16, 64);
    imTranspose4Raw(qw + <usize>q * 256, 16);
    imMakeQxQuantsx4(16, 32, IM_L_PTR + <usize>q * 64, IM_SCALES_PTR + <usize>q * 16);
  }
  for (let ib = 0; ib < 16; ib++) {
    const scale = fAt(IM_SCALES_PTR, ib);
    const a = Mathf.abs(scale);
    if (a > maxAbsScale) {
      maxAbsScale = a;
      maxScale = scale;
    }
  }
  if (maxAbsScale < GROUP_MAX_EPS) {
    memory.fill(y, 0, 210);
    return;
  }
  const iscale: f32 = <f32>-128.0 / maxScale;
  const dStored = storeF16(y + 208, <f32>1.0 / iscale);
  const s = y + 192;
  for (let ib = 0; ib < 16; ib++) {
    store<u8>(s + <usize>ib, <u8>min<i32>(127, nearestInt(iscale * fAt(IM_SCALES_PTR, ib))));
  }
  for (let j = 0; j < 16; j++) {
    const d: f32 = dStored * <f32>load<i8>(s + <usize>j);
    if (d == 0) continue;
    const g = x + <usize>j * 64;
    for (let ii = 0; ii < 16; ii++) {
      store<i8>(IM_L_PTR + <usize>(16 * j + ii), <i8>(clampInt(nearestInt(fAt(g, ii) / d), -32, 31) + 32));
    }
  }
  let ql = y;
  let qh = y + 128;
  for (let j = 0; j < 256; j += 128) {
    for (let k = 0; k < 32; k++) {
      const p = IM_L_PTR + <usize>(j + k);
      const l0 = <i32>load<u8>(p);
      const l1 = <i32>load<u8>(p + 32);
      const l2 = <i32>load<u8>(p + 64);
      const l3 = <i32>load<u8>(p + 96);
      store<u8>(ql + <usize>k, <u8>((l0 & 0xf) | ((l2 & 0xf) << 4)));
      store<u8>(ql + <usize>(k + 32), <u8>((l1 & 0xf) | ((l3 & 0xf) << 4)));
      store<u8>(qh + <usize>k, <u8>((l0 >> 4) | ((l1 >> 4) << 2) | ((l2 >> 4) << 4) | ((l3 >> 4) << 6)));
    }
    ql += 64;
    qh += 32;
  }
}

/**
 * quantize_<type>(src, dst, nrows, n_per_row, quant_weights) with quant_weights given: `nrows` rows of
 * `nPerRow` f32 at src, the row's `nPerRow` importance weights at qw, bytes to dst. kind: 0 Q4_0,
 * 1 Q4_1, 2 Q5_0, 3 Q5_1, 4 Q2_K, 5 Q3_K, 6 Q4_K, 7 Q5_K, 8 Q6_K (ggmlWasm.ts IMATRIX_KINDS).
 */
export function quantizeRowsImatrix(kind: i32, src: usize, dst: usize, nrows: i32, nPerRow: i32, qw: usize): void {
  const rowIn: usize = <usize>nPerRow << 2;
  if (kind < 4) {
    const blockBytes: usize = kind == 0 ? 18 : kind == 1 ? 20 : kind == 2 ? 22 : 24;
    const rowOut: usize = <usize>(nPerRow / 32) * blockBytes;
    for (let r = 0; r < nrows; r++) imRow32(kind, src + <usize>r * rowIn, dst + <usize>r * rowOut, nPerRow, qw);
    return;
  }
  const superBytes: usize = kind == 4 ? 84 : kind == 5 ? 110 : kind == 6 ? 144 : kind == 7 ? 176 : 210;
  const nb = nPerRow / 256;
  const rowOut: usize = <usize>nb * superBytes;
  for (let r = 0; r < nrows; r++) {
    const x = src + <usize>r * rowIn;
    const o = dst + <usize>r * rowOut;
    for (let i = 0; i < nb; i++) {
      const xs = x + <usize>i * 1024;
      const ys = o + <usize>i * superBytes;
      const ws = qw + <usize>i * 1024;
      if (kind == 4) imSuperQ2_K(xs, ys, ws);
      else if (kind == 5) imSuperQ3_K(xs, ys, ws);
      else if (kind == 6) imSuperQ4_K(xs, ys, ws);
      else if (kind == 7) imSuperQ5_K(xs, ys, ws);
      else imSuperQ6_K(xs, ys, ws);
    }
  }
}
