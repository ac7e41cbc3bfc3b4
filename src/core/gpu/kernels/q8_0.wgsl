// Q8_0, a port of ggml quantize_row_q8_0_ref. d = amax / 127 (IEEE division), id = 1/d,
// q = roundf(x * id): round to nearest, ties AWAY from zero.
// Output: OUT_STRIDE u32 words per block: [0] f16 bits of d (| m << 16), [1] qh, [2..9] qs bytes
// packed little-endian, [10] 1 when the block holds NaN/Inf. The host interleaves them into ggml blocks
// (18/20/22/24/34-byte blocks straddle u32 words, so the kernel never writes them directly).
// #include "legacy_block.wgsl"

fn quantize_block(o: u32, v: ptr<function, array<f32, 32>>) {
  var amax = 0.0;
  var bad = 0u;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let x = (*v)[j];
    if (is_non_finite(x)) { bad = 1u; }
    let a = abs(x);
    if (a > amax) { amax = a; }
  }
  let d = div_rn(amax, 127.0);
  var id = 0.0;
  if (d != 0.0) { id = div_rn(1.0, d); }
  out[o] = f32_to_f16_bits(d);
  out[o + 1u] = 0u;
  for (var w = 0u; w < 8u; w = w + 1u) {
    var word = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
      let q = i32(round_half_away((*v)[w * 4u + k] * id));
      word = word | ((u32(q) & 0xffu) << (8u * k));
    }
    out[o + 2u + w] = word;
  }
  out[o + 10u] = bad;
}
