// Q5_1, a port of ggml quantize_row_q5_1_ref. d = (max - min) / 31.0, id = 1/d,
// q = i32(trunc(X + 0.5)) with X = (x - min)*id rounded to f32 first, then the sum, then truncation toward zero.
// Block: 24 bytes, [d: f16][m: f16][qh: 4 bytes, bit j = 5th bit of q[j]][qs: 16 bytes of low nibbles].
// Included by q5_1.wgsl (tile kernel) and q5_1_direct.wgsl (direct kernel).

const SCALE_HALVES = 2u;
const QH_WORDS = 1u;
const QS_WORDS = 4u;

const Q1_LEVELS = 31.0;

// q = trunc(X + 0.5), truncation toward zero.
fn level(x: f32) -> u32 {
  return u32(i32(trunc(x + 0.5)));
}

// #include "legacy_q1.wgsl"
