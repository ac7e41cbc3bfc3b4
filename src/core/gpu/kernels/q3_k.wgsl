// Q3_K, a port of ggml quantize_row_q3_K_ref (256-value super-blocks of 16 groups of 16; 110 bytes:
// hmask[32], qs[64], scales[12] (16 six-bit signed scales), f16 d). One thread per super-block.
// Rounding: per group make_q3_quants(nmax 4, weights x^2, up to 5 rounds of coordinate descent) with
// nearest_int = ties to even; scales by nearest_int(-32/max_scale * s) clamped to -32..31;
// d = f16(1/iscale) (RNE); values re-quantized as nearest_int(x / d) clamped to -4..3.
// Divisions use div_fast (lib/div_fast.wgsl: div_rn's IEEE result, faster); products feeding an addition, subtraction or comparison go through op() (no FMA
// contraction), and so does each step of a product chain: NVIDIA's Vulkan compiler reassociates unguarded
// chains like (w * x) * l (seen on an H100).
// Output: OUT_STRIDE u32 words per block: the 110 block bytes (112 with padding), then 1 for NaN/Inf.
const OUT_STRIDE = 29u;

// #include "kquant_block.wgsl"

fn clamp_l(l: i32) -> i32 {
  return select(select(l, 3, l > 3), -4, l < -4);
}

// make_q3_quants(16, 4, x, L, do_rmse = true) over src[xo..xo+16); L written at lo as 0..7.
fn make_q3_quants(xo: u32, L: ptr<function, array<i32, 256>>, lo: u32) -> f32 {
  let mx = signed_absmax16(xo);
  if (abs(mx) < GROUP_MAX_EPS) {
    for (var i = 0u; i < 16u; i = i + 1u) { (*L)[lo + i] = 0; }
    return 0.0;
  }
  let iscale = div_fast(-4.0, mx);
  var sumlx = 0.0;
  var suml2 = 0.0;
  for (var i = 0u; i < 16u; i = i + 1u) {
    let xi = src[xo + i];
    let l = clamp_l(nint(iscale * xi));
    (*L)[lo + i] = l;
    let w = xi * xi;
    let lf = f32(l);
    sumlx = sumlx + op(op(w * xi) * lf);
    suml2 = suml2 + op(op(w * lf) * lf);
  }
  for (var itry = 0; itry < 5; itry = itry + 1) {
    var n_changed = 0;
    for (var i = 0u; i < 16u; i = i + 1u) {
      let xi = src[xo + i];
      let w = xi * xi;
      let li = f32((*L)[lo + i]);
      var slx = sumlx - op(op(w * xi) * li);
      if (slx > 0.0) {
        var sl2 = suml2 - op(op(w * li) * li);
        let new_l = clamp_l(nint(div_fast(xi * sl2, slx)));
        if (new_l != (*L)[lo + i]) {
          let nf = f32(new_l);
          slx = slx + op(op(w * xi) * nf);
          sl2 = sl2 + op(op(w * nf) * nf);
          if (sl2 > 0.0 && op(op(slx * slx) * suml2) > op(op(sumlx * sumlx) * sl2)) {
            (*L)[lo + i] = new_l;
            sumlx = slx;
            suml2 = sl2;
            n_changed = n_changed + 1;
          }
        }
      }
    }
    if (n_changed == 0) { break; }
  }
  for (var i = 0u; i < 16u; i = i + 1u) { (*L)[lo + i] = (*L)[lo + i] + 4; }
  if (suml2 > 0.0) { return div_fast(sumlx, suml2); }
  return 0.0;
}

// The super-block at src[xo..xo+256) into words (main in kquant_block writes them out, with the
// NaN/Inf flag `bad`; words stay zero for a flagged block).
fn quantize_super_block(xo: u32, bad: u32, words: ptr<function, array<u32, OUT_STRIDE>>) {
  if (bad == 0u) {
    var L: array<i32, 256>;
    var scales: array<f32, 16>;
    var max_scale = 0.0;
    var amax = 0.0;
    for (var j = 0u; j < 16u; j = j + 1u) {
      scales[j] = make_q3_quants(xo + 16u * j, &L, 16u * j);
      let scale = abs(scales[j]);
      if (scale > amax) { amax = scale; max_scale = scales[j]; }
    }
    let s_off = 96u;
    var d_bits = 0u;
    if (max_scale != 0.0) {
      let iscale = div_fast(-32.0, max_scale);
      for (var j = 0u; j < 16u; j = j + 1u) {
        var l = u32(select(select(nint(iscale * scales[j]), 31, nint(iscale * scales[j]) > 31), -32, nint(iscale * scales[j]) < -32) + 32);
        if (j < 8u) { put_byte(words, s_off + j, l & 0xfu); } else { put_byte(words, s_off + j - 8u, (l & 0xfu) << 4u); }
        l = l >> 4u;
        put_byte(words, s_off + (j % 4u) + 8u, l << (2u * (j / 4u)));
      }
      d_bits = f32_to_f16_bits(div_fast(1.0, iscale));
    }
    put_byte(words, 108u, d_bits);
    put_byte(words, 109u, d_bits >> 8u);
    let d_stored = f16_bits_to_f32(d_bits);
    for (var j = 0u; j < 16u; j = j + 1u) {
      var sc = select(get_byte(words, s_off + j - 8u) >> 4u, get_byte(words, s_off + j) & 0xfu, j < 8u);
      sc = sc | (((get_byte(words, s_off + 8u + (j % 4u)) >> (2u * (j / 4u))) & 3u) << 4u);
      let d = d_stored * f32(i32(sc) - 32);
      if (d == 0.0) { continue; }
      for (var ii = 0u; ii < 16u; ii = ii + 1u) {
        L[16u * j + ii] = clamp_l(nint(div_fast(src[xo + 16u * j + ii], d))) + 4;
      }
    }
    var m = 0u;
    var hm = 1u;
    for (var j = 0u; j < 256u; j = j + 1u) {
      if (L[j] > 3) {
        put_byte(words, m, hm);
        L[j] = L[j] - 4;
      }
      m = m + 1u;
      if (m == 32u) { m = 0u; hm = hm << 1u; }
    }
    for (var half = 0u; half < 2u; half = half + 1u) {
      let j = half * 128u;
      for (var l = 0u; l < 32u; l = l + 1u) {
        put_byte(words, 32u + j / 4u + l, u32(L[j + l]) | (u32(L[j + l + 32u]) << 2u) | (u32(L[j + l + 64u]) << 4u) | (u32(L[j + l + 96u]) << 6u));
      }
    }
  }
}
