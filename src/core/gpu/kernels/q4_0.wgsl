// Q4_0, a port of ggml quantize_row_q4_0_ref. d = max / -8.0 where max is the value of largest
// magnitude (first one on ties), id = 1/d, q = min(15, trunc(x*id + 8.5)): x*id rounded to f32 first,
// then the sum, then truncation toward zero.
// Block: 18 bytes, [d: f16][qs: 16 bytes, low nibbles = q[0..16), high = q[16..32)].
// Tile kernel (GPUs): a workgroup per 64 blocks, contiguous loads and stores (lib/legacy_tile.wgsl).
// #include "legacy_tile.wgsl"
// #include "q4_0_block.wgsl"
