// Dequantizes ggml blocks of 32 values (mode 0 Q8_0, 1 Q4_0, 2 Q4_1, 3 Q5_0, 4 Q5_1) to f32, as ggml's
// dequantize_row_* (y = d*q, or d*q + m with the product rounded before the add), and writes the
// block-error map against the original values: per block the sum of squared errors and the largest
// |error|. One thread per block; `q` holds whole blocks as little-endian bytes in u32 words.
struct Params { block_count: u32, mode: u32, groups_x: u32, block_bytes: u32, zero: u32, pad0: u32, pad1: u32, pad2: u32 }
@group(0) @binding(0) var<storage, read> q: array<u32>;
@group(0) @binding(1) var<storage, read> reference: array<f32>;
@group(0) @binding(2) var<storage, read_write> values: array<f32>;
@group(0) @binding(3) var<storage, read_write> block_error: array<f32>;
@group(0) @binding(4) var<uniform> params: Params;
const WG = 64u;

fn byte_at(i: u32) -> u32 {
  return (q[i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

fn half_at(i: u32) -> f32 {
  return f16_bits_to_f32(byte_at(i) | (byte_at(i + 1u) << 8u));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  let b = ib * params.block_bytes;
  let y = ib * 32u;
  let mode = params.mode;
  let d = half_at(b);
  var m = 0.0;
  if (mode == 2u || mode == 4u) { m = half_at(b + 2u); }
  var qh = 0u;
  if (mode == 3u) { qh = byte_at(b + 2u) | (byte_at(b + 3u) << 8u) | (byte_at(b + 4u) << 16u) | (byte_at(b + 5u) << 24u); }
  if (mode == 4u) { qh = byte_at(b + 4u) | (byte_at(b + 5u) << 8u) | (byte_at(b + 6u) << 16u) | (byte_at(b + 7u) << 24u); }
  if (mode == 0u) {
    for (var j = 0u; j < 32u; j = j + 1u) {
      let qs = i32(byte_at(b + 2u + j) ^ 0x80u) - 128;
      values[y + j] = f32(qs) * d;
    }
  } else {
    let qs_at = b + select(select(2u, 4u, mode == 2u), select(6u, 8u, mode == 4u), mode >= 3u);
    for (var j = 0u; j < 16u; j = j + 1u) {
      let byte = byte_at(qs_at + j);
      var x0 = i32(byte & 0x0fu);
      var x1 = i32(byte >> 4u);
      if (mode >= 3u) {
        x0 = x0 | i32(((qh >> j) << 4u) & 0x10u);
        x1 = x1 | i32((qh >> (j + 12u)) & 0x10u);
      }
      if (mode == 1u) { x0 = x0 - 8; x1 = x1 - 8; }
      if (mode == 3u) { x0 = x0 - 16; x1 = x1 - 16; }
      if (mode == 2u || mode == 4u) {
        values[y + j] = opaque(f32(x0) * d, params.zero) + m;
        values[y + j + 16u] = opaque(f32(x1) * d, params.zero) + m;
      } else {
        values[y + j] = f32(x0) * d;
        values[y + j + 16u] = f32(x1) * d;
      }
    }
  }
  var sum_sq = 0.0;
  var max_abs = 0.0;
  for (var j = 0u; j < 32u; j = j + 1u) {
    let e = values[y + j] - reference[y + j];
    sum_sq = sum_sq + opaque(e * e, params.zero);
    max_abs = max(max_abs, abs(e));
  }
  block_error[2u * ib] = sum_sq;
  block_error[2u * ib + 1u] = max_abs;
}
