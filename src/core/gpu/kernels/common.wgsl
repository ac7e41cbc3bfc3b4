// Helpers shared by the quantize kernels (prepended to each of them by kernels.ts).
// Every float operation here is an f32 operation whose WGSL accuracy is "correctly rounded"
// (+, -, *, comparisons), or integer arithmetic; division, which WGSL allows to be off by 2.5 ULP,
// is done by `div_rn` in integers so the results equal C's IEEE division bit for bit.

// Reading a value through an XOR with a uniform zero hides from the compiler that it is a product,
// so `x*id + 8.5` is not contracted into a fused multiply-add (C rounds the product first).
fn opaque(v: f32, zero: u32) -> f32 {
  return bitcast<f32>(bitcast<u32>(v) ^ zero);
}

// 1 for NaN or +-Inf (bit test: `x != x` may be folded away by a fast-math compiler).
fn is_non_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// a / b rounded to nearest, ties to even, for normal finite a (or zero) and normal finite b != 0.
// Long division of the 24-bit significands; a subnormal result is flushed to signed zero.
fn div_rn(a: f32, b: f32) -> f32 {
  let ua = bitcast<u32>(a);
  let ub = bitcast<u32>(b);
  let sign = (ua ^ ub) & 0x80000000u;
  let ea = i32((ua >> 23u) & 0xffu);
  let eb = i32((ub >> 23u) & 0xffu);
  if (ea == 0) { return bitcast<f32>(sign); }
  let mb = (ub & 0x7fffffu) | 0x800000u;
  var r = (ua & 0x7fffffu) | 0x800000u;
  var e = ea - eb + 127;
  if (r < mb) { r = r << 1u; e = e - 1; }
  var q = 0u;
  for (var i = 0; i < 24; i = i + 1) {
    q = q << 1u;
    if (r >= mb) { r = r - mb; q = q | 1u; }
    r = r << 1u;
  }
  // r is now twice the remainder: round up past the half, and on the half to even.
  if (r > mb || (r == mb && (q & 1u) == 1u)) { q = q + 1u; }
  if (q == 0x1000000u) { q = 0x800000u; e = e + 1; }
  if (e >= 255) { return bitcast<f32>(sign | 0x7f800000u); }
  if (e <= 0) { return bitcast<f32>(sign); }
  return bitcast<f32>(sign | (u32(e) << 23u) | (q & 0x7fffffu));
}

// f32 -> f16 bits, round to nearest even (as ggml's GGML_FP32_TO_FP16), NaN -> 0x7e00.
fn f32_to_f16_bits(f: f32) -> u32 {
  let x = bitcast<u32>(f);
  let sign = (x >> 16u) & 0x8000u;
  let exp = i32((x >> 23u) & 0xffu);
  let mant = x & 0x7fffffu;
  if (exp == 255) { return sign | select(0x7c00u, 0x7e00u, mant != 0u); }
  let e = exp - 112;
  if (e >= 31) { return sign | 0x7c00u; }
  if (e <= 0) {
    if (e < -10) { return sign; }
    let m = mant | 0x800000u;
    let shift = u32(14 - e);
    let h = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    var r = h;
    if (rem > half || (rem == half && (h & 1u) == 1u)) { r = r + 1u; }
    return sign | r;
  }
  var h = (u32(e) << 10u) | (mant >> 13u);
  let rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) { h = h + 1u; }
  return sign | h;
}

fn f16_bits_to_f32(h: u32) -> f32 {
  let sign = (h & 0x8000u) << 16u;
  let exp = (h >> 10u) & 0x1fu;
  let mant = h & 0x3ffu;
  if (exp == 0u) {
    // subnormal: mant * 2^-24 is exact in f32
    let v = f32(mant) * 5.9604644775390625e-8;
    return bitcast<f32>(sign | bitcast<u32>(v));
  }
  if (exp == 31u) { return bitcast<f32>(sign | 0x7f800000u | (mant << 13u)); }
  return bitcast<f32>(sign | ((exp + 112u) << 23u) | (mant << 13u));
}

// C's roundf: to nearest, ties away from zero. trunc and x - trunc(x) are exact for |x| < 2^23.
fn round_half_away(x: f32) -> f32 {
  let t = trunc(x);
  if (abs(x - t) >= 0.5) { return t + sign(x); }
  return t;
}

// ggml's nearest_int: adds 1.5 * 2^23 in f32 and reads the low mantissa bits (ties to even for
// |v| <= 4194303, and the same deterministic bits as C beyond). `zero` is a runtime 0 (see opaque).
fn nearest_int(fval: f32, zero: u32) -> i32 {
  let v = opaque(fval, zero) + 12582912.0;
  return i32(bitcast<u32>(v) & 0x007fffffu) - 0x00400000;
}

// Full product of x, y < 2^26 as (lo, hi) u32 words.
fn mul_wide(x: u32, y: u32) -> vec2<u32> {
  let x0 = x & 0xffffu;
  let x1 = x >> 16u;
  let y0 = y & 0xffffu;
  let y1 = y >> 16u;
  let p00 = x0 * y0;
  let mid = x0 * y1 + x1 * y0;
  let lo = p00 + (mid << 16u);
  let carry = select(0u, 1u, lo < p00);
  return vec2<u32>(lo, x1 * y1 + (mid >> 16u) + carry);
}

// Sign of (M * 2^E)^2 - A * 2^EA for 2^24 <= M < 2^26 and a 24-bit A (never 0: M^2 is odd times a power of 4, A * 2^k even).
fn cmp_square(m: u32, e: i32, a: u32, ea: i32) -> i32 {
  let k = ea - e;
  if (k < 0) { return 1; }
  if (k >= 40) { return -1; }
  let sq = mul_wide(m, m);
  var a_lo = a;
  var a_hi = 0u;
  if (k >= 32) { a_lo = 0u; a_hi = a << u32(k - 32); } else if (k > 0) { a_lo = a << u32(k); a_hi = a >> u32(32 - k); }
  if (sq.y != a_hi) { return select(-1, 1, sq.y > a_hi); }
  if (sq.x != a_lo) { return select(-1, 1, sq.x > a_lo); }
  return 0;
}

// sqrt rounded to nearest (as C's sqrtf) for a >= 0: WGSL's sqrt may be a few ULP off, so the
// candidate is moved until a lies between the squares of the midpoints to its neighbours, compared
// exactly in integers. Subnormal inputs keep the hardware result.
fn sqrt_rn(a: f32) -> f32 {
  let ua = bitcast<u32>(a);
  if (a <= 0.0 || (ua >> 23u) == 0u) { return sqrt(a); }
  let big_a = (ua & 0x7fffffu) | 0x800000u;
  let ea = i32(ua >> 23u) - 150;
  var c = sqrt(a);
  for (var it = 0; it < 6; it = it + 1) {
    let uc = bitcast<u32>(c);
    let big_c = (uc & 0x7fffffu) | 0x800000u;
    let ec = i32(uc >> 23u) - 150;
    if (cmp_square(2u * big_c + 1u, 2 * ec - 2, big_a, ea) < 0) { c = bitcast<f32>(uc + 1u); continue; }
    if (big_c == 0x800000u) {
      if (cmp_square(4u * big_c - 1u, 2 * ec - 4, big_a, ea) > 0) { c = bitcast<f32>(uc - 1u); continue; }
    } else if (cmp_square(2u * big_c - 1u, 2 * ec - 2, big_a, ea) > 0) { c = bitcast<f32>(uc - 1u); continue; }
    break;
  }
  return c;
}
