// The product of gptq_matmul.wgsl (same bindings, Params and flags) without workgroup memory or
// barriers, for software adapters (Mesa lavapipe runs barriers as coroutines): each thread reads its
// 4 rows of a and 4 columns of b straight from the buffers and accumulates a 4 x 4 block in f32, k in
// increasing order (the same sums as the tiled kernel).
//   out[o_off + m * o_rs + n] (op)= sum_k a[a_off + m * a_rs + k * a_cs] * b[b_off + k * b_rs + n * b_cs]
struct Params { M: u32, N: u32, K: u32, flags: u32, a_off: u32, a_rs: u32, a_cs: u32, b_off: u32, b_rs: u32, b_cs: u32, o_off: u32, o_rs: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

// A workgroup of 16 x 16 threads covers a 64 x 64 tile of out, like the tiled kernel.
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  if ((params.flags & 4u) != 0u && wid.y * 64u > wid.x * 64u + 63u) { return; }
  let m0 = wid.y * 64u + lid.y * 4u;
  let n0 = wid.x * 64u + lid.x * 4u;
  if (m0 >= M || n0 >= N) { return; }
  // Rows / columns past the end repeat the last one (their results are not stored).
  var ar: array<u32, 4>;
  var bc: array<u32, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) {
    ar[i] = params.a_off + min(m0 + i, M - 1u) * params.a_rs;
    bc[i] = params.b_off + min(n0 + i, N - 1u) * params.b_cs;
  }
  var acc: array<vec4<f32>, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) { acc[i] = vec4<f32>(0.0); }
  for (var k = 0u; k < K; k = k + 1u) {
    let kb = k * params.b_rs;
    let ka = k * params.a_cs;
    let bv = vec4<f32>(b[bc[0] + kb], b[bc[1] + kb], b[bc[2] + kb], b[bc[3] + kb]);
    for (var i = 0u; i < 4u; i = i + 1u) { acc[i] = acc[i] + a[ar[i] + ka] * bv; }
  }
  let accumulate = (params.flags & 1u) != 0u;
  let subtract = (params.flags & 2u) != 0u;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let m = m0 + i;
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      let n = n0 + j;
      if (n >= N) { continue; }
      var v = acc[i][j];
      if (subtract) { v = -v; }
      let o = params.o_off + m * params.o_rs + n;
      if (accumulate) { v = out[o] + v; }
      out[o] = v;
    }
  }
}
