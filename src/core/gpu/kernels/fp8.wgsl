// FP8 E4M3 (OCP e4m3fn) with a per-tensor / per-channel f32 scale: core/quant/fp8.ts on the GPU, bit
// for bit. IEEE f32 arithmetic done in integers (lib/exact_f32.wgsl).
// Rounding rule: scale = f32(absmax / 448) (0 -> 1); x = f32(w / scale); x -> E4M3 rounds to nearest,
// ties to EVEN on the 3-bit mantissa, subnormals (below 2^-6) in steps of 2^-9, saturating: every
// |x| >= 448 (also what would round to 464) becomes +-448 (0x7e / 0xfe); -0 keeps its sign bit.
// Decode: w' = f32(e4m3(q) * scale).
// Span words: [scale bits, 0]. Codes: one byte per value, 4 per u32, little-endian.
// #include "research_span.wgsl"

const CODES_PER_WORD = 4u;
const CODE_MASK = 0xffu;
const F32_ONE = 0x3f800000u;
const F32_448 = 0x43e00000u;
const F32_MIN_NORMAL_E4M3 = 0x3c800000u; // 2^-6

fn code_shift(j: u32) -> u32 {
  return 8u * j;
}

fn span_params(lo: u32, hi: u32, absmax: u32) -> vec2<u32> {
  var scale = f32_div(absmax, F32_448);
  if (scale == 0u) { scale = F32_ONE; }
  return vec2<u32>(scale, 0u);
}

// f32 bits -> E4M3 code (the CPU's encodeE4M3 on the same bits).
fn e4m3_of(x: u32) -> u32 {
  let sign = (x >> 24u) & 0x80u;
  let a = x & 0x7fffffffu;
  if (a >= F32_448) { return sign | 0x7eu; }
  if (a < F32_MIN_NORMAL_E4M3) {
    // round(|x| * 2^9) to even: |x| = m * 2^(field - 150), so |x| * 2^9 = m >> (141 - field).
    let field = a >> 23u;
    if (field == 0u) { return sign; }
    let shift = 141u - field;
    if (shift > 24u) { return sign; }
    let m = (a & 0x7fffffu) | 0x800000u;
    var n = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (n & 1u) == 1u)) { n = n + 1u; }
    return sign | n;
  }
  let mantissa = a & 0x7fffffu;
  var code = (((a >> 23u) - 120u) << 3u) | (mantissa >> 20u);
  let rest = mantissa & 0xfffffu;
  if (rest > 0x80000u || (rest == 0x80000u && (code & 1u) == 1u)) { code = code + 1u; }
  return sign | min(code, 0x7eu);
}

// E4M3 code -> f32 bits (0x7f / 0xff are NaN; the encoder never writes them).
fn e4m3_bits(code: u32) -> u32 {
  let sign = (code & 0x80u) << 24u;
  let e = (code >> 3u) & 0xfu;
  let m = code & 7u;
  if (e == 15u && m == 7u) { return F32_NAN; }
  if (e == 0u) {
    if (m == 0u) { return sign; }
    // m * 2^-9 with m in 1..7: normalise the leading bit p to the implicit bit.
    let p = 31u - countLeadingZeros(m);
    return sign | ((p + 118u) << 23u) | ((m << (23u - p)) & 0x7fffffu);
  }
  return sign | ((e + 120u) << 23u) | (m << 20u);
}

// E4M3 of f32(w / scale): the float unit's quotient when the code is the same over its whole error
// window (bits +- DIV_SLACK_ULPS, same sign and normal; the code's magnitude is monotonic), else the
// exact division.
fn encode_value(w: u32, p: vec2<u32>) -> u32 {
  let c = f32_div_estimate(w, p.x);
  if (c != F32_NAN) {
    let code = e4m3_of(c - DIV_SLACK_ULPS);
    if (code == e4m3_of(c + DIV_SLACK_ULPS)) { return code; }
  }
  return e4m3_of(f32_div(w, p.x));
}

fn decode_value(code: u32, k: u32) -> u32 {
  return f32_mul(e4m3_bits(code), span_words[2u * k]);
}
