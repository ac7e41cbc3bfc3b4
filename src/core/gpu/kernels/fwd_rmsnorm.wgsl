// Forward pass: RMSNorm (HF LlamaRMSNorm) of each row of x into out:
//   out[r, i] = (x[r, i] * inv) * weight[i],  inv = 1 / sqrt(mean(x[r, :]^2) + eps)
// as the CPU pass (the product with inv rounded to f32 before the weight). One workgroup per row;
// the sum of squares in f32, reduced pairwise in workgroup memory.
struct Params { rows: u32, width: u32, eps: f32, groups_x: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> weight: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const WG = 64u;
var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * params.groups_x;
  // Uniform per workgroup, so the barriers stay in uniform control flow.
  let live = row < params.rows;
  let width = params.width;
  let base = select(0u, row * width, live);
  let end = select(0u, width, live);
  var ss = 0.0;
  for (var i = lid; i < end; i = i + WG) {
    let v = x[base + i];
    ss = ss + v * v;
  }
  partial[lid] = ss;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
  }
  workgroupBarrier();
  let inv = 1.0 / sqrt(partial[0] / f32(width) + params.eps);
  for (var i = lid; i < end; i = i + WG) {
    out[base + i] = (x[base + i] * inv) * weight[i];
  }
}
