// Forward pass: the same product as fwd_matmul.wgsl (same bindings and Params), without workgroup
// memory or barriers: each thread reads its 4 rows of x and 4 rows of w straight from the buffers
// and accumulates a 4 x 4 block in f32. For software adapters (Mesa lavapipe runs barriers as
// coroutines, which makes the tiled kernel about 10x slower there); real GPUs use the tiled one.
//   out[m, out_col + n] (+)= sum_k x[x_row0 + m, k] * w[n, k] (+ bias[n])
struct Params { M: u32, N: u32, K: u32, flags: u32, out_stride: u32, out_col: u32, x_row0: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

// A workgroup of 16 x 16 threads covers a 64 x 64 tile of out, like the tiled kernel.
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let m0 = wid.y * 64u + lid.y * 4u;
  let n0 = wid.x * 64u + lid.x * 4u;
  if (m0 >= M || n0 >= N) { return; }
  // Rows past the end repeat the last row (their results are not stored).
  var xr: array<u32, 4>;
  var wr: array<u32, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) {
    xr[i] = (params.x_row0 + min(m0 + i, M - 1u)) * K;
    wr[i] = min(n0 + i, N - 1u) * K;
  }
  var acc: array<vec4<f32>, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) { acc[i] = vec4<f32>(0.0); }
  for (var k = 0u; k < K; k = k + 1u) {
    let b = vec4<f32>(w[wr[0] + k], w[wr[1] + k], w[wr[2] + k], w[wr[3] + k]);
    for (var i = 0u; i < 4u; i = i + 1u) { acc[i] = acc[i] + x[xr[i] + k] * b; }
  }
  let accumulate = (params.flags & 1u) != 0u;
  let with_bias = (params.flags & 2u) != 0u;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let m = m0 + i;
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      let n = n0 + j;
      if (n >= N) { continue; }
      var v = acc[i][j];
      if (with_bias) { v = v + bias[n]; }
      let o = m * params.out_stride + params.out_col + n;
      if (accumulate) { v = out[o] + v; }
      out[o] = v;
    }
  }
}
