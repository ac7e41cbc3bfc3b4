// Tile entry point of the 32-value block kernels (GPUs; shared declarations in legacy_block.wgsl).
// One workgroup of WG invocations quantizes a tile of WG consecutive blocks, so that every global load and
// store is contiguous across invocations (coalesced on a GPU, where one invocation per block made each warp's
// loads and stores strided by 128 and 44 bytes):
// 1. invocation l loads vec4 k*WG + l of the tile (k = 0..7) into tile_in (IN_STRIDE = 9 vec4 per block:
//    one of padding, so that step 2's reads of 8 vec4 per invocation do not all fall in the same banks);
// 2. invocation l quantizes block l from workgroup memory and writes its bytes in ggml's layout as 16-bit
//    halves into tile_out, one half per u32 (blocks are 2-byte aligned but straddle u32 words: 34, 18, 22);
// 3. the tile's bytes go out as whole words, word w by invocation w % WG; NaN/Inf bits 32 blocks a word.
// #include "legacy_block.wgsl"
const FLAG_BLOCKS = 32u;
const IN_STRIDE = 9u;
var<workgroup> tile_in: array<vec4<f32>, WG * IN_STRIDE>;
var<workgroup> tile_out: array<u32, WG * BLOCK_HALVES>;
var<workgroup> tile_bad: array<atomic<u32>, WG / FLAG_BLOCKS>;

// Block l of the tile, from workgroup memory, to be worked on in registers.
fn load_block(l: u32) -> array<f32, 32> {
  var v: array<f32, 32>;
  for (var k = 0u; k < 8u; k = k + 1u) {
    let q = tile_in[l * IN_STRIDE + k];
    v[4u * k] = q.x;
    v[4u * k + 1u] = q.y;
    v[4u * k + 2u] = q.z;
    v[4u * k + 3u] = q.w;
  }
  return v;
}

// Block l's bytes in ggml's order, [d][m][qh][qs], as halves at tile_out[l * BLOCK_HALVES..].
fn store_block(l: u32, f: ptr<function, array<u32, FIELDS>>) {
  var h = l * BLOCK_HALVES;
  tile_out[h] = (*f)[0] & 0xffffu;
  h = h + 1u;
  if (SCALE_HALVES == 2u) {
    tile_out[h] = (*f)[0] >> 16u;
    h = h + 1u;
  }
  if (QH_WORDS == 1u) {
    tile_out[h] = (*f)[1] & 0xffffu;
    tile_out[h + 1u] = (*f)[1] >> 16u;
    h = h + 2u;
  }
  for (var w = 0u; w < QS_WORDS; w = w + 1u) {
    tile_out[h + 2u * w] = (*f)[2u + w] & 0xffffu;
    tile_out[h + 2u * w + 1u] = (*f)[2u + w] >> 16u;
  }
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32) {
  let tile = wid.x + wid.y * params.groups_x;
  let first = tile * WG;
  // Uniform across the workgroup (the 2-D grid may hold a few groups past the end).
  if (first >= params.block_count) { return; }
  let blocks = min(WG, params.block_count - first);
  if (l < WG / FLAG_BLOCKS) { atomicStore(&tile_bad[l], 0u); }
  for (var k = 0u; k < 8u; k = k + 1u) {
    let i = k * WG + l;
    let b = i / 8u;
    if (b < blocks) { tile_in[b * IN_STRIDE + i % 8u] = src4[first * 8u + i]; }
  }
  workgroupBarrier();
  if (l < blocks) {
    var v = load_block(l);
    var f: array<u32, FIELDS>;
    quantize_block(&v, &f);
    store_block(l, &f);
    if (f[10] != 0u) { atomicOr(&tile_bad[l / FLAG_BLOCKS], 1u << (l % FLAG_BLOCKS)); }
  } else {
    // The last word of a partial tile may hold the first half of the block after the last one.
    tile_out[l * BLOCK_HALVES] = 0u;
  }
  workgroupBarrier();
  let words = (blocks * BLOCK_BYTES + 3u) / 4u;
  let base = first * BLOCK_BYTES / 4u;
  for (var w = l; w < words; w = w + WG) {
    out[base + w] = tile_out[2u * w] | (tile_out[2u * w + 1u] << 16u);
  }
  if (l < WG / FLAG_BLOCKS) { out[params.flags_word + tile * (WG / FLAG_BLOCKS) + l] = atomicLoad(&tile_bad[l]); }
}
