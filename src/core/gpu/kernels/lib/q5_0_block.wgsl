// Q5_0, a port of ggml quantize_row_q5_0_ref. d = max / -16.0 where max is the value of largest
// magnitude (first one on ties), id = 1/d, q = min(31, trunc(x*id + 16.5)): x*id rounded to f32 first,
// then the sum, then truncation toward zero.
// Block: 22 bytes, [d: f16][qh: 4 bytes, bit j = 5th bit of q[j]][qs: 16 bytes of low nibbles].
// Included by q5_0.wgsl (tile kernel) and q5_0_direct.wgsl (direct kernel).

const SCALE_HALVES = 1u;
const QH_WORDS = 1u;
const QS_WORDS = 4u;

const Q0_DIVISOR = -16.0;

// q = min(31, trunc(x*id + 16.5)), truncation toward zero.
fn level(x: f32) -> u32 {
  return u32(min(31, i32(trunc(x + 16.5))));
}

// #include "legacy_q0.wgsl"
