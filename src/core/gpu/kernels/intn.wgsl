// Group-wise INTn (2/3/4/8 bits) and INT8 absmax / zero-point: core/quant/intN.ts and int8.ts on the
// GPU, bit for bit. All arithmetic is IEEE f32 done in integers (lib/exact_f32.wgsl).
// Rounding rule: round half to EVEN (torch.round) of the f32 quotient w / scale.
//   symmetric:  scale = f32(absmax / qmax), qmax = 2^(bits-1) - 1 (0 -> 1);
//               q = clamp(roundEven(f32(w / scale)), -qmax, qmax); stored q + 2^(bits-1)
//               (or, for INT8 absmax, q itself as int8: signed_levels = 1)
//   asymmetric: lo = min(min, 0), hi = max(max, 0), scale = f32(f32(hi - lo) / maxq),
//               maxq = 2^bits - 1 (0 -> 1); zero = clamp(roundEven(f32(-lo / scale)), min_zero, maxq);
//               q = clamp(roundEven(f32(w / scale)) + zero, 0, maxq)
//   decode:     w' = f32(f32(q - zero) * scale)
// Span words: [scale bits, zero]. Codes: one byte per level, 4 per u32, little-endian.
// #include "research_span.wgsl"

const CODES_PER_WORD = 4u;
const CODE_MASK = 0xffu;
const F32_ONE = 0x3f800000u;

fn code_shift(j: u32) -> u32 {
  return 8u * j;
}

fn int_as_f32_bits(v: i32) -> u32 {
  return bitcast<u32>(f32(v)); // |v| <= 255: exact
}

fn span_params(lo: u32, hi: u32, absmax: u32) -> vec2<u32> {
  if (u.symmetric == 1u) {
    let qmax = (1 << (u.bits - 1u)) - 1;
    var scale = f32_div(absmax, int_as_f32_bits(qmax));
    if (scale == 0u) { scale = F32_ONE; }
    return vec2<u32>(scale, 1u << (u.bits - 1u));
  }
  let maxq = (1 << u.bits) - 1;
  // lo <= 0 <= hi, so hi - lo = hi + |lo|.
  var scale = f32_div(f32_add_nonneg(hi, lo & 0x7fffffffu), int_as_f32_bits(maxq));
  if (scale == 0u) { scale = F32_ONE; }
  let zero = clamp(round_even_i32(f32_div(lo ^ 0x80000000u, scale)), i32(u.min_zero), maxq);
  return vec2<u32>(scale, u32(zero));
}

// roundEven(f32(w / scale)): the float unit's quotient when roundEven is the same over its whole
// error window (bits +- DIV_SLACK_ULPS, same sign and normal), else the exact division.
fn rounded_quotient(w: u32, scale: u32) -> i32 {
  let c = f32_div_estimate(w, scale);
  if (c != F32_NAN) {
    let r = round_even_i32(c - DIV_SLACK_ULPS);
    if (r == round_even_i32(c + DIV_SLACK_ULPS)) { return r; }
  }
  return round_even_i32(f32_div(w, scale));
}

fn encode_value(w: u32, p: vec2<u32>) -> u32 {
  let r = rounded_quotient(w, p.x);
  if (u.symmetric == 1u) {
    let qmax = (1 << (u.bits - 1u)) - 1;
    let q = clamp(r, -qmax, qmax);
    if (u.signed_levels == 1u) { return u32(q) & 0xffu; }
    return u32(q + i32(p.y));
  }
  return u32(clamp(r + i32(p.y), 0, (1 << u.bits) - 1));
}

fn decode_value(code: u32, k: u32) -> u32 {
  var level = i32(code) - i32(span_words[2u * k + 1u]);
  if (u.signed_levels == 1u) { level = (i32(code) << 24u) >> 24u; }
  return f32_mul(int_as_f32_bits(level), span_words[2u * k]);
}
