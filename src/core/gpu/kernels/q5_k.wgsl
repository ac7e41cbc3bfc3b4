// Q5_K, a port of ggml quantize_row_q5_K_ref (256-value super-blocks of 8 groups of 32; 176 bytes:
// f16 d, f16 dmin, scales[12] (8 six-bit scales + 8 six-bit mins), qh[32], qs[128]). One thread per super-block.
// Rounding: per group make_qkx2_quants(32, nmax 31, weights av_x + |x| with av_x = sqrtf(sum x^2 / 32),
// rmin -0.5, rdelta 0.1, 15 steps) with nearest_int = ties to even; the 8 scales and mins quantized to
// 6 bits with nearest_int against max/63; d, dmin = f16(max/63) (RNE); every value re-quantized as
// nearest_int((x + dm) / d) clamped to 0..31 against the stored f16 scales; the 5th bit goes to qh.
// Divisions use div_fast (lib/div_fast.wgsl: div_rn's IEEE result, faster) and sqrtf sqrt_rn (both exactly as IEEE / C); products feeding an addition go
// through opaque() (no FMA contraction, as ggml-base is compiled).
// Output: OUT_STRIDE u32 words per block: the 176 block bytes, then 1 when the block holds NaN/Inf.
const OUT_STRIDE = 45u;
const NMAX = 31;
// make_qkx2_quants(32, 31, x, weights, L, &the_min, Laux, -0.5, 0.1, 15, false)
const QKX2_N = 32u;
const QKX2_RMIN = -0.5;
const QKX2_NSTEP = 15;
const QKX2_USE_MAD = false;

// #include "kquant_block.wgsl"

// #include "make_qkx2_quants.wgsl"

// #include "k45_scales.wgsl"

// The super-block at src[xo..xo+256) into words (main in kquant_block writes them out, with the
// NaN/Inf flag `bad`; words stay zero for a flagged block).
fn quantize_super_block(xo: u32, bad: u32, words: ptr<function, array<u32, OUT_STRIDE>>) {
  if (bad == 0u) {
    var L: array<i32, 256>;
    quantize_k45_scales(xo, words, &L);
    var m1 = 1u;
    var m2 = 2u;
    for (var n = 0u; n < 4u; n = n + 1u) {
      for (var j = 0u; j < 32u; j = j + 1u) {
        var l1 = u32(L[64u * n + j]);
        if (l1 > 15u) { l1 = l1 - 16u; put_byte(words, 16u + j, m1); }
        var l2 = u32(L[64u * n + j + 32u]);
        if (l2 > 15u) { l2 = l2 - 16u; put_byte(words, 16u + j, m2); }
        put_byte(words, 48u + 32u * n + j, l1 | (l2 << 4u));
      }
      m1 = m1 << 2u;
      m2 = m2 << 2u;
    }
  }
}
