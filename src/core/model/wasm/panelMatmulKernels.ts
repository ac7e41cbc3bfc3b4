/**
 * The forward pass's matmul micro-kernel in outer-product form, as FunctionSpecs for assembler.ts:
 * out[t, o] = sum_k x[t, k] * w[o, k], with w re-laid once into k-major panels of PANEL_OUTS outputs
 * (panel p holds w[p*P + j, k] at float (k * P + j): one k step of a panel is P contiguous floats).
 *
 * One k step of an R-row block: PANEL_VECTORS f32x4 loads of the panel, and per row one
 * v128.load32_splat of x[t + r, k] followed by PANEL_VECTORS multiply-adds into that row's
 * accumulators. R x PANEL_VECTORS accumulators hold the outputs themselves (no horizontal
 * reduction), stored with v128.store at the end. For R = 4: 8 accumulators + 2 panel vectors + 1
 * splat = 11 live xmm registers (V8's x64 allocator has 15), and 8 independent multiply-add
 * chains, enough to cover the FMA latency at 2 per cycle.
 *
 * Accumulation order (the rounding rule): each output is ONE f32 running sum over k = 0, 1, 2, ...
 * in order, starting from +0; each step is f32x4.relaxed_madd where the engine has relaxed SIMD (on
 * x86 with FMA: one rounding per step) and f32x4.mul then f32x4.add (two roundings) elsewhere.
 * Every row block, every remainder kernel and every tile gives the same bits for the same output.
 *
 * The k loop is one step per iteration. Unrolled 2 or 4 times (addresses folded into the load
 * offsets), TurboFan hoists every load of the body to its top, runs out of registers and spills:
 * 13-16 GMAC/s against 26-27 for this form on Dev's Zen 4. The k count is a run-time argument
 * (attention sums a tile only over the keys it can see).
 */
import { op, v, type FunctionSpec } from './assembler';

/** Outputs per panel (two f32x4 vectors). */
export const PANEL_OUTS = 8;
const PANEL_VECTORS = PANEL_OUTS / 4;
/** Rows of x per block of the main kernel; blocks of 1..MAX_BLOCK_ROWS - 1 rows take the remainder. */
export const MAX_BLOCK_ROWS = 4;

/** Name of the kernel for blocks of `rows` rows. */
export function panelKernelName(rows: number): string {
  return `mm${rows}`;
}

/**
 * Kernel `(x, panels, out, rows, panelCount, outStride, kCount)` (byte pointers) for one `inner` (the
 * length of a panel in k) and x row stride `xStride` floats (inner unless x rows are read out of a
 * wider matrix): `rows` rows of x (a multiple of R) against `panelCount` panels starting at `panels`,
 * summing over k < kCount (<= inner); out row t starts at out + t*outStride*4 and gets
 * panelCount * PANEL_OUTS values (outStride >= that).
 */
export function panelMatmulKernel(R: number, inner: number, fused: boolean, xStride = inner): FunctionSpec {
  const X = 0, W = 1, O = 2, ROWS = 3, PANELS = 4, STRIDE = 5, KCOUNT = 6;
  let n = 7;
  const T = n++, P = n++, XB = n++, XP = n++, WP = n++, WEND = n++, ADDR = n++;
  const i32Count = n - 7;
  const ACC = n;
  n += R * PANEL_VECTORS;
  const WV = n;
  n += PANEL_VECTORS;
  const SPLAT = n++;
  const PRODUCT = n++;
  const v128Count = n - 7 - i32Count;
  const { get, set, i32 } = op;
  const rowBytes = xStride * 4;
  const panelBytes = inner * PANEL_OUTS * 4;
  const stepBytes = PANEL_OUTS * 4;
  const rs = Array.from({ length: R }, (_, r) => r);
  const cs = Array.from({ length: PANEL_VECTORS }, (_, c) => c);
  const acc = (r: number, c: number): number => ACC + r * PANEL_VECTORS + c;
  const madd = (r: number, c: number): number[] =>
    fused
      ? [...get(SPLAT), ...get(WV + c), ...get(acc(r, c)), ...v.f32RelaxedMadd, ...set(acc(r, c))]
      : [...get(SPLAT), ...get(WV + c), ...v.f32Mul, ...set(PRODUCT), ...get(acc(r, c)), ...get(PRODUCT), ...v.f32Add, ...set(acc(r, c))];
  // One k step: the panel's vectors, then per row a splat of x[t + r, k] and its multiply-adds.
  const kLoop = [
    ...op.block, ...op.loop,
    ...get(WP), ...get(WEND), ...op.i32GeU, ...op.brIf(1),
    ...cs.flatMap((c) => [...get(WP), ...v.load(16 * c), ...set(WV + c)]),
    ...rs.flatMap((r) => [...get(XP), ...v.load32Splat(r * rowBytes), ...set(SPLAT), ...cs.flatMap((c) => madd(r, c))]),
    ...get(XP), ...i32(4), ...op.i32Add, ...set(XP),
    ...get(WP), ...i32(stepBytes), ...op.i32Add, ...set(WP),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  const code = [
    ...i32(0), ...set(T),
    ...op.block, ...op.loop,
    ...get(T), ...get(ROWS), ...op.i32GeU, ...op.brIf(1),
    ...get(X), ...get(T), ...i32(rowBytes), ...op.i32Mul, ...op.i32Add, ...set(XB),
    ...i32(0), ...set(P),
    ...op.block, ...op.loop,
    ...get(P), ...get(PANELS), ...op.i32GeU, ...op.brIf(1),
    ...get(XB), ...set(XP),
    ...get(W), ...get(P), ...i32(panelBytes), ...op.i32Mul, ...op.i32Add, ...set(WP),
    ...get(WP), ...get(KCOUNT), ...i32(stepBytes), ...op.i32Mul, ...op.i32Add, ...set(WEND),
    ...rs.flatMap((r) => cs.flatMap((c) => [...v.zero, ...set(acc(r, c))])),
    ...kLoop,
    ...rs.flatMap((r) => [
      // addr = out + ((t + r) * outStride + p * PANEL_OUTS) * 4
      ...get(O), ...get(T), ...i32(r), ...op.i32Add, ...get(STRIDE), ...op.i32Mul, ...get(P), ...i32(PANEL_OUTS), ...op.i32Mul, ...op.i32Add, ...i32(2), ...op.i32Shl, ...op.i32Add, ...set(ADDR),
      ...cs.flatMap((c) => [...get(ADDR), ...get(acc(r, c)), ...v.store(16 * c)]),
    ]),
    ...get(P), ...i32(1), ...op.i32Add, ...set(P),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(T), ...i32(R), ...op.i32Add, ...set(T),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: panelKernelName(R), params: 7, locals: { i32: i32Count, f32: 0, v128: v128Count }, code };
}

/**
 * `pack(src, dst, panelCount)`: re-lays panelCount * PANEL_OUTS rows of src (rows of `inner` floats,
 * `srcStride` floats apart; byte pointers) into panels at dst (layout in the file comment). The
 * caller zero-pads src to whole panels. Scalar copies: a weight is packed once per use, not per call.
 */
export function packPanelsKernel(inner: number, srcStride = inner): FunctionSpec {
  const SRC = 0, DST = 1, PANELS = 2;
  const P = 3, S = 4, D = 5, SEND = 6;
  const { get, set, i32 } = op;
  const rowBytes = srcStride * 4;
  const code = [
    ...i32(0), ...set(P),
    ...get(DST), ...set(D),
    ...op.block, ...op.loop,
    ...get(P), ...get(PANELS), ...op.i32GeU, ...op.brIf(1),
    ...get(SRC), ...get(P), ...i32(rowBytes * PANEL_OUTS), ...op.i32Mul, ...op.i32Add, ...op.tee(S),
    ...i32(inner * 4), ...op.i32Add, ...set(SEND),
    ...op.block, ...op.loop,
    ...get(S), ...get(SEND), ...op.i32GeU, ...op.brIf(1),
    ...Array.from({ length: PANEL_OUTS }, (_, j) => [...get(D), ...get(S), ...op.f32Load(j * rowBytes), ...op.f32Store(4 * j)]).flat(),
    ...get(S), ...i32(4), ...op.i32Add, ...set(S),
    ...get(D), ...i32(4 * PANEL_OUTS), ...op.i32Add, ...set(D),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(P), ...i32(1), ...op.i32Add, ...set(P),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'pack', params: 3, locals: { i32: 4, f32: 0, v128: 0 }, code };
}

/**
 * `packColumns(src, dst, panelCount, rows)`: panels of a matrix used as w^T (attention's values:
 * w[o, k] = src[k, o]): panel p, step k holds src[k, p*P .. p*P + P - 1], i.e. P contiguous floats of
 * src row k (rows `srcStride` floats apart), for k < rows; panels are `inner` steps long. Columns
 * past the matrix's last are read as they lie in memory: they only reach outputs the caller drops.
 */
export function packColumnsKernel(inner: number, srcStride: number): FunctionSpec {
  const SRC = 0, DST = 1, PANELS = 2, ROWS = 3;
  const P = 4, S = 5, D = 6, DEND = 7;
  const { get, set, i32 } = op;
  const stepBytes = PANEL_OUTS * 4;
  const code = [
    ...i32(0), ...set(P),
    ...op.block, ...op.loop,
    ...get(P), ...get(PANELS), ...op.i32GeU, ...op.brIf(1),
    ...get(SRC), ...get(P), ...i32(stepBytes), ...op.i32Mul, ...op.i32Add, ...set(S),
    ...get(DST), ...get(P), ...i32(inner * stepBytes), ...op.i32Mul, ...op.i32Add, ...op.tee(D),
    ...get(ROWS), ...i32(stepBytes), ...op.i32Mul, ...op.i32Add, ...set(DEND),
    ...op.block, ...op.loop,
    ...get(D), ...get(DEND), ...op.i32GeU, ...op.brIf(1),
    ...Array.from({ length: PANEL_OUTS / 4 }, (_, c) => [...get(D), ...get(S), ...v.load(16 * c), ...v.store(16 * c)]).flat(),
    ...get(S), ...i32(srcStride * 4), ...op.i32Add, ...set(S),
    ...get(D), ...i32(stepBytes), ...op.i32Add, ...set(D),
    ...op.br(0),
    ...op.end, ...op.end,
    ...get(P), ...i32(1), ...op.i32Add, ...set(P),
    ...op.br(0),
    ...op.end, ...op.end,
  ];
  return { name: 'packColumns', params: 4, locals: { i32: 4, f32: 0, v128: 0 }, code };
}
