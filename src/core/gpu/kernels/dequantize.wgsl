// Dequantizes ggml blocks to f32, as ggml's dequantize_row_* (and the CPU port in core/quant/ggml), and
// writes the block-error map against the original values: per 32 values the sum of squared errors and
// the largest |error|. One thread per 32 values; `q` holds whole blocks as little-endian bytes in u32 words.
// Modes: 0 Q8_0, 1 Q4_0, 2 Q4_1, 3 Q5_0, 4 Q5_1 (block_bytes per 32-value block), and the K types
// 5 Q2_K, 6 Q3_K, 7 Q4_K, 8 Q5_K, 9 Q6_K (block_bytes per 256-value super-block; thread i does
// sub-block i % 8 of super-block i / 8).
// Exactness: f16 scales times small integers in C's order. A product that C rounds before an add or a
// subtraction (y = d*q + m, y = dl*q - ml) passes through opaque() so it is never fused into an FMA;
// products of a product (d * sc, then * q) cannot be fused and are rounded as in C.
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
  let y = ib * 32u;
  let mode = params.mode;
  if (mode >= 5u) {
    dequantize_k_sub_block(mode, (ib / 8u) * params.block_bytes, ib % 8u, y);
    write_block_error(ib, y);
    return;
  }
  let b = ib * params.block_bytes;
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
  write_block_error(ib, y);
}

fn write_block_error(ib: u32, y: u32) {
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

fn i8_at(i: u32) -> i32 {
  return (i32(byte_at(i)) << 24u) >> 24u;
}

// Q4_K / Q5_K: 6-bit scale and min j of the 12 packed bytes at s (ggml's get_scale_min_k4).
fn scale_min_k4(j: u32, s: u32) -> vec2<u32> {
  if (j < 4u) { return vec2<u32>(byte_at(s + j) & 63u, byte_at(s + j + 4u) & 63u); }
  let sc = (byte_at(s + j + 4u) & 0xfu) | ((byte_at(s + j - 4u) >> 6u) << 4u);
  let m = (byte_at(s + j + 4u) >> 4u) | ((byte_at(s + j) >> 6u) << 4u);
  return vec2<u32>(sc, m);
}

// Q3_K: scale j (0..15) of the 12 packed bytes at s, as a signed value (6 bits - 32).
fn scale_q3(j: u32, s: u32) -> i32 {
  let low = select(byte_at(s + j - 8u) >> 4u, byte_at(s + j) & 0xfu, j < 8u);
  let high = (byte_at(s + 8u + (j % 4u)) >> (2u * (j / 4u))) & 3u;
  return i32(low | (high << 4u)) - 32;
}

// Values y..y+31: sub-block j (0..7) of the super-block at byte b, in dequantize_row_q*_K's order.
fn dequantize_k_sub_block(mode: u32, b: u32, j: u32, y: u32) {
  let z = params.zero;
  if (mode == 5u) {
    // Q2_K: scales[16] @0, qs[64] @16, d @80, dmin @82. y = (d*(sc&15))*q - dmin*(sc>>4).
    let d = half_at(b + 80u);
    let dmin = half_at(b + 82u);
    let half_index = j / 4u;
    let shift = 2u * (j % 4u);
    let q = b + 16u + 32u * half_index;
    let is = 8u * half_index + 2u * (j % 4u);
    for (var part = 0u; part < 2u; part = part + 1u) {
      let sc = byte_at(b + is + part);
      let dl = d * f32(sc & 0xfu);
      let ml = dmin * f32(sc >> 4u);
      for (var l = 0u; l < 16u; l = l + 1u) {
        let qv = (byte_at(q + 16u * part + l) >> shift) & 3u;
        values[y + 16u * part + l] = opaque(dl * f32(qv), z) - ml;
      }
    }
    return;
  }
  if (mode == 6u) {
    // Q3_K: hmask[32] @0, qs[64] @32, scales[12] @96, d @108. y = (d*(sc-32)) * (q - (h ? 0 : 4)).
    let d_all = half_at(b + 108u);
    let half_index = j / 4u;
    let shift = 2u * (j % 4u);
    let m = 1u << j;
    let q = b + 32u + 32u * half_index;
    let is = 8u * half_index + 2u * (j % 4u);
    for (var part = 0u; part < 2u; part = part + 1u) {
      let dl = d_all * f32(scale_q3(is + part, b + 96u));
      for (var l = 0u; l < 16u; l = l + 1u) {
        let lo = i32((byte_at(q + 16u * part + l) >> shift) & 3u);
        let h = select(4, 0, (byte_at(b + 16u * part + l) & m) != 0u);
        values[y + 16u * part + l] = dl * f32(lo - h);
      }
    }
    return;
  }
  if (mode == 7u || mode == 8u) {
    // Q4_K: d @0, dmin @2, scales[12] @4, qs[128] @16; Q5_K adds qh[32] @16, qs @48.
    // y = (d*sc) * q - dmin*m, q = nibble (+16 when the qh bit j is set, Q5_K).
    let d = half_at(b);
    let dmin = half_at(b + 2u);
    let sm = scale_min_k4(j, b + 4u);
    let d1 = d * f32(sm.x);
    let m1 = dmin * f32(sm.y);
    let five = mode == 8u;
    let q = b + select(16u, 48u, five) + 32u * (j / 2u);
    let nibble_shift = 4u * (j % 2u);
    for (var l = 0u; l < 32u; l = l + 1u) {
      var qv = (byte_at(q + l) >> nibble_shift) & 0xfu;
      if (five && ((byte_at(b + 16u + l) >> j) & 1u) != 0u) { qv = qv + 16u; }
      values[y + l] = opaque(d1 * f32(qv), z) - m1;
    }
    return;
  }
  // Q6_K: ql[128] @0, qh[64] @128, scales[16] (int8) @192, d @208. y = (d*sc) * (q - 32).
  let d = half_at(b + 208u);
  let half_index = j / 4u;
  let k = j % 4u;
  let ql = b + 64u * half_index + 32u * (k % 2u);
  let qh = b + 128u + 32u * half_index;
  let sc = b + 192u + 8u * half_index + 2u * k;
  let nibble_shift = 4u * (k / 2u);
  for (var l = 0u; l < 32u; l = l + 1u) {
    let qv = i32(((byte_at(ql + l) >> nibble_shift) & 0xfu) | (((byte_at(qh + l) >> (2u * k)) & 3u) << 4u)) - 32;
    let dl = d * f32(i8_at(sc + l / 16u));
    values[y + l] = dl * f32(qv);
  }
}
