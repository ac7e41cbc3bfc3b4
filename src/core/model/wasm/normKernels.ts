/**
 * The residual add and RMSNorm of the forward pass as one SIMD kernel (FunctionSpec for
 * assembler.ts), with kernels.rmsNorm's rounding: the sum of squares in f64 (each f32 square is
 * exact in f64; four interleaved f64 partial sums, where the JS loop sums in order), then as HF
 * computes it: mean = f32(ss / width), inv = f32(1 / sqrt(mean + eps)) with eps an f64, and
 * out = f32(f32(x * inv) * weight). The residual add x += delta is one f32 add per element.
 */
import { op, v, type FunctionSpec } from './assembler';

/** Mode bits of `addRmsNorm`. */
export const NORM_MODE = { add: 1, norm: 2 } as const;

/**
 * `addRmsNorm(x, delta, weight, out, rows, width, epsAt, mode)` (byte pointers, width a multiple of
 * 4, rows of x, delta and out `width` floats apart): per row, with mode & 1 x += delta (in place),
 * then with mode & 2 out = RMSNorm(x) * weight; eps is the f64 at epsAt.
 */
export function addRmsNormKernel(): FunctionSpec {
  const X = 0, DELTA = 1, WEIGHT = 2, OUT = 3, ROWS = 4, WIDTH = 5, EPS_AT = 6, MODE = 7;
  let n = 8;
  const T = n++, I = n++, RB = n++, ROW = n++, DROW = n++, OROW = n++;
  const i32Count = n - 8;
  const INV_F32 = n++;
  const A = n++, B = n++, V = n++, INV = n++;
  const { get, set, tee, i32 } = op;
  const square = [...v.f64PromoteLow, ...op.tee(V), ...get(V), ...v.f64Mul];
  const code = [
    ...get(WIDTH), ...i32(2), ...op.i32Shl, ...set(RB),
    ...i32(0), ...set(T),
    ...op.block, ...op.loop,
    ...get(T), ...get(ROWS), ...op.i32GeU, ...op.brIf(1),
    ...get(T), ...get(RB), ...op.i32Mul, ...tee(I),
    ...get(X), ...op.i32Add, ...set(ROW),
    ...get(I), ...get(DELTA), ...op.i32Add, ...set(DROW),
    ...get(I), ...get(OUT), ...op.i32Add, ...set(OROW),
    // x += delta
    ...op.block,
    ...get(MODE), ...i32(1), ...op.i32And, ...op.i32Eqz, ...op.brIf(0),
    ...i32(0), ...set(I),
    ...op.block, ...op.loop,
    ...get(I), ...get(RB), ...op.i32GeU, ...op.brIf(1),
    ...get(ROW), ...get(I), ...op.i32Add,
    ...get(ROW), ...get(I), ...op.i32Add, ...v.load(), ...get(DROW), ...get(I), ...op.i32Add, ...v.load(), ...v.f32Add,
    ...v.store(),
    ...get(I), ...i32(16), ...op.i32Add, ...set(I),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.end,
    // out = x * inv * weight
    ...op.block,
    ...get(MODE), ...i32(2), ...op.i32And, ...op.i32Eqz, ...op.brIf(0),
    ...v.f64Zero, ...set(A),
    ...v.f64Zero, ...set(B),
    ...i32(0), ...set(I),
    ...op.block, ...op.loop,
    ...get(I), ...get(RB), ...op.i32GeU, ...op.brIf(1),
    ...get(ROW), ...get(I), ...op.i32Add, ...v.load(), ...tee(V),
    ...square, ...get(A), ...v.f64Add, ...set(A),
    ...get(ROW), ...get(I), ...op.i32Add, ...v.load(), ...tee(V), ...get(V),
    ...v.shuffle([8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]),
    ...square, ...get(B), ...v.f64Add, ...set(B),
    ...get(I), ...i32(16), ...op.i32Add, ...set(I),
    ...op.br(0),
    ...op.end, ...op.end,
    // inv = f32(1 / sqrt(f32(ss / width) + eps))
    ...op.f64Const(1),
    ...get(A), ...v.f64Lane(0), ...get(A), ...v.f64Lane(1), ...op.f64Add,
    ...get(B), ...v.f64Lane(0), ...get(B), ...v.f64Lane(1), ...op.f64Add,
    ...op.f64Add,
    ...get(WIDTH), ...op.f64ConvertI32U, ...op.f64Div, ...op.f32DemoteF64, ...op.f64PromoteF32,
    ...get(EPS_AT), ...op.f64Load(0), ...op.f64Add,
    ...op.f64Sqrt, ...op.f64Div, ...op.f32DemoteF64, ...set(INV_F32),
    ...get(INV_F32), ...v.f32Splat, ...set(INV),
    ...i32(0), ...set(I),
    ...op.block, ...op.loop,
    ...get(I), ...get(RB), ...op.i32GeU, ...op.brIf(1),
    ...get(OROW), ...get(I), ...op.i32Add,
    ...get(ROW), ...get(I), ...op.i32Add, ...v.load(), ...get(INV), ...v.f32Mul,
    ...get(WEIGHT), ...get(I), ...op.i32Add, ...v.load(), ...v.f32Mul,
    ...v.store(),
    ...get(I), ...i32(16), ...op.i32Add, ...set(I),
    ...op.br(0),
    ...op.end, ...op.end,
    ...op.end,
    ...get(T), ...i32(1), ...op.i32Add, ...set(T),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'addRmsNorm', params: 8, locals: { i32: i32Count, f32: 1, v128: 4 }, code };
}
