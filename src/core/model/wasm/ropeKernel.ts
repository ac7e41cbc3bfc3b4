/**
 * RoPE as a SIMD kernel (FunctionSpec for assembler.ts) with kernels.applyRope's rounding: each
 * rotated value is f32(a*c - b*s) or f32(b*c + a*s) computed in f64 (the f32 products are exact in
 * f64, one f64 rounding at the sum, one to f32), here on f64x2 lanes: the same bits as the JS loop.
 */
import { op, v, type FunctionSpec } from './assembler';

/** Byte lanes of i8x16.shuffle picking f32 lanes (0-3: first operand, 4-7: second). */
function floatLanes(...lanes: number[]): number[] {
  return lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
}

/**
 * `rope(x, rows, heads, cos, sin)` for one head size and layout (byte pointers): rotates every head
 * of x [rows, heads * headDim] in place, row t with the table rows cos/sin[t, 0 .. headDim/2)
 * (`half`: dim i pairs with i + headDim/2; `interleaved`: 2i with 2i + 1). headDim a multiple of 8.
 */
export function ropeKernel(headDim: number, interleaved: boolean): FunctionSpec {
  const X = 0, ROWS = 1, HEADS = 2, COS = 3, SIN = 4;
  let n = 5;
  const T = n++, H = n++, I = n++, BASE = n++, TAB = n++;
  const i32Count = n - 5;
  const A = n++, B = n++, C = n++, S = n++, LO = n++, HI = n++;
  const v128Count = n - 5 - i32Count;
  const { get, set, i32 } = op;
  const half = headDim / 2;
  const headBytes = headDim * 4;
  const highToLow = (local: number): number[] => [...get(local), ...get(local), ...v.shuffle(floatLanes(2, 3, 0, 1)), ...v.f64PromoteLow];
  /** f64x2 of lanes 0-1 (`high` false) or 2-3 of an f32x4 local. */
  const f64Of = (local: number, high: boolean): number[] => (high ? highToLow(local) : [...get(local), ...v.f64PromoteLow]);
  // half layout, lanes of one half: a' = a*c - b*s, b' = b*c + a*s; leaves [a'(f32x4), b'(f32x4)] in LO / HI partials.
  const halfPart = (high: boolean): number[] => [
    // a'
    ...f64Of(A, high), ...f64Of(C, high), ...v.f64Mul, ...f64Of(B, high), ...f64Of(S, high), ...v.f64Mul, ...v.f64Sub, ...v.f32DemoteF64Zero,
    // b'
    ...f64Of(B, high), ...f64Of(C, high), ...v.f64Mul, ...f64Of(A, high), ...f64Of(S, high), ...v.f64Mul, ...v.f64Add, ...v.f32DemoteF64Zero,
  ];
  const halfBody = [
    // A = x[i..i+3], B = x[i+half..], C, S = tables[i..i+3]
    ...get(BASE), ...get(I), ...op.i32Add, ...v.load(0), ...set(A),
    ...get(BASE), ...get(I), ...op.i32Add, ...v.load(half * 4), ...set(B),
    ...get(TAB), ...get(I), ...op.i32Add, ...get(COS), ...op.i32Add, ...v.load(0), ...set(C),
    ...get(TAB), ...get(I), ...op.i32Add, ...get(SIN), ...op.i32Add, ...v.load(0), ...set(S),
    ...halfPart(false), ...set(HI), ...set(LO), // LO = a' lanes 0-1, HI = b' lanes 0-1
    ...get(BASE), ...get(I), ...op.i32Add,
    ...get(LO), ...halfPart(true), ...set(C), // C = b' lanes 2-3 (C no longer needed after halfPart)
    // stack: addr, a'lo, a'hi -> a' = [lo0, lo1, hi0, hi1]
    ...v.shuffle(floatLanes(0, 1, 4, 5)), ...v.store(0),
    ...get(BASE), ...get(I), ...op.i32Add,
    ...get(HI), ...get(C), ...v.shuffle(floatLanes(0, 1, 4, 5)), ...v.store(half * 4),
    ...get(I), ...i32(16), ...op.i32Add, ...set(I),
  ];
  // interleaved layout: X = [x0, x1, x2, x3] = pairs (x0, x1) at table i, (x2, x3) at i + 1.
  // Per pair in f64x2: [x0, x1] * [c, c] + [x1, x0] * [-s, s]; HI holds X with each pair swapped.
  const pairPart = (high: boolean): number[] => [
    ...f64Of(A, high), ...f64Of(C, high), ...v.f64Mul,
    ...f64Of(HI, high), ...f64Of(S, high), ...v.f64Mul, ...v.f64Add, ...v.f32DemoteF64Zero,
  ];
  const interleavedBody = [
    ...get(BASE), ...get(I), ...i32(1), ...op.i32Shl, ...op.i32Add, ...v.load(0), ...set(A),
    ...get(A), ...get(A), ...v.shuffle(floatLanes(1, 0, 3, 2)), ...set(HI),
    // C = [c_i, c_i, c_i+1, c_i+1], S = [-s_i, s_i, -s_i+1, s_i+1] from the tables' 2 floats at i
    ...get(TAB), ...get(I), ...op.i32Add, ...get(COS), ...op.i32Add, ...v.load(0), ...set(C),
    ...get(C), ...get(C), ...v.shuffle(floatLanes(0, 0, 1, 1)), ...set(C),
    ...get(TAB), ...get(I), ...op.i32Add, ...get(SIN), ...op.i32Add, ...v.load(0), ...set(S),
    // (a sign flip, not 0 - s: x + (-y) is x - y bit for bit, signed zeros included)
    ...get(S), ...v.f32Neg, ...get(S), ...v.shuffle(floatLanes(0, 4, 1, 5)), ...set(S),
    ...get(BASE), ...get(I), ...i32(1), ...op.i32Shl, ...op.i32Add,
    ...pairPart(false), ...set(LO),
    ...get(LO), ...pairPart(true), ...v.shuffle(floatLanes(0, 1, 4, 5)), ...v.store(0),
    ...get(I), ...i32(8), ...op.i32Add, ...set(I),
  ];
  const code = [
    ...i32(0), ...set(T),
    ...op.block, ...op.loop,
    ...get(T), ...get(ROWS), ...op.i32GeU, ...op.brIf(1),
    ...get(T), ...i32(half * 4), ...op.i32Mul, ...set(TAB),
    ...i32(0), ...set(H),
    ...op.block, ...op.loop,
    ...get(H), ...get(HEADS), ...op.i32GeU, ...op.brIf(1),
    ...get(X), ...get(T), ...get(HEADS), ...op.i32Mul, ...get(H), ...op.i32Add, ...i32(headBytes), ...op.i32Mul, ...op.i32Add, ...set(BASE),
    ...i32(0), ...set(I),
    ...op.block, ...op.loop,
    ...get(I), ...i32(half * 4), ...op.i32GeU, ...op.brIf(1),
    ...(interleaved ? interleavedBody : halfBody),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(H), ...i32(1), ...op.i32Add, ...set(H),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(T), ...i32(1), ...op.i32Add, ...set(T),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'rope', params: 5, locals: { i32: i32Count, f32: 0, v128: v128Count }, code };
}
