// quantize_block of q4_1 and q5_1 (after legacy_block). The kernel declares Q1_LEVELS (d = (max - min) / Q1_LEVELS)
// and fn level(X) for X = (x - min)*id rounded to f32.
fn quantize_block(v: ptr<function, array<f32, 32>>, f: ptr<function, array<u32, FIELDS>>) {
  var lo = 3.40282346638528859812e+38;
  var hi = -3.40282346638528859812e+38;
  var bad = 0u;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let x = (*v)[j];
    if (is_non_finite(x)) { bad = 1u; }
    if (x < lo) { lo = x; }
    if (x > hi) { hi = x; }
  }
  let d = div_rn(hi - lo, Q1_LEVELS);
  var id = 0.0;
  if (d != 0.0) { id = div_rn(1.0, d); }
  (*f)[0] = f32_to_f16_bits(d) | (f32_to_f16_bits(lo) << 16u);
  var q: array<u32, 32>;
  for (var j = 0u; j < 32u; j = j + 1u) { q[j] = level(opaque(((*v)[j] - lo) * id, params.zero)); }
  pack_nibbles(f, &q);
  (*f)[10u] = bad;
}
