// Forward pass: activation and KV-cache fake quantization in place, the rules of model/fakeQuant.ts
// (values quantized and dequantized in f32). x is rows of row_stride floats; each row holds `segs`
// segments of seg_len values from column col0; one workgroup per (row, segment).
//   mode 0, symmetric absmax (activations per token, levels = qmax = 2^(b-1) - 1):
//     scale = absmax / qmax, x' = clamp(round(x / scale), -qmax, qmax) * scale      (absmax 0: unchanged)
//   mode 1, asymmetric min/max (K and V per token and head, levels = maxq = 2^b - 1):
//     scale = max(hi - lo, 1e-5) / maxq, zero = clamp(round(-lo / scale), 0, maxq),
//     x' = (clamp(round(x / scale) + zero, 0, maxq) - zero) * scale               (hi == lo: unchanged)
// Rounding: round half to even (WGSL round, torch.round) of the f32 quotient; the quotients use
// div_rn (common.wgsl, prepended) because WGSL's `/` may be 2.5 ULP off and C/JS divide exactly.
struct Params { rows: u32, row_stride: u32, col0: u32, seg_len: u32, segs: u32, mode: u32, levels: u32, groups_x: u32 }
@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<uniform> params: Params;

const WG = 64u;
var<workgroup> red_lo: array<f32, 64>;
var<workgroup> red_hi: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let g = wid.x + wid.y * params.groups_x;
  let live = g < params.rows * params.segs;
  let r = g / params.segs;
  let s = g % params.segs;
  let base = r * params.row_stride + params.col0 + s * params.seg_len;
  let len = select(0u, params.seg_len, live);
  var lo = 3.40282346638528859812e+38;
  var hi = -3.40282346638528859812e+38;
  for (var i = lid; i < len; i = i + WG) {
    let v = x[base + i];
    if (params.mode == 0u) { hi = max(hi, abs(v)); } else { lo = min(lo, v); hi = max(hi, v); }
  }
  red_lo[lid] = lo;
  red_hi[lid] = hi;
  for (var step = WG / 2u; step > 0u; step = step >> 1u) {
    workgroupBarrier();
    if (lid < step) {
      red_lo[lid] = min(red_lo[lid], red_lo[lid + step]);
      red_hi[lid] = max(red_hi[lid], red_hi[lid + step]);
    }
  }
  workgroupBarrier();
  let seg_lo = red_lo[0];
  let seg_hi = red_hi[0];
  let levels = f32(params.levels);
  if (params.mode == 0u) {
    if (seg_hi == 0.0) { return; }
    let scale = div_rn(seg_hi, levels);
    for (var i = lid; i < len; i = i + WG) {
      let q = clamp(round(div_rn(x[base + i], scale)), -levels, levels);
      x[base + i] = q * scale;
    }
  } else {
    if (!(seg_hi > seg_lo)) { return; }
    let scale = div_rn(max(seg_hi - seg_lo, 1e-5), levels);
    let zero = clamp(round(div_rn(-seg_lo, scale)), 0.0, levels);
    for (var i = lid; i < len; i = i + WG) {
      let q = clamp(round(div_rn(x[base + i], scale)) + zero, 0.0, levels);
      x[base + i] = (q - zero) * scale;
    }
  }
}
