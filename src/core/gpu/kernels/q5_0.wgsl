// Q5_0, a port of ggml quantize_row_q5_0_ref. d = max / -16.0 where max is the value of largest
// magnitude (first one on ties), id = 1/d, q = min(31, trunc(x*id + 16.5)): x*id rounded to f32 first,
// then the sum, then truncation toward zero.
// Block: 22 bytes, [d: f16][qh: 4 bytes, bit j = 5th bit of q[j]][qs: 16 bytes of low nibbles].
// Tile kernel (GPUs): a workgroup per 64 blocks, contiguous loads and stores (lib/legacy_tile.wgsl).
// #include "legacy_tile.wgsl"
// #include "q5_0_block.wgsl"
