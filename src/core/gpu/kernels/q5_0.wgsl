// Q5_0, a port of ggml quantize_row_q5_0_ref. d = max / -16.0 where max is the value of largest
// magnitude (first one on ties), id = 1/d, q = min(31, trunc(x*id + 16.5)): x*id rounded to f32 first,
// then the sum, then truncation toward zero.
// Output: OUT_STRIDE u32 words per block: [0] f16 bits of d (| m << 16), [1] qh, [2..9] qs bytes
// packed little-endian, [10] 1 when the block holds NaN/Inf. The host interleaves them into ggml blocks
// (18/20/22/24/34-byte blocks straddle u32 words, so the kernel never writes them directly).
// #include "legacy_block.wgsl"

const Q0_DIVISOR = -16.0;

// q = min(31, trunc(x*id + 16.5)), truncation toward zero.
fn level(x: f32) -> u32 {
  return u32(min(31, i32(trunc(x + 16.5))));
}

// #include "legacy_q0.wgsl"
