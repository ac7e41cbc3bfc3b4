// Q2_K, a port of ggml quantize_row_q2_K_ref (256-value super-blocks of 16 groups of 16; 84 bytes:
// scales[16] (low nibble scale, high nibble min), qs[64], f16 d, f16 dmin). One thread per super-block.
// Rounding: per group make_qkx2_quants(nmax 3, weights |x|, rmin -0.5, rdelta 0.1, 15 steps, mean
// ABSOLUTE error) with nearest_int = ties to even; 4-bit scales and mins by nearest_int against max/15;
// d, dmin = f16(max/15) (RNE); values re-quantized as nearest_int((x + dm) / d) clamped to 0..3.
// Divisions use div_fast (lib/div_fast.wgsl: div_rn's IEEE result, faster); products feeding an addition go through opaque() (no FMA contraction).
// Output: OUT_STRIDE u32 words per block: the 84 block bytes, then 1 when the block holds NaN/Inf.
const OUT_STRIDE = 22u;
const NMAX = 3;
// make_qkx2_quants(16, 3, x, weights, L, &the_min, Laux, -0.5, 0.1, 15, true): use_mad, so errors
// are weighted |diff|, not diff^2.
const QKX2_N = 16u;
const QKX2_RMIN = -0.5;
const QKX2_NSTEP = 15;
const QKX2_USE_MAD = true;

// #include "kquant_block.wgsl"

// #include "make_qkx2_quants.wgsl"

// The super-block at src[xo..xo+256) into words (main in kquant_block writes them out, with the
// NaN/Inf flag `bad`; words stay zero for a flagged block).
fn quantize_super_block(xo: u32, bad: u32, words: ptr<function, array<u32, OUT_STRIDE>>) {
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
      let iscale = div_fast(15.0, max_scale);
      for (var j = 0u; j < 16u; j = j + 1u) { sc_bytes[j] = u32(nint(iscale * scales[j])) & 0xffu; }
      d_bits = f32_to_f16_bits(div_fast(max_scale, 15.0));
    } else {
      for (var j = 0u; j < 16u; j = j + 1u) { sc_bytes[j] = 0u; }
    }
    var dmin_bits = 0u;
    if (max_min > 0.0) {
      let iscale = div_fast(15.0, max_min);
      for (var j = 0u; j < 16u; j = j + 1u) { sc_bytes[j] = (sc_bytes[j] | (u32(nint(iscale * mins[j])) << 4u)) & 0xffu; }
      dmin_bits = f32_to_f16_bits(div_fast(max_min, 15.0));
    }
    for (var j = 0u; j < 16u; j = j + 1u) { put_byte(words, j, sc_bytes[j]); }
    put_byte(words, 80u, d_bits);
    put_byte(words, 81u, d_bits >> 8u);
    put_byte(words, 82u, dmin_bits);
    put_byte(words, 83u, dmin_bits >> 8u);
    let d_stored = f16_bits_to_f32(d_bits);
    let dmin_stored = f16_bits_to_f32(dmin_bits);
    for (var j = 0u; j < 16u; j = j + 1u) {
      let d = d_stored * f32(sc_bytes[j] & 0xfu);
      if (d == 0.0) { continue; }
      let dm = dmin_stored * f32(sc_bytes[j] >> 4u);
      for (var ii = 0u; ii < 16u; ii = ii + 1u) {
        L[16u * j + ii] = clamp_q(nint(div_fast(src[xo + 16u * j + ii] + dm, d)));
      }
    }
    for (var half = 0u; half < 2u; half = half + 1u) {
      let j = half * 128u;
      for (var l = 0u; l < 32u; l = l + 1u) {
        put_byte(words, 16u + j / 4u + l, u32(L[j + l]) | (u32(L[j + l + 32u]) << 2u) | (u32(L[j + l + 64u]) << 4u) | (u32(L[j + l + 96u]) << 6u));
      }
    }
  }
}
