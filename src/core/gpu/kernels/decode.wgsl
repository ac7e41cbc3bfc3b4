// Decodes stored weights to f32: mode 0 F32 (copy), 1 BF16, 2 F16, 3 F8_E4M3 (FN: no Inf, S.1111.111 is NaN),
// 4 F8_E5M2. `src` holds the raw little-endian bytes as u32 words, starting at a word boundary.
// Needs f16_bits_to_f32 from common.wgsl (prepended by kernels.ts).
struct Params { element_count: u32, mode: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;
const WG = 256u;

fn e4m3_to_f32(b: u32) -> f32 {
  let s = select(1.0, -1.0, (b & 0x80u) != 0u);
  let e = (b >> 3u) & 0xfu;
  let m = b & 7u;
  // NaN: built from a runtime zero, since a NaN constant is a WGSL compile error.
  if (e == 15u && m == 7u) { return bitcast<f32>(0x7fc00000u | params.pad); }
  if (e == 0u) { return s * f32(m) * 0.001953125; }
  return s * bitcast<f32>(((e + 120u) << 23u) | (m << 20u));
}

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x + gid.y * params.groups_x * WG;
  if (i >= params.element_count) { return; }
  switch params.mode {
    case 0u: { out[i] = bitcast<f32>(src[i]); }
    case 1u: { out[i] = bitcast<f32>(((src[i / 2u] >> (16u * (i % 2u))) & 0xffffu) << 16u); }
    case 2u: { out[i] = f16_bits_to_f32((src[i / 2u] >> (16u * (i % 2u))) & 0xffffu); }
    case 3u: { out[i] = e4m3_to_f32((src[i / 4u] >> (8u * (i % 4u))) & 0xffu); }
    default: { out[i] = f16_bits_to_f32(((src[i / 4u] >> (8u * (i % 4u))) & 0xffu) << 8u); }
  }
}
