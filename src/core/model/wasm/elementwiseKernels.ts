/**
 * Element-wise SIMD kernels of the forward pass (f32x4): SwiGLU and the causal softmax of attention,
 * both built on one vector exp. Generated as FunctionSpecs for wasm/assembler.ts; wasmMatmul.ts
 * instantiates them on its heap.
 *
 * exp(x), f32 (Cephes expf): x clamped to [-87, 88]; n = nearest(x * log2(e)); r = x - n*ln2 in two
 * steps (Cody-Waite, ln2 = 0.693359375 - 2.12194440e-4); e^r by its degree-7 Taylor-like minimax
 * polynomial 1 + r + r^2 * P(r); times 2^n built in the exponent bits. Within 2 ulp of the correctly
 * rounded f32 exp over the clamp range (tested against Math.exp).
 */
import { op, v, type FunctionSpec } from './assembler';

const LOG2E = Math.LOG2E;
const LN2_HI = 0.693359375;
const LN2_LO = -2.12194440e-4;
const EXP_POLY = [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];

/**
 * Code leaving exp(x) on the stack, for x in v128 local `xLocal`; `n` and `r` are v128 scratch
 * locals. Overwrites `xLocal` with the clamped x.
 */
function expInto(xLocal: number, n: number, r: number): number[] {
  const { get, set } = op;
  const poly: number[] = [...v.f32Const(EXP_POLY[0]!)];
  for (const c of EXP_POLY.slice(1)) poly.push(...get(r), ...v.f32Mul, ...v.f32Const(c), ...v.f32Add);
  return [
    // x = min(max(x, -87), 88)   (pmax(a, b) = a < b ? b : a)
    ...v.f32Const(-87), ...get(xLocal), ...v.f32Pmax, ...set(xLocal),
    ...v.f32Const(88), ...get(xLocal), ...v.f32Pmin, ...set(xLocal),
    ...get(xLocal), ...v.f32Const(LOG2E), ...v.f32Mul, ...v.f32Nearest, ...set(n),
    ...get(xLocal), ...get(n), ...v.f32Const(LN2_HI), ...v.f32Mul, ...v.f32Sub,
    ...get(n), ...v.f32Const(LN2_LO), ...v.f32Mul, ...v.f32Sub, ...set(r),
    // y = P(r) * r^2 + r + 1
    ...poly,
    ...get(r), ...v.f32Mul, ...get(r), ...v.f32Mul, ...get(r), ...v.f32Add, ...v.f32Const(1), ...v.f32Add,
    // * 2^n: (n + 127) << 23 as f32 bits. n is a whole number in [-126, 127], so n + (1.5 * 2^23 + 127)
    // is exact and its low mantissa bits are n + 127 (bit 22 set, shifted out): one f32 add instead of
    // i32x4.trunc_sat_f32x4_s (a 7-instruction sequence on x64) and an i32 add; the same bits.
    ...get(n), ...v.f32Const(1.5 * 2 ** 23 + 127), ...v.f32Add, ...op.i32(23), ...v.i32Shl,
    ...v.f32Mul,
  ];
}

/** `expv(src, dst, n)`: dst[i] = exp(src[i]) for n a multiple of 4 (byte pointers). For tests. */
export function expKernel(): FunctionSpec {
  const SRC = 0, DST = 1, N = 2;
  const I = 3;
  const X = 4, NV = 5, R = 6;
  const { get, set, i32 } = op;
  const code = [
    ...i32(0), ...set(I),
    ...op.block, ...op.loop,
    ...get(I), ...get(N), ...i32(2), ...op.i32Shl, ...op.i32GeU, ...op.brIf(1),
    ...get(SRC), ...get(I), ...op.i32Add, ...v.load(), ...set(X),
    ...get(DST), ...get(I), ...op.i32Add,
    ...expInto(X, NV, R),
    ...v.store(),
    ...get(I), ...i32(16), ...op.i32Add, ...set(I),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'expv', params: 3, locals: { i32: 1, f32: 0, v128: 3 }, code };
}

/**
 * `swiglu(gate, up, n)`: gate[i] = (g / (1 + exp(-g))) * up[i] with g = gate[i], in f32, for n a
 * multiple of 4 (byte pointers).
 */
export function swigluKernel(): FunctionSpec {
  const GATE = 0, UP = 1, N = 2;
  const I = 3;
  const G = 4, X = 5, NV = 6, R = 7;
  const { get, set, i32 } = op;
  const code = [
    ...i32(0), ...set(I),
    ...op.block, ...op.loop,
    ...get(I), ...get(N), ...i32(2), ...op.i32Shl, ...op.i32GeU, ...op.brIf(1),
    ...get(GATE), ...get(I), ...op.i32Add, ...v.load(), ...op.tee(G),
    ...v.f32Const(-1), ...v.f32Mul, ...set(X),
    ...get(GATE), ...get(I), ...op.i32Add,
    ...get(G),
    ...expInto(X, NV, R), ...v.f32Const(1), ...v.f32Add,
    ...v.f32Div,
    ...get(UP), ...get(I), ...op.i32Add, ...v.load(), ...v.f32Mul,
    ...v.store(),
    ...get(I), ...i32(16), ...op.i32Add, ...set(I),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'swiglu', params: 3, locals: { i32: 1, f32: 0, v128: 4 }, code };
}

/**
 * `softmaxCausal(scores, rows, stride, scaleBits)`: for each row t of scores [rows, stride] (byte
 * pointer, stride a multiple of 4 and >= rows): z_s = scores[t, s] * scale for s <= t, then
 * p_s = exp(z_s - max z) / sum, and 0 for s > t up to the stride. `scaleBits` is the f32 scale's bits.
 * Sums are f32, four partial sums per row (lanes) added at the end.
 */
export function softmaxCausalKernel(): FunctionSpec {
  const S = 0, ROWS = 1, STRIDE = 2, SCALE_BITS = 3;
  let n = 4;
  const T = n++, K = n++, END = n++, ROW = n++, SB = n++;
  const i32Count = n - 4;
  const F_MAX = n++, F_INV = n++;
  const f32Count = 2;
  const SCALE = n++, MASK = n++, MAXV = n++, SUMV = n++, X = n++, NV = n++, R = n++, LANES = n++;
  const v128Count = 8;
  const { get, set, tee, i32 } = op;
  const lanesMax = (vec: number): number[] => [
    ...get(vec), ...v.f32Lane(0), ...get(vec), ...v.f32Lane(1), 0x97, // f32.max
    ...get(vec), ...v.f32Lane(2), ...get(vec), ...v.f32Lane(3), 0x97,
    0x97,
  ];
  const lanesSum = (vec: number): number[] => [
    ...get(vec), ...v.f32Lane(0), ...get(vec), ...v.f32Lane(1), ...op.f32Add,
    ...get(vec), ...v.f32Lane(2), ...get(vec), ...v.f32Lane(3), ...op.f32Add,
    ...op.f32Add,
  ];
  // mask lanes (s < t + 1) of the vector starting at k (bytes): lane index + k/4 < t + 1
  const maskAt = (): number[] => [
    ...get(LANES), ...get(K), ...i32(2), 0x76 /* i32.shr_u */, ...v.i32Splat, ...v.i32Add,
    ...get(T), ...i32(1), ...op.i32Add, ...v.i32Splat, ...v.i32LtS, ...set(MASK),
  ];
  const code = [
    ...get(SCALE_BITS), ...v.i32Splat, ...set(SCALE),
    ...v.i32Const(0, 1, 2, 3), ...set(LANES),
    ...get(STRIDE), ...i32(2), ...op.i32Shl, ...set(SB),
    ...i32(0), ...set(T),
    ...op.block, ...op.loop,
    ...get(T), ...get(ROWS), ...op.i32GeU, ...op.brIf(1),
    ...get(S), ...get(T), ...get(SB), ...op.i32Mul, ...op.i32Add, ...set(ROW),
    // END = bytes of the groups of 4 that hold s = 0..t
    ...get(T), ...i32(4), ...op.i32Add, ...i32(-4), ...op.i32And, ...i32(2), ...op.i32Shl, ...set(END),
    // Pass 1: z = scores * scale (masked lanes -inf), stored; running max.
    ...v.f32Const(-Infinity), ...set(MAXV),
    ...i32(0), ...set(K),
    ...op.block, ...op.loop,
    ...get(K), ...get(END), ...op.i32GeU, ...op.brIf(1),
    ...maskAt(),
    ...get(ROW), ...get(K), ...op.i32Add,
    ...get(ROW), ...get(K), ...op.i32Add, ...v.load(), ...get(SCALE), ...v.f32Mul,
    ...v.f32Const(-Infinity), ...get(MASK), ...v.bitselect, ...tee(X),
    ...v.store(),
    ...get(MAXV), ...get(X), ...v.f32Pmax, ...set(MAXV),
    ...get(K), ...i32(16), ...op.i32Add, ...set(K),
    ...op.br(0),
    ...op.end, ...op.end,
    ...lanesMax(MAXV), ...set(F_MAX),
    // Pass 2: e = exp(z - max) (masked lanes 0), stored; running sum.
    ...v.zero, ...set(SUMV),
    ...i32(0), ...set(K),
    ...op.block, ...op.loop,
    ...get(K), ...get(END), ...op.i32GeU, ...op.brIf(1),
    ...maskAt(),
    ...get(ROW), ...get(K), ...op.i32Add, ...v.load(), ...get(F_MAX), ...v.f32Splat, ...v.f32Sub, ...set(X),
    ...get(ROW), ...get(K), ...op.i32Add,
    ...expInto(X, NV, R), ...get(MASK), ...v.and, ...tee(X),
    ...v.store(),
    ...get(SUMV), ...get(X), ...v.f32Add, ...set(SUMV),
    ...get(K), ...i32(16), ...op.i32Add, ...set(K),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.f32(1), ...lanesSum(SUMV), ...op.f32Div, ...set(F_INV),
    // Pass 3: p = e * (1 / sum); then zeros up to the stride.
    ...i32(0), ...set(K),
    ...op.block, ...op.loop,
    ...get(K), ...get(END), ...op.i32GeU, ...op.brIf(1),
    ...get(ROW), ...get(K), ...op.i32Add,
    ...get(ROW), ...get(K), ...op.i32Add, ...v.load(), ...get(F_INV), ...v.f32Splat, ...v.f32Mul,
    ...v.store(),
    ...get(K), ...i32(16), ...op.i32Add, ...set(K),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.block, ...op.loop,
    ...get(K), ...get(SB), ...op.i32GeU, ...op.brIf(1),
    ...get(ROW), ...get(K), ...op.i32Add, ...v.zero, ...v.store(),
    ...get(K), ...i32(16), ...op.i32Add, ...set(K),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(T), ...i32(1), ...op.i32Add, ...set(T),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'softmaxCausal', params: 4, locals: { i32: i32Count, f32: f32Count, v128: v128Count }, code };
}

/**
 * `logSumExpRows(x, rows, cols, out)`: per row t of x [rows, cols] (cols a multiple of 4; byte
 * pointers) writes two f64 at out + 16t: m = max_s x[t, s] and S = sum_s exp(x[t, s] - m), the
 * exps in f32 and their sum in f64 (two f64x2 accumulators), so log-sum-exp = log(S) + m.
 */
export function logSumExpRowsKernel(): FunctionSpec {
  const XP = 0, ROWS = 1, COLS = 2, OUT = 3;
  let n = 4;
  const T = n++, K = n++, ROW = n++, RB = n++;
  const i32Count = n - 4;
  const F_MAX = n++;
  const MAXV = n++, ACC0 = n++, ACC1 = n++, X = n++, NV = n++, R = n++, E = n++;
  const { get, set, tee, i32 } = op;
  const code = [
    ...get(COLS), ...i32(2), ...op.i32Shl, ...set(RB),
    ...i32(0), ...set(T),
    ...op.block, ...op.loop,
    ...get(T), ...get(ROWS), ...op.i32GeU, ...op.brIf(1),
    ...get(XP), ...get(T), ...get(RB), ...op.i32Mul, ...op.i32Add, ...set(ROW),
    ...v.f32Const(-Infinity), ...set(MAXV),
    ...i32(0), ...set(K),
    ...op.block, ...op.loop,
    ...get(K), ...get(RB), ...op.i32GeU, ...op.brIf(1),
    ...get(MAXV), ...get(ROW), ...get(K), ...op.i32Add, ...v.load(), ...v.f32Pmax, ...set(MAXV),
    ...get(K), ...i32(16), ...op.i32Add, ...set(K),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(MAXV), ...v.f32Lane(0), ...get(MAXV), ...v.f32Lane(1), 0x97,
    ...get(MAXV), ...v.f32Lane(2), ...get(MAXV), ...v.f32Lane(3), 0x97,
    0x97, ...set(F_MAX),
    ...v.f64Zero, ...set(ACC0),
    ...v.f64Zero, ...set(ACC1),
    ...i32(0), ...set(K),
    ...op.block, ...op.loop,
    ...get(K), ...get(RB), ...op.i32GeU, ...op.brIf(1),
    ...get(ROW), ...get(K), ...op.i32Add, ...v.load(), ...get(F_MAX), ...v.f32Splat, ...v.f32Sub, ...set(X),
    ...expInto(X, NV, R), ...tee(E),
    ...v.f64PromoteLow, ...get(ACC0), ...v.f64Add, ...set(ACC0),
    ...get(E), ...get(E), ...v.shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]),
    ...v.f64PromoteLow, ...get(ACC1), ...v.f64Add, ...set(ACC1),
    ...get(K), ...i32(16), ...op.i32Add, ...set(K),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(OUT), ...get(T), ...i32(4), ...op.i32Shl, ...op.i32Add, ...get(F_MAX), ...op.f64PromoteF32, ...op.f64Store(0),
    ...get(OUT), ...get(T), ...i32(4), ...op.i32Shl, ...op.i32Add,
    ...get(ACC0), ...v.f64Lane(0), ...get(ACC0), ...v.f64Lane(1), ...op.f64Add,
    ...get(ACC1), ...v.f64Lane(0), ...get(ACC1), ...v.f64Lane(1), ...op.f64Add,
    ...op.f64Add,
    ...op.f64Store(8),
    ...get(T), ...i32(1), ...op.i32Add, ...set(T),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'logSumExpRows', params: 4, locals: { i32: i32Count, f32: 1, v128: 8 }, code };
}
