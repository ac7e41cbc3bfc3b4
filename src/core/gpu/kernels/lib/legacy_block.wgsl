// Shared by the two entry points of the 32-value block kernels (q4_0, q4_1, q5_0, q5_1, q8_0):
// legacy_tile.wgsl (GPUs) and legacy_direct.wgsl (software adapters). The kernel's lib/<type>_block.wgsl
// declares SCALE_HALVES (1: d, 2: d and m, f16 each), QH_WORDS (0 or 1) and QS_WORDS (4 or 8), which fix
// ggml's block [d][m][qh][qs] of BLOCK_BYTES, and quantize_block, which fills the block's FIELDS words:
// [0] f16 bits of d (| m << 16), [1] qh, [2..9] qs bytes packed little-endian, [10] 1 when the block holds NaN/Inf.
// Both entry points write the chunk's blocks as ggml bytes back to back from word 0 (the last word
// zero-padded), then from word params.flags_word the NaN/Inf bits: flag word w covers FLAG_BLOCKS blocks
// from block w * FLAG_BLOCKS, bit i for the i-th of them.
struct Params { block_count: u32, zero: u32, groups_x: u32, flags_word: u32 }
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
const WG = 64u;
const FIELDS = 11u;
const BLOCK_BYTES = 2u * SCALE_HALVES + 4u * QH_WORDS + 4u * QS_WORDS;
const BLOCK_HALVES = BLOCK_BYTES / 2u;

// Levels of 4 or 5 bits: the low nibbles of q[j] and q[16 + j] share qs byte j (fields 2..5,
// little-endian), the 5th bits go to qh (field 1): bit j for q[j], bit j + 16 for q[16 + j].
fn pack_nibbles(f: ptr<function, array<u32, FIELDS>>, q: ptr<function, array<u32, 32>>) {
  var qh = 0u;
  for (var w = 0u; w < 4u; w = w + 1u) {
    var word = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
      let j = w * 4u + k;
      let q0 = (*q)[j];
      let q1 = (*q)[16u + j];
      word = word | (((q0 & 0x0fu) | ((q1 & 0x0fu) << 4u)) << (8u * k));
      qh = qh | (((q0 & 0x10u) >> 4u) << j) | (((q1 & 0x10u) >> 4u) << (j + 16u));
    }
    (*f)[2u + w] = word;
  }
  (*f)[1u] = qh;
}
