/**
 * The forward pass's matmul as WebAssembly SIMD kernels (f32x4), generated at run time from bytes
 * (wasm/assembler.ts) so that nothing needs a toolchain or a binary file:
 * out[t, o] = sum_k x[t, k] * w[o, k]   (x: [rows, inner], w: [outs, inner] as nn.Linear stores it).
 *
 * Kernel: 2 rows of x by 4 rows of w per block (8 f32x4 accumulators + 2 x vectors + 1 w vector: 11
 * live registers, so V8's x64 register allocator (15 usable xmm) never spills), one module per
 * `inner` with the row stride baked into the load offsets, and a 1-row kernel for an odd last row.
 * Cache tiling: x and w are cut into tiles of about TILE_BYTES each so that both stay in L2 while a
 * tile of outputs is computed (the output head, 8192 x 384, otherwise streams w from memory once
 * per pair of rows).
 * Accumulation is f32 (as PyTorch's CPU matmul): each output is 4 partial sums over k = i mod 4,
 * reduced ((s0 + s1) + (s2 + s3)) at the end. Falls back to the JS kernel when SIMD is unavailable,
 * inner or outs is not a multiple of 4, or the operands do not fit the 32-bit wasm heap.
 *
 * Weights used many times (a layer's projections over every window) can be copied into the wasm
 * heap once with `residentWeight` and multiplied with `matmulResident`.
 */
import { InvalidArgumentError } from '../errors';
import { matmulTransposed } from './kernels';
import { buildModule, op, v, wasmApi, type FunctionSpec, type WasmMemory } from './wasm/assembler';

/** Rows of x per block of the main kernel (the 1-row kernel takes the remainder). */
const BLOCK_ROWS = 2;
/** Rows of w per block (outs must be a multiple of it). */
const BLOCK_OUTS = 4;
/** Bytes of x (and of w) per cache tile: two tiles together stay well inside a 1 MiB L2. */
const TILE_BYTES = 192 * 1024;
/** Largest wasm heap used (bytes); past it the JS kernel runs (wasm32 addresses 4 GiB). */
const MAX_WASM_BYTES = 3 * 2 ** 30;
const PAGE = 65536;

/**
 * Kernel `(x, w, out, rows, outs, outStride)` (byte pointers) for one `inner`: `rows` rows of x
 * (a multiple of R) against `outs` rows of w (a multiple of 4); out row t starts at out + t*outStride*4.
 */
function matmulKernel(fname: string, R: number, inner: number): FunctionSpec {
  const X = 0, W = 1, O = 2, ROWS = 3, OUTS = 4, STRIDE = 5;
  let n = 6;
  const T = n++, J = n++, K = n++, ADDR = n++, XB = n++, WB = n++;
  const i32Count = n - 6;
  const ACC = n;
  n += R * BLOCK_OUTS;
  const XV = n;
  n += R;
  const WV = n++;
  const v128Count = n - 6 - i32Count;
  const { get, set, i32 } = op;
  const rowBytes = inner * 4;
  const rs = Array.from({ length: R }, (_, r) => r);
  const cs = Array.from({ length: BLOCK_OUTS }, (_, c) => c);
  const acc = (r: number, c: number): number => ACC + r * BLOCK_OUTS + c;
  // One k step (4 floats): load R x vectors, then per w row one load and R multiply-adds.
  const step = [
    ...rs.flatMap((r) => [...get(XB), ...get(K), ...op.i32Add, ...v.load(r * rowBytes), ...set(XV + r)]),
    ...cs.flatMap((c) => [
      ...get(WB), ...get(K), ...op.i32Add, ...v.load(c * rowBytes), ...set(WV),
      ...rs.flatMap((r) => [...get(acc(r, c)), ...get(XV + r), ...get(WV), ...v.f32Mul, ...v.f32Add, ...set(acc(r, c))]),
    ]),
  ];
  const code = [
    ...i32(0), ...set(T),
    ...op.block, ...op.loop,
    ...get(T), ...get(ROWS), ...op.i32GeU, ...op.brIf(1),
    ...get(X), ...get(T), ...i32(rowBytes), ...op.i32Mul, ...op.i32Add, ...set(XB),
    ...i32(0), ...set(J),
    ...op.block, ...op.loop,
    ...get(J), ...get(OUTS), ...op.i32GeU, ...op.brIf(1),
    ...get(W), ...get(J), ...i32(rowBytes), ...op.i32Mul, ...op.i32Add, ...set(WB),
    ...rs.flatMap((r) => cs.flatMap((c) => [...v.zero, ...set(acc(r, c))])),
    ...i32(0), ...set(K),
    ...op.block, ...op.loop,
    ...step,
    ...get(K), ...i32(16), ...op.i32Add, ...op.tee(K), ...i32(rowBytes), ...op.i32LtU, ...op.brIf(0),
    ...op.end, ...op.end,
    ...rs.flatMap((r) => [
      // addr = out + ((t + r) * outStride + j) * 4
      ...get(O), ...get(T), ...i32(r), ...op.i32Add, ...get(STRIDE), ...op.i32Mul, ...get(J), ...op.i32Add, ...i32(2), ...op.i32Shl, ...op.i32Add, ...set(ADDR),
      ...cs.flatMap((c) => [
        ...get(ADDR),
        ...get(acc(r, c)), ...v.f32Lane(0), ...get(acc(r, c)), ...v.f32Lane(1), ...op.f32Add,
        ...get(acc(r, c)), ...v.f32Lane(2), ...get(acc(r, c)), ...v.f32Lane(3), ...op.f32Add,
        ...op.f32Add,
        ...op.f32Store(4 * c),
      ]),
    ]),
    ...get(J), ...i32(BLOCK_OUTS), ...op.i32Add, ...set(J),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(T), ...i32(R), ...op.i32Add, ...set(T),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: fname, params: 6, locals: { i32: i32Count, f32: 0, v128: v128Count }, code };
}

type KernelFn = (x: number, w: number, out: number, rows: number, outs: number, outStride: number) => void;

interface InnerKernels {
  block: KernelFn;
  single: KernelFn;
}

interface WasmState {
  memory: WasmMemory;
  /** Per `inner`: the compiled block and single-row kernels. */
  kernels: Map<number, InnerKernels>;
  /** End of the resident-weight region (bytes); scratch for each call starts here. */
  residentEnd: number;
  /** Resident weights not yet released. */
  residentLive: number;
}

let state: WasmState | null | undefined;

function loadState(): WasmState | null {
  if (state !== undefined) return state;
  try {
    const api = wasmApi();
    const probe = buildModule([matmulKernel('mm', BLOCK_ROWS, 4)], 1);
    if (api === undefined || !api.validate(probe)) state = null;
    else state = { memory: new api.Memory({ initial: 1 }), kernels: new Map(), residentEnd: 0, residentLive: 0 };
  } catch {
    state = null;
  }
  return state;
}

/** Most `inner` sizes compiled at once (a model uses 3 or 4; the rest are rare callers). */
const MAX_COMPILED = 32;

function kernelsFor(s: WasmState, inner: number): InnerKernels {
  const have = s.kernels.get(inner);
  if (have !== undefined) return have;
  const api = wasmApi();
  if (api === undefined) throw new InvalidArgumentError('WebAssembly disappeared');
  const bytes = buildModule([matmulKernel('block', BLOCK_ROWS, inner), matmulKernel('single', 1, inner)], 1);
  const instance = new api.Instance(new api.Module(bytes), { env: { mem: s.memory } });
  const { block, single } = instance.exports;
  if (typeof block !== 'function' || typeof single !== 'function') throw new InvalidArgumentError('matmul kernel module has no block/single export');
  const made = { block: block as KernelFn, single: single as KernelFn };
  if (s.kernels.size >= MAX_COMPILED) s.kernels.clear();
  s.kernels.set(inner, made);
  return made;
}

/** Whether the SIMD kernel loaded (false: every call uses the JS kernel). */
export function wasmMatmulAvailable(): boolean {
  return loadState() !== null;
}

function ensureBytes(s: WasmState, bytes: number): void {
  const have = s.memory.buffer.byteLength;
  if (have < bytes) s.memory.grow(Math.ceil((bytes - have) / PAGE));
}

const align64 = (n: number): number => Math.ceil(n / 64) * 64;

/** Runs the tiled kernels on operands already in the heap (byte offsets). */
function runTiled(s: WasmState, xAt: number, wAt: number, outAt: number, rows: number, inner: number, outs: number): void {
  const k = kernelsFor(s, inner);
  const rowBytes = inner * 4;
  // Tile sizes: whole blocks, at least one block, about TILE_BYTES of x and of w each.
  const tileRows = Math.max(BLOCK_ROWS, Math.floor(TILE_BYTES / rowBytes / BLOCK_ROWS) * BLOCK_ROWS);
  const tileOuts = Math.max(BLOCK_OUTS, Math.floor(TILE_BYTES / rowBytes / BLOCK_OUTS) * BLOCK_OUTS);
  for (let t0 = 0; t0 < rows; t0 += tileRows) {
    const tRows = Math.min(tileRows, rows - t0);
    const blockRows = tRows - (tRows % BLOCK_ROWS);
    for (let j0 = 0; j0 < outs; j0 += tileOuts) {
      const jOuts = Math.min(tileOuts, outs - j0);
      const xPtr = xAt + t0 * rowBytes;
      const wPtr = wAt + j0 * rowBytes;
      const oPtr = outAt + 4 * (t0 * outs + j0);
      if (blockRows > 0) k.block(xPtr, wPtr, oPtr, blockRows, jOuts, outs);
      if (blockRows < tRows) k.single(xPtr + blockRows * rowBytes, wPtr, oPtr + 4 * blockRows * outs, tRows - blockRows, jOuts, outs);
    }
  }
}

function fitsWasm(s: WasmState | null, inner: number, outs: number, extraBytes: number): s is WasmState {
  return s !== null && inner % 4 === 0 && outs % BLOCK_OUTS === 0 && extraBytes <= MAX_WASM_BYTES;
}

/** Same contract as kernels.matmulTransposed. */
export function matmul(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, inner: number, outs: number): void {
  const s = loadState();
  const bytes = 4 * (rows * inner + outs * inner + rows * outs);
  if (!fitsWasm(s, inner, outs, (s?.residentEnd ?? 0) + bytes + 192)) {
    matmulTransposed(x, w, out, rows, inner, outs);
    return;
  }
  const xAt = align64(s.residentEnd);
  const wAt = align64(xAt + 4 * rows * inner);
  const outAt = align64(wAt + 4 * outs * inner);
  ensureBytes(s, outAt + 4 * rows * outs);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  heap.set(w.subarray(0, outs * inner), wAt / 4);
  runTiled(s, xAt, wAt, outAt, rows, inner, outs);
  out.set(heap.subarray(outAt / 4, outAt / 4 + rows * outs));
}

/**
 * A weight [outs, inner] copied into the wasm heap for repeated `matmulResident` calls. Its values
 * are those at the time of `residentWeight`; later changes to the source array are not seen.
 * Release it (`release()`) when done: the heap region is reused once every resident weight is released.
 */
export interface ResidentWeight {
  readonly outs: number;
  readonly inner: number;
  release(): void;
}

interface ResidentImpl extends ResidentWeight {
  /** Byte offset in the heap, or null when the weight stays in JS (fallback path). */
  readonly at: number | null;
  readonly source: Float32Array;
  released: boolean;
}

/** Copies `w` [outs, inner] into the heap (or keeps a reference for the JS fallback). */
export function residentWeight(w: Float32Array, outs: number, inner: number): ResidentWeight {
  if (w.length < outs * inner) throw new InvalidArgumentError(`weight has ${w.length} values, expected ${outs} x ${inner}`);
  const s = loadState();
  let at: number | null = null;
  if (fitsWasm(s, inner, outs, s === null ? 0 : s.residentEnd + 4 * outs * inner + 64)) {
    at = align64(s.residentEnd);
    ensureBytes(s, at + 4 * outs * inner);
    new Float32Array(s.memory.buffer).set(w.subarray(0, outs * inner), at / 4);
    s.residentEnd = at + 4 * outs * inner;
    s.residentLive++;
  }
  const handle: ResidentImpl = {
    outs,
    inner,
    at,
    source: w,
    released: false,
    release(): void {
      if (handle.released) return;
      handle.released = true;
      if (handle.at !== null && s !== null) {
        s.residentLive--;
        if (s.residentLive === 0) s.residentEnd = 0;
      }
    },
  };
  return handle;
}

function isResidentImpl(w: ResidentWeight): w is ResidentImpl {
  return 'at' in w && 'source' in w;
}

/** out[t, o] = sum_k x[t, k] * w[o, k] with a resident weight (same contract as `matmul`). */
export function matmulResident(x: Float32Array, w: ResidentWeight, out: Float32Array, rows: number): void {
  if (!isResidentImpl(w) || w.released) throw new InvalidArgumentError('matmulResident: the weight was released or does not come from residentWeight');
  const { inner, outs } = w;
  const s = loadState();
  const bytes = 4 * (rows * inner + rows * outs) + 128;
  if (w.at === null || s === null || s.residentEnd + bytes > MAX_WASM_BYTES) {
    matmulTransposed(x, w.source, out, rows, inner, outs);
    return;
  }
  const xAt = align64(s.residentEnd);
  const outAt = align64(xAt + 4 * rows * inner);
  ensureBytes(s, outAt + 4 * rows * outs);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  runTiled(s, xAt, w.at, outAt, rows, inner, outs);
  out.set(heap.subarray(outAt / 4, outAt / 4 + rows * outs));
}

/** Scratch buffers of attentionByMatmul for one window length and head size. */
export interface AttentionScratch {
  rows: number;
  headDim: number;
  qh: Float32Array;
  kh: Float32Array;
  vT: Float32Array;
  scores: Float32Array;
  oh: Float32Array;
}

export function attentionScratch(rows: number, headDim: number): AttentionScratch {
  return {
    rows,
    headDim,
    qh: new Float32Array(rows * headDim),
    kh: new Float32Array(rows * headDim),
    vT: new Float32Array(headDim * rows),
    scores: new Float32Array(rows * rows),
    oh: new Float32Array(rows * headDim),
  };
}

/**
 * Causal GQA attention (same contract as kernels.causalAttention) with both products on the matmul
 * kernel: per head S = Q_h K_h^T (the full square; masked entries are then set to 0), a softmax per
 * row over s <= t, and O_h = P V_h. Twice the multiply-adds of the triangular loop, but SIMD.
 */
export function attentionByMatmul(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  rows: number,
  heads: number,
  kvHeads: number,
  headDim: number,
  scratch: AttentionScratch,
): void {
  const { qh, kh, vT, scores, oh } = scratch;
  const group = heads / kvHeads;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  for (let kvh = 0; kvh < kvHeads; kvh++) {
    for (let t = 0; t < rows; t++) {
      const src = t * kvWidth + kvh * headDim;
      for (let i = 0; i < headDim; i++) {
        kh[t * headDim + i] = k[src + i]!;
        vT[i * rows + t] = v[src + i]!;
      }
    }
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      for (let t = 0; t < rows; t++) qh.set(q.subarray(t * qWidth + h * headDim, t * qWidth + (h + 1) * headDim), t * headDim);
      matmul(qh, kh, scores, rows, headDim, rows);
      for (let t = 0; t < rows; t++) {
        const base = t * rows;
        let max = -Infinity;
        for (let s = 0; s <= t; s++) {
          const z = scores[base + s]! * scale;
          scores[base + s] = z;
          if (z > max) max = z;
        }
        let sum = 0;
        for (let s = 0; s <= t; s++) {
          const e = Math.exp(scores[base + s]! - max);
          scores[base + s] = e;
          sum += e;
        }
        const inv = 1 / sum;
        for (let s = 0; s <= t; s++) scores[base + s] = scores[base + s]! * inv;
        scores.fill(0, base + t + 1, base + rows);
      }
      matmul(scores, vT, oh, rows, rows, headDim);
      for (let t = 0; t < rows; t++) out.set(oh.subarray(t * headDim, (t + 1) * headDim), t * qWidth + h * headDim);
    }
  }
}
