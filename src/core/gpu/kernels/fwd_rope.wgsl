// Forward pass: rotary embedding of the Q and K heads of qkv [rows, row_stride] in place
// (Q heads from column 0, K heads from column k_col; V untouched). Row r is at position r % window.
// Pairs (`pairing`): 0 = HF rotate_half (dim i with i + d/2, safetensors), 1 = interleaved (2i with 2i+1,
// GGUF files whose Q/K rows llama.cpp's converter permuted). cos/sin: [window, d/2] tables made on
// the host exactly as the CPU pass makes them (model/kernels.ts ropeTables).
//   a' = a cos - b sin,  b' = b cos + a sin
// One thread per (row, head, pair).
struct Params { rows: u32, row_stride: u32, q_heads: u32, k_heads: u32, head_dim: u32, k_col: u32, window: u32, pairing: u32, groups_x: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read_write> qkv: array<f32>;
@group(0) @binding(1) var<storage, read> cos_table: array<f32>;
@group(0) @binding(2) var<storage, read> sin_table: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const WG = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let id = gid.x + gid.y * params.groups_x * WG;
  let pairs = params.head_dim / 2u;
  let heads = params.q_heads + params.k_heads;
  if (id >= params.rows * heads * pairs) { return; }
  let i = id % pairs;
  let head = (id / pairs) % heads;
  let row = id / (pairs * heads);
  var col = head * params.head_dim;
  if (head >= params.q_heads) { col = params.k_col + (head - params.q_heads) * params.head_dim; }
  var ia = row * params.row_stride + col + i;
  var ib = ia + pairs;
  if (params.pairing == 1u) {
    ia = row * params.row_stride + col + 2u * i;
    ib = ia + 1u;
  }
  let t = (row % params.window) * pairs + i;
  let c = cos_table[t];
  let s = sin_table[t];
  let a = qkv[ia];
  let b = qkv[ib];
  qkv[ia] = a * c - b * s;
  qkv[ib] = b * c + a * s;
}
