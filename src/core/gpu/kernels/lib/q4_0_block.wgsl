// Q4_0, a port of ggml quantize_row_q4_0_ref. d = max / -8.0 where max is the value of largest
// magnitude (first one on ties), id = 1/d, q = min(15, trunc(x*id + 8.5)): x*id rounded to f32 first,
// then the sum, then truncation toward zero.
// Block: 18 bytes, [d: f16][qs: 16 bytes, low nibbles = q[0..16), high = q[16..32)].
// Included by q4_0.wgsl (tile kernel) and q4_0_direct.wgsl (direct kernel).

const SCALE_HALVES = 1u;
const QH_WORDS = 0u;
const QS_WORDS = 4u;

const Q0_DIVISOR = -8.0;

// q = min(15, trunc(x*id + 8.5)), truncation toward zero.
fn level(x: f32) -> u32 {
  return u32(min(15, i32(trunc(x + 8.5))));
}

// #include "legacy_q0.wgsl"
