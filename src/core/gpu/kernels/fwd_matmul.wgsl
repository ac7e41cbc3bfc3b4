// Forward pass: out[m, out_col + n] (+)= sum_k x[x_row0 + m, k] * w[n, k] (+ bias[n])
// x: [*, K] row-major (activations), w: [N, K] row-major (nn.Linear's layout), out: [M, out_stride].
// Tiled: each workgroup computes a 64 x 64 tile of out through 16-wide slices of K staged in
// workgroup memory; each of its 256 threads accumulates a 4 x 4 block (rows ty + 16i, columns
// tx + 16j, so that neighbouring threads write neighbouring columns). Accumulation in f32.
// flags: bit 0 = add to what out holds (the residual add fused into the projection), bit 1 = add bias[n].
struct Params { M: u32, N: u32, K: u32, flags: u32, out_stride: u32, out_col: u32, x_row0: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;

const TILE = 64u;
const BK = 16u;
// [BK][TILE]: slice k of the tile's 64 rows of x (and of w) side by side.
var<workgroup> x_tile: array<f32, 1024>;
var<workgroup> w_tile: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let n0 = wid.x * TILE;
  let m0 = wid.y * TILE;
  let tx = lid.x;
  let ty = lid.y;
  var acc: array<array<f32, 4>, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) { acc[i][j] = 0.0; }
  }
  // Loading: thread li brings 4 consecutive k of tile row li / 4 (for x and for w).
  let load_row = li / 4u;
  let load_k = (li % 4u) * 4u;
  let gm = m0 + load_row;
  let gn = n0 + load_row;
  let x_base = (params.x_row0 + gm) * K;
  let w_base = gn * K;
  for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
    for (var j = 0u; j < 4u; j = j + 1u) {
      let gk = k0 + load_k + j;
      var xv = 0.0;
      if (gm < M && gk < K) { xv = x[x_base + gk]; }
      x_tile[(load_k + j) * TILE + load_row] = xv;
      var wv = 0.0;
      if (gn < N && gk < K) { wv = w[w_base + gk]; }
      w_tile[(load_k + j) * TILE + load_row] = wv;
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k = k + 1u) {
      let xo = k * TILE + ty;
      let wo = k * TILE + tx;
      let a = vec4<f32>(x_tile[xo], x_tile[xo + 16u], x_tile[xo + 32u], x_tile[xo + 48u]);
      let b = vec4<f32>(w_tile[wo], w_tile[wo + 16u], w_tile[wo + 32u], w_tile[wo + 48u]);
      for (var i = 0u; i < 4u; i = i + 1u) {
        acc[i][0] = acc[i][0] + a[i] * b.x;
        acc[i][1] = acc[i][1] + a[i] * b.y;
        acc[i][2] = acc[i][2] + a[i] * b.z;
        acc[i][3] = acc[i][3] + a[i] * b.w;
      }
    }
    workgroupBarrier();
  }
  let accumulate = (params.flags & 1u) != 0u;
  let with_bias = (params.flags & 2u) != 0u;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let m = m0 + ty + 16u * i;
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      let n = n0 + tx + 16u * j;
      if (n >= N) { continue; }
      var v = acc[i][j];
      if (with_bias) { v = v + bias[n]; }
      let o = m * params.out_stride + params.out_col + n;
      if (accumulate) { v = out[o] + v; }
      out[o] = v;
    }
  }
}
