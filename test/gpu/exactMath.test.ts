/**
 * The exact-arithmetic helpers every quantize kernel relies on (kernels/common.wgsl), checked on the
 * device against IEEE results computed on the host: div_rn = f32 division, sqrt_rn = sqrtf,
 * f32_to_f16_bits = RNE conversion as ggml's, nearest_int = ggml's ties-to-even trick,
 * round_half_away = roundf. Random bit patterns over the whole normal range plus hand-picked edges.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { WGSL_SOURCES } from '../../src/core/gpu/kernels/index';
import { f32ToF16Bits } from '../../src/core/numeric/half';
import { nearestInt, roundHalfAway } from '../../src/core/quant/ggml/rounding';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

after(releaseSharedGpu);

const PROBE = `
struct Params { count: u32, zero: u32, pad0: u32, pad1: u32 }
@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> params: Params;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= params.count) { return; }
  let x = a[i];
  let y = b[i];
  out[5u * i] = bitcast<u32>(div_rn(x, y));
  out[5u * i + 1u] = bitcast<u32>(sqrt_rn(abs(x)));
  out[5u * i + 2u] = f32_to_f16_bits(x);
  out[5u * i + 3u] = bitcast<u32>(nearest_int(y, params.zero));
  out[5u * i + 4u] = bitcast<u32>(round_half_away(y));
}`;

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (bits: number): number => {
  u32[0] = bits >>> 0;
  return f32[0]!;
};
const toBits = (x: number): number => {
  f32[0] = x;
  return u32[0]!;
};

test('div_rn, sqrt_rn, f32->f16, nearest_int and roundf on the device equal the IEEE / ggml results', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  let seed = 0x2545f491;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  const n = 1 << 16;
  const a = new Float32Array(n);
  const b = new Float32Array(n);
  // Exponents 64..190 keep quotients normal; b also feeds nearest_int / roundf, so keep it small there.
  for (let i = 0; i < n; i++) {
    a[i] = fromBits((rnd() & 0x807fffff) | ((64 + (rnd() % 127)) << 23));
    b[i] = i % 2 === 0 ? fromBits((rnd() & 0x807fffff) | ((64 + (rnd() % 127)) << 23)) : (((rnd() % 2000001) - 1000000) / 8) * (i % 3 === 0 ? 1 : 1.0000001);
  }
  const edges: [number, number][] = [
    [1, 3], [2, 3], [-1, 127], [0.5, -8], [65504, 1], [65520, 2.5], [6.1035156e-5, 1.5], [5.9604645e-8, -0.5], [2.9802322e-8, 1.5], [1e-30, -2.5], [3, 0.49999997], [4, 12582913.5], [9, -4194303.5],
  ];
  edges.forEach(([x, y], k) => {
    a[k] = x;
    b[k] = y;
  });
  const { device } = gpu;
  const module = device.createShaderModule({ code: WGSL_SOURCES.common + PROBE });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const buf = (data: Float32Array) => {
    const g = device.createBuffer({ size: data.byteLength, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST });
    device.queue.writeBuffer(g, 0, data);
    return g;
  };
  const ga = buf(a);
  const gb = buf(b);
  const out = device.createBuffer({ size: n * 20, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
  const params = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  device.queue.writeBuffer(params, 0, new Uint32Array([n, 0, 0, 0]));
  const staging = device.createBuffer({ size: n * 20, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [ga, gb, out, params].map((buffer, binding) => ({ binding, resource: { buffer } })) }));
  pass.dispatchWorkgroups(n / 64);
  pass.end();
  enc.copyBufferToBuffer(out, 0, staging, 0, n * 20);
  device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const got = new Uint32Array(staging.getMappedRange().slice(0));
  staging.unmap();
  for (const g of [ga, gb, out, params, staging]) g.destroy();
  const fails: Record<string, string[]> = { div: [], sqrt: [], f16: [], nearest: [], roundf: [] };
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    const q = Math.fround(x / y);
    // Subnormal quotients are flushed to zero by div_rn (documented); skip them.
    if (Math.abs(q) >= 2 ** -126 && got[5 * i] !== toBits(q)) fails.div!.push(`${x}/${y}`);
    if (got[5 * i + 1] !== toBits(Math.fround(Math.sqrt(Math.abs(x))))) fails.sqrt!.push(`sqrt ${x}`);
    if (got[5 * i + 2] !== f32ToF16Bits(x)) fails.f16!.push(`f16 ${x}`);
    if ((got[5 * i + 3]! | 0) !== nearestInt(y)) fails.nearest!.push(`nearest ${y}`);
    if (got[5 * i + 4] !== toBits(Math.fround(roundHalfAway(y)))) fails.roundf!.push(`roundf ${y}`);
  }
  for (const [what, list] of Object.entries(fails)) assert.deepEqual(list.slice(0, 5), [], `${what}: ${list.length} of ${n} differ`);
});
