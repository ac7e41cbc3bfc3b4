// Q5_1, a port of ggml quantize_row_q5_1_ref. d = (max - min) / 31.0, id = 1/d,
// q = i32(trunc(X + 0.5)) with X = (x - min)*id rounded to f32 first, then the sum, then truncation toward zero.
// Output: OUT_STRIDE u32 words per block: [0] f16 bits of d (| m << 16), [1] qh, [2..9] qs bytes
// packed little-endian, [10] 1 when the block holds NaN/Inf. The host interleaves them into ggml blocks
// (18/20/22/24/34-byte blocks straddle u32 words, so the kernel never writes them directly).
// #include "legacy_block.wgsl"

const Q1_LEVELS = 31.0;

// q = trunc(X + 0.5), truncation toward zero.
fn level(x: f32) -> u32 {
  return u32(i32(trunc(x + 0.5)));
}

// #include "legacy_q1.wgsl"
