/**
 * The forward pass's matmul as WebAssembly SIMD kernels (f32x4), generated at run time from bytes
 * (wasm/assembler.ts) so that nothing needs a toolchain or a binary file:
 * out[t, o] = sum_k x[t, k] * w[o, k]   (x: [rows, inner], w: [outs, inner] as nn.Linear stores it).
 *
 * Kernel (wasm/panelMatmulKernels.ts): an outer-product micro-kernel on packed weights. w is re-laid
 * once into k-major panels of PANEL_OUTS (8) outputs; each k step splats x[t, k] for 4 rows and
 * multiply-adds it into 2 panel vectors: 8 accumulators that are the outputs themselves (no
 * horizontal reductions), 11 live xmm registers. 26-27 GMAC/s on Dev's Zen 4 for every layer shape
 * of tiny-llama (the dot-product kernel it replaces: 15-24), against ~29 for a register-only FMA loop.
 * The k loop is NOT unrolled: TurboFan hoists every load of an unrolled body to its top and then
 * spills (2 or 4 steps per iteration measured 13-16 GMAC/s).
 * Accumulation (the rounding rule): each output is one f32 running sum over k in order from +0, a
 * f32x4.relaxed_madd per step where the engine has relaxed SIMD (fused on x86 with FMA: one
 * rounding), f32x4.mul then f32x4.add elsewhere; the same bits whatever the tiling or the row block.
 * Any rows, inner and outs: the last panel is zero-padded, rows past a multiple of 4 go to 1-3-row
 * kernels. Falls back to the JS kernel (kernels.ts) when SIMD is unavailable or the operands do not
 * fit the 32-bit wasm heap.
 * Cache tiling: x and the panels are cut into tiles (X_TILE_BYTES, W_TILE_BYTES) that together stay
 * in L2 while a tile of outputs is computed; inside a tile, 4 rows of x (L1) meet every panel in turn.
 *
 * Weights used many times (a layer's projections over every window) are packed into the wasm heap
 * once with `residentWeight` and multiplied with `matmulResident`; `matmul` packs its w per call.
 */
import { InvalidArgumentError } from '../errors';
import { addInPlace, applyRope, matmulTransposed, rmsNorm, swiglu, type RopeLayout } from './kernels';
import { wasmApi, type WasmMemory } from '../wasmApi';
import { buildModule } from './wasm/assembler';
import { expKernel, logSumExpRowsKernel, softmaxCausalKernel, swigluKernel } from './wasm/elementwiseKernels';
import { addRmsNormKernel, NORM_MODE } from './wasm/normKernels';
import { ropeKernel } from './wasm/ropeKernel';
import { MAX_BLOCK_ROWS as KERNEL_BLOCK_ROWS, PANEL_OUTS as KERNEL_PANEL_OUTS, packColumnsKernel, packPanelsKernel, panelKernelName, panelMatmulKernel } from './wasm/panelMatmulKernels';

// Local copies: hot loops must not read an imported binding (a getter call under CommonJS interop).
const PANEL_OUTS = KERNEL_PANEL_OUTS;
const MAX_BLOCK_ROWS = KERNEL_BLOCK_ROWS;

/**
 * Bytes of x and of w per cache tile. A tile of w is multiplied by every row of an x tile before the
 * next: large x tiles (a whole 256-token window of 384-wide rows) and small w tiles (that stay near
 * L1 while the rows stream from L2) measured 6-10 % faster on Dev's Zen 4 (1 MiB L2) than 192 KiB
 * each, on tiny-llama's shapes; both together stay inside L2.
 */
const X_TILE_BYTES = 512 * 1024;
const W_TILE_BYTES = 128 * 1024;
/** Bytes of w rows staged per packing step (the staging area is bounded, not a second copy of w). */
const PACK_STAGE_BYTES = 1024 * 1024;
/** Largest wasm heap used (bytes); past it the JS kernel runs (wasm32 addresses 4 GiB). */
const MAX_WASM_BYTES = 3 * 2 ** 30;
const PAGE = 65536;

/** `(x, panels, out, rows, panelCount, outStride, kCount)`: see panelMatmulKernel. */
type KernelFn = (x: number, panels: number, out: number, rows: number, panelCount: number, outStride: number, kCount: number) => void;
type PackFn = (src: number, dst: number, panelCount: number) => void;
type PackColumnsFn = (src: number, dst: number, panelCount: number, rows: number) => void;

interface InnerKernels {
  /** blocks[r]: the kernel for blocks of r rows (1..MAX_BLOCK_ROWS). */
  blocks: KernelFn[];
  pack: PackFn;
  packColumns: PackColumnsFn;
}

type SwigluFn = (gate: number, up: number, n: number) => void;
type SoftmaxCausalFn = (scores: number, rows: number, stride: number, scaleBits: number) => void;
type ExpFn = (src: number, dst: number, n: number) => void;
type LogSumExpFn = (x: number, rows: number, cols: number, out: number) => void;
type RopeFn = (x: number, rows: number, heads: number, cos: number, sin: number) => void;
type AddRmsNormFn = (x: number, delta: number, weight: number, out: number, rows: number, width: number, epsAt: number, mode: number) => void;

interface ElementwiseKernels {
  swiglu: SwigluFn;
  softmaxCausal: SoftmaxCausalFn;
  expv: ExpFn;
  logSumExpRows: LogSumExpFn;
  addRmsNorm: AddRmsNormFn;
}

interface WasmState {
  memory: WasmMemory;
  elementwise: ElementwiseKernels | null;
  /** Per `inner` and x row stride ('inner/stride'): the compiled block kernels and packers. */
  kernels: Map<string, InnerKernels>;
  /** End of the resident-weight region (bytes); scratch for each call starts here. */
  residentEnd: number;
  /** Resident weights not yet released. */
  residentLive: number;
  /** RoPE kernels per head size and layout ('64/half'). */
  rope: Map<string, RopeFn>;
  /** Whether the engine runs relaxed SIMD (f32x4.relaxed_madd): Node >= 21, Electron >= 25; Node 20 only with --experimental-wasm-relaxed-simd. */
  fused: boolean;
}

let state: WasmState | null | undefined;

function loadState(): WasmState | null {
  if (state !== undefined) return state;
  try {
    const api = wasmApi();
    if (api === undefined || !api.validate(buildModule([panelMatmulKernel(MAX_BLOCK_ROWS, 4, false)], 1))) state = null;
    else {
      const fused = api.validate(buildModule([panelMatmulKernel(MAX_BLOCK_ROWS, 4, true)], 1));
      state = { memory: new api.Memory({ initial: 1 }), elementwise: null, kernels: new Map(), rope: new Map(), residentEnd: 0, residentLive: 0, fused };
    }
  } catch {
    state = null;
  }
  return state;
}

/** Most `inner` sizes compiled at once (a model uses 3 or 4, attention 2 more; the rest are rare callers). */
const MAX_COMPILED = 32;

/**
 * The block kernels and packers for panels `inner` floats long, with x rows (and packed rows of
 * the source) `xStride` floats apart.
 */
function kernelsFor(s: WasmState, inner: number, xStride = inner): InnerKernels {
  const key = `${inner}/${xStride}`;
  const have = s.kernels.get(key);
  if (have !== undefined) return have;
  const api = wasmApi();
  if (api === undefined) throw new InvalidArgumentError('WebAssembly disappeared');
  const blockRows = Array.from({ length: MAX_BLOCK_ROWS }, (_, i) => i + 1);
  const bytes = buildModule([...blockRows.map((r) => panelMatmulKernel(r, inner, s.fused, xStride)), packPanelsKernel(inner, xStride), packColumnsKernel(inner, xStride)], 1);
  const { exports } = new api.Instance(new api.Module(bytes), { env: { mem: s.memory } });
  const blocks: KernelFn[] = [];
  for (const r of blockRows) {
    const fn = exports[panelKernelName(r)];
    if (typeof fn !== 'function') throw new InvalidArgumentError(`matmul kernel module has no ${panelKernelName(r)} export`);
    blocks[r] = fn as KernelFn;
  }
  const { pack, packColumns } = exports;
  if (typeof pack !== 'function' || typeof packColumns !== 'function') throw new InvalidArgumentError('matmul kernel module has no pack / packColumns export');
  const made = { blocks, pack: pack as PackFn, packColumns: packColumns as PackColumnsFn };
  if (s.kernels.size >= MAX_COMPILED) s.kernels.clear();
  s.kernels.set(key, made);
  return made;
}

function elementwiseFor(s: WasmState): ElementwiseKernels {
  if (s.elementwise !== null) return s.elementwise;
  const api = wasmApi();
  if (api === undefined) throw new InvalidArgumentError('WebAssembly disappeared');
  const bytes = buildModule([swigluKernel(), softmaxCausalKernel(), expKernel(), logSumExpRowsKernel(), addRmsNormKernel()], 1);
  const { swiglu, softmaxCausal, expv, logSumExpRows, addRmsNorm } = new api.Instance(new api.Module(bytes), { env: { mem: s.memory } }).exports;
  if (typeof swiglu !== 'function' || typeof softmaxCausal !== 'function' || typeof expv !== 'function' || typeof logSumExpRows !== 'function' || typeof addRmsNorm !== 'function') {
    throw new InvalidArgumentError('element-wise kernel module lacks an export');
  }
  s.elementwise = {
    swiglu: swiglu as SwigluFn,
    softmaxCausal: softmaxCausal as SoftmaxCausalFn,
    expv: expv as ExpFn,
    logSumExpRows: logSumExpRows as LogSumExpFn,
    addRmsNorm: addRmsNorm as AddRmsNormFn,
  };
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

/** Panels holding `outs` outputs (the last one zero-padded). */
const panelCount = (outs: number): number => Math.ceil(outs / PANEL_OUTS);
/** Bytes of `outs` x `inner` packed into panels. */
const packedBytes = (outs: number, inner: number): number => 4 * panelCount(outs) * PANEL_OUTS * inner;
/** Output row stride (floats) the kernels write for `outs` outputs: whole panels. */
const paddedOuts = (outs: number): number => panelCount(outs) * PANEL_OUTS;
/** Heap bytes packWeight stages w rows in (a bounded area after the packed panels). */
const stageBytes = (inner: number): number => align64(Math.max(PACK_STAGE_BYTES, 4 * PANEL_OUTS * inner));

/**
 * Packs w [outs, inner] into panels at `at` (packedBytes(outs, inner) bytes), staging whole panels
 * of rows at `stageAt` (stageBytes(inner) bytes; the rows past outs are zeros).
 */
function packWeight(s: WasmState, w: Float32Array, outs: number, inner: number, at: number, stageAt: number): void {
  const pack = kernelsFor(s, inner).pack;
  const panelsPerStage = Math.max(1, Math.floor(stageBytes(inner) / (4 * PANEL_OUTS * inner)));
  const panels = panelCount(outs);
  for (let p0 = 0; p0 < panels; p0 += panelsPerStage) {
    const n = Math.min(panelsPerStage, panels - p0);
    const heap = new Float32Array(s.memory.buffer);
    const firstRow = p0 * PANEL_OUTS;
    const realRows = Math.min(outs, (p0 + n) * PANEL_OUTS) - firstRow;
    heap.set(w.subarray(firstRow * inner, (firstRow + realRows) * inner), stageAt / 4);
    heap.fill(0, stageAt / 4 + realRows * inner, stageAt / 4 + n * PANEL_OUTS * inner);
    pack(stageAt, at + p0 * PANEL_OUTS * inner * 4, n);
  }
}

/**
 * Runs the tiled kernels on operands already in the heap (byte offsets): x [rows, inner], `panels`
 * packed panels of inner floats, out rows of stride `outStride` floats (>= panels * PANEL_OUTS),
 * summing over k < kCount.
 */
function runTiled(s: WasmState, xAt: number, wAt: number, outAt: number, rows: number, inner: number, panels: number, outStride: number, kCount = inner): void {
  const k = kernelsFor(s, inner);
  const rowBytes = inner * 4;
  const panelBytes = rowBytes * PANEL_OUTS;
  const tileRows = Math.max(MAX_BLOCK_ROWS, Math.floor(X_TILE_BYTES / rowBytes / MAX_BLOCK_ROWS) * MAX_BLOCK_ROWS);
  const tilePanels = Math.max(1, Math.floor(W_TILE_BYTES / panelBytes));
  const main = k.blocks[MAX_BLOCK_ROWS]!;
  for (let t0 = 0; t0 < rows; t0 += tileRows) {
    const tRows = Math.min(tileRows, rows - t0);
    const blockRows = tRows - (tRows % MAX_BLOCK_ROWS);
    const rest = tRows - blockRows;
    for (let p0 = 0; p0 < panels; p0 += tilePanels) {
      const n = Math.min(tilePanels, panels - p0);
      const xPtr = xAt + t0 * rowBytes;
      const wPtr = wAt + p0 * panelBytes;
      const oPtr = outAt + 4 * (t0 * outStride + p0 * PANEL_OUTS);
      if (blockRows > 0) main(xPtr, wPtr, oPtr, blockRows, n, outStride, kCount);
      if (rest > 0) k.blocks[rest]!(xPtr + blockRows * rowBytes, wPtr, oPtr + 4 * blockRows * outStride, rest, n, outStride, kCount);
    }
  }
}

/** out [rows, outs] = the heap's rows at `at` of stride `stride` floats (>= outs). */
function copyOut(s: WasmState, at: number, rows: number, outs: number, stride: number, out: Float32Array): void {
  const heap = new Float32Array(s.memory.buffer);
  const from = at / 4;
  if (stride === outs) {
    out.set(heap.subarray(from, from + rows * outs));
    return;
  }
  for (let t = 0; t < rows; t++) out.set(heap.subarray(from + t * stride, from + t * stride + outs), t * outs);
}

/** Same contract as kernels.matmulTransposed. */
export function matmul(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, inner: number, outs: number): void {
  const s = loadState();
  const stride = paddedOuts(outs);
  const bytes = 4 * (rows * inner + rows * stride) + packedBytes(outs, inner) + stageBytes(inner) + 256;
  if (s === null || inner < 1 || s.residentEnd + bytes > MAX_WASM_BYTES) {
    matmulTransposed(x, w, out, rows, inner, outs);
    return;
  }
  const wAt = align64(s.residentEnd);
  const stageAt = align64(wAt + packedBytes(outs, inner));
  const xAt = align64(stageAt + stageBytes(inner));
  const outAt = align64(xAt + 4 * rows * inner);
  ensureBytes(s, outAt + 4 * rows * stride);
  packWeight(s, w, outs, inner, wAt, stageAt);
  new Float32Array(s.memory.buffer).set(x.subarray(0, rows * inner), xAt / 4);
  runTiled(s, xAt, wAt, outAt, rows, inner, panelCount(outs), stride);
  copyOut(s, outAt, rows, outs, stride, out);
}

/**
 * A weight [outs, inner] packed into the wasm heap for repeated `matmulResident` calls. Its values
 * are those at the time of `residentWeight`; later changes to the source array are not seen.
 * Release it (`release()`) when done: the heap region is reused once every resident weight is released.
 */
export interface ResidentWeight {
  readonly outs: number;
  readonly inner: number;
  release(): void;
}

interface ResidentImpl extends ResidentWeight {
  /** Byte offset of the packed panels in the heap, or null when the weight stays in JS (fallback path). */
  readonly at: number | null;
  readonly source: Float32Array;
  released: boolean;
}

/** Packs `w` [outs, inner] into the heap (or keeps a reference for the JS fallback). */
export function residentWeight(w: Float32Array, outs: number, inner: number): ResidentWeight {
  if (w.length < outs * inner) throw new InvalidArgumentError(`weight has ${w.length} values, expected ${outs} x ${inner}`);
  const s = loadState();
  let at: number | null = null;
  if (s !== null && inner >= 1 && s.residentEnd + packedBytes(outs, inner) + stageBytes(inner) + 128 <= MAX_WASM_BYTES) {
    at = align64(s.residentEnd);
    const stageAt = align64(at + packedBytes(outs, inner));
    ensureBytes(s, stageAt + stageBytes(inner));
    packWeight(s, w, outs, inner, at, stageAt);
    s.residentEnd = at + packedBytes(outs, inner);
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
  const stride = paddedOuts(outs);
  const bytes = 4 * (rows * inner + rows * stride) + 128;
  if (w.at === null || s === null || s.residentEnd + bytes > MAX_WASM_BYTES) {
    matmulTransposed(x, w.source, out, rows, inner, outs);
    return;
  }
  const xAt = align64(s.residentEnd);
  const outAt = align64(xAt + 4 * rows * inner);
  ensureBytes(s, outAt + 4 * rows * stride);
  new Float32Array(s.memory.buffer).set(x.subarray(0, rows * inner), xAt / 4);
  runTiled(s, xAt, w.at, outAt, rows, inner, panelCount(outs), stride);
  copyOut(s, outAt, rows, outs, stride, out);
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

/** Rows of a query tile in attentionInWasm: the causal products skip the panels above the diagonal. */
const ATTENTION_TILE_ROWS = 16;

/**
 * attentionByMatmul entirely in the wasm heap, any rows and head size: q, k and v are copied in
 * once; per kv head, K_h is packed into panels of PANEL_OUTS keys and V_h into panels of
 * PANEL_OUTS dimensions (keys zero-padded to whole panels); per query head S = Q_h K_h^T (Q_h read
 * in place, rows qWidth apart) over the key panels a query tile can see, the causal softmax kernel
 * (scale, max, exp, 1/sum, zeros above the diagonal), and O_h = P V_h summing each tile only over
 * the keys s < its last row + 1, into context rows of whole panels per head. Returns false when it
 * cannot run.
 */
function attentionInWasm(q: Float32Array, k: Float32Array, v: Float32Array, out: Float32Array, rows: number, heads: number, kvHeads: number, headDim: number): boolean {
  const s = loadState();
  if (s === null || rows < 1 || headDim < 1) return false;
  const d = headDim;
  const qWidth = heads * d;
  const kvWidth = kvHeads * d;
  // Scores rows and the keys of the packed K: whole panels. Head outputs: whole panels of dimensions.
  const keyStride = paddedOuts(rows);
  const headStride = paddedOuts(d);
  const contextStride = heads * headStride;
  const qAt = align64(s.residentEnd);
  const kAt = align64(qAt + 4 * rows * qWidth);
  // v is followed by a panel's worth of slack: packColumns reads whole panels past a head's last dimension.
  const vAt = align64(kAt + 4 * keyStride * kvWidth);
  const khAt = align64(vAt + 4 * (rows * kvWidth + PANEL_OUTS));
  const vhAt = align64(khAt + packedBytes(rows, d));
  const scoresAt = align64(vhAt + packedBytes(d, keyStride));
  const contextAt = align64(scoresAt + 4 * rows * keyStride);
  const end = contextAt + 4 * rows * contextStride;
  if (end > MAX_WASM_BYTES) return false;
  ensureBytes(s, end);
  const qk = kernelsFor(s, d, qWidth);
  const keyPacker = kernelsFor(s, d, kvWidth);
  const valuePacker = kernelsFor(s, keyStride, kvWidth);
  const pv = kernelsFor(s, keyStride);
  const ew = elementwiseFor(s);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(q.subarray(0, rows * qWidth), qAt / 4);
  heap.set(k.subarray(0, rows * kvWidth), kAt / 4);
  // Keys past `rows` (the last key panel's padding) are zeros; so is the slack after v.
  heap.fill(0, kAt / 4 + rows * kvWidth, kAt / 4 + keyStride * kvWidth);
  heap.set(v.subarray(0, rows * kvWidth), vAt / 4);
  heap.fill(0, vAt / 4 + rows * kvWidth, vAt / 4 + rows * kvWidth + PANEL_OUTS);
  const scaleBits = new Int32Array(Float32Array.of(1 / Math.sqrt(d)).buffer)[0]!;
  const group = heads / kvHeads;
  for (let kvh = 0; kvh < kvHeads; kvh++) {
    keyPacker.pack(kAt + 4 * kvh * d, khAt, panelCount(rows));
    valuePacker.packColumns(vAt + 4 * kvh * d, vhAt, panelCount(d), rows);
    for (let h = kvh * group; h < (kvh + 1) * group; h++) {
      for (let t0 = 0; t0 < rows; t0 += ATTENTION_TILE_ROWS) {
        const tileRows = Math.min(ATTENTION_TILE_ROWS, rows - t0);
        const visible = Math.min(rows, t0 + tileRows);
        runBlocks(qk, qAt + 4 * (t0 * qWidth + h * d), khAt, scoresAt + 4 * t0 * keyStride, tileRows, qWidth, panelCount(visible), keyStride, d);
      }
      ew.softmaxCausal(scoresAt, rows, keyStride, scaleBits);
      for (let t0 = 0; t0 < rows; t0 += ATTENTION_TILE_ROWS) {
        const tileRows = Math.min(ATTENTION_TILE_ROWS, rows - t0);
        const visible = Math.min(rows, t0 + tileRows);
        runBlocks(pv, scoresAt + 4 * t0 * keyStride, vhAt, contextAt + 4 * (t0 * contextStride + h * headStride), tileRows, keyStride, panelCount(d), contextStride, visible);
      }
    }
  }
  if (headStride === d) out.set(heap.subarray(contextAt / 4, contextAt / 4 + rows * qWidth));
  else {
    for (let t = 0; t < rows; t++) {
      for (let h = 0; h < heads; h++) {
        const from = contextAt / 4 + t * contextStride + h * headStride;
        out.set(heap.subarray(from, from + d), t * qWidth + h * d);
      }
    }
  }
  return true;
}

/** One untiled run of the block kernels over `rows` rows of x (`xStride` floats apart): the main blocks, then the remainder. */
function runBlocks(k: InnerKernels, xAt: number, wAt: number, outAt: number, rows: number, xStride: number, panels: number, outStride: number, kCount: number): void {
  const blockRows = rows - (rows % MAX_BLOCK_ROWS);
  if (blockRows > 0) k.blocks[MAX_BLOCK_ROWS]!(xAt, wAt, outAt, blockRows, panels, outStride, kCount);
  if (blockRows < rows) k.blocks[rows - blockRows]!(xAt + 4 * blockRows * xStride, wAt, outAt + 4 * blockRows * outStride, rows - blockRows, panels, outStride, kCount);
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
  if (head.at === null || s === null || outs % PANEL_OUTS !== 0 || s.residentEnd + heapBytes > MAX_WASM_BYTES) {
    // The same products (matmulResident's bits) and log-sum-exp, a chunk of logits at a time.
    const logits = new Float32Array(chunkRows * outs);
    const lse = new Float64Array(chunkRows);
    for (let t0 = 0; t0 < rows; t0 += chunkRows) {
      const n = Math.min(chunkRows, rows - t0);
      matmulResident(x.subarray(t0 * inner, (t0 + n) * inner), head, logits, n);
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
    runTiled(s, xAt + 4 * t0 * inner, head.at, logitsAt, n, inner, panelCount(outs), outs);
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
  const outBytes = impls.reduce((sum, w) => sum + align64(4 * rows * paddedOuts(w.outs)), 0);
  if (s === null || impls.some((w) => w.at === null || w.inner !== inner) || s.residentEnd + 4 * rows * inner + outBytes + 128 > MAX_WASM_BYTES) {
    impls.forEach((w, i) => matmulResident(x, w, outs[i]!, rows));
    return;
  }
  const xAt = align64(s.residentEnd);
  const outAt: number[] = [];
  let end = align64(xAt + 4 * rows * inner);
  for (const w of impls) {
    outAt.push(end);
    end = align64(end + 4 * rows * paddedOuts(w.outs));
  }
  ensureBytes(s, end);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  impls.forEach((w, i) => {
    const at = outAt[i]!;
    runTiled(s, xAt, w.at!, at, rows, inner, panelCount(w.outs), paddedOuts(w.outs));
    copyOut(s, at, rows, w.outs, paddedOuts(w.outs), outs[i]!);
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
  if (s === null || gate.at === null || up.at === null || up.inner !== inner || up.outs !== outs || outs % PANEL_OUTS !== 0 || s.residentEnd + 4 * (rows * inner + 2 * count) + 192 > MAX_WASM_BYTES) {
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
  runTiled(s, xAt, gate.at, gateAt, rows, inner, panelCount(outs), outs);
  runTiled(s, xAt, up.at, upAt, rows, inner, panelCount(outs), outs);
  elementwiseFor(s).swiglu(gateAt, upAt, count);
  act.set(heap.subarray(gateAt / 4, gateAt / 4 + count));
}

/**
 * Same contract as kernels.rmsNorm (out = x / sqrt(mean(x^2) + eps) * weight per row; out may be x),
 * by the SIMD kernel of wasm/normKernels.ts when width is a multiple of 4 (the sum of squares in f64
 * in another order: the same f32 result but for a rare last-bit tie); the JS loop otherwise.
 */
export function rmsNormRows(x: Float32Array, weight: Float32Array, out: Float32Array, rows: number, width: number, eps: number): void {
  const s = loadState();
  const bytes = 4 * (2 * rows * width + width) + 256;
  if (s === null || width % 4 !== 0 || s.residentEnd + bytes > MAX_WASM_BYTES) {
    rmsNorm(x, weight, out, rows, width, eps);
    return;
  }
  const xAt = align64(s.residentEnd);
  const weightAt = align64(xAt + 4 * rows * width);
  const outAt = align64(weightAt + 4 * width);
  const epsAt = align64(outAt + 4 * rows * width);
  ensureBytes(s, epsAt + 8);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * width), xAt / 4);
  heap.set(weight.subarray(0, width), weightAt / 4);
  new Float64Array(s.memory.buffer, epsAt, 1)[0] = eps;
  elementwiseFor(s).addRmsNorm(xAt, 0, weightAt, outAt, rows, width, epsAt, NORM_MODE.norm);
  out.set(heap.subarray(outAt / 4, outAt / 4 + rows * width));
}

/** The RMSNorm that follows a residual add in matmulResidentAdd. */
export interface FollowingNorm {
  weight: Float32Array;
  eps: number;
  /** Receives RMSNorm(residual) * weight [rows, outs]. */
  out: Float32Array;
}

/**
 * residual += x W^T (W resident [outs, inner], residual [rows, outs]: a block's output projection
 * added to the residual stream), then, with `norm`, norm.out = rmsNormRows(residual). The same
 * values as matmulResident + kernels.addInPlace + rmsNormRows, with x, the residual and the
 * normalized rows crossing into the heap once each.
 */
export function matmulResidentAdd(x: Float32Array, w: ResidentWeight, residual: Float32Array, rows: number, norm?: FollowingNorm): void {
  if (!isResidentImpl(w) || w.released) throw new InvalidArgumentError('matmulResidentAdd: the weight was released or does not come from residentWeight');
  const { inner, outs } = w;
  const s = loadState();
  const bytes = 4 * (rows * inner + 3 * rows * outs + outs) + 512;
  if (s === null || w.at === null || outs % PANEL_OUTS !== 0 || s.residentEnd + bytes > MAX_WASM_BYTES) {
    const projected = new Float32Array(rows * outs);
    matmulResident(x, w, projected, rows);
    addInPlace(residual, projected, rows * outs);
    if (norm !== undefined) rmsNormRows(residual, norm.weight, norm.out, rows, outs, norm.eps);
    return;
  }
  const xAt = align64(s.residentEnd);
  const projectedAt = align64(xAt + 4 * rows * inner);
  const residualAt = align64(projectedAt + 4 * rows * outs);
  const normedAt = align64(residualAt + 4 * rows * outs);
  const weightAt = align64(normedAt + 4 * rows * outs);
  const epsAt = align64(weightAt + 4 * outs);
  ensureBytes(s, epsAt + 8);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * inner), xAt / 4);
  heap.set(residual.subarray(0, rows * outs), residualAt / 4);
  runTiled(s, xAt, w.at, projectedAt, rows, inner, panelCount(outs), outs);
  let mode: number = NORM_MODE.add;
  if (norm !== undefined) {
    heap.set(norm.weight.subarray(0, outs), weightAt / 4);
    new Float64Array(s.memory.buffer, epsAt, 1)[0] = norm.eps;
    mode |= NORM_MODE.norm;
  }
  elementwiseFor(s).addRmsNorm(residualAt, projectedAt, weightAt, normedAt, rows, outs, epsAt, mode);
  residual.set(heap.subarray(residualAt / 4, residualAt / 4 + rows * outs));
  if (norm !== undefined) norm.out.set(heap.subarray(normedAt / 4, normedAt / 4 + rows * outs));
}

function ropeFor(s: WasmState, headDim: number, layout: RopeLayout): RopeFn {
  const key = `${headDim}/${layout}`;
  const have = s.rope.get(key);
  if (have !== undefined) return have;
  const api = wasmApi();
  if (api === undefined) throw new InvalidArgumentError('WebAssembly disappeared');
  const { rope } = new api.Instance(new api.Module(buildModule([ropeKernel(headDim, layout === 'interleaved')], 1)), { env: { mem: s.memory } }).exports;
  if (typeof rope !== 'function') throw new InvalidArgumentError('RoPE kernel module has no rope export');
  s.rope.set(key, rope as RopeFn);
  return rope as RopeFn;
}

/**
 * Same contract as kernels.applyRope (every head of x [rows, heads * headDim] rotated in place, row t
 * at position positionOffset + t), the same bits, by the SIMD kernel of wasm/ropeKernel.ts when
 * headDim is a multiple of 8; the JS loop otherwise.
 */
export function applyRopeRows(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  tables: { cos: Float32Array; sin: Float32Array },
  layout: RopeLayout,
  positionOffset = 0,
): void {
  const s = loadState();
  const half = headDim / 2;
  const width = heads * headDim;
  const tableFloats = rows * half;
  if (s === null || headDim % 8 !== 0 || s.residentEnd + 4 * (rows * width + 2 * tableFloats) + 512 > MAX_WASM_BYTES) {
    applyRope(x, rows, heads, headDim, tables, layout, positionOffset);
    return;
  }
  // The interleaved kernel loads 4 table floats for 2: 16 bytes of slack after each table.
  const xAt = align64(s.residentEnd);
  const cosAt = align64(xAt + 4 * rows * width);
  const sinAt = align64(cosAt + 4 * tableFloats + 16);
  ensureBytes(s, sinAt + 4 * tableFloats + 16);
  const rope = ropeFor(s, headDim, layout);
  const heap = new Float32Array(s.memory.buffer);
  heap.set(x.subarray(0, rows * width), xAt / 4);
  heap.set(tables.cos.subarray(positionOffset * half, positionOffset * half + tableFloats), cosAt / 4);
  heap.set(tables.sin.subarray(positionOffset * half, positionOffset * half + tableFloats), sinAt / 4);
  rope(xAt, rows, heads, cosAt, sinAt);
  x.set(heap.subarray(xAt / 4, xAt / 4 + rows * width));
}
