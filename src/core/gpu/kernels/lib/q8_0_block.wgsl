// Q8_0, a port of ggml quantize_row_q8_0_ref. d = amax / 127 (IEEE division), id = 1/d,
// q = roundf(x * id): round to nearest, ties AWAY from zero.
// Block: 34 bytes, [d: f16][qs: 32 x i8].
// Included by q8_0.wgsl (tile kernel) and q8_0_direct.wgsl (direct kernel).

const SCALE_HALVES = 1u;
const QH_WORDS = 0u;
const QS_WORDS = 8u;

fn quantize_block(v: ptr<function, array<f32, 32>>, f: ptr<function, array<u32, FIELDS>>) {
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
  (*f)[0] = f32_to_f16_bits(d);
  (*f)[1u] = 0u;
  for (var w = 0u; w < 8u; w = w + 1u) {
    var word = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
      let q = i32(round_half_away((*v)[w * 4u + k] * id));
      word = word | ((u32(q) & 0xffu) << (8u * k));
    }
    (*f)[2u + w] = word;
  }
  (*f)[10u] = bad;
}
