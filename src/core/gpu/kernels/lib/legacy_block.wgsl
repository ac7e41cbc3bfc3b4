// Included by the 32-value block kernels (q4_0, q4_1, q5_0, q5_1, q8_0): bindings, one thread per
// block, and the OUT_STRIDE = 11 word layout described at the top of each of them. The entry point
// loads the block and hands it to the kernel's quantize_block, which writes out[o..o+11).
struct Params { block_count: u32, zero: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> src4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> params: Params;
const OUT_STRIDE = 11u;
const WG = 64u;

// Block ib read from memory once, as 8 vec4 loads, to be worked on in registers.
fn load_block(ib: u32) -> array<f32, 32> {
  var v: array<f32, 32>;
  for (var k = 0u; k < 8u; k = k + 1u) {
    let q = src4[ib * 8u + k];
    v[4u * k] = q.x;
    v[4u * k + 1u] = q.y;
    v[4u * k + 2u] = q.z;
    v[4u * k + 3u] = q.w;
  }
  return v;
}

// Levels of 4 or 5 bits: the low nibbles of q[j] and q[16 + j] share qs byte j (words o+2..o+5,
// little-endian), the 5th bits go to qh (word o+1): bit j for q[j], bit j + 16 for q[16 + j].
fn pack_nibbles(o: u32, q: ptr<function, array<u32, 32>>) {
  var qh = 0u;
  for (var w = 0u; w < 4u; w = w + 1u) {
    var word = 0u;
    for (var k = 0u; k < 4u; k = k + 1u) {
      let j = w * 4u + k;
      let q0 = (*q)[j];
      let q1 = (*q)[16u + j];
      word = word | (((q0 & 0x0fu) | ((q1 & 0x0fu) << 4u)) << (8u * k));
      qh = qh | (((q0 & 0x10u) >> 4u) << j) | (((q1 & 0x10u) >> 4u) << (j + 16u));
    }
    out[o + 2u + w] = word;
  }
  out[o + 1u] = qh;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let ib = gid.x + gid.y * params.groups_x * WG;
  if (ib >= params.block_count) { return; }
  var v = load_block(ib);
  quantize_block(ib * OUT_STRIDE, &v);
}
