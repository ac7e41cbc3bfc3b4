/**
 * The research quantizers on the GPU (core/gpu/researchQuant.ts) against the CPU references in
 * core/quant (int8, intN, nf4, fp8): bit-for-bit equal codes, scales, zeros and absmax on edge vectors
 * (ties at .5, zeros, all-equal groups, subnormals, values near f32's maximum, FP8 saturation at 448,
 * NF4 thresholds), on random bit patterns, on every 2-D weight of micro-llama and of tiny-llama
 * (../shared; skipped with the reason when absent). Plus the IEEE helpers of kernels/lib/exact_f32.wgsl
 * against the host's f32 arithmetic, hand-checked codes, NaN/Inf, chunking and cancellation.
 * Runs on lavapipe where there is no GPU; skips only when no adapter exists.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  dequantizeFp8E4M3OnGpu,
  dequantizeInt8AbsmaxOnGpu,
  dequantizeInt8ZeroPointOnGpu,
  dequantizeNf4PackedOnGpu,
  dequantizeRowsIntNOnGpu,
  encodeFp8WithScaleOnGpu,
  quantizeAsymmetricWithParamsOnGpu,
  quantizeFp8E4M3OnGpu,
  quantizeInt8AbsmaxOnGpu,
  quantizeInt8WithScaleOnGpu,
  quantizeInt8ZeroPointOnGpu,
  quantizeNf4OnGpu,
  quantizeRowsIntNOnGpu,
} from '../../src/core/gpu/researchQuant';
import type { GpuPhase } from '../../src/core/gpu/quantize';
import type { GpuContext } from '../../src/core/gpu/device';
import { createStorageBuffer, createUniformBuffer, encodeKernel, readBack, type Kernel } from '../../src/core/gpu/kernels';
import { WGSL_SOURCES } from '../../src/core/gpu/kernels/index';
import { dequantizeInt8Absmax, dequantizeInt8ZeroPoint, quantizeInt8Absmax, quantizeInt8WithScale, quantizeInt8ZeroPoint } from '../../src/core/quant/int8';
import { allocateIntN, dequantizeRowsIntN, quantizeAsymmetricWithParams, quantizeRowsIntN, type IntBits } from '../../src/core/quant/intN';
import { dequantizeNf4Packed, NF4_CODE, quantizeNf4 } from '../../src/core/quant/nf4';
import { dequantizeFp8E4M3, encodeFp8WithScale, quantizeFp8E4M3 } from '../../src/core/quant/fp8';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { CancelledError, GpuUnavailableError, InvalidArgumentError, NumericError } from '../../src/core/errors';
import { acquireGpu } from '../../src/core/gpu/device';
import { microLlamaDir, repoRoot, tinyLlamaDir } from '../helpers/paths';
import { gpuOrSkip, releaseSharedGpu } from './gpuHarness';

after(releaseSharedGpu);

type Typed = Float32Array | Uint8Array | Int8Array;

/**
 * First differing byte of two typed arrays (as bytes, so -0 vs +0 counts), or -1. NaN equals NaN
 * whatever its payload: a host's 0 * Inf NaN is 0xffc00000 on x86 and 0x7fc00000 elsewhere.
 */
function firstDifference(a: Typed, b: Typed): number {
  if (a instanceof Float32Array && b instanceof Float32Array && a.length === b.length) {
    for (let i = 0; i < a.length; i++) {
      if (Number.isNaN(a[i]) && Number.isNaN(b[i])) continue;
      if (bitsOf(a[i]!) !== bitsOf(b[i]!)) return 4 * i;
    }
    return -1;
  }
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  if (x.length !== y.length) return Math.min(x.length, y.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

function assertSameBits(gpu: Typed, cpu: Typed, what: string): void {
  const d = firstDifference(gpu, cpu);
  const bytes = gpu.BYTES_PER_ELEMENT;
  assert.equal(d, -1, `${what}: first difference at element ${Math.floor(d / bytes)} (GPU ${String(gpu[Math.floor(d / bytes)])}, CPU ${String(cpu[Math.floor(d / bytes)])})`);
}

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
const fromBits = (bits: number): number => {
  scratchBits[0] = bits >>> 0;
  return scratch[0]!;
};
const bitsOf = (x: number): number => {
  scratch[0] = x;
  return scratchBits[0]!;
};
const nextUp = (x: number): number => (x >= 0 ? fromBits(bitsOf(x) + 1) : fromBits(bitsOf(x) - 1));
const nextDown = (x: number): number => (x > 0 ? fromBits(bitsOf(x) - 1) : fromBits(bitsOf(x) + 1));

function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return s >>> 0;
  };
}

/** A random finite f32 (any exponent, subnormals included). */
function randomFinite(rnd: () => number): number {
  for (;;) {
    const bits = rnd();
    if ((bits & 0x7f800000) !== 0x7f800000) return fromBits(bits);
  }
}

const NF4_THRESHOLDS = [
  -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544, -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
  0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683, 0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
].map(Math.fround);

const EDGE_COLS = 64;

/**
 * Rows of 64 values, each row a case: ties, zeros, all-equal, subnormals, huge, NF4 thresholds,
 * signed zeros, mixed magnitudes, then random rows (narrow exponent bands and any finite bits).
 */
function edgeMatrix(): { values: Float32Array; rows: number; cols: number } {
  const rows: number[][] = [];
  const pad = (r: number[]) => {
    const row = r.slice(0, EDGE_COLS);
    while (row.length < EDGE_COLS) row.push(0);
    rows.push(row);
  };
  // Absmax 127 makes the INT8 scale exactly 1: each .5 is a tie (to even).
  pad([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.5, 0.49999997, -0.50000006, 64.5, -63.5]);
  pad([]);
  pad(new Array<number>(EDGE_COLS).fill(0.3));
  pad(new Array<number>(EDGE_COLS).fill(-0.7));
  pad(Array.from({ length: EDGE_COLS }, (_, i) => fromBits(i * 0x1357b) * (i % 3 === 0 ? -1 : 1))); // subnormals
  pad(Array.from({ length: EDGE_COLS }, (_, i) => fromBits(i + 1) * (i % 2 === 0 ? 1 : -1))); // the smallest subnormals
  pad([3.4028234663852886e38, -3.4028234663852886e38, 1e38, -2e38, 3e38, 1.5, -1e-30, 1e-40]); // hi - lo overflows f32
  pad([3e38, 1e-40, -1e-30, 2.5e38, 7, -1e-45]);
  pad([1, ...NF4_THRESHOLDS.flatMap((t) => [t, nextUp(t), nextDown(t)]), ...NF4_CODE.slice(1, 15)]);
  pad([-0, -0, 0, -0, 1e-3, -0, 5e-4]);
  pad(Array.from({ length: EDGE_COLS }, (_, i) => 2 ** (i - 32) * (i % 2 === 0 ? 1 : -1.5))); // 2^-32 .. 2^31
  pad(Array.from({ length: EDGE_COLS }, (_, i) => (i - 31.5) / 16)); // exact multiples, many ties for group scales
  const rnd = xorshift(0x9e3779b9);
  for (let r = 0; r < 24; r++) {
    const center = (rnd() % 200) - 100;
    pad(Array.from({ length: EDGE_COLS }, () => fromBits((rnd() & 0x807fffff) | (((center + 127 + (rnd() % 9) - 4) & 0xff) << 23)) || 0));
  }
  for (let r = 0; r < 8; r++) pad(Array.from({ length: EDGE_COLS }, () => randomFinite(rnd)));
  const values = Float32Array.from(rows.flat());
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i]!)) values[i] = 0;
  return { values, rows: rows.length, cols: EDGE_COLS };
}

interface IntNConfig {
  bits: IntBits;
  symmetric: boolean;
  groupSize: number;
  minZero: number;
}

const INTN_CONFIGS: IntNConfig[] = [];
for (const bits of [2, 3, 4, 8] as const) for (const symmetric of [false, true]) for (const groupSize of [32, 48, -1]) INTN_CONFIGS.push({ bits, symmetric, groupSize, minZero: 0 });
INTN_CONFIGS.push({ bits: 4, symmetric: false, groupSize: 32, minZero: 1 }, { bits: 3, symmetric: false, groupSize: -1, minZero: 1 });

/** Every scheme on one matrix, GPU vs CPU (codes, scales, zeros, absmax, and the decoded values). */
async function compareAllSchemes(gpu: GpuContext, values: Float32Array, rows: number, cols: number, label: string, intnConfigs: IntNConfig[] = INTN_CONFIGS, withDecode = true): Promise<void> {
  for (const granularity of ['tensor', 'channel'] as const) {
    const what = `${label} ${granularity}`;
    const a = await quantizeInt8AbsmaxOnGpu(gpu, values, rows, cols, granularity, { label });
    const ac = quantizeInt8Absmax(values, rows, cols, granularity);
    assertSameBits(a.values, ac.values, `${what} int8 absmax values`);
    assertSameBits(a.scales, ac.scales, `${what} int8 absmax scales`);
    const z = await quantizeInt8ZeroPointOnGpu(gpu, values, rows, cols, granularity, { label });
    const zc = quantizeInt8ZeroPoint(values, rows, cols, granularity);
    assertSameBits(z.values, zc.values, `${what} int8 zero-point values`);
    assertSameBits(z.scales, zc.scales, `${what} int8 zero-point scales`);
    assertSameBits(z.zeros, zc.zeros, `${what} int8 zero-point zeros`);
    const f = await quantizeFp8E4M3OnGpu(gpu, values, rows, cols, granularity, { label });
    const fc = quantizeFp8E4M3(values, rows, cols, granularity);
    assertSameBits(f.codes, fc.codes, `${what} fp8 codes`);
    assertSameBits(f.scales, fc.scales, `${what} fp8 scales`);
    if (withDecode) {
      assertSameBits(await dequantizeInt8AbsmaxOnGpu(gpu, ac), dequantizeInt8Absmax(ac), `${what} int8 absmax decode`);
      assertSameBits(await dequantizeInt8ZeroPointOnGpu(gpu, zc), dequantizeInt8ZeroPoint(zc), `${what} int8 zero-point decode`);
      assertSameBits(await dequantizeFp8E4M3OnGpu(gpu, fc), dequantizeFp8E4M3(fc), `${what} fp8 decode`);
    }
  }
  for (const c of intnConfigs) {
    const what = `${label} int${c.bits} ${c.symmetric ? 'sym' : 'asym'} g${c.groupSize} minZero ${c.minZero}`;
    const q = allocateIntN(rows, cols, c);
    await quantizeRowsIntNOnGpu(gpu, values, q, c.minZero, { label });
    const qc = allocateIntN(rows, cols, c);
    quantizeRowsIntN(values, qc, c.minZero);
    assertSameBits(q.levels, qc.levels, `${what} levels`);
    assertSameBits(q.scales, qc.scales, `${what} scales`);
    assertSameBits(q.zeros, qc.zeros, `${what} zeros`);
    if (withDecode) assertSameBits(await dequantizeRowsIntNOnGpu(gpu, qc), dequantizeRowsIntN(qc), `${what} decode`);
  }
  for (const count of [values.length, values.length - 1]) {
    const x = values.subarray(0, count);
    const n = await quantizeNf4OnGpu(gpu, x, { label });
    const nc = quantizeNf4(x);
    assertSameBits(n.packed, nc.packed, `${label} nf4 (${count} values) codes`);
    assertSameBits(n.absmax, nc.absmax, `${label} nf4 (${count} values) absmax`);
    if (withDecode) assertSameBits(await dequantizeNf4PackedOnGpu(gpu, nc.packed, nc.absmax, count), dequantizeNf4Packed(nc.packed, nc.absmax, count), `${label} nf4 decode`);
  }
}

// ---------------------------------------------------------------------------------------------

const EXACT_PROBE = `
struct ProbeParams { count: u32, p0: u32, p1: u32, p2: u32 }
@group(0) @binding(0) var<storage, read> a: array<u32>;
@group(0) @binding(1) var<storage, read> b: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<uniform> probe: ProbeParams;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.x;
  if (i >= probe.count) { return; }
  out[4u * i] = f32_div(a[i], b[i]);
  out[4u * i + 1u] = f32_mul(a[i], b[i]);
  out[4u * i + 2u] = f32_add_nonneg(a[i] & 0x7fffffffu, b[i] & 0x7fffffffu);
  out[4u * i + 3u] = bitcast<u32>(round_even_i32(a[i]));
}`;

test('exact_f32.wgsl: division, multiplication, addition and round-half-even equal the host f32 results bit for bit (subnormals, overflow, Inf)', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const lib = readFileSync(join(repoRoot, 'src', 'core', 'gpu', 'kernels', 'lib', 'exact_f32.wgsl'), 'utf8');
  const kernel: Kernel = { name: 'test-exact-f32', wgsl: `${WGSL_SOURCES.common}\n${lib}\n${EXACT_PROBE}`, bindings: ['read-only-storage', 'read-only-storage', 'storage', 'uniform'], workgroupSize: 64, workgroupsFor: (n) => Math.ceil(n / 64) };
  const rnd = xorshift(12345);
  const a: number[] = [];
  const b: number[] = [];
  const special = [0, -0, 1, -1, 0.5, 1.5, 2.5, -2.5, 1e-45, -1e-45, 1.1754942e-38, 1.1754944e-38, 3.4028235e38, -3.4028235e38, 127, 448, 255, 3, Infinity, -Infinity, 8388608.5, 8388607.5, 4194304.5];
  for (const x of special) for (const y of special) {
    a.push(x);
    b.push(y);
  }
  for (let i = 0; i < 1 << 15; i++) {
    // Half the pairs anywhere in the finite range, half with exponents close enough to give normal and subnormal quotients.
    const x = randomFinite(rnd);
    a.push(x);
    b.push(i % 2 === 0 ? randomFinite(rnd) : fromBits((rnd() & 0x807fffff) | (((((bitsOf(x) >>> 23) & 0xff) + (rnd() % 60) - 30 + 256) % 254) << 23)));
  }
  const n = a.length;
  const aBuf = createStorageBuffer(gpu, 'a', n * 4);
  const bBuf = createStorageBuffer(gpu, 'b', n * 4);
  const out = createStorageBuffer(gpu, 'out', n * 16);
  const params = createUniformBuffer(gpu, 'params', Uint32Array.of(n, 0, 0, 0));
  try {
    gpu.device.queue.writeBuffer(aBuf, 0, Float32Array.from(a));
    gpu.device.queue.writeBuffer(bBuf, 0, Float32Array.from(b));
    const encoder = gpu.device.createCommandEncoder();
    encodeKernel(gpu, encoder, kernel, [aBuf, bBuf, out, params], { x: Math.ceil(n / 64), y: 1 });
    gpu.device.queue.submit([encoder.finish()]);
    const got = new Uint32Array(await readBack(gpu, out, n * 16));
    const f = Math.fround;
    const expectBits = (x: number) => (Number.isNaN(x) ? 0x7fc00000 : bitsOf(x));
    for (let i = 0; i < n; i++) {
      const x = f(a[i]!);
      const y = f(b[i]!);
      const roundEven = (v: number) => {
        if (!Number.isFinite(v) || Math.abs(v) >= 2 ** 23) return v > 0 ? 2 ** 23 : -(2 ** 23);
        const r = Math.round(v);
        return (r - v === 0.5 && r % 2 !== 0 ? r - 1 : r) | 0;
      };
      const cases: [string, number, number][] = [
        ['div', got[4 * i]!, expectBits(f(x / y))],
        ['mul', got[4 * i + 1]!, expectBits(f(x * y))],
        ['add', got[4 * i + 2]!, Number.isFinite(x) && Number.isFinite(y) ? expectBits(f(Math.abs(x) + Math.abs(y))) : got[4 * i + 2]!],
        ['round', got[4 * i + 3]!, roundEven(x) >>> 0],
      ];
      for (const [op, gpuBits, cpuBits] of cases) {
        if (gpuBits !== cpuBits) assert.fail(`${op}(${x}, ${y}): GPU ${fromBits(gpuBits)} (0x${gpuBits.toString(16)}), host ${fromBits(cpuBits)} (0x${cpuBits.toString(16)})`);
      }
    }
  } finally {
    for (const buffer of [aBuf, bBuf, out, params]) buffer.destroy();
  }
});

test('edge vectors: every scheme gives the CPU reference bits (ties, zeros, all-equal, subnormals, huge, NF4 thresholds, random bits)', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const { values, rows, cols } = edgeMatrix();
  await compareAllSchemes(gpu, values, rows, cols, 'edge');
});

test('hand-checked codes: INT8 ties to even, FP8 ties/subnormals/saturation at 448, NF4 midpoints take the lower code', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const row = Float32Array.from([127, 0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 3.5, 0.49999997, -0.50000006]);
  const a = await quantizeInt8AbsmaxOnGpu(gpu, row, 1, row.length, 'channel');
  assert.deepEqual([...a.values], [127, 0, 2, 2, 0, -2, -2, 126, -126, 4, 0, -1]);
  assert.equal(a.scales[0], 1);

  // Scale 1: 448 and anything above saturate to 0x7e; 1.0625 ties between 1 and 1.125 (to even: 1.0),
  // 1.1875 between 1.125 and 1.25 (to even: 1.25); 2^-10 ties between 0 and 2^-9 (to 0), 3 * 2^-10 to 2 * 2^-9.
  const fp8In = Float32Array.from([448, 449, 460, 464, 1e6, -1e6, 1.0625, 1.1875, 2 ** -10, 3 * 2 ** -10, -0, 2 ** -6, -240]);
  const fp8 = new Uint8Array(fp8In.length);
  await encodeFp8WithScaleOnGpu(gpu, fp8In, 1, fp8, 0);
  assert.deepEqual([...fp8], [0x7e, 0x7e, 0x7e, 0x7e, 0x7e, 0xfe, 0x38, 0x3a, 0x00, 0x02, 0x80, 0x08, 0xf7]);

  // absmax 1: x = w exactly; a value on a threshold takes the lower code, one ULP above the upper.
  const nf4In = new Float32Array(64);
  nf4In[0] = 1;
  NF4_THRESHOLDS.forEach((th, c) => {
    nf4In[2 + 2 * c] = th;
    nf4In[3 + 2 * c] = nextUp(th);
  });
  const nf4 = await quantizeNf4OnGpu(gpu, nf4In);
  const codes = Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? nf4.packed[i >> 1]! >> 4 : nf4.packed[i >> 1]! & 0x0f));
  assert.equal(codes[0], 15);
  NF4_THRESHOLDS.forEach((_, c) => assert.deepEqual([codes[2 + 2 * c], codes[3 + 2 * c]], [c, c + 1], `threshold ${c}`));
  // An all-zero block: 1 / 0 = Inf, 0 * Inf = NaN: code 0 everywhere (bnb does the same).
  const zeros = await quantizeNf4OnGpu(gpu, new Float32Array(64));
  assert.deepEqual([...zeros.packed], new Array<number>(32).fill(0));
});

test('given-scale encoders (the pipeline\'s per-tensor windows) equal quantizeInt8WithScale / quantizeAsymmetricWithParams / encodeFp8WithScale', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const { values } = edgeMatrix();
  for (const scale of [1, 0.0123, 3e-39, 1e30]) {
    const i8 = new Int8Array(values.length + 5);
    const i8c = new Int8Array(values.length + 5);
    await quantizeInt8WithScaleOnGpu(gpu, values, scale, i8, 5);
    quantizeInt8WithScale(values, scale, i8c, 5);
    assertSameBits(i8, i8c, `int8 with scale ${scale}`);
    const f8 = new Uint8Array(values.length);
    const f8c = new Uint8Array(values.length);
    await encodeFp8WithScaleOnGpu(gpu, values, scale, f8, 0);
    encodeFp8WithScale(values, scale, f8c, 0);
    assertSameBits(f8, f8c, `fp8 with scale ${scale}`);
    for (const [bits, zero] of [[8, 128], [4, 0], [3, 7], [2, 1]] as const) {
      const lv = new Uint8Array(values.length);
      const lvc = new Uint8Array(values.length);
      await quantizeAsymmetricWithParamsOnGpu(gpu, values, 64, values.length - 64, scale, zero, bits, lv, 3);
      quantizeAsymmetricWithParams(values, 64, values.length - 64, scale, zero, bits, lvc, 3);
      assertSameBits(lv, lvc, `asymmetric int${bits} scale ${scale} zero ${zero}`);
    }
  }
});

test('micro-llama: every 2-D weight, every scheme, GPU bits = CPU bits', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const checkpoint = await openCheckpoint(microLlamaDir);
  try {
    const weights = checkpoint.tensors.filter((e) => e.shape.length === 2);
    assert.ok(weights.length >= 15, `micro-llama has ${weights.length} 2-D weights`);
    const configs: IntNConfig[] = [
      { bits: 4, symmetric: false, groupSize: 32, minZero: 0 },
      { bits: 3, symmetric: false, groupSize: 64, minZero: 1 },
      { bits: 8, symmetric: true, groupSize: -1, minZero: 0 },
      { bits: 2, symmetric: true, groupSize: 128, minZero: 0 },
    ];
    for (const entry of weights) {
      const [rows, cols] = entry.shape as [number, number];
      await compareAllSchemes(gpu, await checkpoint.readRowsF32(entry.name), rows, cols, entry.name, configs, false);
    }
  } finally {
    await checkpoint.close();
  }
});

test('tiny-llama: every 2-D weight (schemes in turn), GPU bits = CPU bits', { skip: tinyLlamaDir.skip }, async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const checkpoint = await openCheckpoint(tinyLlamaDir.path);
  try {
    const weights = checkpoint.tensors.filter((e) => e.shape.length === 2);
    // One scheme per tensor, in turn, so every scheme meets real weights of every kind at a bounded cost on lavapipe.
    const schemes: ((x: Float32Array, rows: number, cols: number, name: string) => Promise<void>)[] = [
      async (x, rows, cols, name) => {
        const g = await quantizeInt8AbsmaxOnGpu(gpu, x, rows, cols, 'channel');
        const c = quantizeInt8Absmax(x, rows, cols, 'channel');
        assertSameBits(g.values, c.values, `${name} int8 absmax`);
        assertSameBits(g.scales, c.scales, `${name} int8 absmax scales`);
      },
      async (x, rows, cols, name) => {
        const g = await quantizeInt8ZeroPointOnGpu(gpu, x, rows, cols, 'tensor');
        const c = quantizeInt8ZeroPoint(x, rows, cols, 'tensor');
        assertSameBits(g.values, c.values, `${name} int8 zero-point`);
        assertSameBits(g.scales, c.scales, `${name} int8 zero-point scale`);
        assertSameBits(g.zeros, c.zeros, `${name} int8 zero-point zero`);
      },
      async (x, rows, cols, name) => {
        const g = allocateIntN(rows, cols, { bits: 4, groupSize: 128, symmetric: false });
        await quantizeRowsIntNOnGpu(gpu, x, g, 1);
        const c = allocateIntN(rows, cols, { bits: 4, groupSize: 128, symmetric: false });
        quantizeRowsIntN(x, c, 1);
        assertSameBits(g.levels, c.levels, `${name} int4 g128`);
        assertSameBits(g.scales, c.scales, `${name} int4 g128 scales`);
        assertSameBits(g.zeros, c.zeros, `${name} int4 g128 zeros`);
      },
      async (x, _rows, _cols, name) => {
        const g = await quantizeNf4OnGpu(gpu, x);
        const c = quantizeNf4(x);
        assertSameBits(g.packed, c.packed, `${name} nf4`);
        assertSameBits(g.absmax, c.absmax, `${name} nf4 absmax`);
      },
      async (x, rows, cols, name) => {
        const g = await quantizeFp8E4M3OnGpu(gpu, x, rows, cols, 'channel');
        const c = quantizeFp8E4M3(x, rows, cols, 'channel');
        assertSameBits(g.codes, c.codes, `${name} fp8`);
        assertSameBits(g.scales, c.scales, `${name} fp8 scales`);
      },
      async (x, rows, cols, name) => {
        const g = allocateIntN(rows, cols, { bits: 3, groupSize: 32, symmetric: true });
        await quantizeRowsIntNOnGpu(gpu, x, g);
        const c = allocateIntN(rows, cols, { bits: 3, groupSize: 32, symmetric: true });
        quantizeRowsIntN(x, c);
        assertSameBits(g.levels, c.levels, `${name} int3 sym g32`);
        assertSameBits(g.scales, c.scales, `${name} int3 sym g32 scales`);
      },
    ];
    assert.ok(weights.length >= schemes.length);
    for (let i = 0; i < weights.length; i++) {
      const entry = weights[i]!;
      const [rows, cols] = entry.shape as [number, number];
      await schemes[i % schemes.length]!(await checkpoint.readRowsF32(entry.name), rows, cols, entry.name);
    }
  } finally {
    await checkpoint.close();
  }
});

test('chunks: whole-span chunks, per-channel rows longer than a chunk and per-tensor spans merged across chunks give the same bits', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const rnd = xorshift(777);
  const rows = 6;
  const cols = 1000; // a row is 4000 bytes: longer than the 1 KiB chunks below
  const x = Float32Array.from({ length: rows * cols }, () => ((rnd() / 2 ** 32) - 0.5) * 0.2);
  x[4321] = 0.9; // the tensor's absmax lies in a later chunk
  x[17] = -1.3;
  const chunked = { maxChunkBytes: 1024 };
  let computes = 0;
  const counting = { ...chunked, onPhase: (p: GpuPhase) => p === 'compute' && computes++ };
  for (const granularity of ['tensor', 'channel'] as const) {
    const g = await quantizeInt8ZeroPointOnGpu(gpu, x, rows, cols, granularity, counting);
    const c = quantizeInt8ZeroPoint(x, rows, cols, granularity);
    assertSameBits(g.values, c.values, `zero-point ${granularity} in chunks`);
    assertSameBits(g.scales, c.scales, `zero-point ${granularity} scales in chunks`);
    assertSameBits(g.zeros, c.zeros, `zero-point ${granularity} zeros in chunks`);
    const f = await quantizeFp8E4M3OnGpu(gpu, x, rows, cols, granularity, chunked);
    assertSameBits(f.codes, quantizeFp8E4M3(x, rows, cols, granularity).codes, `fp8 ${granularity} in chunks`);
    const a = await quantizeInt8AbsmaxOnGpu(gpu, x, rows, cols, granularity, chunked);
    assertSameBits(a.values, quantizeInt8Absmax(x, rows, cols, granularity).values, `int8 absmax ${granularity} in chunks`);
  }
  // 6000 values in chunks of 256: two passes (ranges, then codes) of 24 chunks each, per granularity.
  assert.equal(computes, 2 * 2 * 24);
  const q = allocateIntN(rows, cols, { bits: 4, groupSize: 48, symmetric: false });
  await quantizeRowsIntNOnGpu(gpu, x, q, 0, chunked);
  const qc = allocateIntN(rows, cols, { bits: 4, groupSize: 48, symmetric: false });
  quantizeRowsIntN(x, qc);
  assertSameBits(q.levels, qc.levels, 'int4 g48 in chunks');
  assertSameBits(q.scales, qc.scales, 'int4 g48 scales in chunks');
  const n = await quantizeNf4OnGpu(gpu, x.subarray(0, 5999), chunked);
  assertSameBits(n.packed, quantizeNf4(x.subarray(0, 5999)).packed, 'nf4 in chunks');
  const decoded = await dequantizeNf4PackedOnGpu(gpu, n.packed, n.absmax, 5999, chunked);
  assertSameBits(decoded, dequantizeNf4Packed(n.packed, n.absmax, 5999), 'nf4 decode in chunks');
});

test('NaN / Inf: a NumericError that names the value (one pass, merged passes, given scale, NF4); empty tensors; bad sizes', async (t) => {
  const gpu = await gpuOrSkip(t);
  if (gpu === null) return;
  const x = new Float32Array(4 * 64).fill(0.25);
  x[70] = Number.NaN;
  await assert.rejects(quantizeInt8AbsmaxOnGpu(gpu, x, 4, 64, 'channel', { label: 'w' }), (e: unknown) => e instanceof NumericError && /^w: value 70 \(row 1, column 6\) is NaN/.test(e.message));
  x[70] = 0.25;
  x[200] = Number.POSITIVE_INFINITY;
  await assert.rejects(quantizeFp8E4M3OnGpu(gpu, x, 4, 64, 'tensor', { label: 'w', maxChunkBytes: 256 }), (e: unknown) => e instanceof NumericError && /value 200 \(row 3, column 8\) is Infinity/.test(e.message));
  await assert.rejects(encodeFp8WithScaleOnGpu(gpu, x, 1, new Uint8Array(x.length), 0), (e: unknown) => e instanceof NumericError && /value 200 /.test(e.message));
  x[200] = Number.NEGATIVE_INFINITY;
  await assert.rejects(quantizeNf4OnGpu(gpu, x), (e: unknown) => e instanceof NumericError && /value 200 .* -Infinity/.test(e.message));
  const q = allocateIntN(4, 64, { bits: 4, groupSize: 32, symmetric: false });
  await assert.rejects(quantizeRowsIntNOnGpu(gpu, x, q), NumericError);

  const empty = await quantizeInt8AbsmaxOnGpu(gpu, new Float32Array(0), 0, 16, 'tensor');
  assert.deepEqual([...empty.scales], [...quantizeInt8Absmax(new Float32Array(0), 0, 16, 'tensor').scales]);
  await assert.rejects(quantizeNf4OnGpu(gpu, new Float32Array(0)), InvalidArgumentError);
  await assert.rejects(quantizeInt8ZeroPointOnGpu(gpu, new Float32Array(10), 3, 4, 'channel'), InvalidArgumentError);
});

for (const phase of ['upload', 'compute', 'readback'] as const satisfies readonly GpuPhase[]) {
  test(`cancellation during ${phase} ends in CancelledError, and the device stays usable`, async (t) => {
    const gpu = await gpuOrSkip(t);
    if (gpu === null) return;
    const { values, rows, cols } = edgeMatrix();
    const controller = new AbortController();
    const q = allocateIntN(rows, cols, { bits: 4, groupSize: 32, symmetric: false });
    await assert.rejects(
      quantizeRowsIntNOnGpu(gpu, values, q, 0, {
        maxChunkBytes: 1024,
        signal: controller.signal,
        onPhase: (p, chunk) => {
          if (p === phase && chunk === 2) controller.abort();
        },
      }),
      CancelledError,
    );
    const again = await quantizeInt8AbsmaxOnGpu(gpu, values, rows, cols, 'tensor');
    assertSameBits(again.values, quantizeInt8Absmax(values, rows, cols, 'tensor').values, 'after a cancel');
  });
}

test('a device that vanishes mid-job (device.destroy() during compute) ends in GpuUnavailableError, never a hang', async (t) => {
  if ((await gpuOrSkip(t)) === null) return;
  const own = await acquireGpu();
  try {
    const { values, rows, cols } = edgeMatrix();
    await assert.rejects(
      quantizeFp8E4M3OnGpu(own, values, rows, cols, 'channel', {
        maxChunkBytes: 1024,
        onPhase: (p, chunk) => {
          if (p === 'compute' && chunk === 1) own.destroy();
        },
      }),
      GpuUnavailableError,
    );
  } finally {
    own.destroy();
  }
});
