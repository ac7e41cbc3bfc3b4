// Included by q2_k, q4_k, q5_k. The kernel declares the arguments of ggml's
// make_qkx2_quants(n, nmax, x, weights, L, &the_min, Laux, rmin, rdelta 0.1, nstep, use_mad):
// QKX2_N (group size, u32), NMAX, QKX2_RMIN, QKX2_NSTEP, QKX2_USE_MAD (errors weighted |diff| when
// true, diff^2 when false). Levels are clamped to 0..NMAX.

fn clamp_q(l: i32) -> i32 {
  return select(select(l, NMAX, l > NMAX), 0, l < 0);
}

fn qkx2_error(diff: f32) -> f32 {
  if (QKX2_USE_MAD) { return abs(diff); }
  return diff * diff;
}

// make_qkx2_quants over src[xo..xo+QKX2_N); L written at lo.
fn make_qkx2_quants(xo: u32, weights: ptr<function, array<f32, QKX2_N>>, L: ptr<function, array<i32, 256>>, lo: u32, the_min: ptr<function, f32>) -> f32 {
  var laux: array<i32, QKX2_N>;
  // The group's values, loaded once: the search below reads them 2 * (QKX2_NSTEP + 1) + 2 times, and a storage
  // load is a gather across invocations on software adapters (lavapipe), where this is most of the kernel's time.
  var xs: array<f32, QKX2_N>;
  for (var i = 0u; i < QKX2_N; i = i + 1u) { xs[i] = src[xo + i]; }
  var mn = xs[0];
  var mx = xs[0];
  let sum_w0 = (*weights)[0];
  var sum_w = sum_w0;
  var sum_x = op(sum_w0 * xs[0]);
  for (var i = 1u; i < QKX2_N; i = i + 1u) {
    let xi = xs[i];
    if (xi < mn) { mn = xi; }
    if (xi > mx) { mx = xi; }
    let w = (*weights)[i];
    sum_w = sum_w + w;
    sum_x = sum_x + op(w * xi);
  }
  if (mn > 0.0) { mn = 0.0; }
  if (mx == mn) {
    for (var i = 0u; i < QKX2_N; i = i + 1u) { (*L)[lo + i] = 0; }
    *the_min = -mn;
    return 0.0;
  }
  var iscale = div_fast(f32(NMAX), mx - mn);
  var scale = div_fast(1.0, iscale);
  var best_error = 0.0;
  for (var i = 0u; i < QKX2_N; i = i + 1u) {
    let xi = xs[i];
    let l = clamp_q(nint(iscale * (xi - mn)));
    (*L)[lo + i] = l;
    let diff = qkx2_error((op(scale * f32(l)) + mn) - xi);
    best_error = best_error + op((*weights)[i] * diff);
  }
  for (var is = 0; is <= QKX2_NSTEP; is = is + 1) {
    iscale = div_fast((QKX2_RMIN + op(0.1 * f32(is))) + f32(NMAX), mx - mn);
    var sum_l = 0.0;
    var sum_l2 = 0.0;
    var sum_xl = 0.0;
    for (var i = 0u; i < QKX2_N; i = i + 1u) {
      let xi = xs[i];
      let l = clamp_q(nint(iscale * (xi - mn)));
      laux[i] = l;
      let lf = f32(l);
      let wl = op((*weights)[i] * lf);
      sum_l = sum_l + wl;
      sum_l2 = sum_l2 + op(wl * lf);
      sum_xl = sum_xl + op(wl * xi);
    }
    let big_d = op(sum_w * sum_l2) - op(sum_l * sum_l);
    if (big_d > 0.0) {
      var this_scale = div_fast(op(sum_w * sum_xl) - op(sum_x * sum_l), big_d);
      var this_min = div_fast(op(sum_l2 * sum_x) - op(sum_l * sum_xl), big_d);
      if (this_min > 0.0) {
        this_min = 0.0;
        this_scale = div_fast(sum_xl, sum_l2);
      }
      var cur_error = 0.0;
      for (var i = 0u; i < QKX2_N; i = i + 1u) {
        let diff = qkx2_error((op(this_scale * f32(laux[i])) + this_min) - xs[i]);
        cur_error = cur_error + op((*weights)[i] * diff);
      }
      if (cur_error < best_error) {
        for (var i = 0u; i < QKX2_N; i = i + 1u) { (*L)[lo + i] = laux[i]; }
        best_error = cur_error;
        scale = this_scale;
        mn = this_min;
      }
    }
  }
  *the_min = -mn;
  return scale;
}
