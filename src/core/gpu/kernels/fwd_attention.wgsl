// Forward pass: causal grouped-query attention over qkv [rows, row_stride] (Q heads from column 0,
// K from k_col, V from v_col), windows of `window` rows each starting at position 0.
// Query head h reads KV head h / (q_heads / kv_heads). For query row t of a window:
//   z_s = (q_t . k_s) * scale for s <= t;  p_s = exp(z_s - max z) / sum exp(z - max z);  out = sum p_s v_s
// One workgroup of 64 threads per (row, head): threads take keys s = lid, lid + 64, ... for the
// scores (kept in workgroup memory, so window <= MAX_WINDOW), then dimensions for the weighted sum.
struct Params { rows: u32, row_stride: u32, q_heads: u32, kv_heads: u32, head_dim: u32, k_col: u32, v_col: u32, window: u32, scale: f32, groups_x: u32, out_stride: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> qkv: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG = 64u;
const MAX_WINDOW = 2048u;
const MAX_HEAD_DIM = 256u;
var<workgroup> q_row: array<f32, 256>;
var<workgroup> scores: array<f32, 2048>;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * params.groups_x;
  let live = g < params.rows * params.q_heads;
  let row = select(0u, g / params.q_heads, live);
  let h = g % params.q_heads;
  let d = params.head_dim;
  let kvh = h / (params.q_heads / params.kv_heads);
  let t = row % params.window;
  let first = row - t;
  let keys = select(0u, t + 1u, live);
  let q_at = row * params.row_stride + h * d;
  for (var i = lid; i < d; i = i + WG) { q_row[i] = qkv[q_at + i]; }
  workgroupBarrier();

  var local_max = -3.40282346638528859812e+38;
  for (var s = lid; s < keys; s = s + WG) {
    let k_at = (first + s) * params.row_stride + params.k_col + kvh * d;
    var dot = 0.0;
    for (var i = 0u; i < d; i = i + 1u) { dot = dot + q_row[i] * qkv[k_at + i]; }
    let z = dot * params.scale;
    scores[s] = z;
    local_max = max(local_max, z);
  }
  partial[lid] = local_max;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { partial[lid] = max(partial[lid], partial[lid + s]); }
  }
  workgroupBarrier();
  let row_max = partial[0];
  workgroupBarrier();

  var local_sum = 0.0;
  for (var s = lid; s < keys; s = s + WG) {
    let e = exp(scores[s] - row_max);
    scores[s] = e;
    local_sum = local_sum + e;
  }
  partial[lid] = local_sum;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
  }
  workgroupBarrier();
  let inv_sum = 1.0 / partial[0];

  if (live) {
    for (var i = lid; i < d; i = i + WG) {
      var acc = 0.0;
      var v_at = first * params.row_stride + params.v_col + kvh * d + i;
      for (var s = 0u; s < keys; s = s + 1u) {
        acc = acc + scores[s] * qkv[v_at];
        v_at = v_at + params.row_stride;
      }
      out[row * params.out_stride + h * d + i] = acc * inv_sum;
    }
  }
}
