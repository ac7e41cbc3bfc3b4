// Q6_K, a port of ggml quantize_row_q6_K_ref (256-value super-blocks of 16 groups of 16; 210 bytes:
// ql[128], qh[64], int8 scales[16], f16 d). One thread per super-block.
// Rounding: per group make_qx_quants(nmax 32, rmse_type 1: weights x^2, 19 candidate scales), with
// nearest_int = round to nearest, ties to even (ggml's 12582912 trick, done here the same way);
// 8-bit scales min(127, nearest_int(-128/max_scale * s)); d = f16(1/iscale) (RNE); values re-quantized
// as nearest_int(x / d) clamped to -32..31. All-small blocks (< 1e-15) are all zero bytes.
// Divisions use div_fast (lib/div_fast.wgsl: div_rn's IEEE result, faster) (IEEE, like C); products that feed an addition go through op() so they are
// rounded before the add, as in C (no FMA contraction), and so does each step of a product chain
// ((w * x) * l): NVIDIA's Vulkan compiler reassociates unguarded chains (seen on an H100: 962 of
// 65,536 blocks differed until these were guarded).
// Output: OUT_STRIDE u32 words per block: the 210 block bytes at their offsets (212 with padding),
// then a word that is 1 when the block holds NaN/Inf. The host copies the 210 bytes.
const OUT_STRIDE = 54u;

// #include "kquant_block.wgsl"

fn clamp_l(l: i32) -> i32 {
  return select(select(l, 31, l > 31), -32, l < -32);
}

// make_qx_quants(16, 32, x, L, rmse_type 1, NULL) over src[xo..xo+16); L written at lo (0..63).
fn make_qx_quants(xo: u32, L: ptr<function, array<i32, 256>>, lo: u32) -> f32 {
  let mx = signed_absmax16(xo);
  if (abs(mx) < GROUP_MAX_EPS) {
    for (var i = 0u; i < 16u; i = i + 1u) { (*L)[lo + i] = 0; }
    return 0.0;
  }
  // The group's values, loaded once (the search reads them 20 times; a storage load is a gather across
  // invocations on software adapters such as lavapipe).
  var xs: array<f32, 16>;
  for (var i = 0u; i < 16u; i = i + 1u) { xs[i] = src[xo + i]; }
  var iscale = div_fast(-32.0, mx);
  var sumlx = 0.0;
  var suml2 = 0.0;
  for (var i = 0u; i < 16u; i = i + 1u) {
    let xi = xs[i];
    let l = clamp_l(nint(iscale * xi));
    (*L)[lo + i] = l + 32;
    let w = xi * xi;
    let lf = f32(l);
    sumlx = sumlx + op(op(w * xi) * lf);
    suml2 = suml2 + op(op(w * lf) * lf);
  }
  var scale = 0.0;
  if (suml2 != 0.0) { scale = div_fast(sumlx, suml2); }
  var best = scale * sumlx;
  for (var is = -9; is <= 9; is = is + 1) {
    if (is == 0) { continue; }
    iscale = div_fast(-(32.0 + opaque(0.1 * f32(is), params.zero)), mx);
    sumlx = 0.0;
    suml2 = 0.0;
    for (var i = 0u; i < 16u; i = i + 1u) {
      let xi = xs[i];
      let lf = f32(clamp_l(nint(iscale * xi)));
      let w = xi * xi;
      sumlx = sumlx + op(op(w * xi) * lf);
      suml2 = suml2 + op(op(w * lf) * lf);
    }
    if (suml2 > 0.0 && sumlx * sumlx > best * suml2) {
      for (var i = 0u; i < 16u; i = i + 1u) {
        (*L)[lo + i] = 32 + clamp_l(nint(iscale * xs[i]));
      }
      scale = div_fast(sumlx, suml2);
      best = scale * sumlx;
    }
  }
  return scale;
}

// The super-block at src[xo..xo+256) into words (main in kquant_block writes them out, with the
// NaN/Inf flag `bad`; words stay zero for a flagged block).
fn quantize_super_block(xo: u32, bad: u32, words: ptr<function, array<u32, OUT_STRIDE>>) {
  var L: array<i32, 256>;
  var scales: array<f32, 16>;
  var max_scale = 0.0;
  var max_abs_scale = 0.0;
  for (var g = 0u; g < 16u; g = g + 1u) {
    let scale = make_qx_quants(xo + 16u * g, &L, 16u * g);
    scales[g] = scale;
    let abs_scale = abs(scale);
    if (abs_scale > max_abs_scale) { max_abs_scale = abs_scale; max_scale = scale; }
  }
  if (max_abs_scale >= GROUP_MAX_EPS && bad == 0u) {
    let iscale = div_fast(-128.0, max_scale);
    let d_bits = f32_to_f16_bits(div_fast(1.0, iscale));
    put_byte(words, 208u, d_bits);
    put_byte(words, 209u, d_bits >> 8u);
    let d_stored = f16_bits_to_f32(d_bits);
    for (var g = 0u; g < 16u; g = g + 1u) {
      let sc = min(127, nint(iscale * scales[g]));
      put_byte(words, 192u + g, u32(sc));
      // Read back as the int8 C stores.
      let sc8 = (i32(u32(sc) & 0xffu) ^ 0x80) - 0x80;
      let d = d_stored * f32(sc8);
      if (d == 0.0) { continue; }
      for (var ii = 0u; ii < 16u; ii = ii + 1u) {
        let l = clamp_l(nint(div_fast(src[xo + 16u * g + ii], d)));
        L[16u * g + ii] = l + 32;
      }
    }
    for (var half = 0u; half < 2u; half = half + 1u) {
      let j = half * 128u;
      let ql = half * 64u;
      let qh = 128u + half * 32u;
      for (var l = 0u; l < 32u; l = l + 1u) {
        let q1 = u32(L[j + l]);
        let q2 = u32(L[j + l + 32u]);
        let q3 = u32(L[j + l + 64u]);
        let q4 = u32(L[j + l + 96u]);
        put_byte(words, ql + l, (q1 & 0xfu) | ((q3 & 0xfu) << 4u));
        put_byte(words, ql + l + 32u, (q2 & 0xfu) | ((q4 & 0xfu) << 4u));
        put_byte(words, qh + l, (q1 >> 4u) | ((q2 >> 4u) << 2u) | ((q3 >> 4u) << 4u) | ((q4 >> 4u) << 6u));
      }
    }
  }
}
