// Pass 1 of the weight statistics: per-segment moments. One workgroup per segment; a segment is a
// run of at most `segment_length` values of one row (rows of `row_length` values in `src`).
// The values are first scaled by a power of two, 2^shift, that brings the segment's absmax into
// [1, 2) (exact, and keeps x^4 in f32 range for weights near 1e38 or 1e-30); then two passes in f32:
// the mean, then the central sums, reduced pairwise in workgroup memory. The host unscales and merges
// segments into rows and rows into the tensor in f64 (Pébay). Non-finite values are counted and
// left out of everything else.
// Output per segment (SEG_STRIDE f32): count, scaled mean, scaled m2, m3, m4, min, max, absmax,
// nan count, inf count, shift.
struct Params { segment_count: u32, segment_length: u32, row_length: u32, segments_per_row: u32, groups_x: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
const WG = 64u;
const SEG_STRIDE = 11u;
var<workgroup> red_a: array<f32, 64>;
var<workgroup> red_b: array<f32, 64>;
var<workgroup> red_c: array<f32, 64>;
var<workgroup> red_d: array<f32, 64>;
var<workgroup> red_e: array<f32, 64>;

// Subnormal values are read as signed zero: GPUs may flush subnormal operands to zero (WGSL allows
// it; NVIDIA's driver does, lavapipe does not), so flushing them at the load makes every device give
// the same statistics. The CPU reference is compared on flushed input (test/gpu/stats.test.ts).
fn load(i: u32) -> f32 {
  let v = src[i];
  let bits = bitcast<u32>(v);
  return select(v, bitcast<f32>(bits & 0x80000000u), (bits & 0x7f800000u) == 0u);
}

fn is_non_finite(v: f32) -> bool {
  return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u;
}

// Sums red_a, red_b, red_c; red_d becomes a min (or a sum when `sum_d`), red_e a max.
fn reduce(lid: u32, sum_d: bool) {
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) {
      red_a[lid] = red_a[lid] + red_a[lid + s];
      red_b[lid] = red_b[lid] + red_b[lid + s];
      red_c[lid] = red_c[lid] + red_c[lid + s];
      if (sum_d) { red_d[lid] = red_d[lid] + red_d[lid + s]; } else { red_d[lid] = min(red_d[lid], red_d[lid + s]); }
      red_e[lid] = max(red_e[lid], red_e[lid + s]);
    }
  }
  workgroupBarrier();
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let seg = wid.x + wid.y * params.groups_x;
  // Uniform across the workgroup, so the barriers below stay in uniform control flow.
  let live = seg < params.segment_count;
  let row = seg / params.segments_per_row;
  let part = seg % params.segments_per_row;
  let row_start = row * params.row_length;
  let start = row_start + part * params.segment_length;
  let end = select(start, min(start + params.segment_length, row_start + params.row_length), live);

  // A: count, nan, inf, min, max, absmax.
  var count = 0.0;
  var nan_count = 0.0;
  var inf_count = 0.0;
  var lo = 3.40282346638528859812e+38;
  var hi = -3.40282346638528859812e+38;
  var absmax = 0.0;
  for (var i = start + lid; i < end; i = i + WG) {
    let v = load(i);
    if (is_non_finite(v)) {
      if ((bitcast<u32>(v) & 0x7fffffu) != 0u) { nan_count = nan_count + 1.0; } else { inf_count = inf_count + 1.0; }
    } else {
      count = count + 1.0;
      lo = min(lo, v);
      hi = max(hi, v);
      absmax = max(absmax, abs(v));
    }
  }
  red_a[lid] = count;
  red_b[lid] = nan_count;
  red_c[lid] = inf_count;
  red_d[lid] = lo;
  red_e[lid] = hi;
  reduce(lid, false);
  let total_count = red_a[0];
  let total_nan = red_b[0];
  let total_inf = red_c[0];
  let seg_min = red_d[0];
  let seg_max = red_e[0];
  workgroupBarrier();
  red_a[lid] = 0.0;
  red_b[lid] = 0.0;
  red_c[lid] = 0.0;
  red_d[lid] = 0.0;
  red_e[lid] = absmax;
  reduce(lid, true);
  let seg_absmax = red_e[0];
  workgroupBarrier();
  let exponent = i32((bitcast<u32>(seg_absmax) >> 23u) & 0xffu);
  let shift = select(127 - exponent, 0, exponent == 0);

  // B: the scaled sum, then the mean.
  var sum = 0.0;
  for (var i = start + lid; i < end; i = i + WG) {
    let v = load(i);
    if (!is_non_finite(v)) { sum = sum + ldexp(v, shift); }
  }
  red_a[lid] = sum;
  reduce(lid, true);
  var mean = 0.0;
  if (total_count > 0.0) { mean = red_a[0] / total_count; }
  workgroupBarrier();

  // C: scaled central sums.
  var m2 = 0.0;
  var m3 = 0.0;
  var m4 = 0.0;
  for (var i = start + lid; i < end; i = i + WG) {
    let v = load(i);
    if (!is_non_finite(v)) {
      let d = ldexp(v, shift) - mean;
      let d2 = d * d;
      m2 = m2 + d2;
      m3 = m3 + d2 * d;
      m4 = m4 + d2 * d2;
    }
  }
  red_a[lid] = m2;
  red_b[lid] = m3;
  red_c[lid] = m4;
  red_d[lid] = 0.0;
  red_e[lid] = 0.0;
  reduce(lid, true);
  if (lid == 0u && live) {
    let o = seg * SEG_STRIDE;
    out[o] = total_count;
    out[o + 1u] = mean;
    out[o + 2u] = red_a[0];
    out[o + 3u] = red_b[0];
    out[o + 4u] = red_c[0];
    out[o + 5u] = seg_min;
    out[o + 6u] = seg_max;
    out[o + 7u] = seg_absmax;
    out[o + 8u] = total_nan;
    out[o + 9u] = total_inf;
    out[o + 10u] = f32(shift);
  }
}
