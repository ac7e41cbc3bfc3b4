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
