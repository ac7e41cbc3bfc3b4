// Included by the K-quant kernels (through kquant_block.wgsl). div_fast(a, b) returns exactly div_rn(a, b)
// (common.wgsl: IEEE division rounded to nearest even), faster: the hardware quotient (WGSL allows 2.5 ULP of
// error) and its neighbours within 2 ULP are checked in exact integer arithmetic, and the one that is the
// correctly rounded quotient is returned; zero, subnormal, Inf/NaN operands, results near the ends of the
// exponent range, power-of-two candidates (whose lower neighbour is closer) and anything not proven go to
// div_rn. div_rn's 24-step long division was ~30 % of the Q4_K kernel on lavapipe (its scale searches divide
// ~500 times per super-block).

// Sign of x - y for 64-bit (lo, hi) pairs.
fn cmp_wide(x: vec2<u32>, y: vec2<u32>) -> i32 {
  if (x.y != y.y) { return select(-1, 1, x.y > y.y); }
  if (x.x != y.x) { return select(-1, 1, x.x > y.x); }
  return 0;
}

// 1 when the positive normal f32 with bits `c` is |a| / |b| rounded to nearest even, for the significands
// ma, mb (implicit bit set) and biased exponents ea, eb of |a| and |b|.
fn is_rounded_quotient(c: u32, ma: u32, ea: u32, mb: u32, eb: u32) -> bool {
  let mc = (c & 0x7fffffu) | 0x800000u;
  if (mc == 0x800000u) { return false; }
  // |a| / |b| against the midpoints (2 mc -+ 1) * 2^(ec - 151) to c's neighbours, both sides times |b|:
  // ma * 2^s against (2 mc -+ 1) * mb with s = ea - ec - eb + 151.
  let s = i32(ea) - i32(c >> 23u) - i32(eb) + 151;
  if (s < 0 || s > 39) { return false; }
  var lhs = vec2<u32>(0u, 0u);
  if (s >= 32) { lhs = vec2<u32>(0u, ma << u32(s - 32)); } else if (s > 0) { lhs = vec2<u32>(ma << u32(s), ma >> u32(32 - s)); } else { lhs = vec2<u32>(ma, 0u); }
  let below = cmp_wide(lhs, mul_wide(2u * mc - 1u, mb));
  let above = cmp_wide(lhs, mul_wide(2u * mc + 1u, mb));
  let even = (mc & 1u) == 0u;
  // On a midpoint, ties go to the even significand.
  return (below > 0 || (below == 0 && even)) && (above < 0 || (above == 0 && even));
}

fn div_fast(a: f32, b: f32) -> f32 {
  let ua = bitcast<u32>(a);
  let ub = bitcast<u32>(b);
  let ea = (ua >> 23u) & 0xffu;
  let eb = (ub >> 23u) & 0xffu;
  if (ea == 0u || ea == 255u || eb == 0u || eb == 255u) { return div_rn(a, b); }
  let uq = bitcast<u32>(a / b) & 0x7fffffffu;
  let eq = uq >> 23u;
  if (eq < 3u || eq > 251u) { return div_rn(a, b); }
  let sign = (ua ^ ub) & 0x80000000u;
  let ma = (ua & 0x7fffffu) | 0x800000u;
  let mb = (ub & 0x7fffffu) | 0x800000u;
  // Candidates in order: the hardware's, then +-1 and +-2 ULP (bit patterns of positive floats are ordered).
  for (var k = 0u; k < 5u; k = k + 1u) {
    let step = (k + 1u) / 2u;
    var c = uq + step;
    if ((k & 1u) == 0u) { c = uq - step; }
    if (is_rounded_quotient(c, ma, ea, mb, eb)) { return bitcast<f32>(sign | c); }
  }
  return div_rn(a, b);
}
