// Q5_K, a port of ggml quantize_row_q5_K_ref (256-value super-blocks of 8 groups of 32; 176 bytes:
// f16 d, f16 dmin, scales[12] (8 six-bit scales + 8 six-bit mins), qh[32], qs[128]). One thread per super-block.
// Rounding: per group make_qkx2_quants(32, nmax 31, weights av_x + |x| with av_x = sqrtf(sum x^2 / 32),
// rmin -0.5, rdelta 0.1, 15 steps) with nearest_int = ties to even; the 8 scales and mins quantized to
// 6 bits with nearest_int against max/63; d, dmin = f16(max/63) (RNE); every value re-quantized as
// nearest_int((x + dm) / d) clamped to 0..31 against the stored f16 scales; the 5th bit goes to qh.
// Divisions use div_rn and sqrtf sqrt_rn (both exactly as IEEE / C); products feeding an addition go
// through opaque() (no FMA contraction, as ggml-base is compiled).
// Output: OUT_STRIDE u32 words per block: the 176 block bytes, then 1 when the block holds NaN/Inf.
struct Params { block_count: u32, zero: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
const OUT_STRIDE = 45u;
const WG = 64u;
const NMAX = 31;

fn nint(fval: f32) -> i32 {
  return nearest_int(fval, params.zero);
}

fn op(v: f32) -> f32 {
  return opaque(v, params.zero);
}

fn clamp_q(l: i32) -> i32 {
  return select(select(l, NMAX, l > NMAX), 0, l < 0);
}

// make_qkx2_quants(32, 31, x, weights, L, &the_min, Laux, -0.5, 0.1, 15, false) over src[xo..xo+32).
fn make_qkx2_quants(xo: u32, weights: ptr<function, array<f32, 32>>, L: ptr<function, array<i32, 256>>, lo: u32, the_min: ptr<function, f32>) -> f32 {
  var laux: array<i32, 32>;
  var mn = src[xo];
  var mx = src[xo];
  let sum_w0 = (*weights)[0];
  var sum_w = sum_w0;
  var sum_x = op(sum_w0 * src[xo]);
  for (var i = 1u; i < 32u; i = i + 1u) {
    let xi = src[xo + i];
    if (xi < mn) { mn = xi; }
    if (xi > mx) { mx = xi; }
    let w = (*weights)[i];
    sum_w = sum_w + w;
    sum_x = sum_x + op(w * xi);
  }
  if (mn > 0.0) { mn = 0.0; }
  if (mx == mn) {
    for (var i = 0u; i < 32u; i = i + 1u) { (*L)[lo + i] = 0; }
    *the_min = -mn;
    return 0.0;
  }
  var iscale = div_rn(f32(NMAX), mx - mn);
  var scale = div_rn(1.0, iscale);
  var best_error = 0.0;
  for (var i = 0u; i < 32u; i = i + 1u) {
    let xi = src[xo + i];
    let l = clamp_q(nint(iscale * (xi - mn)));
    (*L)[lo + i] = l;
    var diff = (op(scale * f32(l)) + mn) - xi;
    diff = diff * diff;
    best_error = best_error + op((*weights)[i] * diff);
  }
  for (var is = 0; is <= 15; is = is + 1) {
    iscale = div_rn((-0.5 + op(0.1 * f32(is))) + f32(NMAX), mx - mn);
    var sum_l = 0.0;
    var sum_l2 = 0.0;
    var sum_xl = 0.0;
    for (var i = 0u; i < 32u; i = i + 1u) {
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
      for (var i = 0u; i < 32u; i = i + 1u) {
        var diff = (op(this_scale * f32(laux[i])) + this_min) - src[xo + i];
        diff = diff * diff;
        cur_error = cur_error + op((*weights)[i] * diff);
      }
      if (cur_error < best_error) {
        for (var i = 0u; i < 32u; i = i + 1u) { (*L)[lo + i] = laux[i]; }
        best_error = cur_error;
        scale = this_scale;
        mn = this_min;
      }
    }
  }
  *the_min = -mn;
  return scale;
}

fn put_byte(words: ptr<function, array<u32, 45>>, at: u32, value: u32) {
  (*words)[at / 4u] = (*words)[at / 4u] | ((value & 0xffu) << (8u * (at % 4u)));
}

fn get_byte(words: ptr<function, array<u32, 45>>, at: u32) -> u32 {
  return ((*words)[at / 4u] >> (8u * (at % 4u))) & 0xffu;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  let xo = ib * 256u;
  var words: array<u32, 45>;
  for (var w = 0u; w < 45u; w = w + 1u) { words[w] = 0u; }
  var bad = 0u;
  for (var i = 0u; i < 256u; i = i + 1u) {
    if (is_non_finite(src[xo + i])) { bad = 1u; }
  }
  if (bad == 0u) {
    var L: array<i32, 256>;
    var weights: array<f32, 32>;
    var scales: array<f32, 8>;
    var mins: array<f32, 8>;
    var max_scale = 0.0;
    var max_min = 0.0;
    for (var j = 0u; j < 8u; j = j + 1u) {
      let g = xo + 32u * j;
      var sum_x2 = 0.0;
      for (var l = 0u; l < 32u; l = l + 1u) { sum_x2 = sum_x2 + op(src[g + l] * src[g + l]); }
      let av_x = sqrt_rn(div_rn(sum_x2, 32.0));
      for (var l = 0u; l < 32u; l = l + 1u) { weights[l] = av_x + abs(src[g + l]); }
      var the_min = 0.0;
      let scale = make_qkx2_quants(g, &weights, &L, 32u * j, &the_min);
      scales[j] = scale;
      mins[j] = the_min;
      if (scale > max_scale) { max_scale = scale; }
      if (the_min > max_min) { max_min = the_min; }
    }
    var inv_scale = 0.0;
    if (max_scale > 0.0) { inv_scale = div_rn(63.0, max_scale); }
    var inv_min = 0.0;
    if (max_min > 0.0) { inv_min = div_rn(63.0, max_min); }
    for (var j = 0u; j < 8u; j = j + 1u) {
      // uint8_t ls = nearest_int(...); ls = MIN(63, ls)
      let ls = min(63u, u32(nint(inv_scale * scales[j])) & 0xffu);
      let lm = min(63u, u32(nint(inv_min * mins[j])) & 0xffu);
      if (j < 4u) {
        put_byte(&words, 4u + j, ls);
        put_byte(&words, 4u + j + 4u, lm);
      } else {
        put_byte(&words, 4u + j + 4u, (ls & 0xfu) | ((lm & 0xfu) << 4u));
        put_byte(&words, 4u + j - 4u, (ls >> 4u) << 6u);
        put_byte(&words, 4u + j, (lm >> 4u) << 6u);
      }
    }
    let d_bits = f32_to_f16_bits(div_rn(max_scale, 63.0));
    let dmin_bits = f32_to_f16_bits(div_rn(max_min, 63.0));
    put_byte(&words, 0u, d_bits);
    put_byte(&words, 1u, d_bits >> 8u);
    put_byte(&words, 2u, dmin_bits);
    put_byte(&words, 3u, dmin_bits >> 8u);
    let d_stored = f16_bits_to_f32(d_bits);
    let dmin_stored = f16_bits_to_f32(dmin_bits);
    for (var j = 0u; j < 8u; j = j + 1u) {
      var sc = 0u;
      var m = 0u;
      if (j < 4u) {
        sc = get_byte(&words, 4u + j) & 63u;
        m = get_byte(&words, 4u + j + 4u) & 63u;
      } else {
        sc = (get_byte(&words, 4u + j + 4u) & 0xfu) | ((get_byte(&words, 4u + j - 4u) >> 6u) << 4u);
        m = (get_byte(&words, 4u + j + 4u) >> 4u) | ((get_byte(&words, 4u + j) >> 6u) << 4u);
      }
      let d = d_stored * f32(sc);
      if (d == 0.0) { continue; }
      let dm = dmin_stored * f32(m);
      for (var ii = 0u; ii < 32u; ii = ii + 1u) {
        L[32u * j + ii] = clamp_q(nint(div_rn(src[xo + 32u * j + ii] + dm, d)));
      }
    }
    var m1 = 1u;
    var m2 = 2u;
    for (var n = 0u; n < 4u; n = n + 1u) {
      for (var j = 0u; j < 32u; j = j + 1u) {
        var l1 = u32(L[64u * n + j]);
        if (l1 > 15u) { l1 = l1 - 16u; put_byte(&words, 16u + j, m1); }
        var l2 = u32(L[64u * n + j + 32u]);
        if (l2 > 15u) { l2 = l2 - 16u; put_byte(&words, 16u + j, m2); }
        put_byte(&words, 48u + 32u * n + j, l1 | (l2 << 4u));
      }
      m1 = m1 << 2u;
      m2 = m2 << 2u;
    }
  }
  let o = ib * OUT_STRIDE;
  for (var w = 0u; w < 44u; w = w + 1u) { out[o + w] = words[w]; }
  out[o + 44u] = bad;
}
