// Q4_1, a port of ggml quantize_row_q4_1_ref. d = (max - min) / 15.0, id = 1/d,
// q = min(15, i32(trunc(X + 0.5))) with X = (x - min)*id rounded to f32 first, then the sum, then truncation toward zero.
// Block: 20 bytes, [d: f16][m: f16][qs: 16 bytes, low nibbles = q[0..16), high = q[16..32)].
// Tile kernel (GPUs): a workgroup per 64 blocks, contiguous loads and stores (lib/legacy_tile.wgsl).
// #include "legacy_tile.wgsl"
// #include "q4_1_block.wgsl"
