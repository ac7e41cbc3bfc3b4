// IEEE-754 binary32 arithmetic done in integers, on bit patterns (u32): correctly rounded to
// nearest, ties to even, with subnormal inputs and results and overflow to Inf, as the CPU
// references compute it (JS doubles rounded once by Math.fround, which equals f32 arithmetic).
// Why integers: WGSL lets `/` be 2.5 ULP off and lets an implementation flush subnormals or assume
// there is no Inf/NaN. The float unit is used only where its result is provably the same: a product of
// normal operands with a normal result (f32_mul), and a quotient estimate whose callers fall back to
// f32_div whenever the answer could differ (f32_div_estimate). Needs mul_wide from common.wgsl.

// value = m * 2^e with 2^23 <= m < 2^24, for a finite non-zero |x| (subnormals normalised).
struct Unpacked { m: u32, e: i32 }

fn unpack_f32(abs_bits: u32) -> Unpacked {
  let field = (abs_bits >> 23u) & 0xffu;
  let frac = abs_bits & 0x7fffffu;
  if (field == 0u) {
    let shift = countLeadingZeros(frac) - 8u;
    return Unpacked(frac << shift, -149 - i32(shift));
  }
  return Unpacked(frac | 0x800000u, i32(field) - 150);
}

// sign | round(sig * 2^e) for 2^26 <= sig < 2^27 whose bit 0 is sticky (ORed with every lower bit):
// round to nearest even on the 3 low bits, subnormal results shifted (sticky kept) before rounding,
// overflow to Inf.
fn round_pack(sign: u32, sig: u32, e: i32) -> u32 {
  var biased = e + 153;
  if (biased >= 255) { return sign | 0x7f800000u; }
  var s = sig;
  if (biased <= 0) {
    let shift = u32(1 - biased);
    if (shift >= 27u) {
      s = select(0u, 1u, s != 0u);
    } else {
      s = (s >> shift) | select(0u, 1u, (s & ((1u << shift) - 1u)) != 0u);
    }
    biased = 0;
  }
  let low = s & 7u;
  var q = s >> 3u;
  if (low > 4u || (low == 4u && (q & 1u) == 1u)) { q = q + 1u; }
  if (biased == 0) { return sign | q; }
  // q's implicit bit (2^23, or 2^24 after a carry) adds itself to the exponent field.
  let bits = (u32(biased - 1) << 23u) + q;
  if (bits >= 0x7f800000u) { return sign | 0x7f800000u; }
  return sign | bits;
}

const F32_NAN = 0x7fc00000u;
const F32_INF = 0x7f800000u;

// a / b as IEEE f32 division (bits in, bits out). Long division of the significands, 26 quotient bits + sticky.
fn f32_div(a: u32, b: u32) -> u32 {
  let sign = (a ^ b) & 0x80000000u;
  let ax = a & 0x7fffffffu;
  let bx = b & 0x7fffffffu;
  if (ax > F32_INF || bx > F32_INF) { return F32_NAN; }
  if (ax == F32_INF) { return select(sign | F32_INF, F32_NAN, bx == F32_INF); }
  if (bx == F32_INF) { return sign; }
  if (bx == 0u) { return select(sign | F32_INF, F32_NAN, ax == 0u); }
  if (ax == 0u) { return sign; }
  let ua = unpack_f32(ax);
  let ub = unpack_f32(bx);
  var r = ua.m;
  var e = ua.e - ub.e;
  if (r < ub.m) { r = r << 1u; e = e - 1; }
  var q = 0u;
  for (var i = 0; i < 26; i = i + 1) {
    q = q << 1u;
    if (r >= ub.m) { r = r - ub.m; q = q | 1u; }
    r = r << 1u;
  }
  return round_pack(sign, (q << 1u) | select(0u, 1u, r != 0u), e - 26);
}

// a * b as IEEE f32 multiplication: the 48-bit product of the significands, rounded once.
fn f32_mul(a: u32, b: u32) -> u32 {
  let sign = (a ^ b) & 0x80000000u;
  let ax = a & 0x7fffffffu;
  let bx = b & 0x7fffffffu;
  if (ax > F32_INF || bx > F32_INF) { return F32_NAN; }
  if (ax == F32_INF || bx == F32_INF) { return select(sign | F32_INF, F32_NAN, ax == 0u || bx == 0u); }
  if (ax == 0u || bx == 0u) { return sign; }
  // Normal operands whose product is normal with room to spare: the float unit's product is
  // correctly rounded (WGSL requires it for *); only subnormals and overflow need the integers.
  let ea = i32(ax >> 23u);
  let eb = i32(bx >> 23u);
  if (ea != 0 && eb != 0 && ea + eb - 127 >= 2 && ea + eb - 127 <= 252) {
    return bitcast<u32>(bitcast<f32>(a) * bitcast<f32>(b));
  }
  let ua = unpack_f32(ax);
  let ub = unpack_f32(bx);
  let p = mul_wide(ua.m, ub.m); // in [2^46, 2^48): (lo, hi)
  let shift = select(20u, 21u, p.y >= 0x8000u);
  let sticky = select(0u, 1u, (p.x & ((1u << shift) - 1u)) != 0u);
  let sig = (p.y << (32u - shift)) | (p.x >> shift) | sticky;
  return round_pack(sign, sig, ua.e + ub.e + i32(shift));
}

// a + b for finite a, b >= +0 (bits), as IEEE f32 addition (overflow to Inf).
fn f32_add_nonneg(a: u32, b: u32) -> u32 {
  if (a == 0u) { return b; }
  if (b == 0u) { return a; }
  var x = unpack_f32(a);
  var y = unpack_f32(b);
  if (y.e > x.e) {
    let t = x;
    x = y;
    y = t;
  }
  let d = u32(x.e - y.e);
  var small = 1u;
  if (d < 27u) {
    let ym = y.m << 3u;
    small = (ym >> d) | select(0u, 1u, (ym & ((1u << d) - 1u)) != 0u);
  }
  var sum = (x.m << 3u) + small;
  var e = x.e - 3;
  if (sum >= 0x8000000u) {
    sum = (sum >> 1u) | (sum & 1u);
    e = e + 1;
  }
  return round_pack(0u, sum, e);
}

// Round half to even (torch.round) of an f32 (bits) to an integer, saturated to +-2^23 (Inf too):
// callers clamp to far narrower ranges, so saturation never changes a result.
fn round_even_i32(b: u32) -> i32 {
  let field = (b >> 23u) & 0xffu;
  var n = 0u;
  if (field >= 150u) {
    n = 0x800000u;
  } else if (field >= 126u) {
    let m = (b & 0x7fffffu) | 0x800000u;
    let shift = 150u - field;
    n = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (n & 1u) == 1u)) { n = n + 1u; }
  }
  return select(i32(n), -i32(n), (b & 0x80000000u) != 0u);
}

// Total order of non-NaN f32 bit patterns as u32 (for min/max without the float unit).
fn order_key(b: u32) -> u32 {
  return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn key_to_bits(k: u32) -> u32 {
  return select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u);
}

// The float unit's a / b (bits), or F32_NAN where its error bound does not hold: WGSL guarantees
// 2.5 ULP for normal operands with |b| in [2^-126, 2^126]; callers allow DIV_SLACK_ULPS either side
// and take the exact f32_div whenever the result could differ inside that window, so the estimate
// only ever decides cases that every quotient in the window decides the same way.
const DIV_SLACK_ULPS = 32u;

fn f32_div_estimate(a: u32, b: u32) -> u32 {
  let ea = (a >> 23u) & 0xffu;
  let eb = (b >> 23u) & 0xffu;
  if (ea == 0u || ea == 255u || eb < 2u || eb > 252u) { return F32_NAN; }
  let c = bitcast<u32>(bitcast<f32>(a) / bitcast<f32>(b));
  let ec = (c >> 23u) & 0xffu;
  if (ec < 2u || ec > 252u) { return F32_NAN; }
  return c;
}
