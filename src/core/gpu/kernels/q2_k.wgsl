// Q2_K, a port of ggml quantize_row_q2_K_ref (256-value super-blocks of 16 groups of 16; 84 bytes:
// scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin). One thread per super-block.
// Rounding: per group make_qkx2_quants(nmax 3, weights |x|, rmin -0.5, rdelta 0.1, 15 steps, mean
// ABSOLUTE error) with nearest_int = ties to even; 4-bit scales and mins by nearest_int against max/15;
// d, dmin = f16(max/15) (RNE); values re-quantized as nearest_int((x + dm) / d) clamped to 0..3.
// Divisions use div_rn; products feeding an addition go through opaque() (no FMA contraction).
// Output: OUT_STRIDE u32 words per block: the 84 block bytes, then 1 when the block holds NaN/Inf.
struct Params { block_count: u32, zero: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
const OUT_STRIDE = 22u;
const WG = 64u;
const NMAX = 3;

fn nint(fval: f32) -> i32 {
  return nearest_int(fval, params.zero);
}

fn op(v: f32) -> f32 {
  return opaque(v, params.zero);
}

fn clamp_q(l: i32) -> i32 {
  return select(select(l, NMAX, l > NMAX), 0, l < 0);
}

// make_qkx2_quants(16, 3, x, weights, L, &the_min, Laux, -0.5, 0.1, 15, true) over src[xo..xo+16):
// use_mad, so errors are weighted |diff|, not diff^2.
fn make_qkx2_quants(xo: u32, weights: ptr<function, array<f32, 16>>, L: ptr<function, array<i32, 256>>, lo: u32, the_min: ptr<function, f32>) -> f32 {
  var laux: array<i32, 16>;
  var mn = src[xo];
  var mx = src[xo];
  let sum_w0 = (*weights)[0];
  var sum_w = sum_w0;
  var sum_x = op(sum_w0 * src[xo]);
  for (var i = 1u; i < 16u; i = i + 1u) {
    let xi = src[xo + i];
    if (xi < mn) { mn = xi; }
    if (xi > mx) { mx = xi; }
    let w = (*weights)[i];
    sum_w = sum_w + w;
    sum_x = sum_x + op(w * xi);
  }
  if (mn > 0.0) { mn = 0.0; }
  if (mx == mn) {
    for (var i = 0u; i < 16u; i = i + 1u) { (*L)[lo + i] = 0; }
    *the_min = -mn;
    return 0.0;
  }
  var iscale = div_rn(f32(NMAX), mx - mn);
  var scale = div_rn(1.0, iscale);
  var best_error = 0.0;
  for (var i = 0u; i < 16u; i = i + 1u) {
    let xi = src[xo + i];
    let l = clamp_q(nint(iscale * (xi - mn)));
    (*L)[lo + i] = l;
    var diff = (op(scale * f32(l)) + mn) - xi;
    diff = abs(diff);
    best_error = best_error + op((*weights)[i] * diff);
  }
  for (var is = 0; is <= 15; is = is + 1) {
    iscale = div_rn((-0.5 + op(0.1 * f32(is))) + f32(NMAX), mx - mn);
    var sum_l = 0.0;
    var sum_l2 = 0.0;
    var sum_xl = 0.0;
    for (var i = 0u; i < 16u; i = i + 1u) {
      let xi = src[xo + i];
      let l = clamp_q(nint(iscale * (xi - mn)));
      laux[i] = l;
      let lf = f32(l);
      let wl = op((*weights)[i] * lf);
      sum_l = sum_l + wl;
      sum_l2 = sum_l2 + op(wl * lf);
      sum_xl = sum_xl + op(wl * xi);
    }
    let big_d = op(sum_w * sum_l2) - op(sum_l * sum_l);
    if (big_d > 0.0) {
      var this_scale = div_rn(op(sum_w * sum_xl) - op(sum_x * sum_l), big_d);
      var this_min = div_rn(op(sum_l2 * sum_x) - op(sum_l * sum_xl), big_d);
      if (this_min > 0.0) {
        this_min = 0.0;
        this_scale = div_rn(sum_xl, sum_l2);
      }
      var cur_error = 0.0;
      for (var i = 0u; i < 16u; i = i + 1u) {
        var diff = (op(this_scale * f32(laux[i])) + this_min) - src[xo + i];
        diff = abs(diff);
        cur_error = cur_error + op((*weights)[i] * diff);
      }
      if (cur_error < best_error) {
        for (var i = 0u; i < 16u; i = i + 1u) { (*L)[lo + i] = laux[i]; }
        best_error = cur_error;
        scale = this_scale;
        mn = this_min;
      }
    }
  }
  *the_min = -mn;
  return scale;
}

fn put_byte(words: ptr<function, array<u32, 22>>, at: u32, value: u32) {
  (*words)[at / 4u] = (*words)[at / 4u] | ((value & 0xffu) << (8u * (at % 4u)));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  let xo = ib * 256u;
  var words: array<u32, 22>;
  for (var w = 0u; w < 22u; w = w + 1u) { words[w] = 0u; }
  var bad = 0u;
  for (var i = 0u; i < 256u; i = i + 1u) {
    if (is_non_finite(src[xo + i])) { bad = 1u; }
  }
  if (bad == 0u) {
    var L: array<i32, 256>;
    var weights: array<f32, 16>;
    var scales: array<f32, 16>;
    var mins: array<f32, 16>;
    var sc_bytes: array<u32, 16>;
    var max_scale = 0.0;
    var max_min = 0.0;
    for (var j = 0u; j < 16u; j = j + 1u) {
      for (var l = 0u; l < 16u; l = l + 1u) { weights[l] = abs(src[xo + 16u * j + l]); }
      var the_min = 0.0;
      let scale = make_qkx2_quants(xo + 16u * j, &weights, &L, 16u * j, &the_min);
      scales[j] = scale;
      mins[j] = the_min;
      if (scale > max_scale) { max_scale = scale; }
      if (the_min > max_min) { max_min = the_min; }
    }
    var d_bits = 0u;
    if (max_scale > 0.0) {
      let iscale = div_rn(15.0, max_scale);
      for (var j = 0u; j < 16u; j = j + 1u) { sc_bytes[j] = u32(nint(iscale * scales[j])) & 0xffu; }
      d_bits = f32_to_f16_bits(div_rn(max_scale, 15.0));
    } else {
      for (var j = 0u; j < 16u; j = j + 1u) { sc_bytes[j] = 0u; }
    }
    var dmin_bits = 0u;
    if (max_min > 0.0) {
      let iscale = div_rn(15.0, max_min);
      for (var j = 0u; j < 16u; j = j + 1u) { sc_bytes[j] = (sc_bytes[j] | (u32(nint(iscale * mins[j])) << 4u)) & 0xffu; }
      dmin_bits = f32_to_f16_bits(div_rn(max_min, 15.0));
    }
    for (var j = 0u; j < 16u; j = j + 1u) { put_byte(&words, j, sc_bytes[j]); }
    put_byte(&words, 80u, d_bits);
    put_byte(&words, 81u, d_bits >> 8u);
    put_byte(&words, 82u, dmin_bits);
    put_byte(&words, 83u, dmin_bits >> 8u);
    let d_stored = f16_bits_to_f32(d_bits);
    let dmin_stored = f16_bits_to_f32(dmin_bits);
    for (var j = 0u; j < 16u; j = j + 1u) {
      let d = d_stored * f32(sc_bytes[j] & 0xfu);
      if (d == 0.0) { continue; }
      let dm = dmin_stored * f32(sc_bytes[j] >> 4u);
      for (var ii = 0u; ii < 16u; ii = ii + 1u) {
        L[16u * j + ii] = clamp_q(nint(div_rn(src[xo + 16u * j + ii] + dm, d)));
      }
    }
    for (var half = 0u; half < 2u; half = half + 1u) {
      let j = half * 128u;
      for (var l = 0u; l < 32u; l = l + 1u) {
        put_byte(&words, 16u + j / 4u + l, u32(L[j + l]) | (u32(L[j + l + 32u]) << 2u) | (u32(L[j + l + 64u]) << 4u) | (u32(L[j + l + 96u]) << 6u));
      }
    }
  }
  let o = ib * OUT_STRIDE;
  for (var w = 0u; w < 21u; w = w + 1u) { out[o + w] = words[w]; }
  out[o + 21u] = bad;
}
