// Included by the K-quant kernels (q2_k..q6_k): bindings, one thread per 256-value super-block, and
// byte access to the block being assembled in OUT_STRIDE u32 words (OUT_STRIDE is the kernel's).
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
