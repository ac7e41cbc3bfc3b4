/**
 * The forward pass's matmul as WebAssembly SIMD kernels (f32x4), generated at run time from bytes
 * (wasm/assembler.ts) so that nothing needs a toolchain or a binary file:
 * out[t, o] = sum_k x[t, k] * w[o, k]   (x: [rows, inner], w: [outs, inner] as nn.Linear stores it).
 *
 * Kernel: 2 rows of x by 4 rows of w per block (8 f32x4 accumulators + 2 x vectors + 1 w vector: 11
 * live registers, so V8's x64 register allocator (15 usable xmm) never spills), one module per
 * `inner` with the row stride baked into the load offsets, and a 1-row kernel for an odd last row.
 * Cache tiling: x and w are cut into tiles (X_TILE_BYTES, W_TILE_BYTES) that together stay in L2 while a
 * tile of outputs is computed (the output head, 8192 x 384, otherwise streams w from memory once
 * per pair of rows).
 * Accumulation is f32 (as PyTorch's CPU matmul): each output is 4 partial sums over k = i mod 4,
 * reduced ((s0 + s1) + (s2 + s3)) at the end. Where the engine has relaxed SIMD, each step is one
 * f32x4.relaxed_madd (fused on x86 with FMA: one rounding instead of two, and about 1.3x faster);
 * elsewhere f32x4.mul then f32x4.add. Falls back to the JS kernel when SIMD is unavailable,
 * inner or outs is not a multiple of 4, or the operands do not fit the 32-bit wasm heap.
 *
 * Weights used many times (a layer's projections over every window) can be copied into the wasm
 * heap once with `residentWeight` and multiplied with `matmulResident`.
 */
import { InvalidArgumentError } from '../errors';
import { matmulTransposed, swiglu } from './kernels';
import { buildModule, op, v, wasmApi, type FunctionSpec, type WasmMemory } from './wasm/assembler';
import { expKernel, logSumExpRowsKernel, softmaxCausalKernel, swigluKernel } from './wasm/elementwiseKernels';

/** Rows of x per block of the main kernel (the 1-row kernel takes the remainder). */
const BLOCK_ROWS = 2;
/** Rows of w per block (outs must be a multiple of it). */
const BLOCK_OUTS = 4;
/** Bytes of x (and of w) per cache tile: two tiles together stay well inside a 1 MiB L2. */
/**
 * Bytes of x and of w per cache tile. A tile of w is multiplied by every row of an x tile before the
 * next: large x tiles (a whole 256-token window of 384-wide rows) and small w tiles (that stay near
 * L1 while the rows stream from L2) measured 6-10 % faster on Dev's Zen 4 (1 MiB L2) than 192 KiB
 * each, on tiny-llama's shapes; both together stay inside L2.
 */
const X_TILE_BYTES = 512 * 1024;
const W_TILE_BYTES = 128 * 1024;
/** Largest wasm heap used (bytes); past it the JS kernel runs (wasm32 addresses 4 GiB). */
const MAX_WASM_BYTES = 3 * 2 ** 30;
const PAGE = 65536;

/**
 * Kernel `(x, w, out, rows, outs, outStride, kBytes)` (byte pointers) for one `inner` (the row
 * stride of x and w): `rows` rows of x (a multiple of R) against `outs` rows of w (a multiple of 4),
 * summing over the first kBytes / 4 columns (a multiple of 4; inner for a full product); out row t
 * starts at out + t*outStride*4.
 */
function matmulKernel(fname: string, R: number, inner: number, fused = false): FunctionSpec {
  const X = 0, W = 1, O = 2, ROWS = 3, OUTS = 4, STRIDE = 5, KBYTES = 6;
  let n = 7;
  const T = n++, J = n++, K = n++, ADDR = n++, XB = n++, WB = n++;
  const i32Count = n - 7;
  const ACC = n;
  n += R * BLOCK_OUTS;
  const XV = n;
  n += R;
  const WV = n++;
  const v128Count = n - 7 - i32Count;
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
      ...rs.flatMap((r) =>
        fused
          ? [...get(XV + r), ...get(WV), ...get(acc(r, c)), ...v.f32RelaxedMadd, ...set(acc(r, c))]
          : [...get(acc(r, c)), ...get(XV + r), ...get(WV), ...v.f32Mul, ...v.f32Add, ...set(acc(r, c))],
      ),
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
    ...get(K), ...i32(16), ...op.i32Add, ...op.tee(K), ...get(KBYTES), ...op.i32LtU, ...op.brIf(0),
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
  return { name: fname, params: 7, locals: { i32: i32Count, f32: 0, v128: v128Count }, code };
}

type KernelFn = (x: number, w: number, out: number, rows: number, outs: number, outStride: number, kBytes: number) => void;

interface InnerKernels {
  block: KernelFn;
  single: KernelFn;
}

type SwigluFn = (gate: number, up: number, n: number) => void;
type SoftmaxCausalFn = (scores: number, rows: number, stride: number, scaleBits: number) => void;
type ExpFn = (src: number, dst: number, n: number) => void;
type LogSumExpFn = (x: number, rows: number, cols: number, out: number) => void;

interface ElementwiseKernels {
  swiglu: SwigluFn;
  softmaxCausal: SoftmaxCausalFn;
  expv: ExpFn;
  logSumExpRows: LogSumExpFn;
}

interface WasmState {
  memory: WasmMemory;
  elementwise: ElementwiseKernels | null;
  /** Per `inner`: the compiled block and single-row kernels. */
  kernels: Map<number, InnerKernels>;
  /** End of the resident-weight region (bytes); scratch for each call starts here. */
  residentEnd: number;
  /** Resident weights not yet released. */
  residentLive: number;
  /** Whether the engine runs relaxed SIMD (f32x4.relaxed_madd): Node >= 21, Electron >= 25; Node 20 only with --experimental-wasm-relaxed-simd. */
  fused: boolean;
}

let state: WasmState | null | undefined;

function loadState(): WasmState | null {
  if (state !== undefined) return state;
  try {
    const api = wasmApi();
    const probe = buildModule([matmulKernel('mm', BLOCK_ROWS, 4)], 1);
    if (api === undefined || !api.validate(probe)) state = null;
    else {
      const fused = api.validate(buildModule([matmulKernel('mm', BLOCK_ROWS, 4, true)], 1));
      state = { memory: new api.Memory({ initial: 1 }), elementwise: null, kernels: new Map(), residentEnd: 0, residentLive: 0, fused };
    }
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
  const bytes = buildModule([matmulKernel('block', BLOCK_ROWS, inner, s.fused), matmulKernel('single', 1, inner, s.fused)], 1);
  const instance = new api.Instance(new api.Module(bytes), { env: { mem: s.memory } });
  const { block, single } = instance.exports;
  if (typeof block !== 'function' || typeof single !== 'function') throw new InvalidArgumentError('matmul kernel module has no block/single export');
  const made = { block: block as KernelFn, single: single as KernelFn };
  if (s.kernels.size >= MAX_COMPILED) s.kernels.clear();
  s.kernels.set(inner, made);
  return made;
}

function elementwiseFor(s: WasmState): ElementwiseKernels {
  if (s.elementwise !== null) return s.elementwise;
  const api = wasmApi();
  if (api === undefined) throw new InvalidArgumentError('WebAssembly disappeared');
  const bytes = buildModule([swigluKernel(), softmaxCausalKernel(), expKernel(), logSumExpRowsKernel()], 1);
  const { swiglu, softmaxCausal, expv, logSumExpRows } = new api.Instance(new api.Module(bytes), { env: { mem: s.memory } }).exports;
  if (typeof swiglu !== 'function' || typeof softmaxCausal !== 'function' || typeof expv !== 'function' || typeof logSumExpRows !== 'function') {
    throw new InvalidArgumentError('element-wise kernel module lacks an export');
  }
  s.elementwise = { swiglu: swiglu as SwigluFn, softmaxCausal: softmaxCausal as SoftmaxCausalFn, expv: expv as ExpFn, logSumExpRows: logSumExpRows as LogSumExpFn };
  return s.elementwise;
}

/**
 * Drops the wasm heap when it holds more than `keepBytes` and no resident weight is live: a wasm
 * memory never shrinks, so after a large model's pass the extension host would otherwise keep its
 * largest layer's worth of heap for good. The next call builds a fresh heap (kernels compile again
 * in a few milliseconds).
 */
export function trimWasmHeap(keepBytes = 64 * 2 ** 20): void {
  if (state === undefined || state === null || state.residentLive > 0) return;
  if (state.memory.buffer.byteLength > keepBytes) state = undefined;
}

/** Whether the SIMD kernel loaded (false: every call uses the JS kernel). */
export function wasmMatmulAvailable(): boolean {
  return loadState() !== null;
}

/** Which matmul kernel runs: 'relaxed-madd' (f32x4.relaxed_madd), 'mul-add' (f32x4.mul + add) or 'js'. */
export function matmulKernelKind(): 'relaxed-madd' | 'mul-add' | 'js' {
  const s = loadState();
  return s === null ? 'js' : s.fused ? 'relaxed-madd' : 'mul-add';
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
  // Tile sizes: whole blocks, at least one block, about X_TILE_BYTES of x and W_TILE_BYTES of w.
  const tileRows = Math.max(BLOCK_ROWS, Math.floor(X_TILE_BYTES / rowBytes / BLOCK_ROWS) * BLOCK_ROWS);
  const tileOuts = Math.max(BLOCK_OUTS, Math.floor(W_TILE_BYTES / rowBytes / BLOCK_OUTS) * BLOCK_OUTS);
  const tile = (t0: number, j0: number): void => {
    const tRows = Math.min(tileRows, rows - t0);
    const blockRows = tRows - (tRows % BLOCK_ROWS);
    const jOuts = Math.min(tileOuts, outs - j0);
    const xPtr = xAt + t0 * rowBytes;
    const wPtr = wAt + j0 * rowBytes;
    const oPtr = outAt + 4 * (t0 * outs + j0);
    if (blockRows > 0) k.block(xPtr, wPtr, oPtr, blockRows, jOuts, outs, rowBytes);
    if (blockRows < tRows) k.single(xPtr + blockRows * rowBytes, wPtr, oPtr + 4 * blockRows * outs, tRows - blockRows, jOuts, outs, rowBytes);
  };
  for (let t0 = 0; t0 < rows; t0 += tileRows) for (let j0 = 0; j0 < outs; j0 += tileOuts) tile(t0, j0);
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
  if (attentionInWasm(q, k, v, out, rows, heads, kvHeads, headDim)) return;
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

/** Rows of a query tile in attentionInWasm: the causal products skip the tiles above the diagonal. */
const ATTENTION_TILE_ROWS = 16;

/**
 * attentionByMatmul entirely in the wasm heap (rows and headDim multiples of 4): per head
 * S = Q_h K_h^T over the tiles on or below the diagonal only, the causal softmax kernel (scale, max,
 * exp, 1/sum, zeros above the diagonal), and O_h = P V_h summing each tile only over s < its last row
 * (rounded up to 4), written straight into the context rows. Returns false when it cannot run.
 */
function attentionInWasm(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, rows: number, heads: number, kvHeads: number, headDim: number): boolean {
  const s = loadState();
  if (s === null || rows % 4 !== 0 || headDim % 4 !== 0) return false;
  const d = headDim;
  const qWidth = heads * d;
  const kvWidth = kvHeads * d;
  const qhAt = align64(s.residentEnd);
  const khAt = align64(qhAt + 4 * rows * d);
  const vTAt = align64(khAt + 4 * rows * d);
  const scoresAt = align64(vTAt + 4 * rows * d);
  const contextAt = align64(scoresAt + 4 * rows * rows);
  const end = contextAt + 4 * rows * qWidth;
  if (end > MAX_WASM_BYTES) return false;
  ensureBytes(s, end);
  const byHead = kernelsFor(s, d);
  const byRows = kernelsFor(s, rows);
  const ew = elementwiseFor(s);
  const heap = new Float32Array(s.memory.buffer);
  const scaleBits = new Int32Array(Float32Array.of(1 / Math.sqrt(d)).buffer)[0]!;
  const group = heads / kvHeads;
  const qh = qhAt / 4, kh = khAt / 4, vT = vTAt / 4;
  // Head gathers as plain loops: a subarray per row would allocate rows x heads objects per layer.
  for (let kvh = 0; kvh < kvHeads; kvh++) {
    for (let t = 0; t < rows; t++) {
      const src = t * kvWidth + kvh * d;
      const dst = kh + t * d;
      for (let i = 0; i < d; i++) {
        const value = v[src + i]!;
        heap[dst + i] = k[src + i]!;
        heap[vT + i * rows + t] = value;
      }
    }
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      for (let t = 0; t < rows; t++) {
        const src = t * qWidth + h * d;
        const dst = qh + t * d;
        for (let i = 0; i < d; i++) heap[dst + i] = q[src + i]!;
      }
      for (let t0 = 0; t0 < rows; t0 += ATTENTION_TILE_ROWS) {
        const tileRows = Math.min(ATTENTION_TILE_ROWS, rows - t0);
        const cols = Math.min(rows, Math.ceil((t0 + tileRows) / 4) * 4);
        const blockRows = tileRows - (tileRows % BLOCK_ROWS);
        const xPtr = qhAt + 4 * t0 * d;
        const oPtr = scoresAt + 4 * t0 * rows;
        if (blockRows > 0) byHead.block(xPtr, khAt, oPtr, blockRows, cols, rows, 4 * d);
        if (blockRows < tileRows) byHead.single(xPtr + 4 * blockRows * d, khAt, oPtr + 4 * blockRows * rows, tileRows - blockRows, cols, rows, 4 * d);
      }
      ew.softmaxCausal(scoresAt, rows, rows, scaleBits);
      for (let t0 = 0; t0 < rows; t0 += ATTENTION_TILE_ROWS) {
        const tileRows = Math.min(ATTENTION_TILE_ROWS, rows - t0);
        const kBytes = 4 * Math.min(rows, Math.ceil((t0 + tileRows) / 4) * 4);
        const blockRows = tileRows - (tileRows % BLOCK_ROWS);
        const xPtr = scoresAt + 4 * t0 * rows;
        const oPtr = contextAt + 4 * (t0 * qWidth + h * d);
        if (blockRows > 0) byRows.block(xPtr, vTAt, oPtr, blockRows, d, qWidth, kBytes);
        if (blockRows < tileRows) byRows.single(xPtr + 4 * blockRows * rows, vTAt, oPtr + 4 * blockRows * qWidth, tileRows - blockRows, d, qWidth, kBytes);
      }
    }
  }
  out.set(heap.subarray(contextAt / 4, contextAt / 4 + rows * qWidth));
  return true;
}

/** Same contract as kernels.swiglu (gate[i] = silu(gate[i]) * up[i]), in f32 with the vector exp. */
export function swigluF32(gate: Float32Array, up: Float32Array, count: number): void {
  const s = loadState();
  const vecCount = count - (count % 4);
  if (s === null || 8 * vecCount + 64 > MAX_WASM_BYTES - s.residentEnd) {
    swiglu(gate, up, count);
    return;
  }
  const gateAt = align64(s.residentEnd);
  const upAt = align64(gateAt + 4 * vecCount);
  ensureBytes(s, upAt + 4 * vecCount);
  const ew = elementwiseFor(s);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(gate.subarray(0, vecCount), gateAt / 4);
  heap.set(up.subarray(0, vecCount), upAt / 4);
  ew.swiglu(gateAt, upAt, vecCount);
  gate.set(heap.subarray(gateAt / 4, gateAt / 4 + vecCount));
  if (vecCount < count) swiglu(gate.subarray(vecCount), up.subarray(vecCount), count - vecCount);
}

/** dst[i] = exp(src[i]) by the kernels' f32 vector exp (inputs clamped to [-87, 88]); for tests. */
export function vectorExp(src: Float32Array, dst: Float32Array): void {
  const s = loadState();
  if (s === null) throw new InvalidArgumentError('WebAssembly SIMD is not available');
  const n = Math.ceil(src.length / 4) * 4;
  const srcAt = align64(s.residentEnd);
  const dstAt = align64(srcAt + 4 * n);
  ensureBytes(s, dstAt + 4 * n);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(src, srcAt / 4);
  elementwiseFor(s).expv(srcAt, dstAt, n);
  dst.set(heap.subarray(dstAt / 4, dstAt / 4 + src.length));
}

/** Rows of logits per logSumExpRows kernel call (bounds the heap it needs). */
const LSE_CHUNK_BYTES = 8 * 2 ** 20;

/**
 * out[t] = log(sum_s exp(x[t, s])) for each of `rows` rows of x [rows, cols], as max + log(sum of
 * exp(x - max)): the exps in f32 by the vector exp (1 ulp), their sum in f64. The JS loop with
 * Math.exp (f64) when cols is not a multiple of 4 or SIMD is unavailable.
 */
export function logSumExpRows(x: Float32Array, rows: number, cols: number, out: Float64Array): void {
  const s = loadState();
  if (s === null || cols % 4 !== 0 || 4 * cols + 64 > MAX_WASM_BYTES - s.residentEnd) {
    for (let t = 0; t < rows; t++) {
      const base = t * cols;
      let max = -Infinity;
      for (let j = 0; j < cols; j++) max = Math.max(max, x[base + j]!);
      let sum = 0;
      for (let j = 0; j < cols; j++) sum += Math.exp(x[base + j]! - max);
      out[t] = Math.log(sum) + max;
    }
    return;
  }
  const chunkRows = Math.max(1, Math.floor(LSE_CHUNK_BYTES / (4 * cols)));
  const xAt = align64(s.residentEnd);
  const outAt = align64(xAt + 4 * chunkRows * cols);
  ensureBytes(s, outAt + 16 * chunkRows);
  const ew = elementwiseFor(s);
  for (let t0 = 0; t0 < rows; t0 += chunkRows) {
    const n = Math.min(chunkRows, rows - t0);
    new Float32Array(s.memory.buffer).set(x.subarray(t0 * cols, (t0 + n) * cols), xAt / 4);
    ew.logSumExpRows(xAt, n, cols, outAt);
    const stats = new Float64Array(s.memory.buffer, outAt, 2 * n);
    for (let t = 0; t < n; t++) out[t0 + t] = Math.log(stats[2 * t + 1]!) + stats[2 * t]!;
  }
}

/**
 * Rows of logits computed at once by headNll (128 x a 32k vocabulary = 16 MiB of heap). Fewer rows
 * per chunk stream the head's weights from memory more often: 16 rows made tiny-llama's head 1.5x slower.
 */
const HEAD_CHUNK_ROWS = 128;

/**
 * Scores rows of the output head without handing the logits out: with logits = x W^T
 * (x [rows, inner], W the resident head [vocab, inner]), returns the sum over t < rows of
 * logSumExp(logits[t]) - logits[t, targets[t]], in f64. The logits are computed by the same kernel as
 * matmulResident (same bits), HEAD_CHUNK_ROWS rows at a time in the heap, and reduced there by the
 * logSumExpRows kernel (f32 exps, f64 sums, as `logSumExpRows`); only two f64 per row come back.
 */
export function headNll(x: Float32Array, head: ResidentWeight, rows: number, targets: Int32Array): number {
  if (!isResidentImpl(head) || head.released) throw new InvalidArgumentError('headNll: the head was released or does not come from residentWeight');
  if (targets.length < rows) throw new InvalidArgumentError(`headNll: ${rows} rows but ${targets.length} targets`);
  const { inner, outs } = head;
  for (let t = 0; t < rows; t++) {
    const id = targets[t]!;
    if (id < 0 || id >= outs) throw new InvalidArgumentError(`headNll: target ${id} is outside the vocabulary (${outs})`);
  }
  const chunkRows = Math.min(HEAD_CHUNK_ROWS, Math.max(1, rows));
  const s = loadState();
  const heapBytes = 4 * (rows * inner + chunkRows * outs) + 16 * chunkRows + 192;
  let total = 0;
  if (head.at === null || s === null || outs % 4 !== 0 || s.residentEnd + heapBytes > MAX_WASM_BYTES) {
    // JS path: the same products and log-sum-exp, a chunk of logits at a time.
    const logits = new Float32Array(chunkRows * outs);
    const lse = new Float64Array(chunkRows);
    for (let t0 = 0; t0 < rows; t0 += chunkRows) {
      const n = Math.min(chunkRows, rows - t0);
      matmulTransposed(x.subarray(t0 * inner, (t0 + n) * inner), head.source, logits, n, inner, outs);
      logSumExpRows(logits, n, outs, lse);
      for (let t = 0; t < n; t++) total += lse[t]! - logits[t * outs + targets[t0 + t]!]!;
    }
    return total;
  }
  const xAt = align64(s.residentEnd);
  const logitsAt = align64(xAt + 4 * rows * inner);
  const statsAt = align64(logitsAt + 4 * chunkRows * outs);
  ensureBytes(s, statsAt + 16 * chunkRows);
  const ew = elementwiseFor(s);
  const heap = new Float32Array(s.memory.buffer);
  const stats = new Float64Array(s.memory.buffer, statsAt, 2 * chunkRows);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  for (let t0 = 0; t0 < rows; t0 += chunkRows) {
    const n = Math.min(chunkRows, rows - t0);
    runTiled(s, xAt + 4 * t0 * inner, head.at, logitsAt, n, inner, outs);
    ew.logSumExpRows(logitsAt, n, outs, statsAt);
    for (let t = 0; t < n; t++) total += Math.log(stats[2 * t + 1]!) + stats[2 * t]! - heap[logitsAt / 4 + t * outs + targets[t0 + t]!]!;
  }
  return total;
}

/**
 * outs[i] = x W_i^T for several resident weights sharing x (a layer's q/k/v): x goes into the heap
 * once. Same products (same bits) as one matmulResident per weight.
 */
export function matmulResidentShared(x: Float32Array, weights: readonly ResidentWeight[], outs: readonly Float32Array[], rows: number): void {
  const s = loadState();
  const impls = weights.map((w) => {
    if (!isResidentImpl(w) || w.released) throw new InvalidArgumentError('matmulResidentShared: a weight was released or does not come from residentWeight');
    return w;
  });
  const inner = impls[0]?.inner ?? 0;
  const outBytes = impls.reduce((sum, w) => sum + align64(4 * rows * w.outs), 0);
  if (s === null || impls.some((w) => w.at === null || w.inner !== inner) || s.residentEnd + 4 * rows * inner + outBytes + 128 > MAX_WASM_BYTES) {
    impls.forEach((w, i) => matmulResident(x, w, outs[i]!, rows));
    return;
  }
  const xAt = align64(s.residentEnd);
  const outAt: number[] = [];
  let end = align64(xAt + 4 * rows * inner);
  for (const w of impls) {
    outAt.push(end);
    end = align64(end + 4 * rows * w.outs);
  }
  ensureBytes(s, end);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  impls.forEach((w, i) => {
    const at = outAt[i]!;
    runTiled(s, xAt, w.at!, at, rows, inner, w.outs);
    outs[i]!.set(heap.subarray(at / 4, at / 4 + rows * w.outs));
  });
}

/**
 * act = silu(x Wgate^T) * (x Wup^T), the SwiGLU MLP's input to down_proj, with both products and the
 * SwiGLU kernel in the heap (x in once, act out once). Same values as two matmulResident + swigluF32.
 */
export function matmulSwiglu(x: Float32Array, gate: ResidentWeight, up: ResidentWeight, act: Float32Array, rows: number): void {
  if (!isResidentImpl(gate) || !isResidentImpl(up) || gate.released || up.released) throw new InvalidArgumentError('matmulSwiglu: a weight was released or does not come from residentWeight');
  const { inner, outs } = gate;
  const s = loadState();
  const count = rows * outs;
  if (s === null || gate.at === null || up.at === null || up.inner !== inner || up.outs !== outs || count % 4 !== 0 || s.residentEnd + 4 * (rows * inner + 2 * count) + 192 > MAX_WASM_BYTES) {
    const upOut = new Float32Array(count);
    matmulResident(x, gate, act, rows);
    matmulResident(x, up, upOut, rows);
    swigluF32(act, upOut, count);
    return;
  }
  const xAt = align64(s.residentEnd);
  const gateAt = align64(xAt + 4 * rows * inner);
  const upAt = align64(gateAt + 4 * count);
  ensureBytes(s, upAt + 4 * count);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  runTiled(s, xAt, gate.at, gateAt, rows, inner, outs);
  runTiled(s, xAt, up.at, upAt, rows, inner, outs);
  elementwiseFor(s).swiglu(gateAt, upAt, count);
  act.set(heap.subarray(gateAt / 4, gateAt / 4 + count));
}
