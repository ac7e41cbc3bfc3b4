/**
 * llama.cpp-exact ggml (de)quantizers. `quantizeGgml` gives the bytes that llama-quantize writes without
 * an importance matrix (the `quantize_row_*_ref` paths of ggml-quants.c); `dequantizeGgml` the f32 values
 * that ggml's `dequantize_row_*` gives. Both allocate nothing per call (module-level scratch; the block types
 * quantize in this thread's WebAssembly instance, wasm/ggmlWasm.ts) and run synchronously over whole blocks:
 * `src.length` (quantize) / `dst.length` (dequantize) must be a multiple of the type's block size, and the byte buffer must hold exactly that many blocks or more.
 * NaN / Inf inputs are the caller's job to refuse (see `findNonFinite`): ggml has no defined output for them.
 */
import { InvalidArgumentError, UnsupportedError } from '../../errors';
import { ggmlTypeByName, type GgmlTypeName } from '../../formats/gguf/ggmlTypes';
import { dequantizeBF16, dequantizeF16, dequantizeF32, quantizeBF16, quantizeF16, quantizeF32 } from './float';
import { localWasmQuantizer, type WasmQuantType } from './wasm/ggmlWasm';

export type QuantizeFn = (src: Float32Array, dst: Uint8Array) => void;
export type DequantizeFn = (src: Uint8Array, dst: Float32Array) => void;

/** The types we quantize to and decode from, with llama.cpp-identical bytes. */
export const GGML_CODEC_TYPES = ['F32', 'F16', 'BF16', 'Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type GgmlCodecType = (typeof GGML_CODEC_TYPES)[number];

/** The block types (de)quantize in WebAssembly (wasm/ggmlQuants.as): native f32 steps, the same bytes and values as C. */
function wasmQuantize(type: WasmQuantType): QuantizeFn {
  return (src, dst) => localWasmQuantizer().quantize(type, src, dst);
}

function wasmDequantize(type: WasmQuantType): DequantizeFn {
  return (src, dst) => localWasmQuantizer().dequantize(type, src, dst);
}

const CODECS: Record<GgmlCodecType, { quantize: QuantizeFn; dequantize: DequantizeFn }> = {
  F32: { quantize: quantizeF32, dequantize: dequantizeF32 },
  F16: { quantize: quantizeF16, dequantize: dequantizeF16 },
  BF16: { quantize: quantizeBF16, dequantize: dequantizeBF16 },
  Q8_0: { quantize: wasmQuantize('Q8_0'), dequantize: wasmDequantize('Q8_0') },
  Q4_0: { quantize: wasmQuantize('Q4_0'), dequantize: wasmDequantize('Q4_0') },
  Q4_1: { quantize: wasmQuantize('Q4_1'), dequantize: wasmDequantize('Q4_1') },
  Q5_0: { quantize: wasmQuantize('Q5_0'), dequantize: wasmDequantize('Q5_0') },
  Q5_1: { quantize: wasmQuantize('Q5_1'), dequantize: wasmDequantize('Q5_1') },
  Q2_K: { quantize: wasmQuantize('Q2_K'), dequantize: wasmDequantize('Q2_K') },
  Q3_K: { quantize: wasmQuantize('Q3_K'), dequantize: wasmDequantize('Q3_K') },
  Q4_K: { quantize: wasmQuantize('Q4_K'), dequantize: wasmDequantize('Q4_K') },
  Q5_K: { quantize: wasmQuantize('Q5_K'), dequantize: wasmDequantize('Q5_K') },
  Q6_K: { quantize: wasmQuantize('Q6_K'), dequantize: wasmDequantize('Q6_K') },
};

export function isGgmlCodecType(name: string): name is GgmlCodecType {
  return (GGML_CODEC_TYPES as readonly string[]).includes(name);
}

function codecFor(type: GgmlTypeName): { quantize: QuantizeFn; dequantize: DequantizeFn } {
  if (!isGgmlCodecType(type)) throw new UnsupportedError(`ggml type ${type} cannot be (de)quantized by this version (supported: ${GGML_CODEC_TYPES.join(', ')})`);
  return CODECS[type];
}

function checkSizes(type: GgmlTypeName, elements: number, bytes: number, what: string): void {
  const info = ggmlTypeByName(type);
  if (info === undefined) throw new UnsupportedError(`unknown ggml type ${type}`);
  if (elements % info.blockSize !== 0) {
    throw new InvalidArgumentError(`${what} ${type}: ${elements} values is not a multiple of the block size ${info.blockSize}`);
  }
  const need = (elements / info.blockSize) * info.typeSize;
  if (bytes < need) throw new InvalidArgumentError(`${what} ${type}: ${elements} values need ${need} bytes, the buffer has ${bytes}`);
}

/** Bytes that `elements` values take in `type` (elements a multiple of the block size). */
export function ggmlByteSize(type: GgmlTypeName, elements: number): number {
  const info = ggmlTypeByName(type);
  if (info === undefined) throw new UnsupportedError(`unknown ggml type ${type}`);
  return Math.ceil(elements / info.blockSize) * info.typeSize;
}

/** Quantizes all of `src` into `dst`, bytes identical to llama-quantize (no imatrix). */
export function quantizeGgml(type: GgmlTypeName, src: Float32Array, dst: Uint8Array): void {
  const codec = codecFor(type);
  checkSizes(type, src.length, dst.byteLength, 'quantize to');
  codec.quantize(src, dst);
}

/** Decodes `dst.length` values from `src`, values identical to ggml's dequantize_row_*. */
export function dequantizeGgml(type: GgmlTypeName, src: Uint8Array, dst: Float32Array): void {
  const codec = codecFor(type);
  checkSizes(type, dst.length, src.byteLength, 'dequantize from');
  codec.dequantize(src, dst);
}

/** Index of the first NaN or +-Inf in `values`, or -1. */
export function findNonFinite(values: Float32Array): number {
  // exponent bits all ones = NaN or +-Inf; integer tests on the bits, eight per step, are about twice
  // as fast as `v - v !== 0` on floats (this scans every value of every tensor an export writes)
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  const EXP = 0x7f800000;
  const whole = bits.length - (bits.length % 8);
  for (let i = 0; i < whole; i += 8) {
    if (
      (bits[i]! & EXP) === EXP ||
      (bits[i + 1]! & EXP) === EXP ||
      (bits[i + 2]! & EXP) === EXP ||
      (bits[i + 3]! & EXP) === EXP ||
      (bits[i + 4]! & EXP) === EXP ||
      (bits[i + 5]! & EXP) === EXP ||
      (bits[i + 6]! & EXP) === EXP ||
      (bits[i + 7]! & EXP) === EXP
    ) {
      for (let j = i; ; j++) if ((bits[j]! & EXP) === EXP) return j;
    }
  }
  for (let i = whole; i < bits.length; i++) if ((bits[i]! & EXP) === EXP) return i;
  return -1;
}
