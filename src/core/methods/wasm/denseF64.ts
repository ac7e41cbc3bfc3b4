/**
 * The float64 kernels of denseF64.as (built into denseF64Wasm.ts) behind plain Float64Array functions:
 * GPTQ's upper Cholesky factor of H^-1, and its lazy batch update. One module instance, created on first
 * use, owns a memory that grows to the largest problem seen (up to KEEP_HEAP_BYTES; past it the instance is
 * dropped after the call): matrices are copied in, worked on there, and copied out. Each function returns null / false when WebAssembly (with SIMD) is unavailable or the problem
 * does not fit the 32-bit heap; the callers then run their scalar JS.
 */
import { WASM_PAGE_BYTES, growMemory, wasmApi, type WasmMemory } from '../../wasmApi';
import { DENSE_F64_WASM_BASE64 } from './denseF64Wasm';

/**
 * Largest heap used; past it the callers' JS runs. wasm32 addresses 4 GiB (the module declares no maximum):
 * Hinv fits up to about 14,500 columns (2 N^2 float64), where the scalar path would need 6 n^2.
 */
const MAX_HEAP_BYTES = 2 ** 32 - WASM_PAGE_BYTES;
/** Block size of the factorization in denseF64.as (BS): matrices are padded to a multiple of it. */
const BLOCK = 64;

interface DenseF64Exports {
  memory: WasmMemory;
  heapBase(): number;
  failedPivotValue(): number;
  choleskyLowerInPlace(a: number, n: number, scratch: number): number;
  lowerInverse(l: number, x: number, t: number, n: number): void;
  gemmNNSub(c: number, ldc: number, a: number, lda: number, b: number, ldb: number, m: number, n: number, k: number): void;
}

/**
 * Past this heap size the instance is dropped after a call, so that its memory (which WebAssembly cannot
 * shrink) is garbage-collected instead of staying held for the process's life; the compiled module is kept.
 */
const KEEP_HEAP_BYTES = 256 * 2 ** 20;

const FUNCTIONS = ['heapBase', 'failedPivotValue', 'choleskyLowerInPlace', 'lowerInverse', 'gemmNNSub'] as const;

function isMemory(value: unknown): value is WasmMemory {
  return typeof value === 'object' && value !== null && 'buffer' in value && 'grow' in value && typeof value.grow === 'function';
}

let instance: DenseF64Exports | null | undefined;
let compiled: object | undefined;

function releaseIfLarge(wasm: DenseF64Exports): void {
  if (wasm.memory.buffer.byteLength > KEEP_HEAP_BYTES) instance = undefined;
}

/** The module's exports, or null where the engine has no WebAssembly SIMD (the module fails to compile). */
function denseF64(): DenseF64Exports | null {
  if (instance !== undefined) return instance;
  instance = null;
  const api = wasmApi();
  if (api === undefined) return null;
  try {
    compiled ??= new api.Module(Buffer.from(DENSE_F64_WASM_BASE64, 'base64'));
    const exports = new api.Instance(compiled, {}).exports;
    if (!isMemory(exports.memory) || !FUNCTIONS.every((name) => typeof exports[name] === 'function')) return null;
    instance = exports as unknown as DenseF64Exports;
  } catch {
    instance = null;
  }
  return instance;
}

/** Whether the WebAssembly float64 kernels run in this engine (else linalg / GPTQ use their scalar JS). */
export function denseF64Available(): boolean {
  return denseF64() !== null;
}

/** Grows the memory so that [0, end) is addressable; false when it cannot (too large, or the engine refuses). */
function ensureHeap(wasm: DenseF64Exports, end: number): boolean {
  return growMemory(wasm.memory, end, MAX_HEAP_BYTES);
}

function heapStart(wasm: DenseF64Exports): number {
  return (wasm.heapBase() + 63) & ~63;
}

/** The outcome of a factorization: the factor, or the first pivot that was not positive and finite. */
export type DenseCholeskyOutcome = { ok: true; factor: Float64Array } | { ok: false; failedPivot: number; pivotValue: number };

/**
 * The upper Cholesky factor U of H^-1 (H^-1 = U^T U), without forming H^-1. With J the order-reversing
 * permutation: K = lower Cholesky of J H J; then H = (J K J)(J K J)^T with J K J upper triangular, so
 * H^-1 = (J K^-1 J)^T (J K^-1 J) and U = J K^-1 J (upper, positive diagonal: the unique factor). That is one
 * Cholesky and one triangular inverse (2/3 n^3 flops) where cholesky -> cholesky_inverse -> cholesky takes
 * 4/3 n^3. Only H's lower triangle is read. The factorization runs from H's last column backwards, so a
 * failed pivot is the LAST column (original index) whose Schur complement was not positive.
 * null: the kernels are unavailable or the matrices do not fit the heap.
 */
export function upperCholeskyOfInverseWasm(h: Float64Array, n: number): DenseCholeskyOutcome | null {
  const wasm = denseF64();
  if (wasm === null) return null;
  const padded = Math.ceil(n / BLOCK) * BLOCK;
  const matrixBytes = padded * padded * 8;
  const a = heapStart(wasm);
  const x = a + matrixBytes;
  const t = x + matrixBytes;
  // t: scratch of (padded + BLOCK) x BLOCK for the factorization, then BLOCK x BLOCK for the inverse.
  if (!ensureHeap(wasm, t + (padded + BLOCK) * BLOCK * 8)) return null;
  const heap = new Float64Array(wasm.memory.buffer);
  const a8 = a / 8;
  const x8 = x / 8;
  // J H J's lower triangle: (J H J)[i][j] = H[n-1-i][n-1-j] = H[n-1-j][n-1-i] (H's lower triangle for j <= i).
  for (let i = 0; i < n; i++) {
    const dst = a8 + i * padded;
    const hCol = n - 1 - i;
    for (let j = 0; j <= i; j++) heap[dst + j] = h[(n - 1 - j) * n + hCol]!;
  }
  // Padding: identity (its factor and inverse are the identity; nothing mixes with the real block).
  for (let i = n; i < padded; i++) {
    const dst = a8 + i * padded;
    heap.fill(0, dst, dst + i);
    heap[dst + i] = 1;
  }
  const failed = wasm.choleskyLowerInPlace(a, padded, t);
  if (failed >= 0) {
    const pivotValue = wasm.failedPivotValue();
    releaseIfLarge(wasm);
    return { ok: false, failedPivot: n - 1 - failed, pivotValue };
  }
  heap.fill(0, x8, x8 + padded * padded);
  wasm.lowerInverse(a, x, t, padded);
  // U[i][j] = K^-1[n-1-i][n-1-j] for j >= i (a row of K^-1 read backwards); zeros below the diagonal.
  const u = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const src = x8 + (n - 1 - i) * padded + (n - 1);
    const dst = i * n;
    for (let j = i; j < n; j++) u[dst + j] = heap[src - j]!;
  }
  releaseIfLarge(wasm);
  return { ok: true, factor: u };
}

/**
 * GPTQ's lazy batch update W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:] in the kernel (w: rows x cols, err1:
 * rows x (i2 - i1), hinv: cols x cols, row-major float64). Each weight is updated w = w - e*h over the
 * block's columns in order: the scalar loop's bits. false: the kernels are unavailable or it does not fit.
 */
export function lazyBatchUpdateWasm(w: Float64Array, rows: number, cols: number, i1: number, i2: number, err1: Float64Array, hinv: Float64Array): boolean {
  const wasm = denseF64();
  if (wasm === null) return false;
  const count = i2 - i1;
  const rest = cols - i2;
  if (rest <= 0 || rows <= 0 || count <= 0) return true;
  const c = heapStart(wasm);
  const a = c + ((rows * rest * 8 + 63) & ~63);
  const b = a + ((rows * count * 8 + 63) & ~63);
  if (!ensureHeap(wasm, b + count * rest * 8)) return false;
  const heap = new Float64Array(wasm.memory.buffer);
  const c8 = c / 8;
  const b8 = b / 8;
  for (let r = 0; r < rows; r++) heap.set(w.subarray(r * cols + i2, (r + 1) * cols), c8 + r * rest);
  heap.set(err1.subarray(0, rows * count), a / 8);
  for (let k = 0; k < count; k++) heap.set(hinv.subarray((i1 + k) * cols + i2, (i1 + k + 1) * cols), b8 + k * rest);
  wasm.gemmNNSub(c, rest, a, count, b, rest, rows, rest, count);
  for (let r = 0; r < rows; r++) w.set(heap.subarray(c8 + r * rest, c8 + (r + 1) * rest), r * cols + i2);
  releaseIfLarge(wasm);
  return true;
}
