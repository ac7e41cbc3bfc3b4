// Q8_0, a port of ggml quantize_row_q8_0_ref. d = amax / 127 (IEEE division), id = 1/d,
// q = roundf(x * id): round to nearest, ties AWAY from zero.
// Block: 34 bytes, [d: f16][qs: 32 x i8].
// Tile kernel (GPUs): a workgroup per 64 blocks, contiguous loads and stores (lib/legacy_tile.wgsl).
// #include "legacy_tile.wgsl"
// #include "q8_0_block.wgsl"
