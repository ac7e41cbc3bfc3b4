// NF4 as bitsandbytes writes it (blocks of 64 of the flattened tensor): core/quant/nf4.ts on the GPU,
// bit for bit. IEEE f32 arithmetic done in integers (lib/exact_f32.wgsl).
// Rounding rule: absmax per block; inverse = f32(1 / absmax) (Inf for an all-zero block);
// x = f32(w * inverse); code = the number of bnb's thresholds t (midpoints of neighbouring NF4
// values, f32) with x > t, i.e. a value exactly on a midpoint takes the LOWER code, and NaN
// (0 * Inf) compares false everywhere: code 0. Decode: w' = f32(NF4[code] * absmax).
// Span words: [inverse bits, 0]; ranges[3k + 2] = absmax. Codes: 4 bits, two per byte, the first
// value of each pair in the HIGH nibble; 8 per u32.
// #include "research_span.wgsl"

const CODES_PER_WORD = 8u;
const CODE_MASK = 0xfu;
const F32_ONE = 0x3f800000u;

// bnb dQuantizeNF4's thresholds and get_4bit_type("nf4")'s values, as f32 bits (core/quant/nf4.ts).
const NF4_THRESHOLD_BITS = array<u32, 15>(
  0xbf591cd8u, 0xbf1c5270u, 0xbeeb8480u, 0xbeadea76u, 0xbe703cecu, 0xbe0d38bcu, 0xbd3a7871u, 0x3d22faffu,
  0x3df64862u, 0x3e5067e0u, 0x3e9582d4u, 0x3ec753f9u, 0x3f006d04u, 0x3f248dafu, 0x3f5c89dau,
);
const NF4_VALUE_BITS = array<u32, 16>(
  0xbf800000u, 0xbf3239b1u, 0xbf066b30u, 0xbeca32a0u, 0xbe91a24du, 0xbe3d353fu, 0xbdba7871u, 0x00000000u,
  0x3da2faffu, 0x3e24cae3u, 0x3e7c04ddu, 0x3ead033au, 0x3ee1a4b8u, 0x3f1007abu, 0x3f3913b3u, 0x3f800000u,
);

// Value j of a word: byte j / 2, high nibble for even j.
fn code_shift(j: u32) -> u32 {
  return 8u * (j / 2u) + 4u * (1u - (j & 1u));
}

fn span_params(lo: u32, hi: u32, absmax: u32) -> vec2<u32> {
  return vec2<u32>(f32_div(F32_ONE, absmax), 0u);
}

fn encode_value(w: u32, p: vec2<u32>) -> u32 {
  let x = f32_mul(w, p.x);
  if ((x & 0x7fffffffu) > F32_INF) { return 0u; }
  let key = order_key(select(x, 0u, x == 0x80000000u));
  var code = 0u;
  for (var t = 0u; t < 15u; t = t + 1u) {
    if (key > order_key(NF4_THRESHOLD_BITS[t])) { code = code + 1u; }
  }
  return code;
}

fn decode_value(code: u32, k: u32) -> u32 {
  return f32_mul(NF4_VALUE_BITS[code], atomicLoad(&ranges[3u * k + 2u]));
}
