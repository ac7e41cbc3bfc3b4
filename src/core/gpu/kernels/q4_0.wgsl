// Q4_0, a port of ggml quantize_row_q4_0_ref. d = max / -8.0 where max is the value of largest
// magnitude (first one on ties), id = 1/d, q = min(15, trunc(x*id + 8.5)): x*id rounded to f32 first,
// then the sum, then truncation toward zero.
// Output: OUT_STRIDE u32 words per block: [0] f16 bits of d (| m << 16), [1] qh, [2..9] qs bytes
// packed little-endian, [10] 1 when the block holds NaN/Inf. The host interleaves them into ggml blocks
// (18/20/22/24/34-byte blocks straddle u32 words, so the kernel never writes them directly).
struct Params { block_count: u32, zero: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
const OUT_STRIDE = 11u;
const WG = 64u;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  let o = ib * OUT_STRIDE;
  // The block is read from memory once, as 8 vec4 loads, and worked on in registers.
  var v: array<f32, 32>;
  for (var k = 0u; k < 8u; k = k + 1u) {
    let q = src4[ib * 8u + k];
    v[4u * k] = q.x;
    v[4u * k + 1u] = q.y;
    v[4u * k + 2u] = q.z;
    v[4u * k + 3u] = q.w;
  }
  var amax = 0.0;
  var mx = 0.0;
  var bad = 0u;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let x = v[j];
    if (is_non_finite(x)) { bad = 1u; }
    if (amax < abs(x)) { amax = abs(x); mx = x; }
  }
  let d = div_rn(mx, -8.0);
  var id = 0.0;
  if (d != 0.0) { id = div_rn(1.0, d); }
  out[o] = f32_to_f16_bits(d);
  var qh = 0u;
  for (var w = 0u; w < 4u; w = w + 1u) {
    var word = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
      let j = w * 4u + k;
      let x0 = opaque(v[j] * id, params.zero);
      let x1 = opaque(v[16u + j] * id, params.zero);
      let q0 = u32(min(15, i32(trunc(x0 + 8.5))));
      let q1 = u32(min(15, i32(trunc(x1 + 8.5))));
      word = word | (((q0 & 0x0fu) | ((q1 & 0x0fu) << 4u)) << (8u * k));
      qh = qh | (((q0 & 0x10u) >> 4u) << j) | (((q1 & 0x10u) >> 4u) << (j + 16u));
    }
    out[o + 2u + w] = word;
  }
  out[o + 1u] = qh;
  out[o + 10u] = bad;
}
