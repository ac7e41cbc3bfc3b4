/**
 * Dense float64 linear algebra for the calibrated methods (GPTQ's Hessian work).
 * Matrices are row-major `Float64Array`s of n*n; float64 because the Cholesky of an
 * ill-conditioned Hessian loses too much in float32 (the reference implementations
 * run it in float32 on GPU, which is why they need damping at all).
 */
import { NumericError } from '../errors';
import { upperCholeskyOfInverseWasm } from './wasm/denseF64';

/** Result of a Cholesky attempt: the factor, or the first pivot that was not positive. */
export type CholeskyOutcome = { ok: true; factor: Float64Array } | { ok: false; failedPivot: number; pivotValue: number };

/**
 * Lower Cholesky factor L with A = L L^T (A symmetric; only its lower triangle is read).
 * Does not throw: a non-positive pivot is reported so that callers can add damping and retry.
 */
export function tryCholeskyLower(a: Float64Array, n: number): CholeskyOutcome {
  if (a.length !== n * n) throw new NumericError(`Cholesky: matrix has ${a.length} values, expected ${n}x${n}`);
  const l = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const rowJ = j * n;
    let diag = a[rowJ + j] ?? 0;
    for (let k = 0; k < j; k++) {
      const v = l[rowJ + k] ?? 0;
      diag -= v * v;
    }
    if (!(diag > 0) || !Number.isFinite(diag)) return { ok: false, failedPivot: j, pivotValue: diag };
    const ljj = Math.sqrt(diag);
    l[rowJ + j] = ljj;
    const inv = 1 / ljj;
    for (let i = j + 1; i < n; i++) {
      const rowI = i * n;
      let s = a[rowI + j] ?? 0;
      for (let k = 0; k < j; k++) s -= (l[rowI + k] ?? 0) * (l[rowJ + k] ?? 0);
      l[rowI + j] = s * inv;
    }
  }
  return { ok: true, factor: l };
}

/** Lower Cholesky factor; throws NumericError naming the pivot when A is not positive definite. */
export function choleskyLower(a: Float64Array, n: number): Float64Array {
  const r = tryCholeskyLower(a, n);
  if (!r.ok) throw new NumericError(`matrix is not positive definite (pivot ${r.failedPivot} = ${r.pivotValue})`);
  return r.factor;
}

/** Upper Cholesky factor U with A = U^T U (the transpose of the lower factor). */
export function choleskyUpper(a: Float64Array, n: number): Float64Array {
  return transposeSquare(choleskyLower(a, n), n);
}

/** A^-1 from the lower Cholesky factor L of A (what torch.cholesky_inverse computes). */
export function choleskyInverse(l: Float64Array, n: number): Float64Array {
  // Invert L (lower triangular) by forward substitution, then A^-1 = L^-T L^-1.
  const linv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const lii = l[i * n + i] ?? 0;
    linv[i * n + i] = 1 / lii;
    for (let j = 0; j < i; j++) {
      let s = 0;
      for (let k = j; k < i; k++) s += (l[i * n + k] ?? 0) * (linv[k * n + j] ?? 0);
      linv[i * n + j] = -s / lii;
    }
  }
  const inv = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) {
      // (L^-T L^-1)[i][j] = sum_k Linv[k][i] * Linv[k][j], k >= max(i, j) = i.
      let s = 0;
      for (let k = i; k < n; k++) s += (linv[k * n + i] ?? 0) * (linv[k * n + j] ?? 0);
      inv[i * n + j] = s;
      inv[j * n + i] = s;
    }
  }
  return inv;
}

/**
 * What GPTQ calls Hinv: the upper Cholesky factor of H^-1
 * (`cholesky(cholesky_inverse(cholesky(H)), upper=True)` in the reference gptq.py).
 * Returns the failing pivot instead of throwing, so that the caller can increase damping.
 *
 * Runs the blocked f64x2 WebAssembly kernels (wasm/denseF64.ts: one Cholesky of the order-reversed H and
 * one triangular inverse, the same factor mathematically; ~15x the scalar path at width 1024), or the
 * scalar three steps below where WebAssembly is unavailable or the matrix does not fit its heap. The two
 * differ by float64 rounding (a few 1e-14 of the largest entry on tiny-llama's widths). The kernels factor
 * from the last column backwards: their failedPivot is the last column whose pivot was not positive.
 */
export function tryUpperCholeskyOfInverse(h: Float64Array, n: number): CholeskyOutcome {
  if (h.length !== n * n) throw new NumericError(`Cholesky: matrix has ${h.length} values, expected ${n}x${n}`);
  return upperCholeskyOfInverseWasm(h, n) ?? tryUpperCholeskyOfInverseScalar(h, n);
}

/** The scalar reference of tryUpperCholeskyOfInverse: Cholesky, inverse from the factor, Cholesky, as gptq.py. */
export function tryUpperCholeskyOfInverseScalar(h: Float64Array, n: number): CholeskyOutcome {
  const lower = tryCholeskyLower(h, n);
  if (!lower.ok) return lower;
  const inverse = choleskyInverse(lower.factor, n);
  const lowerOfInverse = tryCholeskyLower(inverse, n);
  if (!lowerOfInverse.ok) return lowerOfInverse;
  return { ok: true, factor: transposeSquare(lowerOfInverse.factor, n) };
}

export function transposeSquare(a: Float64Array, n: number): Float64Array {
  const t = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) t[j * n + i] = a[i * n + j] ?? 0;
  return t;
}

/** C = A B for row-major A (m x k) and B (k x n), float64. */
export function matmul(a: Float64Array, b: Float64Array, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let p = 0; p < k; p++) {
      const aip = a[i * k + p] ?? 0;
      if (aip === 0) continue;
      const bRow = p * n;
      const cRow = i * n;
      for (let j = 0; j < n; j++) c[cRow + j] = (c[cRow + j] ?? 0) + aip * (b[bRow + j] ?? 0);
    }
  }
  return c;
}
