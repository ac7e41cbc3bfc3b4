// Q5_1, a port of ggml quantize_row_q5_1_ref. d = (max - min) / 31.0, id = 1/d,
// q = i32(trunc(X + 0.5)) with X = (x - min)*id rounded to f32 first, then the sum, then truncation toward zero.
// Block: 24 bytes, [d: f16][m: f16][qh: 4 bytes, bit j = 5th bit of q[j]][qs: 16 bytes of low nibbles].
// Tile kernel (GPUs): a workgroup per 64 blocks, contiguous loads and stores (lib/legacy_tile.wgsl).
// #include "legacy_tile.wgsl"
// #include "q5_1_block.wgsl"
