// Included by q4_k and q5_k (after kquant_block and make_qkx2_quants): everything both types do
// before packing the levels. Per group of 32: make_qkx2_quants with weights av_x + |x|
// (av_x = sqrtf(sum x^2 / 32)); the 8 scales and mins to 6 bits by nearest_int against max/63;
// d, dmin = f16(max/63) (RNE) at bytes 0..3, the 12 packed scale bytes at 4..15; then every value
// re-quantized as nearest_int((x + dm) / d) clamped to 0..NMAX against the stored f16 scales, into L.
fn quantize_k45_scales(xo: u32, words: ptr<function, array<u32, OUT_STRIDE>>, L: ptr<function, array<i32, 256>>) {
  var weights: array<f32, 32>;
  var scales: array<f32, 8>;
  var mins: array<f32, 8>;
  var max_scale = 0.0;
  var max_min = 0.0;
  for (var j = 0u; j < 8u; j = j + 1u) {
    let g = xo + 32u * j;
    var sum_x2 = 0.0;
    for (var l = 0u; l < 32u; l = l + 1u) { sum_x2 = sum_x2 + op(src[g + l] * src[g + l]); }
    let av_x = sqrt_rn(div_fast(sum_x2, 32.0));
    for (var l = 0u; l < 32u; l = l + 1u) { weights[l] = av_x + abs(src[g + l]); }
    var the_min = 0.0;
    let scale = make_qkx2_quants(g, &weights, L, 32u * j, &the_min);
    scales[j] = scale;
    mins[j] = the_min;
    if (scale > max_scale) { max_scale = scale; }
    if (the_min > max_min) { max_min = the_min; }
  }
  var inv_scale = 0.0;
  if (max_scale > 0.0) { inv_scale = div_fast(63.0, max_scale); }
  var inv_min = 0.0;
  if (max_min > 0.0) { inv_min = div_fast(63.0, max_min); }
  for (var j = 0u; j < 8u; j = j + 1u) {
    // uint8_t ls = nearest_int(...); ls = MIN(63, ls)
    let ls = min(63u, u32(nint(inv_scale * scales[j])) & 0xffu);
    let lm = min(63u, u32(nint(inv_min * mins[j])) & 0xffu);
    if (j < 4u) {
      put_byte(words, 4u + j, ls);
      put_byte(words, 4u + j + 4u, lm);
    } else {
      put_byte(words, 4u + j + 4u, (ls & 0xfu) | ((lm & 0xfu) << 4u));
      put_byte(words, 4u + j - 4u, (ls >> 4u) << 6u);
      put_byte(words, 4u + j, (lm >> 4u) << 6u);
    }
  }
  let d_bits = f32_to_f16_bits(div_fast(max_scale, 63.0));
  let dmin_bits = f32_to_f16_bits(div_fast(max_min, 63.0));
  put_byte(words, 0u, d_bits);
  put_byte(words, 1u, d_bits >> 8u);
  put_byte(words, 2u, dmin_bits);
  put_byte(words, 3u, dmin_bits >> 8u);
  let d_stored = f16_bits_to_f32(d_bits);
  let dmin_stored = f16_bits_to_f32(dmin_bits);
  for (var j = 0u; j < 8u; j = j + 1u) {
    var sc = 0u;
    var m = 0u;
    if (j < 4u) {
      sc = get_byte(words, 4u + j) & 63u;
      m = get_byte(words, 4u + j + 4u) & 63u;
    } else {
      sc = (get_byte(words, 4u + j + 4u) & 0xfu) | ((get_byte(words, 4u + j - 4u) >> 6u) << 4u);
      m = (get_byte(words, 4u + j + 4u) >> 4u) | ((get_byte(words, 4u + j) >> 6u) << 4u);
    }
    let d = d_stored * f32(sc);
    if (d == 0.0) { continue; }
    let dm = dmin_stored * f32(m);
    for (var ii = 0u; ii < 32u; ii = ii + 1u) {
      (*L)[32u * j + ii] = clamp_q(nint(div_fast(src[xo + 32u * j + ii] + dm, d)));
    }
  }
}
