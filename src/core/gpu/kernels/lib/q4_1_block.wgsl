// Q4_1, a port of ggml quantize_row_q4_1_ref. d = (max - min) / 15.0, id = 1/d,
// q = min(15, i32(trunc(X + 0.5))) with X = (x - min)*id rounded to f32 first, then the sum, then truncation toward zero.
// Block: 20 bytes, [d: f16][m: f16][qs: 16 bytes, low nibbles = q[0..16), high = q[16..32)].
// Included by q4_1.wgsl (tile kernel) and q4_1_direct.wgsl (direct kernel).

const SCALE_HALVES = 2u;
const QH_WORDS = 0u;
const QS_WORDS = 4u;

const Q1_LEVELS = 15.0;

// q = min(15, trunc(X + 0.5)), truncation toward zero.
fn level(x: f32) -> u32 {
  return u32(min(15, i32(trunc(x + 0.5))));
}

// #include "legacy_q1.wgsl"
