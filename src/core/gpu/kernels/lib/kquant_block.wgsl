// Included by the K-quant kernels (q2_k..q6_k): bindings, one thread per 256-value super-block, byte
// access to the block being assembled in OUT_STRIDE u32 words (OUT_STRIDE is the kernel's), and the
// entry point: the kernel's quantize_super_block fills words[0..OUT_STRIDE-1), the last word is the
// NaN/Inf flag.
// #include "div_fast.wgsl"
struct Params { block_count: u32, zero: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
const WG = 64u;

fn nint(fval: f32) -> i32 {
  return nearest_int(fval, params.zero);
}

fn op(v: f32) -> f32 {
  return opaque(v, params.zero);
}

fn put_byte(words: ptr<function, array<u32, OUT_STRIDE>>, at: u32, value: u32) {
  (*words)[at / 4u] = (*words)[at / 4u] | ((value & 0xffu) << (8u * (at % 4u)));
}

fn get_byte(words: ptr<function, array<u32, OUT_STRIDE>>, at: u32) -> u32 {
  return ((*words)[at / 4u] >> (8u * (at % 4u))) & 0xffu;
}

// 1 when one of the 256 values at src[xo..] is NaN or +-Inf.
fn non_finite_flag(xo: u32) -> u32 {
  var bad = 0u;
  for (var i = 0u; i < 256u; i = i + 1u) {
    if (is_non_finite(src[xo + i])) { bad = 1u; }
  }
  return bad;
}

const GROUP_MAX_EPS = 1e-15;

// The value of largest magnitude among src[xo..xo+16), the first one on ties; 0 when all are 0.
fn signed_absmax16(xo: u32) -> f32 {
  var mx = 0.0;
  var amax = 0.0;
  for (var i = 0u; i < 16u; i = i + 1u) {
    let ax = abs(src[xo + i]);
    if (ax > amax) { amax = ax; mx = src[xo + i]; }
  }
  return mx;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  let xo = ib * 256u;
  var words: array<u32, OUT_STRIDE>;
  for (var w = 0u; w < OUT_STRIDE; w = w + 1u) { words[w] = 0u; }
  let bad = non_finite_flag(xo);
  quantize_super_block(xo, bad, &words);
  let o = ib * OUT_STRIDE;
  for (var w = 0u; w < OUT_STRIDE - 1u; w = w + 1u) { out[o + w] = words[w]; }
  out[o + OUT_STRIDE - 1u] = bad;
}
