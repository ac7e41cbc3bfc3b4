// GPTQ's heavy products (core/gpu/gptq.ts), one strided f32 matmul:
//   out[o_off + m * o_rs + n] (op)= sum_k a[a_off + m * a_rs + k * a_cs] * b[b_off + k * b_rs + n * b_cs]
// Hessian chunk: a(m, k) = X[k, m], b(k, n) = X[k, n], op = += (upper-triangle tiles only, flag bit 2).
// Lazy batch update on W stored transposed (cols x rows): a(m, k) = Hinv[i1 + k, i2 + m],
// b(k, n) = Err1^T[k, n], op = -=.
// Tiled like fwd_matmul.wgsl: a workgroup computes a 64 x 64 tile through 16-wide K slices staged in
// workgroup memory; each of its 256 threads accumulates 4 x 4 outputs (rows ty + 16i, columns tx + 16j).
// Accumulation in f32, k in increasing order within the sum; the op is applied once at the end.
// flags: bit 0 = add to what out holds, bit 1 = subtract instead of add, bit 2 = skip tiles with
// m0 > n0 + 63 (entirely below the diagonal: the host symmetrises from the upper triangle).
struct Params { M: u32, N: u32, K: u32, flags: u32, a_off: u32, a_rs: u32, a_cs: u32, b_off: u32, b_rs: u32, b_cs: u32, o_off: u32, o_rs: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const TILE = 64u;
const BK = 16u;
// [BK][TILE]: slice k of the tile's 64 rows of a (columns of b) side by side.
var<workgroup> a_tile: array<f32, 1024>;
var<workgroup> b_tile: array<f32, 1024>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
  let M = params.M;
  let N = params.N;
  let K = params.K;
  let n0 = wid.x * TILE;
  let m0 = wid.y * TILE;
  // Uniform per workgroup, so the early return keeps the barriers uniform.
  if ((params.flags & 4u) != 0u && m0 > n0 + TILE - 1u) { return; }
  let tx = lid.x;
  let ty = lid.y;
  var acc: array<array<f32, 4>, 4>;
  for (var i = 0u; i < 4u; i = i + 1u) {
    for (var j = 0u; j < 4u; j = j + 1u) { acc[i][j] = 0.0; }
  }
  // Loading: thread li brings 4 consecutive tile rows (m or n) of slice row li / 16.
  let load_k = li / 16u;
  let load_r = (li % 16u) * 4u;
  for (var k0 = 0u; k0 < K; k0 = k0 + BK) {
    let gk = k0 + load_k;
    for (var j = 0u; j < 4u; j = j + 1u) {
      let gm = m0 + load_r + j;
      var av = 0.0;
      if (gm < M && gk < K) { av = a[params.a_off + gm * params.a_rs + gk * params.a_cs]; }
      a_tile[load_k * TILE + load_r + j] = av;
      let gn = n0 + load_r + j;
      var bv = 0.0;
      if (gn < N && gk < K) { bv = b[params.b_off + gk * params.b_rs + gn * params.b_cs]; }
      b_tile[load_k * TILE + load_r + j] = bv;
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k = k + 1u) {
      let ao = k * TILE + ty;
      let bo = k * TILE + tx;
      let av = vec4<f32>(a_tile[ao], a_tile[ao + 16u], a_tile[ao + 32u], a_tile[ao + 48u]);
      let bv = vec4<f32>(b_tile[bo], b_tile[bo + 16u], b_tile[bo + 32u], b_tile[bo + 48u]);
      for (var i = 0u; i < 4u; i = i + 1u) {
        acc[i][0] = acc[i][0] + av[i] * bv.x;
        acc[i][1] = acc[i][1] + av[i] * bv.y;
        acc[i][2] = acc[i][2] + av[i] * bv.z;
        acc[i][3] = acc[i][3] + av[i] * bv.w;
      }
    }
    workgroupBarrier();
  }
  let accumulate = (params.flags & 1u) != 0u;
  let subtract = (params.flags & 2u) != 0u;
  for (var i = 0u; i < 4u; i = i + 1u) {
    let m = m0 + ty + 16u * i;
    if (m >= M) { continue; }
    for (var j = 0u; j < 4u; j = j + 1u) {
      let n = n0 + tx + 16u * j;
      if (n >= N) { continue; }
      var v = acc[i][j];
      if (subtract) { v = -v; }
      let o = params.o_off + m * params.o_rs + n;
      if (accumulate) { v = out[o] + v; }
      out[o] = v;
    }
  }
}
