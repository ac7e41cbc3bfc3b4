/**
 * The ggml quantizers compiled to WebAssembly (ggmlQuants.as, built into ggmlQuantsWasm.ts). One
 * `GgmlWasmQuantizer` is one instance over one shared WebAssembly memory laid out as
 *   [static scratch | heapBase: input f32 values | output bytes]
 * Whoever holds the memory (this thread, or the pool's main thread for a worker's instance) writes the
 * input there, the instance quantizes in place, and the output is read from there: no per-block
 * allocation, and for the pool no transfer buffers (see quantPool.ts).
 */
import { QuantLensError } from '../../../errors';
import { WASM_PAGE_BYTES, wasmApi, type WasmApi, type WasmMemory } from '../../../wasmApi';
import type { GgmlTypeName } from '../../../formats/gguf/ggmlTypes';
import { WASM_MAXIMUM_PAGES } from './buildInfo';
import { GGML_QUANTS_WASM_BASE64 } from './ggmlQuantsWasm';


/** A WebAssembly memory declared shared: postable to a worker thread, which instantiates over it. */
export type QuantMemory = WasmMemory<ArrayBufferLike>;

function requireWasm(): WasmApi {
  const api = wasmApi();
  if (api === undefined) throw new QuantLensError('INTERNAL', 'this JavaScript runtime has no WebAssembly: the ggml quantizers need it');
  return api;
}

/** The block types the WebAssembly module quantizes, and its export for each. */
const EXPORTS = {
  Q8_0: 'quantizeQ8_0',
  Q4_0: 'quantizeQ4_0',
  Q4_1: 'quantizeQ4_1',
  Q5_0: 'quantizeQ5_0',
  Q5_1: 'quantizeQ5_1',
  Q2_K: 'quantizeQ2_K',
  Q3_K: 'quantizeQ3_K',
  Q4_K: 'quantizeQ4_K',
  Q5_K: 'quantizeQ5_K',
  Q6_K: 'quantizeQ6_K',
} as const;
export type WasmQuantType = keyof typeof EXPORTS;

/** Values per block and bytes per block of each type. */
const BLOCKS: Record<WasmQuantType, { values: number; bytes: number }> = {
  Q8_0: { values: 32, bytes: 34 },
  Q4_0: { values: 32, bytes: 18 },
  Q4_1: { values: 32, bytes: 20 },
  Q5_0: { values: 32, bytes: 22 },
  Q5_1: { values: 32, bytes: 24 },
  Q2_K: { values: 256, bytes: 84 },
  Q3_K: { values: 256, bytes: 110 },
  Q4_K: { values: 256, bytes: 144 },
  Q5_K: { values: 256, bytes: 176 },
  Q6_K: { values: 256, bytes: 210 },
};

const DEQUANTIZE_EXPORTS: Record<WasmQuantType, string> = {
  Q8_0: 'dequantizeQ8_0',
  Q4_0: 'dequantizeQ4_0',
  Q4_1: 'dequantizeQ4_1',
  Q5_0: 'dequantizeQ5_0',
  Q5_1: 'dequantizeQ5_1',
  Q2_K: 'dequantizeQ2_K',
  Q3_K: 'dequantizeQ3_K',
  Q4_K: 'dequantizeQ4_K',
  Q5_K: 'dequantizeQ5_K',
  Q6_K: 'dequantizeQ6_K',
};

export function isWasmQuantType(type: string): type is WasmQuantType {
  return Object.hasOwn(EXPORTS, type);
}

/** The types with an importance-matrix path (quantize_row_<type>_impl), and their `kind` in quantizeRowsImatrix. */
export const IMATRIX_KINDS = { Q4_0: 0, Q4_1: 1, Q5_0: 2, Q5_1: 3, Q2_K: 4, Q3_K: 5, Q4_K: 6, Q5_K: 7, Q6_K: 8 } as const;
export type ImatrixQuantType = keyof typeof IMATRIX_KINDS;

export function isImatrixQuantType(type: string): type is ImatrixQuantType {
  return Object.hasOwn(IMATRIX_KINDS, type);
}

/** Where rows, their importance weights and the output go in an instance's memory for quantizeRowsImatrix. */
export function imatrixLayout(heapBase: number, type: ImatrixQuantType, rows: number, cols: number): QuantLayout & { weights: number } {
  const weights = (heapBase + 63) & ~63;
  const input = (weights + cols * 4 + 63) & ~63;
  const output = input + rows * cols * 4;
  return { weights, input, output, end: output + rows * (cols / BLOCKS[type].values) * BLOCKS[type].bytes };
}

type QuantizeExport = (src: number, dst: number, blocks: number) => void;
type QuantizeImatrixExport = (kind: number, src: number, dst: number, rows: number, cols: number, weights: number) => void;
type AccumulateErrorExport = (
  x: number,
  y: number,
  blockRows: number,
  cols: number,
  firstRow: number,
  rows: number,
  rowBands: number,
  colBands: number,
  colBandOf: number,
  cellError: number,
  cellCount: number,
  fine: number,
  state: number,
) => number;

/**
 * The running state of one tensor's error accumulation (analysis/errorMetrics.ts owns it; the module
 * updates it in place). state: [sum d^2, sum x^2, sum y^2, sum x y, max |d|, histogram half range, zeros].
 */
export interface ErrorAccumulationState {
  readonly rows: number;
  readonly cols: number;
  readonly rowBands: number;
  readonly colBands: number;
  readonly colBandOf: Uint8Array;
  readonly cellError: Float64Array;
  readonly cellCount: Float64Array;
  readonly fine: Float64Array;
  readonly state: Float64Array;
}

/** Imports of the module besides the memory: the JS functions the error histogram's first range uses. */
const HOST_IMPORTS = { log2: Math.log2, pow: Math.pow };

let compiled: object | undefined;

function ggmlQuantsModule(): object {
  compiled ??= new (requireWasm().Module)(Buffer.from(GGML_QUANTS_WASM_BASE64, 'base64'));
  return compiled;
}

/** A shared memory for one instance, `pages` pages to start with. */
export function createQuantMemory(pages = 1): QuantMemory {
  return new (requireWasm().Memory)({ initial: pages, maximum: WASM_MAXIMUM_PAGES, shared: true });
}

/** Where the input and output of `values` values in `type` go in an instance's memory. */
export interface QuantLayout {
  input: number;
  output: number;
  end: number;
}

export function quantLayout(heapBase: number, type: WasmQuantType, values: number): QuantLayout {
  const input = (heapBase + 63) & ~63;
  const output = input + values * 4;
  return { input, output, end: output + (values / BLOCKS[type].values) * BLOCKS[type].bytes };
}

/** Grows `memory` (once, by what is missing) so that `bytes` bytes fit. */
export function ensureMemory(memory: QuantMemory, bytes: number): void {
  const have = memory.buffer.byteLength;
  if (bytes <= have) return;
  const pages = Math.ceil((bytes - have) / WASM_PAGE_BYTES);
  if (have / WASM_PAGE_BYTES + pages > WASM_MAXIMUM_PAGES) {
    throw new QuantLensError('INTERNAL', `ggml quantizer: ${bytes} bytes exceed the WebAssembly memory's ${WASM_MAXIMUM_PAGES * WASM_PAGE_BYTES} bytes`);
  }
  memory.grow(pages);
}

/**
 * Values widened from BF16 and then quantized per step of runFromBf16 (a multiple of every block size):
 * 64 KiB of f32, still in the core's L2 when the quantizer reads it back.
 */
const WIDEN_CHUNK_VALUES = 16384;

/** Values per call of `quantize` (block aligned for every type): bounds the memory an instance holds. */
const CHUNK_VALUES = 1 << 20;

export class GgmlWasmQuantizer {
  private constructor(
    readonly memory: QuantMemory,
    readonly heapBase: number,
    private readonly exports: Record<WasmQuantType, QuantizeExport>,
    private readonly dequantizeExports: Record<WasmQuantType, QuantizeExport>,
    private readonly accumulateErrorExport: AccumulateErrorExport,
    private readonly imatrixExport: QuantizeImatrixExport,
    private readonly nonFiniteExports: { first: (src: number, n: number) => number; seenBlock: () => number },
    private readonly widenBf16Export: (dst: number, src: number, n: number) => void,
  ) {}

  /** An instance over `memory` (a new one when absent). */
  static create(memory: QuantMemory = createQuantMemory()): GgmlWasmQuantizer {
    const instance = new (requireWasm().Instance)(ggmlQuantsModule(), { env: { memory, ...HOST_IMPORTS } });
    const exported = instance.exports;
    const fn = (name: string): QuantizeExport => {
      const f = exported[name];
      if (typeof f !== 'function') throw new QuantLensError('INTERNAL', `ggml quantizer WebAssembly module has no function ${name}`);
      return f as QuantizeExport;
    };
    const heapBase = (fn('heapBase') as unknown as () => number)();
    const exports = {} as Record<WasmQuantType, QuantizeExport>;
    const dequantizeExports = {} as Record<WasmQuantType, QuantizeExport>;
    for (const type of Object.keys(EXPORTS) as WasmQuantType[]) {
      exports[type] = fn(EXPORTS[type]);
      dequantizeExports[type] = fn(DEQUANTIZE_EXPORTS[type]);
    }
    return new GgmlWasmQuantizer(
      memory,
      heapBase,
      exports,
      dequantizeExports,
      fn('accumulateError') as unknown as AccumulateErrorExport,
      fn('quantizeRowsImatrix') as unknown as QuantizeImatrixExport,
      { first: fn('firstNonFinite') as unknown as (src: number, n: number) => number, seenBlock: fn('nonFiniteBlock') as unknown as () => number },
      fn('widenBf16'),
    );
  }

  /** Quantizes `blocks` blocks at `input` to `output` (byte offsets in this instance's memory). */
  run(type: WasmQuantType, input: number, output: number, blocks: number): void {
    this.exports[type](input, output, blocks);
  }

  /**
   * As run, refusing NaN / +-Inf: returns -1 when the blocks were quantized, else the index (from `input`)
   * of the first non-finite value (the bytes are then not to be used). Q8_0 / Q4_0 find such a value while
   * quantizing (their block maximum); the other types look first, in one SIMD pass.
   */
  runFinite(type: WasmQuantType, input: number, output: number, blocks: number): number {
    const values = blocks * BLOCKS[type].values;
    if (type === 'Q8_0' || type === 'Q4_0') {
      this.exports[type](input, output, blocks);
      const block = this.nonFiniteExports.seenBlock();
      if (block < 0) return -1;
      return block * 32 + this.nonFiniteExports.first(input + block * 128, 32);
    }
    const bad = this.nonFiniteExports.first(input, values);
    if (bad >= 0) return bad;
    this.exports[type](input, output, blocks);
    return -1;
  }

  /**
   * As run / runFinite (with `check`) for values staged as BF16 in the upper half of their f32 room: the
   * `blocks` blocks' values at [input + 2n, input + 4n) (n values), as Checkpoint.readRowsBf16Into leaves
   * them. Widened in place (exact) a chunk at a time, each chunk quantized while it is still in cache; the
   * bytes are run's on the widened values. With `check`, returns the first NaN / Inf's index as runFinite
   * (values past that chunk are then left unwidened), else -1.
   */
  runFromBf16(type: WasmQuantType, input: number, output: number, blocks: number, check: boolean): number {
    const block = BLOCKS[type];
    const n = blocks * block.values;
    const staged = input + n * 2;
    for (let from = 0; from < n; from += WIDEN_CHUNK_VALUES) {
      const count = Math.min(WIDEN_CHUNK_VALUES, n - from);
      const at = input + from * 4;
      this.widenBf16Export(at, staged + from * 2, count);
      const out = output + (from / block.values) * block.bytes;
      if (!check) {
        this.exports[type](at, out, count / block.values);
        continue;
      }
      const bad = this.runFinite(type, at, out, count / block.values);
      if (bad >= 0) return from + bad;
    }
    return -1;
  }

  /** Widens `n` BF16 values staged at [at + 2n, at + 4n) to f32 over [at, at + 4n), in place (exact). */
  widenBf16InPlace(at: number, n: number): void {
    this.widenBf16Export(at, at + n * 2, n);
  }

  /**
   * runImatrix refusing NaN / +-Inf (returns the first one's index from `input`, having quantized nothing, or
   * -1), for `rows` x `cols` values at `input` (with `bf16`: staged as BF16 in the upper half of their room
   * and widened in place first) and one row's importance weights at `weights`.
   */
  runImatrixFinite(type: ImatrixQuantType, input: number, output: number, rows: number, cols: number, weights: number, bf16: boolean): number {
    const n = rows * cols;
    if (bf16) this.widenBf16Export(input, input + n * 2, n);
    const bad = this.nonFiniteExports.first(input, n);
    if (bad >= 0) return bad;
    this.imatrixExport(IMATRIX_KINDS[type], input, output, rows, cols, weights);
    return -1;
  }

  /** The importance-matrix path over rows already in this instance's memory (imatrixLayout offsets). */
  runImatrix(type: ImatrixQuantType, input: number, output: number, rows: number, cols: number, weights: number): void {
    this.imatrixExport(IMATRIX_KINDS[type], input, output, rows, cols, weights);
  }

  /**
   * `rows` rows of `cols` values (src, row-major) with one row's importance weights (`weights.length ===
   * cols`, cols whole blocks) into dst: llama.cpp's quantize_<type> with quant_weights, in bounded chunks of rows.
   */
  quantizeImatrix(type: ImatrixQuantType, src: Float32Array, rows: number, cols: number, weights: Float32Array, dst: Uint8Array): void {
    const rowBytes = (cols / BLOCKS[type].values) * BLOCKS[type].bytes;
    const chunkRows = Math.max(1, Math.min(rows, Math.floor(CHUNK_VALUES / cols)));
    const layout = imatrixLayout(this.heapBase, type, chunkRows, cols);
    ensureMemory(this.memory, layout.end);
    const buffer = this.memory.buffer;
    new Float32Array(buffer, layout.weights, cols).set(weights);
    const input = new Float32Array(buffer, layout.input, chunkRows * cols);
    const output = new Uint8Array(buffer, layout.output, chunkRows * rowBytes);
    for (let r = 0; r < rows; r += chunkRows) {
      const n = Math.min(chunkRows, rows - r);
      input.set(src.subarray(r * cols, (r + n) * cols));
      this.imatrixExport(IMATRIX_KINDS[type], layout.input, layout.output, n, cols, layout.weights);
      dst.set(output.subarray(0, n * rowBytes), r * rowBytes);
    }
  }

  /** Quantizes all of `src` into `dst` (whole blocks), through this instance's memory in bounded chunks. */
  quantize(type: WasmQuantType, src: Float32Array, dst: Uint8Array): void {
    const block = BLOCKS[type];
    const chunkValues = Math.min(CHUNK_VALUES, src.length);
    const layout = quantLayout(this.heapBase, type, chunkValues);
    ensureMemory(this.memory, layout.end);
    const buffer = this.memory.buffer;
    const input = new Float32Array(buffer, layout.input, chunkValues);
    const output = new Uint8Array(buffer, layout.output, layout.end - layout.output);
    for (let from = 0; from < src.length; from += chunkValues) {
      const n = Math.min(chunkValues, src.length - from);
      const blocks = n / block.values;
      input.set(src.subarray(from, from + n));
      this.exports[type](layout.input, layout.output, blocks);
      dst.set(output.subarray(0, blocks * block.bytes), (from / block.values) * block.bytes);
    }
  }

  /** Decodes `dst.length` values (whole blocks) from `src`, as ggml's dequantize_row_*, in bounded chunks. */
  dequantize(type: WasmQuantType, src: Uint8Array, dst: Float32Array): void {
    const block = BLOCKS[type];
    const chunkValues = Math.min(CHUNK_VALUES, dst.length);
    const layout = quantLayout(this.heapBase, type, chunkValues);
    ensureMemory(this.memory, layout.end);
    const buffer = this.memory.buffer;
    const values = new Float32Array(buffer, layout.input, chunkValues);
    const bytes = new Uint8Array(buffer, layout.output, layout.end - layout.output);
    for (let from = 0; from < dst.length; from += chunkValues) {
      const n = Math.min(chunkValues, dst.length - from);
      const blocks = n / block.values;
      const at = (from / block.values) * block.bytes;
      bytes.set(src.subarray(at, at + blocks * block.bytes));
      this.dequantizeExports[type](layout.output, layout.input, blocks);
      dst.set(values.subarray(0, n), from);
    }
  }

  /**
   * Adds rows [firstRow, firstRow + original.length / cols) of (original, reconstructed) to `acc`, in row
   * chunks through this instance's memory. Returns -1, or the flat index (from original[0]) of the first
   * value whose error is not finite.
   */
  accumulateError(acc: ErrorAccumulationState, firstRow: number, original: Float32Array, reconstructed: Float32Array): number {
    return this.accumulate(acc, firstRow, original, { values: reconstructed });
  }

  /**
   * As accumulateError, with the reconstruction given as `type` blocks (whole rows: cols a multiple of the
   * block size): each chunk is dequantized in this instance's memory, next to the original values, so no
   * f32 reconstruction is copied in or out. The same numbers as dequantize then accumulateError.
   */
  accumulateQuantizedError(acc: ErrorAccumulationState, firstRow: number, original: Float32Array, type: WasmQuantType, bytes: Uint8Array): number {
    const block = BLOCKS[type];
    if (acc.cols % block.values !== 0) throw new QuantLensError('INTERNAL', `${type} rows of ${acc.cols} values are not whole blocks of ${block.values}`);
    const need = (original.length / block.values) * block.bytes;
    if (bytes.byteLength < need) throw new QuantLensError('INTERNAL', `${type}: ${original.length} values need ${need} bytes, got ${bytes.byteLength}`);
    return this.accumulate(acc, firstRow, original, { type, bytes });
  }

  private accumulate(
    acc: ErrorAccumulationState,
    firstRow: number,
    original: Float32Array,
    reconstructed: { values: Float32Array } | { type: WasmQuantType; bytes: Uint8Array },
  ): number {
    const cols = acc.cols;
    const blockRows = original.length / cols;
    const chunkRows = Math.max(1, Math.min(blockRows, Math.floor(CHUNK_VALUES / cols)));
    const block = 'type' in reconstructed ? BLOCKS[reconstructed.type] : { values: 1, bytes: 0 };
    const rowBytes = (cols / block.values) * block.bytes;
    const state = (this.heapBase + 63) & ~63;
    const fine = state + 64;
    const cellError = fine + acc.fine.byteLength;
    const cellCount = cellError + acc.cellError.byteLength;
    const colBandOf = cellCount + acc.cellCount.byteLength;
    const x = (colBandOf + cols + 63) & ~63;
    const y = x + chunkRows * cols * 4;
    const packed = y + chunkRows * cols * 4;
    ensureMemory(this.memory, packed + chunkRows * rowBytes);
    const buffer = this.memory.buffer;
    const stateView = new Float64Array(buffer, state, acc.state.length);
    const fineView = new Float64Array(buffer, fine, acc.fine.length);
    const cellErrorView = new Float64Array(buffer, cellError, acc.cellError.length);
    const cellCountView = new Float64Array(buffer, cellCount, acc.cellCount.length);
    stateView.set(acc.state);
    fineView.set(acc.fine);
    cellErrorView.set(acc.cellError);
    cellCountView.set(acc.cellCount);
    new Uint8Array(buffer, colBandOf, cols).set(acc.colBandOf);
    const xView = new Float32Array(buffer, x, chunkRows * cols);
    const yView = new Float32Array(buffer, y, chunkRows * cols);
    const packedView = new Uint8Array(buffer, packed, chunkRows * rowBytes);
    let bad = -1;
    for (let r = 0; r < blockRows && bad < 0; r += chunkRows) {
      const n = Math.min(chunkRows, blockRows - r);
      xView.set(original.subarray(r * cols, (r + n) * cols));
      if ('type' in reconstructed) {
        packedView.set(reconstructed.bytes.subarray(r * rowBytes, (r + n) * rowBytes));
        this.dequantizeExports[reconstructed.type](packed, y, (n * cols) / block.values);
      } else {
        yView.set(reconstructed.values.subarray(r * cols, (r + n) * cols));
      }
      const b = this.accumulateErrorExport(x, y, n, cols, firstRow + r, acc.rows, acc.rowBands, acc.colBands, colBandOf, cellError, cellCount, fine, state);
      if (b >= 0) bad = r * cols + b;
    }
    acc.state.set(stateView);
    acc.fine.set(fineView);
    acc.cellError.set(cellErrorView);
    acc.cellCount.set(cellCountView);
    return bad;
  }
}

let local: GgmlWasmQuantizer | undefined;

/** This thread's instance (created on first use). */
export function localWasmQuantizer(): GgmlWasmQuantizer {
  local ??= GgmlWasmQuantizer.create();
  return local;
}

/** Quantizes `src` into `dst` with this thread's instance; `type` must be a WasmQuantType. */
export function quantizeWasm(type: GgmlTypeName & WasmQuantType, src: Float32Array, dst: Uint8Array): void {
  localWasmQuantizer().quantize(type, src, dst);
}
