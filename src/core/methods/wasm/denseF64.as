// Dense float64 kernels for GPTQ (src/core/methods/linalg.ts, gptq.ts), AssemblyScript compiled to
// WebAssembly with f64x2 SIMD by build.ts. Matrices are row-major float64 in this module's memory; the
// caller (wasm/denseF64.ts) places them anywhere at or above heapBase(). Pointers are byte addresses,
// strides ("ld") are in elements.
//
// Rounding: every product and sum is an IEEE float64 operation (WebAssembly has no implicit fused
// multiply-add), each rounded to nearest even. gemmNNSub keeps the scalar code's order (c = c - a*b,
// p ascending) and so its bits; gemmNTSub and dot() (the Cholesky) sum in two lanes (even and odd p),
// added at the end and per KC chunk; the Cholesky solves the rows below a diagonal block with that
// block's inverse, and the inverse goes by blocks: reassociations of the scalar sums, not the same bits.

/** Block size of the factorization and the inverse (the matrix order is padded to a multiple of it). */
const BS: i32 = 64;
/** Inner-dimension chunk of the blocked products: a 64 x KC panel of each operand stays in L2. */
const KC: i32 = 256;
/** Column chunk of gemmNNSub: KC-ish rows of B by NC columns stay in L2 while every row of A passes. */
const NC: i32 = 256;

let pivotValue: f64 = 0;

/** First byte the caller may use. */
export function heapBase(): usize {
  return __heap_base;
}

/** The value of the pivot choleskyLowerInPlace stopped at. */
export function failedPivotValue(): f64 {
  return pivotValue;
}

@inline function hsum(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

/** sum_{p < len} x[p] y[p], in two lanes (even / odd p) added at the end, then an odd last term. */
@inline function dot(x: usize, y: usize, len: i32): f64 {
  let s = f64x2.splat(0);
  const pairs: usize = (<usize>(len >> 1)) << 4;
  for (let p: usize = 0; p < pairs; p += 16) s = f64x2.add(s, f64x2.mul(v128.load(x + p), v128.load(y + p)));
  let r = hsum(s);
  if (len & 1) r += load<f64>(x + pairs) * load<f64>(y + pairs);
  return r;
}

/**
 * C[i][j] -= sum_{p<k} A[i][p] * B[j][p] (A times B transposed), m a multiple of 2, n of 4, k of 2.
 * 2 x 4 outputs per pass: 8 f64x2 accumulators, 2 A vectors and 1 B vector (11 registers).
 */
export function gemmNTSub(c: usize, ldc: i32, a: usize, lda: i32, b: usize, ldb: i32, m: i32, n: i32, k: i32): void {
  const rowA = (<usize>lda) << 3;
  const rowB = (<usize>ldb) << 3;
  const rowC = (<usize>ldc) << 3;
  const kBytes = (<usize>k) << 3;
  for (let i = 0; i < m; i += 2) {
    const a0 = a + <usize>i * rowA;
    const a1 = a0 + rowA;
    const c0 = c + <usize>i * rowC;
    const c1 = c0 + rowC;
    for (let j = 0; j < n; j += 4) {
      const b0 = b + <usize>j * rowB;
      const b1 = b0 + rowB;
      const b2 = b1 + rowB;
      const b3 = b2 + rowB;
      let s00 = f64x2.splat(0), s01 = f64x2.splat(0), s02 = f64x2.splat(0), s03 = f64x2.splat(0);
      let s10 = f64x2.splat(0), s11 = f64x2.splat(0), s12 = f64x2.splat(0), s13 = f64x2.splat(0);
      for (let p: usize = 0; p < kBytes; p += 16) {
        const x0 = v128.load(a0 + p);
        const x1 = v128.load(a1 + p);
        let w = v128.load(b0 + p);
        s00 = f64x2.add(s00, f64x2.mul(x0, w));
        s10 = f64x2.add(s10, f64x2.mul(x1, w));
        w = v128.load(b1 + p);
        s01 = f64x2.add(s01, f64x2.mul(x0, w));
        s11 = f64x2.add(s11, f64x2.mul(x1, w));
        w = v128.load(b2 + p);
        s02 = f64x2.add(s02, f64x2.mul(x0, w));
        s12 = f64x2.add(s12, f64x2.mul(x1, w));
        w = v128.load(b3 + p);
        s03 = f64x2.add(s03, f64x2.mul(x0, w));
        s13 = f64x2.add(s13, f64x2.mul(x1, w));
      }
      const o0 = c0 + ((<usize>j) << 3);
      const o1 = c1 + ((<usize>j) << 3);
      store<f64>(o0, load<f64>(o0) - hsum(s00));
      store<f64>(o0, load<f64>(o0, 8) - hsum(s01), 8);
      store<f64>(o0, load<f64>(o0, 16) - hsum(s02), 16);
      store<f64>(o0, load<f64>(o0, 24) - hsum(s03), 24);
      store<f64>(o1, load<f64>(o1) - hsum(s10));
      store<f64>(o1, load<f64>(o1, 8) - hsum(s11), 8);
      store<f64>(o1, load<f64>(o1, 16) - hsum(s12), 16);
      store<f64>(o1, load<f64>(o1, 24) - hsum(s13), 24);
    }
  }
}

/** One output: c - a[0]*b[0] - a[1]*b[ldb] - ... in p order (the scalar loop's bits). */
@inline function scalarNNSub(c: f64, a: usize, b: usize, rowB: usize, k: i32): f64 {
  for (let p = 0; p < k; p++) c -= load<f64>(a + ((<usize>p) << 3)) * load<f64>(b + <usize>p * rowB);
  return c;
}

/**
 * C[i][j] -= sum_{p<k} A[i][p] * B[p][j] for any m, n, k, each output updated c = c - a*b in ascending p
 * (the bits of the scalar loop). 4 x 4 outputs per pass (8 f64x2 accumulators, 2 B vectors, 1 broadcast load);
 * columns in chunks of NC so the chunk of B stays in cache while every row of A passes over it.
 */
export function gemmNNSub(c: usize, ldc: i32, a: usize, lda: i32, b: usize, ldb: i32, m: i32, n: i32, k: i32): void {
  const rowA = (<usize>lda) << 3;
  const rowB = (<usize>ldb) << 3;
  const rowC = (<usize>ldc) << 3;
  const m4 = m & ~3;
  for (let jc = 0; jc < n; jc += NC) {
    const jEnd = min(n, jc + NC);
    const j4End = jc + ((jEnd - jc) & ~3);
    for (let i = 0; i < m4; i += 4) {
      const a0 = a + <usize>i * rowA;
      const a1 = a0 + rowA;
      const a2 = a1 + rowA;
      const a3 = a2 + rowA;
      const c0 = c + <usize>i * rowC;
      const c1 = c0 + rowC;
      const c2 = c1 + rowC;
      const c3 = c2 + rowC;
      for (let j = jc; j < j4End; j += 4) {
        const jo = (<usize>j) << 3;
        let r00 = v128.load(c0 + jo), r01 = v128.load(c0 + jo, 16);
        let r10 = v128.load(c1 + jo), r11 = v128.load(c1 + jo, 16);
        let r20 = v128.load(c2 + jo), r21 = v128.load(c2 + jo, 16);
        let r30 = v128.load(c3 + jo), r31 = v128.load(c3 + jo, 16);
        let bp = b + jo;
        for (let p = 0; p < k; p++) {
          const po = (<usize>p) << 3;
          const w0 = v128.load(bp);
          const w1 = v128.load(bp, 16);
          let x = v128.load64_splat(a0 + po);
          r00 = f64x2.sub(r00, f64x2.mul(x, w0));
          r01 = f64x2.sub(r01, f64x2.mul(x, w1));
          x = v128.load64_splat(a1 + po);
          r10 = f64x2.sub(r10, f64x2.mul(x, w0));
          r11 = f64x2.sub(r11, f64x2.mul(x, w1));
          x = v128.load64_splat(a2 + po);
          r20 = f64x2.sub(r20, f64x2.mul(x, w0));
          r21 = f64x2.sub(r21, f64x2.mul(x, w1));
          x = v128.load64_splat(a3 + po);
          r30 = f64x2.sub(r30, f64x2.mul(x, w0));
          r31 = f64x2.sub(r31, f64x2.mul(x, w1));
          bp += rowB;
        }
        v128.store(c0 + jo, r00);
        v128.store(c0 + jo, r01, 16);
        v128.store(c1 + jo, r10);
        v128.store(c1 + jo, r11, 16);
        v128.store(c2 + jo, r20);
        v128.store(c2 + jo, r21, 16);
        v128.store(c3 + jo, r30);
        v128.store(c3 + jo, r31, 16);
      }
      for (let j = j4End; j < jEnd; j++) {
        const jo = (<usize>j) << 3;
        for (let r = 0; r < 4; r++) {
          const o = c + <usize>(i + r) * rowC + jo;
          store<f64>(o, scalarNNSub(load<f64>(o), a + <usize>(i + r) * rowA, b + jo, rowB, k));
        }
      }
    }
    for (let i = m4; i < m; i++) {
      for (let j = jc; j < jEnd; j++) {
        const jo = (<usize>j) << 3;
        const o = c + <usize>i * rowC + jo;
        store<f64>(o, scalarNNSub(load<f64>(o), a + <usize>i * rowA, b + jo, rowB, k));
      }
    }
  }
}

/**
 * In place: the lower triangle of the n x n matrix at `a` (n a multiple of BS) becomes its lower Cholesky
 * factor L (A = L L^T); the upper triangle is scratch. Left-looking by blocks of BS columns: the block
 * column is updated with one A x B^T product over everything left of it (in KC chunks), then its diagonal
 * block is factored column by column, inverted, and the rows below solved as X = C L_JJ^-T (one product).
 * `scratch`: (n + BS) x BS float64. Returns -1, or the first pivot (row) that was not positive and finite
 * (its value: failedPivotValue()).
 */
export function choleskyLowerInPlace(a: usize, n: i32, scratch: usize): i32 {
  const row = (<usize>n) << 3;
  const bRow = (<usize>BS) << 3;
  const negInv = scratch;
  const below = scratch + <usize>BS * bRow;
  for (let jb = 0; jb < n; jb += BS) {
    const panel = a + <usize>jb * row;
    for (let kc = 0; kc < jb; kc += KC) {
      const kl = min(KC, jb - kc);
      const left = panel + ((<usize>kc) << 3);
      gemmNTSub(panel + ((<usize>jb) << 3), n, left, n, left, n, n - jb, BS, kl);
    }
    // The diagonal block, column by column (dot products over the block's own columns).
    const col0 = (<usize>jb) << 3;
    for (let j = jb; j < jb + BS; j++) {
      const rj = a + <usize>j * row;
      const dj = rj + ((<usize>j) << 3);
      const d = load<f64>(dj) - dot(rj + col0, rj + col0, j - jb);
      if (!(d > 0) || !isFinite<f64>(d)) {
        pivotValue = d;
        return j;
      }
      const ljj = Math.sqrt(d);
      store<f64>(dj, ljj);
      const inv = 1 / ljj;
      for (let i = j + 1; i < jb + BS; i++) {
        const ri = a + <usize>i * row;
        const o = ri + ((<usize>j) << 3);
        store<f64>(o, (load<f64>(o) - dot(ri + col0, rj + col0, j - jb)) * inv);
      }
    }
    const m = n - jb - BS;
    if (m === 0) break;
    // -L_JJ^-1 (lower, zeros above) by substitution: Y[i][i] = 1 / L_ii, Y[i][j] = -(sum_{p=j}^{i-1} L_ip Y_pj) / L_ii.
    memory.fill(negInv, 0, <usize>BS * bRow);
    for (let i = 0; i < BS; i++) {
      const li = a + <usize>(jb + i) * row + col0;
      const lii = load<f64>(li + ((<usize>i) << 3));
      const yi = negInv + <usize>i * bRow;
      store<f64>(yi + ((<usize>i) << 3), 1 / lii);
      for (let j = 0; j < i; j++) {
        let s: f64 = 0;
        for (let p = j; p < i; p++) s += load<f64>(li + ((<usize>p) << 3)) * load<f64>(negInv + <usize>p * bRow + ((<usize>j) << 3));
        store<f64>(yi + ((<usize>j) << 3), -s / lii);
      }
    }
    for (let e: usize = 0; e < (<usize>BS) * bRow; e += 8) store<f64>(negInv + e, -load<f64>(negInv + e));
    // Rows below: C moved to `below`, then X = 0 - C (-L_JJ^-1)^T = C L_JJ^-T.
    const target = a + <usize>(jb + BS) * row + col0;
    for (let i = 0; i < m; i++) {
      const src = target + <usize>i * row;
      memory.copy(below + <usize>i * bRow, src, bRow);
      memory.fill(src, 0, bRow);
    }
    gemmNTSub(target, n, below, BS, negInv, BS, m, BS, BS);
  }
  return -1;
}

/**
 * X = L^-1 for the lower triangular n x n L at `l` (n a multiple of BS; its upper triangle is not read).
 * `x` (n x n) must be zero on entry; `t` is BS x BS scratch. By block rows I: the diagonal block inverted
 * by substitution, then for each J < I: T = L[I, J..I-1] X[J..I-1, J] (in KC chunks) and X[I, J] = -X[I, I] T.
 */
export function lowerInverse(l: usize, x: usize, t: usize, n: i32): void {
  const row = (<usize>n) << 3;
  const tRow = (<usize>BS) << 3;
  for (let ib = 0; ib < n; ib += BS) {
    for (let i = ib; i < ib + BS; i++) {
      const li = l + <usize>i * row;
      const xi = x + <usize>i * row;
      const lii = load<f64>(li + ((<usize>i) << 3));
      store<f64>(xi + ((<usize>i) << 3), 1 / lii);
      for (let j = ib; j < i; j++) {
        let s: f64 = 0;
        for (let p = j; p < i; p++) s += load<f64>(li + ((<usize>p) << 3)) * load<f64>(x + <usize>p * row + ((<usize>j) << 3));
        store<f64>(xi + ((<usize>j) << 3), -s / lii);
      }
    }
    const xii = x + <usize>ib * row + ((<usize>ib) << 3);
    for (let jb = 0; jb < ib; jb += BS) {
      memory.fill(t, 0, <usize>BS * tRow);
      // T -= L[I, P] X[P, J] over P = jb..ib-1: T = -(L X).
      for (let kc = jb; kc < ib; kc += KC) {
        const kl = min(KC, ib - kc);
        gemmNNSub(t, BS, l + <usize>ib * row + ((<usize>kc) << 3), n, x + <usize>kc * row + ((<usize>jb) << 3), n, BS, BS, kl);
      }
      // X[I, J] = -X[I, I] (L X): T negated to L X, and X[I, J] (zero) minus X[I, I] T.
      for (let e: usize = 0; e < (<usize>BS) * tRow; e += 8) store<f64>(t + e, -load<f64>(t + e));
      gemmNNSub(x + <usize>ib * row + ((<usize>jb) << 3), n, xii, n, t, BS, BS, BS, BS);
    }
  }
}
