/**
 * The quant card's error pass runs in WebAssembly (wasm/ggmlQuants.as: the dequantizers and
 * accumulateError). These tests hold it to the JS it replaced, bit for bit: the TS ports of
 * dequantize_row_* (formerly legacy.ts, q2k.ts .. q6k.ts, now at the end of the reference section below) and the JS accumulation loop below (the previous
 * ErrorAccumulator.addRows, kept here verbatim as the reference), on real tensors of micro-llama and
 * tiny-llama, every field of the card's metrics compared with Object.is (assert/strict deepEqual).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ErrorAccumulator, ErrorHistogramAccumulator, MAX_ERROR_MAP_BANDS, type ErrorMetrics } from '../../src/core/analysis/errorMetrics';
import { NumericError } from '../../src/core/errors';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { dequantizeGgml, ggmlByteSize, quantizeGgml } from '../../src/core/quant/ggml';
import type { WasmQuantType } from '../../src/core/quant/ggml/wasm/ggmlWasm';
import { f16ToF32Table } from '../../src/core/numeric/half';
import { microLlamaDir, tinyLlamaDir } from '../helpers/paths';

const FINE_BINS_PER_SIDE = 512;

/** The JS accumulator the WebAssembly one replaced (errorMetrics.ts before the port), unchanged. */
class ReferenceErrorAccumulator {
  private sumSquaredError = 0;
  private sumSquaredOriginal = 0;
  private sumSquaredReconstructed = 0;
  private sumProduct = 0;
  private maxAbs = 0;
  private rowsSeen = 0;
  readonly rowBands: number;
  readonly colBands: number;
  private readonly cellError: Float64Array;
  private readonly cellCount: Float64Array;
  private readonly colBandOf: Uint8Array;
  private readonly histogram = new ErrorHistogramAccumulator();

  constructor(
    readonly rows: number,
    readonly cols: number,
  ) {
    this.rowBands = Math.min(MAX_ERROR_MAP_BANDS, rows);
    this.colBands = Math.min(MAX_ERROR_MAP_BANDS, cols);
    this.cellError = new Float64Array(this.rowBands * this.colBands);
    this.cellCount = new Float64Array(this.rowBands * this.colBands);
    this.colBandOf = new Uint8Array(cols);
    for (let c = 0; c < cols; c++) this.colBandOf[c] = Math.floor((c * this.colBands) / cols);
  }

  addRows(original: Float32Array, reconstructed: Float32Array): void {
    const blockRows = original.length / this.cols;
    const histogram = this.histogram;
    const fine = histogram.fine;
    const lastFine = fine.length - 1;
    let halfRange = histogram.halfRange;
    let scale = halfRange > 0 ? FINE_BINS_PER_SIDE / halfRange : 0;
    let zeros = 0;
    for (let r = 0; r < blockRows; r++) {
      const row = this.rowsSeen + r;
      const cellBase = Math.floor((row * this.rowBands) / this.rows) * this.colBands;
      const base = r * this.cols;
      for (let c = 0; c < this.cols; c++) {
        const x = original[base + c]!;
        const y = reconstructed[base + c]!;
        const d = x - y;
        if (!Number.isFinite(d)) throw new NumericError(`non-finite value at flat index ${row * this.cols + c}`);
        const d2 = d * d;
        this.sumSquaredError += d2;
        this.sumSquaredOriginal += x * x;
        this.sumSquaredReconstructed += y * y;
        this.sumProduct += x * y;
        const a = Math.abs(d);
        if (a > this.maxAbs) this.maxAbs = a;
        const cell = cellBase + this.colBandOf[c]!;
        this.cellError[cell]! += d2;
        this.cellCount[cell]! += 1;
        if (d === 0) {
          zeros += 1;
          fine[FINE_BINS_PER_SIDE]! += 1;
        } else {
          if (a > halfRange) {
            histogram.grow(a);
            halfRange = histogram.halfRange;
            scale = FINE_BINS_PER_SIDE / halfRange;
          }
          const index = (FINE_BINS_PER_SIDE - d * scale) | 0;
          fine[index > lastFine ? lastFine : index]! += 1;
        }
      }
    }
    histogram.zeros += zeros;
    this.rowsSeen += blockRows;
  }

  result(): ErrorMetrics {
    const count = this.rows * this.cols;
    const sse = this.sumSquaredError;
    const denominator = Math.sqrt(this.sumSquaredOriginal * this.sumSquaredReconstructed);
    let cosine: number;
    if (denominator > 0) cosine = this.sumProduct / denominator;
    else cosine = this.sumSquaredOriginal === 0 && this.sumSquaredReconstructed === 0 ? 1 : 0;
    const values: number[] = new Array<number>(this.cellError.length);
    for (let i = 0; i < values.length; i++) values[i] = this.cellCount[i]! > 0 ? this.cellError[i]! / this.cellCount[i]! : 0;
    return {
      count,
      mse: sse / count,
      relRmse: this.sumSquaredOriginal > 0 ? Math.sqrt(sse / this.sumSquaredOriginal) : sse === 0 ? 0 : null,
      sqnrDb: sse === 0 || this.sumSquaredOriginal === 0 ? null : 10 * Math.log10(this.sumSquaredOriginal / sse),
      maxAbsError: this.maxAbs,
      cosine,
      errorMap: { rowBands: this.rowBands, colBands: this.colBands, values },
      errorHistogram: this.histogram.result(),
    };
  }
}

// ---------------------------------------------------------------------------------------------
// The TS ports of ggml's dequantize_row_* the WebAssembly ones replaced (src/core/quant/ggml/legacy.ts,
// q2k.ts .. q6k.ts before the port), unchanged: the reference the WebAssembly values are held to.

const fround = Math.fround;
const QK = 32;
const QK_K = 256;

/** get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K / Q5_K block's 12 scale bytes at q[o..o+12). */
const scaleMinOut = { sc: 0, m: 0 };
function getScaleMinK4(j: number, q: Uint8Array, o: number): void {
  if (j < 4) {
    scaleMinOut.sc = q[o + j]! & 63;
    scaleMinOut.m = q[o + j + 4]! & 63;
  } else {
    scaleMinOut.sc = (q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >>> 6) << 4);
    scaleMinOut.m = (q[o + j + 4]! >>> 4) | ((q[o + j]! >>> 6) << 4);
  }
}

function readF16(table: Float32Array, src: Uint8Array, offset: number): number {
  return table[src[offset]! | (src[offset + 1]! << 8)]!;
}

function dequantizeQ8_0(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 34;
    const d = readF16(table, src, o);
    for (let j = 0; j < QK; j++) {
      const q = src[o + 2 + j]!;
      dst[i * QK + j] = (q > 127 ? q - 256 : q) * d;
    }
  }
}

function dequantizeQ4_0(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 18;
    const d = readF16(table, src, o);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 2 + j]!;
      dst[i * QK + j] = ((q & 0x0f) - 8) * d;
      dst[i * QK + j + QK / 2] = ((q >>> 4) - 8) * d;
    }
  }
}

function dequantizeQ4_1(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 20;
    const d = readF16(table, src, o);
    const m = readF16(table, src, o + 2);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 4 + j]!;
      dst[i * QK + j] = fround((q & 0x0f) * d) + m;
      dst[i * QK + j + QK / 2] = fround((q >>> 4) * d) + m;
    }
  }
}

function dequantizeQ5_0(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 22;
    const d = readF16(table, src, o);
    const qh = (src[o + 2]! | (src[o + 3]! << 8) | (src[o + 4]! << 16) | (src[o + 5]! << 24)) >>> 0;
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 6 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[i * QK + j] = (((q & 0x0f) | h0) - 16) * d;
      dst[i * QK + j + QK / 2] = (((q >>> 4) | h1) - 16) * d;
    }
  }
}

function dequantizeQ5_1(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK;
  for (let i = 0; i < nb; i++) {
    const o = i * 24;
    const d = readF16(table, src, o);
    const m = readF16(table, src, o + 2);
    const qh = (src[o + 4]! | (src[o + 5]! << 8) | (src[o + 6]! << 16) | (src[o + 7]! << 24)) >>> 0;
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 8 + j]!;
      const h0 = ((qh >>> j) << 4) & 0x10;
      const h1 = (qh >>> (j + 12)) & 0x10;
      dst[i * QK + j] = fround(((q & 0x0f) | h0) * d) + m;
      dst[i * QK + j + QK / 2] = fround(((q >>> 4) | h1) * d) + m;
    }
  }
}

function dequantizeQ2_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 84;
    const d = table[src[o + 80]! | (src[o + 81]! << 8)]!;
    const min = table[src[o + 82]! | (src[o + 83]! << 8)]!;
    let q = o + 16;
    let is = 0;
    for (let n = 0; n < QK_K; n += 128) {
      let shift = 0;
      for (let j = 0; j < 4; j++) {
        let sc = src[o + is++]!;
        let dl = fround(d * (sc & 0xf));
        let ml = fround(min * (sc >>> 4));
        for (let l = 0; l < 16; l++) dst[y++] = fround(dl * ((src[q + l]! >>> shift) & 3)) - ml;
        sc = src[o + is++]!;
        dl = fround(d * (sc & 0xf));
        ml = fround(min * (sc >>> 4));
        for (let l = 0; l < 16; l++) dst[y++] = fround(dl * ((src[q + l + 16]! >>> shift) & 3)) - ml;
        shift += 2;
      }
      q += 32;
    }
  }
}

/** The 16 six-bit scales of a Q3_K block, unpacked (values 0..63; subtract 32). */
const unpacked = new Int32Array(16);
function unpackQ3Scales(src: Uint8Array, s: number): void {
  for (let j = 0; j < 16; j++) {
    const low = j < 8 ? src[s + j]! & 0xf : src[s + j - 8]! >>> 4;
    const high = (src[s + 8 + (j % 4)]! >>> (2 * Math.floor(j / 4))) & 3;
    unpacked[j] = low | (high << 4);
  }
}

function dequantizeQ3_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 110;
    const dAll = table[src[o + 108]! | (src[o + 109]! << 8)]!;
    unpackQ3Scales(src, o + 96);
    let q = o + 32;
    const hm = o;
    let m = 1;
    let is = 0;
    for (let n = 0; n < QK_K; n += 128) {
      let shift = 0;
      for (let j = 0; j < 4; j++) {
        let dl = fround(dAll * (unpacked[is++]! - 32));
        for (let l = 0; l < 16; l++) dst[y++] = dl * (((src[q + l]! >>> shift) & 3) - (src[hm + l]! & m ? 0 : 4));
        dl = fround(dAll * (unpacked[is++]! - 32));
        for (let l = 0; l < 16; l++) dst[y++] = dl * (((src[q + l + 16]! >>> shift) & 3) - (src[hm + l + 16]! & m ? 0 : 4));
        shift += 2;
        m <<= 1;
      }
      q += 32;
    }
  }
}

function dequantizeQ4_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 144;
    const d = table[src[o]! | (src[o + 1]! << 8)]!;
    const min = table[src[o + 2]! | (src[o + 3]! << 8)]!;
    let q = o + 16;
    let is = 0;
    for (let j = 0; j < QK_K; j += 64) {
      getScaleMinK4(is, src, o + 4);
      const d1 = fround(d * scaleMinOut.sc);
      const m1 = fround(min * scaleMinOut.m);
      getScaleMinK4(is + 1, src, o + 4);
      const d2 = fround(d * scaleMinOut.sc);
      const m2 = fround(min * scaleMinOut.m);
      for (let l = 0; l < 32; l++) dst[y++] = fround(d1 * (src[q + l]! & 0xf)) - m1;
      for (let l = 0; l < 32; l++) dst[y++] = fround(d2 * (src[q + l]! >>> 4)) - m2;
      q += 32;
      is += 2;
    }
  }
}

function dequantizeQ5_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 176;
    const d = table[src[o]! | (src[o + 1]! << 8)]!;
    const min = table[src[o + 2]! | (src[o + 3]! << 8)]!;
    const qh = o + 16;
    let ql = o + 48;
    let is = 0;
    let u1 = 1;
    let u2 = 2;
    for (let j = 0; j < QK_K; j += 64) {
      getScaleMinK4(is, src, o + 4);
      const d1 = fround(d * scaleMinOut.sc);
      const m1 = fround(min * scaleMinOut.m);
      getScaleMinK4(is + 1, src, o + 4);
      const d2 = fround(d * scaleMinOut.sc);
      const m2 = fround(min * scaleMinOut.m);
      for (let l = 0; l < 32; l++) dst[y++] = fround(d1 * ((src[ql + l]! & 0xf) + (src[qh + l]! & u1 ? 16 : 0))) - m1;
      for (let l = 0; l < 32; l++) dst[y++] = fround(d2 * ((src[ql + l]! >>> 4) + (src[qh + l]! & u2 ? 16 : 0))) - m2;
      ql += 32;
      is += 2;
      u1 <<= 2;
      u2 <<= 2;
    }
  }
}

function dequantizeQ6_K(src: Uint8Array, dst: Float32Array): void {
  const table = f16ToF32Table();
  const nb = dst.length / QK_K;
  let y = 0;
  for (let i = 0; i < nb; i++) {
    const o = i * 210;
    const d = table[src[o + 208]! | (src[o + 209]! << 8)]!;
    let ql = o;
    let qh = o + 128;
    let sc = o + 192;
    for (let n = 0; n < QK_K; n += 128) {
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = src[qh + l]!;
        const q1 = ((src[ql + l]! & 0xf) | ((h & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32;
        const s0 = (src[sc + is]! << 24) >> 24;
        const s2 = (src[sc + is + 2]! << 24) >> 24;
        const s4 = (src[sc + is + 4]! << 24) >> 24;
        const s6 = (src[sc + is + 6]! << 24) >> 24;
        dst[y + l] = fround(d * s0) * q1;
        dst[y + l + 32] = fround(d * s2) * q2;
        dst[y + l + 64] = fround(d * s4) * q3;
        dst[y + l + 96] = fround(d * s6) * q4;
      }
      y += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

const TS_DEQUANTIZERS: Record<WasmQuantType, (src: Uint8Array, dst: Float32Array) => void> = {
  Q8_0: dequantizeQ8_0,
  Q4_0: dequantizeQ4_0,
  Q4_1: dequantizeQ4_1,
  Q5_0: dequantizeQ5_0,
  Q5_1: dequantizeQ5_1,
  Q2_K: dequantizeQ2_K,
  Q3_K: dequantizeQ3_K,
  Q4_K: dequantizeQ4_K,
  Q5_K: dequantizeQ5_K,
  Q6_K: dequantizeQ6_K,
};

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

/** Feeds both accumulators the same row blocks (sizes cycling through blockRows) and returns both results. */
function bothMetrics(original: Float32Array, reconstructed: Float32Array, rows: number, cols: number, blockRows: number[]): { reference: ErrorMetrics; wasm: ErrorMetrics } {
  const reference = new ReferenceErrorAccumulator(rows, cols);
  const wasm = new ErrorAccumulator(rows, cols, 'test');
  for (let r = 0, k = 0; r < rows; k++) {
    const n = Math.min(blockRows[k % blockRows.length]!, rows - r);
    reference.addRows(original.subarray(r * cols, (r + n) * cols), reconstructed.subarray(r * cols, (r + n) * cols));
    wasm.addRows(original.subarray(r * cols, (r + n) * cols), reconstructed.subarray(r * cols, (r + n) * cols));
    r += n;
  }
  return { reference: reference.result(), wasm: wasm.result() };
}

async function checkCheckpoint(path: string, types: readonly WasmQuantType[], pick: (name: string) => boolean): Promise<number> {
  const ckpt = await openCheckpoint(path);
  let checked = 0;
  try {
    for (const entry of ckpt.tensors) {
      if (entry.shape.length !== 2 || !pick(entry.name)) continue;
      const [rows, cols] = entry.shape as [number, number];
      const original = await ckpt.readRowsF32(entry.name);
      for (const type of types) {
        const blockValues = type.endsWith('_K') ? 256 : 32;
        if (original.length % blockValues !== 0) continue;
        const bytes = new Uint8Array(ggmlByteSize(type, original.length));
        quantizeGgml(type, original, bytes);
        const viaTs = new Float32Array(original.length);
        TS_DEQUANTIZERS[type](bytes, viaTs);
        const viaWasm = new Float32Array(original.length);
        dequantizeGgml(type, bytes, viaWasm);
        assert.deepEqual(bitsOf(viaWasm), bitsOf(viaTs), `${entry.name} ${type}: WebAssembly dequantize differs from the TS port`);
        const { reference, wasm } = bothMetrics(original, viaWasm, rows, cols, [Math.max(1, Math.floor(rows / 3)), 1, 7]);
        assert.deepEqual(wasm, reference, `${entry.name} ${type}: card metrics differ`);
        // From the bytes (dequantized in WebAssembly memory chunk by chunk): rows must be whole blocks, so K
        // types of narrow tensors are viewed as rows of 1024 values.
        const fusedCols = cols % blockValues === 0 ? cols : 1024;
        if (original.length % fusedCols === 0) {
          const fusedRows = original.length / fusedCols;
          const expected = new ReferenceErrorAccumulator(fusedRows, fusedCols);
          expected.addRows(original, viaTs);
          const fused = new ErrorAccumulator(fusedRows, fusedCols, entry.name);
          const rowBytes = ggmlByteSize(type, fusedCols);
          for (let r = 0, k = 0; r < fusedRows; k++) {
            const n = Math.min([5, 1, Math.max(1, Math.floor(fusedRows / 2))][k % 3]!, fusedRows - r);
            fused.addQuantizedRows(type, original.subarray(r * fusedCols, (r + n) * fusedCols), bytes.subarray(r * rowBytes, (r + n) * rowBytes));
            r += n;
          }
          assert.deepEqual(fused.result(), expected.result(), `${entry.name} ${type}: metrics from the bytes differ`);
        }
        checked++;
      }
    }
  } finally {
    await ckpt.close();
  }
  return checked;
}

const ALL_TYPES: readonly WasmQuantType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'];

test('micro-llama: every 2-D tensor in every block type, WebAssembly dequantize + metrics = the JS ones, bit for bit', async () => {
  const checked = await checkCheckpoint(microLlamaDir, ALL_TYPES, () => true);
  assert.ok(checked >= 100, `only ${checked} (tensor, type) pairs checked`);
});

test('tiny-llama: layer 0, lm_head (3 M values: several WebAssembly chunks), Q8_0 / Q4_K / Q6_K / Q3_K / Q5_1 equal bit for bit', { skip: tinyLlamaDir.skip }, async () => {
  const checked = await checkCheckpoint(tinyLlamaDir.path, ['Q8_0', 'Q4_K', 'Q6_K', 'Q3_K', 'Q5_1'], (name) => name.startsWith('model.layers.0.') || name === 'lm_head.weight');
  assert.equal(checked, 8 * 5);
});

test('synthetic: a row longer than a WebAssembly chunk, errors that grow the histogram range, exact zeros, -0', () => {
  const cols = (1 << 20) + 96;
  const rows = 3;
  const original = new Float32Array(rows * cols);
  const reconstructed = new Float32Array(rows * cols);
  let seed = 12345;
  const next = (): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed / 2 ** 32;
  };
  for (let i = 0; i < original.length; i++) {
    const x = Math.fround((next() - 0.5) * 4);
    original[i] = x;
    // errors of growing size along the tensor (the histogram doubles its range many times), some exact
    const scale = 2 ** (-30 + Math.floor((40 * i) / original.length));
    reconstructed[i] = i % 5 === 0 ? x : i % 17 === 0 ? -0 : Math.fround(x + (next() - 0.5) * scale);
  }
  const { reference, wasm } = bothMetrics(original, reconstructed, rows, cols, [1, 2]);
  assert.deepEqual(wasm, reference);
  assert.ok(wasm.errorHistogram.zeros > 0 && wasm.errorHistogram.range > 1);
});

test('addQuantizedRows: F16 / BF16 rows (dequantized in JS) and a Q8_0 block with a NaN scale', () => {
  const cols = 64;
  const rows = 3;
  const original = Float32Array.from({ length: rows * cols }, (_, i) => Math.sin(i) * 3);
  for (const type of ['F16', 'BF16'] as const) {
    const bytes = new Uint8Array(ggmlByteSize(type, original.length));
    quantizeGgml(type, original, bytes);
    const reconstructed = new Float32Array(original.length);
    dequantizeGgml(type, bytes, reconstructed);
    const expected = new ReferenceErrorAccumulator(rows, cols);
    expected.addRows(original, reconstructed);
    const acc = new ErrorAccumulator(rows, cols);
    acc.addQuantizedRows(type, original, bytes);
    assert.deepEqual(acc.result(), expected.result(), type);
  }
  const bytes = new Uint8Array(ggmlByteSize('Q8_0', original.length));
  quantizeGgml('Q8_0', original, bytes);
  bytes[34 * 3] = 0x00;
  bytes[34 * 3 + 1] = 0x7e; // f16 NaN scale of block 3 (values 96..127, row 1)
  const acc = new ErrorAccumulator(rows, cols, 'q');
  assert.throws(() => acc.addQuantizedRows('Q8_0', original, bytes), (e: unknown) => e instanceof NumericError && e.message === `q: non-finite value at flat index 96 (source ${original[96]}, quantized NaN)`);
});

test('a non-finite value is reported at its flat index, also past the first WebAssembly chunk', () => {
  const cols = 1000;
  const rows = 2000;
  const original = new Float32Array(rows * cols).fill(1);
  const reconstructed = new Float32Array(rows * cols).fill(0.5);
  reconstructed[1_500_123] = Number.NaN;
  const acc = new ErrorAccumulator(rows, cols, 'w');
  acc.addRows(original.subarray(0, 10 * cols), reconstructed.subarray(0, 10 * cols));
  assert.throws(() => acc.addRows(original.subarray(10 * cols), reconstructed.subarray(10 * cols)), (e: unknown) => e instanceof NumericError && /w: non-finite value at flat index 1500123 \(source 1, quantized NaN\)/.test(e.message));
});

test('synthetic: full-precision values and errors (the f64 sums round at every add, so their order shows)', () => {
  for (const [rows, cols] of [
    [64, 4096],
    [100, 384],
    [7, 61],
  ] as const) {
    const original = new Float32Array(rows * cols);
    const reconstructed = new Float32Array(rows * cols);
    for (let i = 0; i < original.length; i++) {
      original[i] = Math.sin(i * 0.37);
      reconstructed[i] = Math.fround(original[i]! + Math.cos(i * 1.7) * 0.01);
    }
    const { reference, wasm } = bothMetrics(original, reconstructed, rows, cols, [5, 1, 3]);
    assert.deepEqual(wasm, reference, `${rows} x ${cols}`);
  }
});

