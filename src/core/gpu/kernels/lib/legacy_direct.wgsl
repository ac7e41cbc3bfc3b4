// Direct entry point of the 32-value block kernels (software adapters; shared declarations in
// legacy_block.wgsl). No workgroup memory and no barrier: lavapipe runs invocations as SIMD lanes, turns
// every per-invocation address into a per-lane loop whether it is strided or not, and runs barriers as
// coroutines, so there the tile kernel's extra workgroup-memory traffic costs more than the strided loads
// it saves (measured: 2-3x the time of this kernel). An invocation quantizes PER consecutive blocks from
// block run * PER, so that its bytes are whole u32 words it writes alone: two blocks of an odd number of
// 16-bit halves (34, 18, 22 bytes), one of 20 or 24 bytes. NaN/Inf bits: one flag word per invocation.
// #include "legacy_block.wgsl"
const PER = 2u / SCALE_HALVES;
const FLAG_BLOCKS = PER;
// Words of a block's bytes after its scale halves: qh (when present), then qs.
const PAYLOAD = QH_WORDS + QS_WORDS;

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

fn payload(f: ptr<function, array<u32, FIELDS>>, i: u32) -> u32 {
  return (*f)[2u - QH_WORDS + i];
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let run = gid.x + gid.y * params.groups_x * WG;
  let first = run * PER;
  if (first >= params.block_count) { return; }
  var a: array<u32, FIELDS>;
  var va = load_block(first);
  quantize_block(&va, &a);
  var bad = a[10];
  if (PER == 1u) {
    // 20 or 24 bytes: d | m << 16, [qh], qs, all word-aligned.
    let base = first * (BLOCK_BYTES / 4u);
    out[base] = a[0];
    for (var i = 0u; i < PAYLOAD; i = i + 1u) { out[base + 1u + i] = payload(&a, i); }
  } else {
    // Block a's payload sits one half past a word boundary (after its d), so its words are funnel-shifted
    // by 16 bits; its last half shares a word with block b's d, after which b's payload is word-aligned.
    // Block a's words go out before block b is quantized (fewer live registers).
    let base = run * BLOCK_HALVES;
    out[base] = (a[0] & 0xffffu) | (payload(&a, 0u) << 16u);
    for (var i = 1u; i < PAYLOAD; i = i + 1u) { out[base + i] = (payload(&a, i - 1u) >> 16u) | (payload(&a, i) << 16u); }
    var tail = payload(&a, PAYLOAD - 1u) >> 16u;
    if (first + 1u < params.block_count) {
      var b: array<u32, FIELDS>;
      var vb = load_block(first + 1u);
      quantize_block(&vb, &b);
      bad = bad | (b[10] << 1u);
      tail = tail | (b[0] << 16u);
      for (var i = 0u; i < PAYLOAD; i = i + 1u) { out[base + PAYLOAD + 1u + i] = payload(&b, i); }
    }
    out[base + PAYLOAD] = tail;
  }
  out[params.flags_word + run] = bad;
}
