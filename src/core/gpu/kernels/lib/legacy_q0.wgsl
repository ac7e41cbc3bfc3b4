// Kernel body of q4_0 and q5_0 (after legacy_block). The kernel declares Q0_DIVISOR (d = max / Q0_DIVISOR,
// max the value of largest magnitude, first one on ties) and fn level(x) for x = x*id rounded to f32.
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  let o = ib * OUT_STRIDE;
  var v = load_block(ib);
  var amax = 0.0;
  var mx = 0.0;
  var bad = 0u;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let x = v[j];
    if (is_non_finite(x)) { bad = 1u; }
    if (amax < abs(x)) { amax = abs(x); mx = x; }
  }
  let d = div_rn(mx, Q0_DIVISOR);
  var id = 0.0;
  if (d != 0.0) { id = div_rn(1.0, d); }
  out[o] = f32_to_f16_bits(d);
  var q: array<u32, 32>;
  for (var j = 0u; j < 32u; j = j + 1u) { q[j] = level(opaque(v[j] * id, params.zero)); }
  pack_nibbles(o, &q);
  out[o + 10u] = bad;
}
