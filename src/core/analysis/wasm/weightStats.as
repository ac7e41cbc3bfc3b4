// Weight statistics kernels (src/core/analysis/weightStats.ts), AssemblyScript compiled to WebAssembly with
// 128-bit SIMD by build.ts. The caller (wasm/statsKernels.ts) places f32 rows and the outputs at or above
// heapBase(); pointers are byte addresses.
//
// Rounding: the moments are IEEE float64 sums, summed in two lanes (even / odd values of each 4): for rows
// whose |mean| <= std / 4, power sums of x turned into central sums (a few float64 ulps of cancellation at
// most); for the others the same terms as momentsOf (d = x - mean, d2 = d * d, d2 * d, d2 * d2). They agree
// with momentsOf to float64 rounding, not bit for bit. The histogram bins and the outlier test are the f32
// rules of weightStats.ts, exactly: f32 subtraction and multiplication (IEEE, no fused multiply-add in
// WebAssembly), floor, then clamp; |f32(x - center)| > threshold.

/** float64 slots per row in rowMoments' output: count, mean, m2, m3, m4, min, max, absMax, nanCount, infCount. */
const ROW_SLOTS: usize = 10;
/** Log-histogram table: one slot per (exponent, top two mantissa bits) of |x|, folded by the caller. */
const LOG_TABLE: i32 = 1024;

/** First byte the caller may use. */
export function heapBase(): usize {
  return __heap_base;
}

@inline function hsum(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

@inline function isFiniteF32(x: f32): bool {
  return (reinterpret<u32>(x) & 0x7fffffff) < 0x7f800000;
}

/**
 * The stored values: f32 (T = f32), or BF16 (T = u16: the top half of an f32, widened exactly as u16 << 16 when
 * loaded, so the kernels read a BF16 file's rows as stored, half the bytes, with no widening pass).
 */
@inline function load4<T>(row: usize, i: i32): v128 {
  if (sizeof<T>() == 2) {
    return i32x4.shl(v128.load16x4_u(row + ((<usize>i) << 1)), 16);
  }
  return v128.load(row + ((<usize>i) << 2));
}

@inline function load1<T>(row: usize, i: i32): f32 {
  if (sizeof<T>() == 2) return reinterpret<f32>(<u32>load<u16>(row + ((<usize>i) << 1)) << 16);
  return load<f32>(row + ((<usize>i) << 2));
}

/** rowMomentsOf over f32 rows. */
export function rowMoments(src: usize, rows: i32, rowLength: i32, out: usize): void {
  rowMomentsOf<f32>(src, rows, rowLength, out);
}

/** rowMomentsOf over BF16 rows (2 bytes per value). */
export function rowMomentsBf16(src: usize, rows: i32, rowLength: i32, out: usize): void {
  rowMomentsOf<u16>(src, rows, rowLength, out);
}

/** The least of a f32x4's lanes (and lanesMax the largest). */
@inline function lanesMin(v: v128): f32 {
  return min(min(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), min(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

@inline function lanesMax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

/**
 * Moments of each row of a row-major [rows, rowLength] block of T (load4 / load1): the finite values' count, mean, min, max and
 * absMax, and the central sums m2, m3, m4 around the row mean. NaN and +-Inf are counted and left out.
 *
 * One pass first, as if every value were finite: min, max (absMax is the larger of -min and max) and the float64
 * power sums S1..S4 of x (a NaN or Inf shows as a S2 that is not finite). A row whose mean is small beside its spread
 * (16 mean^2 <= m2 / n, so |mean| <= std / 4: weight rows nearly always) takes its central sums from them,
 * m2 = S2 - S1 mean, m3 = S3 - 3 mean S2 + 2 mean^2 S1, m4 = S4 - 4 mean S3 + 6 mean^2 S2 - 3 mean^3 S1, which
 * then lose at most a few float64 ulps to cancellation; any other row is done again as momentsOf does (the
 * row is in cache): d = x - mean, then the sums of d^2, d^3, d^4, with masks when it held NaN or Inf.
 */
function rowMomentsOf<T>(src: usize, rows: i32, rowLength: i32, out: usize): void {
  const vecEnd: i32 = rowLength & ~3;
  const rowBytes: usize = <usize>rowLength * sizeof<T>();
  const finiteLimit = i32x4.splat(0x7f800000);
  const absMask = i32x4.splat(0x7fffffff);
  const posInf = f32x4.splat(Infinity);
  const negInf = f32x4.splat(-Infinity);
  const zero = f32x4.splat(0);
  for (let r = 0; r < rows; r++) {
    const row = src + <usize>r * rowBytes;
    let vmin = posInf;
    let vmax = negInf;
    // One accumulator per sum (values 0, 1 of each 4 added to values 2, 3 first): few enough live registers.
    let s1v = f64x2.splat(0);
    let s2v = f64x2.splat(0);
    let s3v = f64x2.splat(0);
    let s4v = f64x2.splat(0);
    for (let i = 0; i < vecEnd; i += 4) {
      const x = load4<T>(row, i);
      // pmin / pmax are one instruction each; their results are used only when no NaN or Inf reached them.
      vmin = f32x4.pmin(vmin, x);
      vmax = f32x4.pmax(vmax, x);
      const a = f64x2.promote_low_f32x4(x);
      const b = f64x2.promote_low_f32x4(i32x4.shuffle(x, x, 2, 3, 2, 3));
      const a2 = f64x2.mul(a, a);
      const b2 = f64x2.mul(b, b);
      s1v = f64x2.add(s1v, f64x2.add(a, b));
      s2v = f64x2.add(s2v, f64x2.add(a2, b2));
      s3v = f64x2.add(s3v, f64x2.add(f64x2.mul(a2, a), f64x2.mul(b2, b)));
      s4v = f64x2.add(s4v, f64x2.add(f64x2.mul(a2, a2), f64x2.mul(b2, b2)));
    }
    let n: i32 = vecEnd;
    let sum: f64 = hsum(s1v);
    let s2: f64 = hsum(s2v);
    let s3: f64 = hsum(s3v);
    let s4: f64 = hsum(s4v);
    let mn: f32 = lanesMin(vmin);
    let mx: f32 = lanesMax(vmax);
    let am: f32 = vecEnd > 0 ? max(-mn, mx) : 0;
    // The sum of finite values' float64 squares is finite (each is below 2^256); a NaN or Inf makes it NaN or Inf.
    if (!isFinite(s2)) {
      // A NaN or Inf in the vector part: count, sum, min, max and absMax again with masks.
      let count = i32x4.splat(0);
      let sumLo = f64x2.splat(0);
      let sumHi = f64x2.splat(0);
      vmin = posInf;
      vmax = negInf;
      let vabs = zero;
      for (let i = 0; i < vecEnd; i += 4) {
        const x = load4<T>(row, i);
        const finite = i32x4.lt_s(v128.and(x, absMask), finiteLimit);
        count = i32x4.sub(count, finite);
        const xz = v128.and(x, finite);
        vmin = f32x4.pmin(vmin, v128.bitselect(x, posInf, finite));
        vmax = f32x4.pmax(vmax, v128.bitselect(x, negInf, finite));
        vabs = f32x4.pmax(vabs, f32x4.abs(xz));
        sumLo = f64x2.add(sumLo, f64x2.promote_low_f32x4(xz));
        sumHi = f64x2.add(sumHi, f64x2.promote_low_f32x4(i32x4.shuffle(xz, xz, 2, 3, 2, 3)));
      }
      n = i32x4.extract_lane(count, 0) + i32x4.extract_lane(count, 1) + i32x4.extract_lane(count, 2) + i32x4.extract_lane(count, 3);
      sum = hsum(sumLo) + hsum(sumHi);
      mn = lanesMin(vmin);
      mx = lanesMax(vmax);
      am = lanesMax(vabs);
    }
    for (let i = vecEnd; i < rowLength; i++) {
      const x = load1<T>(row, i);
      if (!isFiniteF32(x)) continue;
      n++;
      const xd = <f64>x;
      const x2 = xd * xd;
      sum += xd;
      s2 += x2;
      s3 += x2 * xd;
      s4 += x2 * x2;
      mn = min(mn, x);
      mx = max(mx, x);
      am = max(am, abs(x));
    }
    let nan: i32 = 0;
    let inf: i32 = 0;
    if (n < rowLength) {
      for (let i = 0; i < rowLength; i++) {
        const bits = reinterpret<u32>(load1<T>(row, i)) & 0x7fffffff;
        if (bits > 0x7f800000) nan++;
        else if (bits == 0x7f800000) inf++;
      }
    }
    const o = out + <usize>r * (ROW_SLOTS << 3);
    let mean: f64 = 0;
    let m2: f64 = 0;
    let m3: f64 = 0;
    let m4: f64 = 0;
    if (n > 0) {
      mean = sum / <f64>n;
      const mean2 = mean * mean;
      m2 = s2 - sum * mean;
      if (n == rowLength && 16 * mean2 * <f64>n <= m2) {
        m3 = s3 - 3 * mean * s2 + 2 * mean2 * sum;
        m4 = s4 - 4 * mean * s3 + 6 * mean2 * s2 - 3 * mean2 * mean * sum;
      } else if (n == rowLength) {
        const meanV = f64x2.splat(mean);
        let a2 = f64x2.splat(0);
        let a3 = f64x2.splat(0);
        let a4 = f64x2.splat(0);
        let b2 = f64x2.splat(0);
        let b3 = f64x2.splat(0);
        let b4 = f64x2.splat(0);
        for (let i = 0; i < vecEnd; i += 4) {
          const x = load4<T>(row, i);
          const dl = f64x2.sub(f64x2.promote_low_f32x4(x), meanV);
          const dh = f64x2.sub(f64x2.promote_low_f32x4(i32x4.shuffle(x, x, 2, 3, 2, 3)), meanV);
          const dl2 = f64x2.mul(dl, dl);
          const dh2 = f64x2.mul(dh, dh);
          a2 = f64x2.add(a2, dl2);
          b2 = f64x2.add(b2, dh2);
          a3 = f64x2.add(a3, f64x2.mul(dl2, dl));
          b3 = f64x2.add(b3, f64x2.mul(dh2, dh));
          a4 = f64x2.add(a4, f64x2.mul(dl2, dl2));
          b4 = f64x2.add(b4, f64x2.mul(dh2, dh2));
        }
        m2 = hsum(a2) + hsum(b2);
        m3 = hsum(a3) + hsum(b3);
        m4 = hsum(a4) + hsum(b4);
        for (let i = vecEnd; i < rowLength; i++) {
          const d = <f64>load1<T>(row, i) - mean;
          const d2 = d * d;
          m2 += d2;
          m3 += d2 * d;
          m4 += d2 * d2;
        }
      } else {
        m2 = 0;
        for (let i = 0; i < rowLength; i++) {
          const x = load1<T>(row, i);
          if (!isFiniteF32(x)) continue;
          const d = <f64>x - mean;
          const d2 = d * d;
          m2 += d2;
          m3 += d2 * d;
          m4 += d2 * d2;
        }
      }
    }
    store<f64>(o, <f64>n);
    store<f64>(o + 8, mean);
    store<f64>(o + 16, m2);
    store<f64>(o + 24, m3);
    store<f64>(o + 32, m4);
    store<f64>(o + 40, n > 0 ? <f64>mn : Infinity);
    store<f64>(o + 48, n > 0 ? <f64>mx : -Infinity);
    store<f64>(o + 56, <f64>am);
    store<f64>(o + 64, <f64>nan);
    store<f64>(o + 72, <f64>inf);
  }
}

/** u32 slots before a lane's log table in pass 2's tables: the fixed histogram (bins <= 256) and its skip slot. */
const FIXED_SLOTS: i32 = 260;
/**
 * The clean pass's one table per lane (instead of the fixed and log tables): slot fixedBin + 1024 + rank, where
 * rank = (the f32 bits made order-preserving as a signed integer) >> 21, -1024..1023: sign, exponent and two
 * mantissa bits, the log table's slot of |x| mirrored for negative x. fixedBin and rank are both non-decreasing
 * in x, so their sum strictly increases from one (fixedBin, rank) pair that occurs to the next: a slot belongs to
 * one pair, which the caller finds from the bins' edges (statsKernels.ts foldJoint). One increment per value.
 */
const JOINT_SLOTS: i32 = 2048 + FIXED_SLOTS;
/** Bytes of one lane's tables: FIXED_SLOTS fixed-histogram slots, then LOG_TABLE log slots; or JOINT_SLOTS. */
const LANE_TABLE_BYTES: usize = <usize>max(FIXED_SLOTS + LOG_TABLE, JOINT_SLOTS) << 2;

/** Bytes of pass 2's tables (4 lanes), for the caller. */
export function secondPassTableBytes(): usize {
  return LANE_TABLE_BYTES << 2;
}

/** One increment per lane in that lane's table (idx are byte offsets). */
@inline function bump4(t0: usize, t1: usize, t2: usize, t3: usize, idx: v128): void {
  let p: usize = t0 + <usize>i32x4.extract_lane(idx, 0);
  store<u32>(p, load<u32>(p) + 1);
  p = t1 + <usize>i32x4.extract_lane(idx, 1);
  store<u32>(p, load<u32>(p) + 1);
  p = t2 + <usize>i32x4.extract_lane(idx, 2);
  store<u32>(p, load<u32>(p) + 1);
  p = t3 + <usize>i32x4.extract_lane(idx, 3);
  store<u32>(p, load<u32>(p) + 1);
}

/**
 * Pass 2 over whole rows: both histograms and the outlier counts.
 *   tables: 4 lanes' tables (one per SIMD lane, so consecutive increments do not wait on each other), each
 *           FIXED_SLOTS u32 of the fixed histogram, where slot `bins` takes the values the reference skips
 *           (non-finite, and a NaN bin from an infinite scale), then LOG_TABLE u32 indexed by the top bits of |x|
 *           (exponent, two mantissa bits), which the caller folds into the spec's octaves (non-finite values
 *           land in slots >= 1020, which it ignores);
 *   rowOut[r] and colOut[c] (u32) count the finite values with |f32(x - center)| > threshold.
 * `clean` (1) promises that every value is finite and `scale` too: then no value is skipped and no mask is needed
 * (an infinite x - lo times a finite positive scale clamps to the last bin, as in the reference), and both
 * histograms go to one table per lane (JOINT_SLOTS) with one increment per value.
 */
function secondPassOf<T>(
  src: usize,
  rows: i32,
  rowLength: i32,
  lo: f32,
  scale: f32,
  bins: i32,
  threshold: f32,
  center: f32,
  tables: usize,
  rowOut: usize,
  colOut: usize,
  clean: i32,
): void {
  const vecEnd: i32 = rowLength & ~3;
  const rowBytes: usize = <usize>rowLength * sizeof<T>();
  const finiteLimit = i32x4.splat(0x7f800000);
  const absMask = i32x4.splat(0x7fffffff);
  const loV = f32x4.splat(lo);
  const scaleV = f32x4.splat(scale);
  const centerV = f32x4.splat(center);
  const thresholdV = f32x4.splat(threshold);
  const lastBin = f32x4.splat(<f32>(bins - 1));
  const trash = i32x4.splat(bins << 2);
  const zeroF = f32x4.splat(0);
  // An integer 0 <= t < 2^23 plus 2^23 is 0x4b000000 + t in f32 bits: a cheaper conversion than trunc_sat.
  const magic = f32x4.splat(8388608);
  const magicBits = i32x4.splat(0x4b000000);
  const logOffset = i32x4.splat(FIXED_SLOTS << 2);
  const jointBias = i32x4.splat(1024 - 0x4b000000);
  const t0 = tables;
  const t1 = t0 + LANE_TABLE_BYTES;
  const t2 = t1 + LANE_TABLE_BYTES;
  const t3 = t2 + LANE_TABLE_BYTES;
  for (let r = 0; r < rows; r++) {
    const row = src + <usize>r * rowBytes;
    let rowCount = i32x4.splat(0);
    if (clean) {
      for (let i = 0; i < vecEnd; i += 4) {
        const x = load4<T>(row, i);
        const t = f32x4.floor(f32x4.mul(f32x4.sub(x, loV), scaleV));
        const clamped = f32x4.pmax(zeroF, f32x4.pmin(lastBin, t));
        // bits of (clamped + 2^23) = 0x4b000000 + bin; jointBias takes the 0x4b000000 off and adds 1024.
        const rank = i32x4.shr_s(v128.xor(x, v128.and(i32x4.shr_s(x, 31), absMask)), 21);
        const joint = i32x4.shl(i32x4.add(i32x4.add(f32x4.add(clamped, magic), rank), jointBias), 2);
        const outlier = f32x4.gt(f32x4.abs(f32x4.sub(x, centerV)), thresholdV);
        rowCount = i32x4.sub(rowCount, outlier);
        const colPtr = colOut + ((<usize>i) << 2);
        v128.store(colPtr, i32x4.sub(v128.load(colPtr), outlier));
        bump4(t0, t1, t2, t3, joint);
      }
    } else for (let i = 0; i < vecEnd; i += 4) {
      const x = load4<T>(row, i);
      const ax = v128.and(x, absMask);
      const finite = i32x4.lt_s(ax, finiteLimit);
      const t = f32x4.floor(f32x4.mul(f32x4.sub(x, loV), scaleV));
      const skip = v128.or(v128.not(finite), f32x4.ne(t, t));
      // clamp to [0, bins - 1] as the reference's max(0, min(bins - 1, t)); a NaN t is in `skip`.
      const clamped = f32x4.pmax(zeroF, f32x4.pmin(lastBin, t));
      const binBytes = i32x4.shl(i32x4.sub(f32x4.add(clamped, magic), magicBits), 2);
      const bin = v128.bitselect(trash, binBytes, skip);
      const logIdx = i32x4.add(i32x4.shl(i32x4.shr_u(ax, 21), 2), logOffset);
      const outlier = v128.and(f32x4.gt(f32x4.abs(f32x4.sub(x, centerV)), thresholdV), finite);
      rowCount = i32x4.sub(rowCount, outlier);
      const colPtr = colOut + ((<usize>i) << 2);
      v128.store(colPtr, i32x4.sub(v128.load(colPtr), outlier));
      bump4(t0, t1, t2, t3, bin);
      bump4(t0, t1, t2, t3, logIdx);
    }
    let rowOutliers: u32 = <u32>(i32x4.extract_lane(rowCount, 0) + i32x4.extract_lane(rowCount, 1) + i32x4.extract_lane(rowCount, 2) + i32x4.extract_lane(rowCount, 3));
    if (clean) for (let i = vecEnd; i < rowLength; i++) {
      const x = load1<T>(row, i);
      const bits = reinterpret<i32>(x);
      const rank = (bits ^ ((bits >> 31) & 0x7fffffff)) >> 21;
      const bin = <i32>max<f32>(0, min<f32>(<f32>(bins - 1), floor((x - lo) * scale)));
      const jp = t0 + ((<usize>(bin + 1024 + rank)) << 2);
      store<u32>(jp, load<u32>(jp) + 1);
      if (abs(x - center) > threshold) {
        rowOutliers++;
        const cp = colOut + ((<usize>i) << 2);
        store<u32>(cp, load<u32>(cp) + 1);
      }
    } else for (let i = vecEnd; i < rowLength; i++) {
      const x = load1<T>(row, i);
      const ax = reinterpret<u32>(x) & 0x7fffffff;
      const lp = t0 + ((<usize>(FIXED_SLOTS + (ax >> 21))) << 2);
      store<u32>(lp, load<u32>(lp) + 1);
      if (ax >= 0x7f800000) continue;
      const t = floor((x - lo) * scale);
      let bin: i32 = bins;
      if (t == t) bin = <i32>max<f32>(0, min<f32>(<f32>(bins - 1), t));
      const fp = t0 + ((<usize>bin) << 2);
      store<u32>(fp, load<u32>(fp) + 1);
      if (abs(x - center) > threshold) {
        rowOutliers++;
        const cp = colOut + ((<usize>i) << 2);
        store<u32>(cp, load<u32>(cp) + 1);
      }
    }
    const rp = rowOut + ((<usize>r) << 2);
    store<u32>(rp, load<u32>(rp) + rowOutliers);
  }
}

/** secondPassOf over f32 rows. */
export function secondPass(src: usize, rows: i32, rowLength: i32, lo: f32, scale: f32, bins: i32, threshold: f32, center: f32, tables: usize, rowOut: usize, colOut: usize, clean: i32): void {
  secondPassOf<f32>(src, rows, rowLength, lo, scale, bins, threshold, center, tables, rowOut, colOut, clean);
}

/** secondPassOf over BF16 rows (2 bytes per value). */
export function secondPassBf16(src: usize, rows: i32, rowLength: i32, lo: f32, scale: f32, bins: i32, threshold: f32, center: f32, tables: usize, rowOut: usize, colOut: usize, clean: i32): void {
  secondPassOf<u16>(src, rows, rowLength, lo, scale, bins, threshold, center, tables, rowOut, colOut, clean);
}
