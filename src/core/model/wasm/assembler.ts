/**
 * A minimal WebAssembly assembler for the forward pass's SIMD kernels: opcodes as byte helpers and
 * a one-function-per-export module builder with a shared imported memory. Kernels are generated at
 * run time (no toolchain, no binary file in the repository) and validated before use.
 */

export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function vec(items: number[][]): number[] {
  return [...uleb(items.length), ...items.flat()];
}

function name(s: string): number[] {
  const bytes = Array.from(new TextEncoder().encode(s));
  return [...uleb(bytes.length), ...bytes];
}

/** Core instructions. */
export const op = {
  get: (i: number): number[] => [0x20, ...uleb(i)],
  set: (i: number): number[] => [0x21, ...uleb(i)],
  tee: (i: number): number[] => [0x22, ...uleb(i)],
  i32: (n: number): number[] => [0x41, ...sleb(n)],
  f32: (x: number): number[] => [0x43, ...new Uint8Array(Float32Array.of(x).buffer)],
  i32Add: [0x6a],
  i32Sub: [0x6b],
  i32Mul: [0x6c],
  i32Shl: [0x74],
  i32GeU: [0x4f],
  i32LtU: [0x49],
  i32GtU: [0x4b],
  i32Eqz: [0x45],
  i32And: [0x71],
  i32LtS: [0x48],
  f32Add: [0x92],
  f32Div: [0x95],
  f64Add: [0xa0],
  f64PromoteF32: [0xbb],
  f32DemoteF64: [0xb6],
  f64ConvertI32U: [0xb8],
  f64Div: [0xa3],
  f64Sqrt: [0x9f],
  f64Const: (x: number): number[] => [0x44, ...new Uint8Array(Float64Array.of(x).buffer)],
  f64Load: (offset = 0): number[] => [0x2b, 0x03, ...uleb(offset)],
  f64Store: (offset = 0): number[] => [0x39, 0x03, ...uleb(offset)],
  f32Mul: [0x94],
  f32Load: (offset = 0): number[] => [0x2a, 0x02, ...uleb(offset)],
  f32Store: (offset = 0): number[] => [0x38, 0x02, ...uleb(offset)],
  block: [0x02, 0x40],
  loop: [0x03, 0x40],
  br: (depth: number): number[] => [0x0c, ...uleb(depth)],
  brIf: (depth: number): number[] => [0x0d, ...uleb(depth)],
  end: [0x0b],
};

function simd(code: number, ...imm: number[]): number[] {
  return [0xfd, ...uleb(code), ...imm];
}

/** SIMD (v128) instructions; loads and stores take a constant byte offset. */
export const v = {
  load: (offset = 0): number[] => simd(0x00, 0x04, ...uleb(offset)),
  load32Splat: (offset = 0): number[] => simd(0x09, 0x02, ...uleb(offset)),
  store: (offset = 0): number[] => simd(0x0b, 0x04, ...uleb(offset)),
  zero: simd(0x0c, ...new Array<number>(16).fill(0)),
  f32Splat: simd(0x13),
  f32Lane: (lane: number): number[] => simd(0x1f, lane),
  f32Add: simd(0xe4),
  f32Sub: simd(0xe5),
  f32Neg: simd(0xe1),
  f32Mul: simd(0xe6),
  f32Div: simd(0xe7),
  /** Pseudo-max (b < a ? a : b), x86 maxps. */
  f32Pmax: simd(0xeb),
  f32Lt: simd(0x43),
  f32Nearest: simd(0x6a),
  f32Gt: simd(0x44),
  i32TruncSatF32: simd(0xf8),
  f32Const: (x: number): number[] => simd(0x0c, ...new Uint8Array(Float32Array.of(x, x, x, x).buffer)),
  i32Const: (a: number, b: number, c: number, d: number): number[] => simd(0x0c, ...new Uint8Array(Int32Array.of(a, b, c, d).buffer)),
  i32Splat: simd(0x11),
  i32LtS: simd(0x39),
  /** Pseudo-min (b < a ? b : a), x86 minps. */
  f32Pmin: simd(0xea),
  i32Add: simd(0xae),
  /** i8x16.shuffle of two vectors by 16 byte-lane indices. */
  shuffle: (lanes: number[]): number[] => simd(0x0d, ...lanes),
  f64PromoteLow: simd(0x5f),
  f64Add: simd(0xf0),
  f64Mul: simd(0xf2),
  f64Sub: simd(0xf1),
  f32DemoteF64Zero: simd(0x5e),
  f64Lane: (lane: number): number[] => simd(0x21, lane),
  f64Zero: simd(0x0c, ...new Array<number>(16).fill(0)),
  /** Relaxed SIMD: a * b + c, fused or not (the engine's choice). */
  f32RelaxedMadd: simd(0x105),
  i32Shl: simd(0xab),
  and: simd(0x4e),
  bitselect: simd(0x52),
};

export interface FunctionSpec {
  name: string;
  /** Number of i32 parameters (the function returns nothing). */
  params: number;
  /** Extra local counts by type, declared in this order after the params. */
  locals: { i32: number; f32: number; v128: number };
  code: number[];
}

/** A module importing memory `env.mem` (min `pages`) and exporting each function by its name. */
export function buildModule(functions: FunctionSpec[], pages: number): Uint8Array {
  const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
  const types = functions.map((f) => [0x60, ...uleb(f.params), ...new Array<number>(f.params).fill(I32), 0]);
  const bodies = functions.map((f) => {
    const decl: number[][] = [];
    if (f.locals.i32 > 0) decl.push([...uleb(f.locals.i32), I32]);
    if (f.locals.f32 > 0) decl.push([...uleb(f.locals.f32), F32]);
    if (f.locals.v128 > 0) decl.push([...uleb(f.locals.v128), V128]);
    const body = [...vec(decl), ...f.code, ...op.end];
    return [...uleb(body.length), ...body];
  });
  return Uint8Array.from([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, vec(types)),
    ...section(2, vec([[...name('env'), ...name('mem'), 0x02, 0x00, ...uleb(pages)]])),
    ...section(3, vec(functions.map((_, i) => uleb(i)))),
    ...section(7, vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(bodies)),
  ]);
}
