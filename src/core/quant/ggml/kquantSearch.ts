/**
 * The scale searches shared by the K-quants (ggml-quants.c): make_qkx2_quants (Q2_K, Q4_K, Q5_K),
 * make_q3_quants (Q3_K) and make_qx_quants (Q6_K). Every float operation of the C code is rounded to
 * f32 with fround in the same order; `nearest_int` rounds ties to even.
 */
import { GROUP_MAX_EPS as GROUP_MAX_EPSImport, nearestInt as nearestIntImport } from './rounding';
const fround = Math.fround;
// Imported functions are bound to locals once: under a CommonJS transform (tsx) every use of an
// imported name would otherwise go through an export getter, which costs more than the work in these loops.
const GROUP_MAX_EPS = GROUP_MAX_EPSImport;
const nearestInt = nearestIntImport;

/** Second result of makeQkx2Quants (C's `*the_min`), to stay allocation-free. */
export const qkx2Out = { theMin: 0 };

/**
 * make_qkx2_quants: asymmetric scale + min search for one group of n values at x[xo..xo+n).
 * Writes L[lo..lo+n) in 0..nmax, returns the scale and sets qkx2Out.theMin (= -min, >= 0).
 */
/** x - min for the current group (recomputed when min changes), as f32. */
const shifted = new Float32Array(256);

export function makeQkx2Quants(
  n: number,
  nmax: number,
  x: Float32Array,
  xo: number,
  weights: Float32Array,
  L: Uint8Array,
  lo: number,
  Laux: Uint8Array,
  rmin: number,
  rdelta: number,
  nstep: number,
  useMad: boolean,
): number {
  let min = x[xo]!;
  let max = x[xo]!;
  let sumW = weights[0]!;
  let sumX = fround(sumW * x[xo]!);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i]!;
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    const w = weights[i]!;
    sumW = fround(sumW + w);
    sumX = fround(sumX + fround(w * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    qkx2Out.theMin = -min;
    return 0;
  }
  for (let i = 0; i < n; i++) shifted[i] = x[xo + i]! - min;
  let iscale = fround(nmax / fround(max - min));
  let scale = fround(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = nearestInt(fround(iscale * shifted[i]!));
    const lc = l < 0 ? 0 : l > nmax ? nmax : l;
    L[lo + i] = lc;
    let diff = fround(fround(fround(scale * lc) + min) - x[xo + i]!);
    diff = useMad ? Math.abs(diff) : fround(diff * diff);
    bestError = fround(bestError + fround(weights[i]! * diff));
  }
  if (nstep < 1) {
    qkx2Out.theMin = -min;
    return scale;
  }
  for (let is = 0; is <= nstep; is++) {
    // `min` is updated when a step wins, and later steps use the new max - min (as C does)
    iscale = fround(fround(fround(rmin + fround(rdelta * is)) + nmax) / fround(max - min));
    // `changed` collects differences without a branch per value (level changes are random: mispredicted)
    let changed = is === 0 ? 1 : 0;
    for (let i = 0; i < n; i++) {
      const l0 = nearestInt(fround(iscale * shifted[i]!));
      const l = l0 < 0 ? 0 : l0 > nmax ? nmax : l0;
      changed |= l ^ Laux[i]!;
      Laux[i] = l;
    }
    // Same levels as the previous step: same sums, same error, which cannot beat the best error that
    // step left (best_error <= its error), so C would change nothing either. Skipping is exact.
    if (changed === 0) continue;
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Laux[i]!;
      const wl = fround(weights[i]! * l);
      sumL = fround(sumL + wl);
      sumL2 = fround(sumL2 + fround(wl * l));
      sumXL = fround(sumXL + fround(wl * x[xo + i]!));
    }
    const D = fround(fround(sumW * sumL2) - fround(sumL * sumL));
    if (D > 0) {
      let thisScale = fround(fround(fround(sumW * sumXL) - fround(sumX * sumL)) / D);
      let thisMin = fround(fround(fround(sumL2 * sumX) - fround(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fround(sumXL / sumL2);
      }
      // Every term is >= 0 and f32 rounding is monotone, so the partial sum never decreases: once it
      // reaches bestError the full sum cannot win (C's `cur_error < best_error` fails). Stopping is exact.
      let curError = 0;
      for (let i = 0; i < n && curError < bestError; i++) {
        let diff = fround(fround(fround(thisScale * Laux[i]!) + thisMin) - x[xo + i]!);
        diff = useMad ? Math.abs(diff) : fround(diff * diff);
        curError = fround(curError + fround(weights[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        if (thisMin !== min) {
          min = thisMin;
          for (let i = 0; i < n; i++) shifted[i] = x[xo + i]! - min;
        }
      }
    }
  }
  qkx2Out.theMin = -min;
  return scale;
}

/**
 * make_q3_quants(n, nmax, x, L, do_rmse = true): symmetric search with up to 5 passes of
 * coordinate descent on the weighted (w = x^2) error. Writes L[lo..lo+n) in 0..2*nmax-1.
 */
export function makeQ3Quants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  const iscale = fround(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    let l = nearestInt(fround(iscale * xi));
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[lo + i] = l;
    const w = fround(xi * xi);
    sumlx = fround(sumlx + fround(fround(w * xi) * l));
    suml2 = fround(suml2 + fround(fround(w * l) * l));
  }
  for (let itry = 0; itry < 5; itry++) {
    let nChanged = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      const w = fround(xi * xi);
      const li = L[lo + i]!;
      let slx = fround(sumlx - fround(fround(w * xi) * li));
      if (slx > 0) {
        let sl2 = fround(suml2 - fround(fround(w * li) * li));
        let newL = nearestInt(fround(fround(xi * sl2) / slx));
        newL = newL < -nmax ? -nmax : newL > nmax - 1 ? nmax - 1 : newL;
        if (newL !== li) {
          slx = fround(slx + fround(fround(w * xi) * newL));
          sl2 = fround(sl2 + fround(fround(w * newL) * newL));
          if (sl2 > 0 && fround(fround(slx * slx) * suml2) > fround(fround(sumlx * sumlx) * sl2)) {
            L[lo + i] = newL;
            sumlx = slx;
            suml2 = sl2;
            nChanged++;
          }
        }
      }
    }
    if (nChanged === 0) break;
  }
  for (let i = 0; i < n; i++) L[lo + i] = L[lo + i]! + nmax;
  return suml2 > 0 ? fround(sumlx / suml2) : 0;
}

/**
 * make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL): symmetric scale, weights w = x^2,
 * tries iscale = -(nmax + 0.1*is)/max for is in -9..9. Writes L[lo..lo+n) in 0..2*nmax-1.
 */
export function makeQxQuantsRmse1(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    for (let i = 0; i < n; i++) L[lo + i] = 0;
    return 0;
  }
  // w = x*x (rmse_type 1) and w*x, each rounded to f32 as C computes them inside its loops
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i]!;
    const w = fround(xi * xi);
    qxW[i] = w;
    qxWx[i] = fround(w * xi);
  }
  const iscale = fround(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    let l = nearestInt(fround(iscale * x[xo + i]!));
    l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
    L[lo + i] = l + nmax;
    qxLevels[i] = l;
    sumlx = fround(sumlx + fround(qxWx[i]! * l));
    suml2 = fround(suml2 + fround(fround(qxW[i]! * l) * l));
  }
  let scale = suml2 !== 0 ? fround(sumlx / suml2) : 0;
  let best = fround(scale * sumlx);
  // The 18 candidates is = -9..-1, 1..9 go in pairs (a, b) so that one loop runs the four f32 sums of
  // both: independent dependency chains overlap, where one candidate's two chains wait on each other's
  // rounding latency. The selection tests still run in C's order, a then b.
  let prev = qxLevels;
  let next = qxLevelsB;
  for (let k = 0; k < QX_CANDIDATES.length; k += 2) {
    const iscaleA = fround(-fround(nmax + fround(Math.fround(0.1) * QX_CANDIDATES[k]!)) / max);
    const iscaleB = fround(-fround(nmax + fround(Math.fround(0.1) * QX_CANDIDATES[k + 1]!)) / max);
    // a's levels overwrite `prev` (the previous candidate's), b's go to `next`
    let changed = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i]!;
      let la = nearestInt(fround(iscaleA * xi));
      la = la < -nmax ? -nmax : la > nmax - 1 ? nmax - 1 : la;
      let lb = nearestInt(fround(iscaleB * xi));
      lb = lb < -nmax ? -nmax : lb > nmax - 1 ? nmax - 1 : lb;
      changed |= (la ^ prev[i]!) | (lb ^ la);
      prev[i] = la;
      next[i] = lb;
    }
    const a = prev;
    prev = next;
    next = a;
    // Same levels as the candidate before give the same sums, so its test either fails again or
    // re-selects identical L, scale and best: skipping (or re-testing) is exact.
    if (changed === 0) continue;
    let lxA = 0;
    let l2A = 0;
    let lxB = 0;
    let l2B = 0;
    for (let i = 0; i < n; i++) {
      const la = a[i]!;
      const lb = prev[i]!;
      const w = qxW[i]!;
      const wx = qxWx[i]!;
      lxA = fround(lxA + fround(wx * la));
      l2A = fround(l2A + fround(fround(w * la) * la));
      lxB = fround(lxB + fround(wx * lb));
      l2B = fround(l2B + fround(fround(w * lb) * lb));
    }
    if (l2A > 0 && fround(lxA * lxA) > fround(best * l2A)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + a[i]!;
      scale = fround(lxA / l2A);
      best = fround(scale * lxA);
    }
    if (l2B > 0 && fround(lxB * lxB) > fround(best * l2B)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + prev[i]!;
      scale = fround(lxB / l2B);
      best = fround(scale * lxB);
    }
  }
  return scale;
}

/** make_qx_quants' candidates, in C's order. */
const QX_CANDIDATES = new Int32Array([-9, -8, -7, -6, -5, -4, -3, -2, -1, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
const qxLevelsB = new Int32Array(256);
const qxW = new Float32Array(256);
const qxWx = new Float32Array(256);
const qxLevels = new Int32Array(256);

/** get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K / Q5_K block's 12 scale bytes at q[o..o+12). */
export const scaleMinOut = { sc: 0, m: 0 };
export function getScaleMinK4(j: number, q: Uint8Array, o: number): void {
  if (j < 4) {
    scaleMinOut.sc = q[o + j]! & 63;
    scaleMinOut.m = q[o + j + 4]! & 63;
  } else {
    scaleMinOut.sc = (q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >>> 6) << 4);
    scaleMinOut.m = (q[o + j + 4]! >>> 4) | ((q[o + j]! >>> 6) << 4);
  }
}
