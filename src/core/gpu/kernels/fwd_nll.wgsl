// Forward pass, perplexity: the negative log-likelihood of each row's target token from its logits,
// so the logits never leave the device:
//   nll[r] = log(sum_j exp(z_j - max z)) + max z - z[targets[r]]   (0 when targets[r] < 0: not scored)
// logits: [rows, vocab]; row r's target is targets[target_row0 + r], its result goes to nll[target_row0 + r].
// One workgroup of 256 threads per row; max and sum reduced in workgroup memory, in f32.
struct Params { rows: u32, vocab: u32, target_row0: u32, groups_x: u32 }
@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> targets: array<i32>;
@group(0) @binding(2) var<storage, read_write> nll: array<f32>;
@group(0) @binding(3) var<uniform> params: Params;

const WG = 256u;
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let r = wid.x + wid.y * params.groups_x;
  let live = r < params.rows;
  let vocab = select(0u, params.vocab, live);
  let base = r * params.vocab;
  var local_max = -3.40282346638528859812e+38;
  for (var j = lid; j < vocab; j = j + WG) { local_max = max(local_max, logits[base + j]); }
  partial[lid] = local_max;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { partial[lid] = max(partial[lid], partial[lid + s]); }
  }
  workgroupBarrier();
  let row_max = partial[0];
  workgroupBarrier();
  var local_sum = 0.0;
  for (var j = lid; j < vocab; j = j + WG) { local_sum = local_sum + exp(logits[base + j] - row_max); }
  partial[lid] = local_sum;
  for (var s = WG / 2u; s > 0u; s = s >> 1u) {
    workgroupBarrier();
    if (lid < s) { partial[lid] = partial[lid] + partial[lid + s]; }
  }
  workgroupBarrier();
  if (live && lid == 0u) {
    let t = targets[params.target_row0 + r];
    var loss = 0.0;
    if (t >= 0) { loss = log(partial[0]) + row_max - logits[base + u32(t)]; }
    nll[params.target_row0 + r] = loss;
  }
}
