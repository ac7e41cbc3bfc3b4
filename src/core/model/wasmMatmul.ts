/**
 * The forward pass's matmul as a WebAssembly SIMD kernel (f32x4), assembled here from bytes so that
 * nothing needs a toolchain or a binary file: out[t, o] = sum_k x[t, k] * w[o, k], one row of x
 * against four rows of w at a time (four rows of x per block, one for the remainder), four f32x4
 * partial sums per output reduced at the end.
 * Accumulation is f32 (as PyTorch's CPU matmul), not f64 as the JS kernel. Falls back to the JS
 * kernel when SIMD is unavailable or the shape is not a multiple of 4.
 */
import { matmulTransposed } from './kernels';

// Opcodes (WebAssembly core + SIMD proposal).
const I32 = 0x7f;
const V128 = 0x7b;
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_CONST = 0x41;
const I32_ADD = 0x6a;
const I32_MUL = 0x6c;
const I32_SHL = 0x74;
const I32_GE_U = 0x4f;
const BLOCK = 0x02;
const LOOP = 0x03;
const BR = 0x0c;
const BR_IF = 0x0d;
const END = 0x0b;
const VOID = 0x40;
const F32_STORE = 0x38;
const F32_ADD = 0x92;
const SIMD = 0xfd;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  const bytes = Array.from(new TextEncoder().encode(s));
  return [...uleb(bytes.length), ...bytes];
}

/**
 * One kernel function for blocks of `R` rows of x by 4 rows of w:
 * `(x, w, out, rows, inner, outs)` with byte pointers, rows a multiple of R, inner and outs of 4.
 * Row t of the block reads x + t*inner*4; each f32x4 accumulator holds four partial sums.
 */
function kernelBody(R: number): number[] {
  // Params 0..5: x, w, out, rows, inner, outs. i32 locals: t, j, k, ib (inner bytes), addr,
  // xrow[R], wrow[4]; v128 locals: acc[R*4], xv[R].
  const X = 0, W = 1, O = 2, ROWS = 3, INNER = 4, OUTS = 5;
  const T = 6, J = 7, K = 8, IB = 9, ADDR = 10;
  const XROW = 11;
  const WROW = XROW + R;
  const I32_LOCALS = 5 + R + 4;
  const ACC = WROW + 4;
  const XV = ACC + 4 * R;
  const V128_LOCALS = 5 * R;
  const get = (i: number): number[] => [LOCAL_GET, ...uleb(i)];
  const set = (i: number): number[] => [LOCAL_SET, ...uleb(i)];
  const c = (n: number): number[] => [I32_CONST, ...sleb(n)];
  const v128Load = (ptrLocal: number): number[] => [...get(ptrLocal), ...get(K), I32_ADD, SIMD, 0x00, 0x04, 0x00];
  const f32x4Add = [SIMD, ...uleb(0xe4)];
  const f32x4Mul = [SIMD, ...uleb(0xe6)];
  const lane = (acc: number, l: number): number[] => [...get(acc), SIMD, 0x1f, l];
  const rowsR = Array.from({ length: R }, (_, r) => r);
  const four = [0, 1, 2, 3];
  // acc[r*4+i] += x[r] * w[i]; each w vector is loaded once per step into the scratch local WV.
  const WV = XV + R;
  const inner: number[] = [
    ...get(K), ...get(IB), I32_GE_U, BR_IF, 1,
    ...rowsR.flatMap((r) => [...v128Load(XROW + r), ...set(XV + r)]),
    ...four.flatMap((i) => [
      ...v128Load(WROW + i), ...set(WV),
      ...rowsR.flatMap((r) => [...get(ACC + r * 4 + i), ...get(XV + r), ...get(WV), ...f32x4Mul, ...f32x4Add, ...set(ACC + r * 4 + i)]),
    ]),
    ...get(K), ...c(16), I32_ADD, ...set(K),
    BR, 0,
  ];
  const full: number[] = [
    ...get(INNER), ...c(2), I32_SHL, ...set(IB),
    ...c(0), ...set(T),
    BLOCK, VOID, LOOP, VOID,
    ...get(T), ...get(ROWS), I32_GE_U, BR_IF, 1,
    ...get(X), ...get(T), ...get(IB), I32_MUL, I32_ADD, ...set(XROW),
    ...rowsR.slice(1).flatMap((r) => [...get(XROW + r - 1), ...get(IB), I32_ADD, ...set(XROW + r)]),
    ...c(0), ...set(J),
    BLOCK, VOID, LOOP, VOID,
    ...get(J), ...get(OUTS), I32_GE_U, BR_IF, 1,
    ...get(W), ...get(J), ...get(IB), I32_MUL, I32_ADD, ...set(WROW),
    ...[1, 2, 3].flatMap((i) => [...get(WROW + i - 1), ...get(IB), I32_ADD, ...set(WROW + i)]),
    ...Array.from({ length: 4 * R }, (_, a) => [SIMD, 0x0c, ...new Array<number>(16).fill(0), ...set(ACC + a)]).flat(),
    ...c(0), ...set(K),
    BLOCK, VOID, LOOP, VOID,
    ...inner,
    END, END,
    ...rowsR.flatMap((r) => [
      // addr = out + ((t + r) * outs + j) * 4
      ...get(O), ...get(T), ...c(r), I32_ADD, ...get(OUTS), I32_MUL, ...get(J), I32_ADD, ...c(2), I32_SHL, I32_ADD, ...set(ADDR),
      ...four.flatMap((i) => [
        ...get(ADDR),
        ...lane(ACC + r * 4 + i, 0), ...lane(ACC + r * 4 + i, 1), F32_ADD, ...lane(ACC + r * 4 + i, 2), ...lane(ACC + r * 4 + i, 3), F32_ADD, F32_ADD,
        F32_STORE, 0x02, ...uleb(4 * i),
      ]),
    ]),
    ...get(J), ...c(4), I32_ADD, ...set(J),
    BR, 0,
    END, END,
    ...get(T), ...c(R), I32_ADD, ...set(T),
    BR, 0,
    END, END,
    END,
  ];
  return [2, ...uleb(I32_LOCALS), I32, ...uleb(V128_LOCALS + 1), V128, ...full];
}

/** Builds the module: exports `mm1` (1-row blocks), `mm4` (4-row blocks) and memory `mem`. */
function buildModule(): Uint8Array {
  const bodies = [kernelBody(1), kernelBody(4)];
  const bytes = [
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, [1, 0x60, 6, I32, I32, I32, I32, I32, I32, 0]),
    ...section(3, [2, 0, 0]),
    ...section(5, [1, 0x00, 1]),
    ...section(7, [3, ...name('mm1'), 0x00, 0, ...name('mm4'), 0x00, 1, ...name('mem'), 0x02, 0]),
    ...section(10, [2, ...bodies.flatMap((b) => [...uleb(b.length), ...b])]),
  ];
  return Uint8Array.from(bytes);
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

/** The slice of the WebAssembly JS API used here (the project's lib settings do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

function isWasmMemory(v: unknown): v is WasmMemory {
  return typeof v === 'object' && v !== null && 'buffer' in v && v.buffer instanceof ArrayBuffer && 'grow' in v && typeof v.grow === 'function';
}

type KernelFn = (x: number, w: number, out: number, rows: number, inner: number, outs: number) => void;

interface Kernel {
  mm1: KernelFn;
  mm4: KernelFn;
  memory: WasmMemory;
}

let kernel: Kernel | null | undefined;

function loadKernel(): Kernel | null {
  if (kernel !== undefined) return kernel;
  try {
    const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
    const bytes = buildModule();
    if (api === undefined || !api.validate(bytes)) {
      kernel = null;
      return kernel;
    }
    const instance = new api.Instance(new api.Module(bytes), {});
    const { mm1, mm4, mem } = instance.exports;
    if (typeof mm1 !== 'function' || typeof mm4 !== 'function' || !isWasmMemory(mem)) kernel = null;
    else kernel = { mm1: mm1 as KernelFn, mm4: mm4 as KernelFn, memory: mem };
  } catch {
    kernel = null;
  }
  return kernel;
}

/** Whether the SIMD kernel loaded (false: every call uses the JS kernel). */
export function wasmMatmulAvailable(): boolean {
  return loadKernel() !== null;
}

/** Largest wasm memory used (bytes); past it the JS kernel runs (wasm32 addresses 4 GiB). */
const MAX_WASM_BYTES = 3 * 2 ** 30;

/** Same contract as kernels.matmulTransposed. */
export function matmul(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, inner: number, outs: number): void {
  const k = loadKernel();
  const bytes = 4 * (rows * inner + outs * inner + rows * outs);
  if (k === null || inner % 4 !== 0 || outs % 4 !== 0 || bytes > MAX_WASM_BYTES) {
    matmulTransposed(x, w, out, rows, inner, outs);
    return;
  }
  const have = k.memory.buffer.byteLength;
  if (have < bytes) k.memory.grow(Math.ceil((bytes - have) / 65536));
  const heap = new Float32Array(k.memory.buffer);
  const xAt = 0;
  const wAt = rows * inner;
  const outAt = wAt + outs * inner;
  heap.set(x.subarray(0, rows * inner), xAt);
  heap.set(w.subarray(0, outs * inner), wAt);
  const rows4 = rows - (rows % 4);
  if (rows4 > 0) k.mm4(4 * xAt, 4 * wAt, 4 * outAt, rows4, inner, outs);
  if (rows4 < rows) k.mm1(4 * (xAt + rows4 * inner), 4 * wAt, 4 * (outAt + rows4 * outs), rows - rows4, inner, outs);
  out.set(heap.subarray(outAt, outAt + rows * outs));
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
