// Pass 2 of the weight statistics: fixed-bin and log-scale histograms and outlier counts per row and
// per column, with the bin rules of analysis/weightStats.ts (the CPU reference):
//   fixed: bin = clamp(floor(f32(f32(x - lo) * scale)), 0, bins - 1)
//   log:   from the bits of |x|: (exponent - first_exponent) * 4 + top two mantissa bits; zero,
//          subnormals and exponents below the range count as underflow (the last slot of log_hist).
//   outlier: |f32(x - center)| > threshold (center = the tensor mean, or 0 for an absolute threshold).
// Element e of `src` sits at column (col_offset + e) % row_length of row row_offset + (col_offset + e) / row_length.
struct Params {
  element_count: u32, row_length: u32, row_offset: u32, col_offset: u32,
  bins: u32, log_bins: u32, log_first_exponent: i32, groups_x: u32,
  lo: f32, scale: f32, threshold: f32, center: f32,
}
@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> fixed_hist: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> log_hist: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read_write> row_outliers: array<atomic<u32>>;
@group(0) @binding(4) var<storage, read_write> col_outliers: array<atomic<u32>>;
@group(0) @binding(5) var<uniform> params: Params;
const WG = 64u;
const PER_THREAD = 64u;
var<workgroup> local_fixed: array<atomic<u32>, 256>;
var<workgroup> local_log: array<atomic<u32>, 257>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group = wid.x + wid.y * params.groups_x;
  for (var b = lid; b < 257u; b = b + WG) {
    if (b < 256u) { atomicStore(&local_fixed[b], 0u); }
    atomicStore(&local_log[b], 0u);
  }
  workgroupBarrier();
  let tile_start = group * WG * PER_THREAD;
  for (var k = 0u; k < PER_THREAD; k = k + 1u) {
    let e = tile_start + k * WG + lid;
    if (e < params.element_count) {
      // Subnormals read as signed zero, as in rowMoments.wgsl (GPUs may flush them).
      let raw = src[e];
      let v = select(raw, bitcast<f32>(bitcast<u32>(raw) & 0x80000000u), (bitcast<u32>(raw) & 0x7f800000u) == 0u);
      let bits = bitcast<u32>(v) & 0x7fffffffu;
      if ((bits & 0x7f800000u) != 0x7f800000u) {
        let t = floor((v - params.lo) * params.scale);
        let bin = u32(clamp(i32(t), 0, i32(params.bins) - 1));
        atomicAdd(&local_fixed[bin], 1u);
        let exponent = i32(bits >> 23u);
        if (exponent == 0 || exponent < params.log_first_exponent) {
          atomicAdd(&local_log[256], 1u);
        } else {
          let lb = min(u32(exponent - params.log_first_exponent) * 4u + ((bits >> 21u) & 3u), params.log_bins - 1u);
          atomicAdd(&local_log[lb], 1u);
        }
        if (abs(v - params.center) > params.threshold) {
          let at = params.col_offset + e;
          atomicAdd(&row_outliers[params.row_offset + at / params.row_length], 1u);
          atomicAdd(&col_outliers[at % params.row_length], 1u);
        }
      }
    }
  }
  workgroupBarrier();
  for (var b = lid; b < params.bins; b = b + WG) {
    let c = atomicLoad(&local_fixed[b]);
    if (c > 0u) { atomicAdd(&fixed_hist[b], c); }
  }
  for (var b = lid; b < params.log_bins; b = b + WG) {
    let c = atomicLoad(&local_log[b]);
    if (c > 0u) { atomicAdd(&log_hist[b], c); }
  }
  if (lid == 0u) {
    let c = atomicLoad(&local_log[256]);
    if (c > 0u) { atomicAdd(&log_hist[params.log_bins], c); }
  }
}
