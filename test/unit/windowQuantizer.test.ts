/**
 * The window quantizer (quant/ggml/windowQuantizer.ts) that exportGguf streams through: values staged
 * in WebAssembly memory, on this thread or split over worker threads, give quantizeGgml's bytes; NaN / Inf
 * are found at their exact index (found while quantizing for Q8_0 / Q4_0, by a SIMD pass for the other
 * types); windows are reused only once released; Q4_0's signed maximum keeps C's "first wins".
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ggmlByteSize, quantizeGgml } from '../../src/core/quant/ggml/index';
import { WindowQuantizer } from '../../src/core/quant/ggml/windowQuantizer';
import type { WasmQuantType } from '../../src/core/quant/ggml/wasm/ggmlWasm';

const sha256 = (chunks: readonly Uint8Array[]): string => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

function values(seed: number, n: number): Float32Array {
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    v[i] = (s / 2 ** 32 - 0.5) * (i % 61 === 0 ? 4 : 0.2);
  }
  return v;
}

const TYPES: WasmQuantType[] = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q4_K', 'Q6_K'];

async function quantizeThrough(wq: WindowQuantizer, type: WasmQuantType, x: Float32Array, rows: number, cols: number): Promise<{ bytes: string; nonFinite: number }> {
  const w = await wq.stage(type, rows, cols);
  try {
    for (const p of w.parts) p.values.set(x.subarray(p.row * cols, (p.row + p.rows) * cols));
    const q = await w.quantize();
    return { bytes: sha256(q.bytes), nonFinite: q.nonFinite };
  } finally {
    w.release();
  }
}

for (const threads of [1, 3]) {
  test(`${threads} thread(s): staged windows give quantizeGgml's bytes for every block type`, async () => {
    const wq = WindowQuantizer.create(threads);
    try {
      assert.equal(wq.threads, threads);
      const rows = 7;
      const cols = 512;
      const x = values(threads, rows * cols);
      for (const type of TYPES) {
        const want = new Uint8Array(ggmlByteSize(type, x.length));
        quantizeGgml(type, x, want);
        const got = await quantizeThrough(wq, type, x, rows, cols);
        assert.equal(got.nonFinite, -1, type);
        assert.equal(got.bytes, sha256([want]), type);
      }
    } finally {
      await wq.close();
    }
  });

  test(`${threads} thread(s): the first NaN / Inf is reported at its index in the window, for every type`, async () => {
    const wq = WindowQuantizer.create(threads);
    try {
      const rows = 6;
      const cols = 256;
      for (const type of TYPES) {
        for (const [at, bad] of [
          [5 * cols + 77, NaN],
          [1 * cols + 3, Infinity],
          [4 * cols + 255, -Infinity],
          [0, NaN],
        ] as const) {
          const x = values(at, rows * cols);
          x[at] = bad;
          x[rows * cols - 1] = NaN; // a later one is not the answer
          const got = await quantizeThrough(wq, type, x, rows, cols);
          assert.equal(got.nonFinite, at, `${type}: ${bad} at ${at}`);
        }
      }
    } finally {
      await wq.close();
    }
  });
}

test('a window is handed out again only after it is released (depth 2)', async () => {
  const wq = WindowQuantizer.create(1, 2);
  try {
    const a = await wq.stage('Q8_0', 1, 32);
    const b = await wq.stage('Q8_0', 1, 32);
    let third = false;
    const c = wq.stage('Q8_0', 1, 32).then((w) => {
      third = true;
      return w;
    });
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(third, false, 'both windows are held');
    a.release();
    const w = await c;
    assert.equal(third, true);
    assert.notEqual(w.parts[0]!.values.buffer, b.parts[0]!.values.buffer, 'the released memory, not the held one');
    b.release();
    w.release();
  } finally {
    await wq.close();
  }
});

test('Q4_0: the block maximum with both signs present is the first in element order (C keeps the first)', async () => {
  const wq = WindowQuantizer.create(1);
  try {
    for (const [first, second] of [
      [-2, 2],
      [2, -2],
    ] as const) {
      const x = new Float32Array(32).fill(0.25);
      x[5] = first;
      x[20] = second;
      const w = await wq.stage('Q4_0', 1, 32);
      w.parts[0]!.values.set(x);
      const q = await w.quantize();
      const d = new DataView(q.bytes[0]!.buffer, q.bytes[0]!.byteOffset, 2).getUint16(0, true);
      w.release();
      // d = max / -8: positive when the first maximum is negative
      assert.equal(d, first < 0 ? 0x3400 : 0xb400, `first ${first}`);
      const want = new Uint8Array(18);
      quantizeGgml('Q4_0', x, want);
      assert.equal(d, new DataView(want.buffer).getUint16(0, true));
    }
  } finally {
    await wq.close();
  }
});

test('Q4_1 / Q5_1: a zero minimum keeps the sign of the first zero in element order (C scans sequentially)', () => {
  for (const type of ['Q4_1', 'Q5_1'] as const) {
    for (const firstZero of [-0, 0]) {
      const x = new Float32Array(32).fill(0.75);
      x[3] = firstZero;
      x[17] = Object.is(firstZero, -0) ? 0 : -0;
      x[30] = 1.5;
      const out = new Uint8Array(ggmlByteSize(type, 32));
      quantizeGgml(type, x, out);
      const m = new DataView(out.buffer).getUint16(2, true);
      assert.equal(m, Object.is(firstZero, -0) ? 0x8000 : 0x0000, `${type}, first zero ${Object.is(firstZero, -0) ? '-0' : '+0'}`);
    }
  }
});
