/**
 * The safetensors dtypes: one table (name, bits per element, whether we decode it to f32),
 * plus the decoder from stored little-endian bytes to Float32Array.
 */
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { F8_E4M3_TO_F32, F8_E5M2_TO_F32, F8_E8M0_TO_F32 } from '../numeric/float8';
import { f16ToF32Table } from '../numeric/half';

export const SAFETENSORS_DTYPES = [
  { name: 'BOOL', bits: 8, decodable: true },
  { name: 'F4', bits: 4, decodable: false },
  { name: 'F6_E2M3', bits: 6, decodable: false },
  { name: 'F6_E3M2', bits: 6, decodable: false },
  { name: 'U8', bits: 8, decodable: true },
  { name: 'I8', bits: 8, decodable: true },
  { name: 'F8_E5M2', bits: 8, decodable: true },
  { name: 'F8_E4M3', bits: 8, decodable: true },
  { name: 'F8_E8M0', bits: 8, decodable: true },
  { name: 'I16', bits: 16, decodable: true },
  { name: 'U16', bits: 16, decodable: true },
  { name: 'F16', bits: 16, decodable: true },
  { name: 'BF16', bits: 16, decodable: true },
  { name: 'I32', bits: 32, decodable: true },
  { name: 'U32', bits: 32, decodable: true },
  { name: 'F32', bits: 32, decodable: true },
  // C64 is a complex pair of f32: it has no single f32 value.
  { name: 'C64', bits: 64, decodable: false },
  { name: 'F64', bits: 64, decodable: true },
  { name: 'I64', bits: 64, decodable: true },
  { name: 'U64', bits: 64, decodable: true },
] as const;

export type SafetensorsDtypeInfo = (typeof SAFETENSORS_DTYPES)[number];
export type SafetensorsDtype = SafetensorsDtypeInfo['name'];

const DTYPE_BY_NAME = new Map<string, SafetensorsDtypeInfo>(SAFETENSORS_DTYPES.map((d) => [d.name, d]));

/** Exact (case-sensitive, as the reference reader) lookup; undefined for an unknown name. */
export function safetensorsDtype(name: string): SafetensorsDtypeInfo | undefined {
  return DTYPE_BY_NAME.get(name);
}

/** A view of `bytes` as T[], copying first when the offset is not a multiple of the element size. */
function alignedBuffer(bytes: Uint8Array, elementSize: number): { buffer: ArrayBuffer; byteOffset: number } {
  if (bytes.byteOffset % elementSize === 0 && bytes.buffer instanceof ArrayBuffer) {
    return { buffer: bytes.buffer, byteOffset: bytes.byteOffset };
  }
  const copy = bytes.slice();
  return { buffer: copy.buffer, byteOffset: 0 };
}

/**
 * Decodes `dst.length` elements of `dtype` from little-endian `bytes` into `dst`.
 * Integers convert to the nearest f32 (I64/U64 beyond 2^24 lose precision, like every f32 conversion).
 */
export function decodeSafetensorsToF32(dtype: string, bytes: Uint8Array, dst: Float32Array): void {
  const info = safetensorsDtype(dtype);
  if (info === undefined) throw new UnsupportedError(`unknown safetensors dtype '${dtype}'`);
  if (!info.decodable) throw new UnsupportedError(`safetensors dtype ${dtype} is not decodable yet`);
  const n = dst.length;
  const needed = (n * info.bits) / 8;
  if (bytes.byteLength < needed) {
    throw new InvalidArgumentError(`decoding ${n} ${dtype} values needs ${needed} bytes, got ${bytes.byteLength}`);
  }
  const elementSize = info.bits / 8;
  const { buffer, byteOffset } = alignedBuffer(bytes, elementSize);
  switch (info.name) {
    case 'BOOL':
      for (let i = 0; i < n; i++) dst[i] = bytes[i] !== 0 ? 1 : 0;
      return;
    case 'U8':
      dst.set(bytes.subarray(0, n));
      return;
    case 'I8':
      dst.set(new Int8Array(buffer, byteOffset, n));
      return;
    case 'F8_E4M3':
      for (let i = 0; i < n; i++) dst[i] = F8_E4M3_TO_F32[bytes[i] ?? 0] ?? NaN;
      return;
    case 'F8_E5M2':
      for (let i = 0; i < n; i++) dst[i] = F8_E5M2_TO_F32[bytes[i] ?? 0] ?? NaN;
      return;
    case 'F8_E8M0':
      for (let i = 0; i < n; i++) dst[i] = F8_E8M0_TO_F32[bytes[i] ?? 0] ?? NaN;
      return;
    case 'I16':
      dst.set(new Int16Array(buffer, byteOffset, n));
      return;
    case 'U16':
      dst.set(new Uint16Array(buffer, byteOffset, n));
      return;
    case 'F16': {
      const table = f16ToF32Table();
      const halves = new Uint16Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = table[halves[i] ?? 0] ?? NaN;
      return;
    }
    case 'BF16': {
      // bf16 is the top half of an f32: widening is exact (u16 << 16).
      const halves = new Uint16Array(buffer, byteOffset, n);
      const out = new Uint32Array(dst.buffer, dst.byteOffset, n);
      for (let i = 0; i < n; i++) out[i] = (halves[i] ?? 0) << 16;
      return;
    }
    case 'I32':
      dst.set(new Int32Array(buffer, byteOffset, n));
      return;
    case 'U32':
      dst.set(new Uint32Array(buffer, byteOffset, n));
      return;
    case 'F32':
      dst.set(new Float32Array(buffer, byteOffset, n));
      return;
    case 'F64':
      dst.set(new Float64Array(buffer, byteOffset, n));
      return;
    case 'I64': {
      const values = new BigInt64Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = Number(values[i] ?? 0n);
      return;
    }
    case 'U64': {
      const values = new BigUint64Array(buffer, byteOffset, n);
      for (let i = 0; i < n; i++) dst[i] = Number(values[i] ?? 0n);
      return;
    }
    default:
      throw new UnsupportedError(`safetensors dtype ${dtype} is not decodable yet`);
  }
}
