// quantize_block of q4_0 and q5_0 (after legacy_block). The kernel declares Q0_DIVISOR (d = max / Q0_DIVISOR,
// max the value of largest magnitude, first one on ties) and fn level(x) for x = x*id rounded to f32.
fn quantize_block(v: ptr<function, array<f32, 32>>, f: ptr<function, array<u32, FIELDS>>) {
  var amax = 0.0;
  var mx = 0.0;
  var bad = 0u;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let x = (*v)[j];
    if (is_non_finite(x)) { bad = 1u; }
    if (amax < abs(x)) { amax = abs(x); mx = x; }
  }
  let d = div_rn(mx, Q0_DIVISOR);
  var id = 0.0;
  if (d != 0.0) { id = div_rn(1.0, d); }
  (*f)[0] = f32_to_f16_bits(d);
  var q: array<u32, 32>;
  for (var j = 0u; j < 32u; j = j + 1u) { q[j] = level(opaque((*v)[j] * id, params.zero)); }
  pack_nibbles(f, &q);
  (*f)[10u] = bad;
}
