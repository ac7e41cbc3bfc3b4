// Q4_K, a port of ggml quantize_row_q4_K_ref (256-value super-blocks of 8 groups of 32; 144 bytes:
// f16 d, f16 dmin, scales[12] (8 six-bit scales + 8 six-bit mins), qs[128]). One thread per super-block.
// Rounding: per group make_qkx2_quants(32, nmax 15, weights av_x + |x| with av_x = sqrtf(sum x^2 / 32),
// rmin -1, rdelta 0.1, 20 steps) with nearest_int = ties to even; the 8 scales and mins quantized to
// 6 bits with nearest_int against max/63; d, dmin = f16(max/63) (RNE); every value re-quantized as
// nearest_int((x + dm) / d) clamped to 0..15 against the stored f16 scales.
// Divisions use div_fast (lib/div_fast.wgsl: div_rn's IEEE result, faster) and sqrtf sqrt_rn (both exactly as IEEE / C); products feeding an addition go
// through opaque() (no FMA contraction, as ggml-base is compiled).
// Output: OUT_STRIDE u32 words per block: the 144 block bytes, then 1 when the block holds NaN/Inf.
const OUT_STRIDE = 37u;
const NMAX = 15;
// make_qkx2_quants(32, 15, x, weights, L, &the_min, Laux, -1, 0.1, 20, false)
const QKX2_N = 32u;
const QKX2_RMIN = -1.0;
const QKX2_NSTEP = 20;
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
    for (var j = 0u; j < 4u; j = j + 1u) {
      for (var l = 0u; l < 32u; l = l + 1u) {
        put_byte(words, 16u + 32u * j + l, u32(L[64u * j + l]) | (u32(L[64u * j + l + 32u]) << 4u));
      }
    }
  }
}
