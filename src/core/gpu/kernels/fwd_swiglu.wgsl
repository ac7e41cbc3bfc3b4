// Forward pass: SwiGLU. gate_up [rows, 2I] holds gate in columns [0, I) and up in [I, 2I):
//   act[r, j] = silu(g) * u = (g / (1 + exp(-g))) * u
// One thread per output value.
struct Params { rows: u32, inter: u32, groups_x: u32, pad: u32 }
@group(0) @binding(0) var<storage, read> gate_up: array<f32>;
@group(0) @binding(1) var<storage, read_write> act: array<f32>;
@group(0) @binding(2) var<uniform> params: Params;

const WG = 256u;

@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let id = gid.x + gid.y * params.groups_x * WG;
  if (id >= params.rows * params.inter) { return; }
  let r = id / params.inter;
  let j = id % params.inter;
  let g = gate_up[r * 2u * params.inter + j];
  let u = gate_up[r * 2u * params.inter + params.inter + j];
  act[id] = (g / (1.0 + exp(-g))) * u;
}
