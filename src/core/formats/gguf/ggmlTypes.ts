/**
 * The ggml tensor types: one table, ids and block geometry as in ggml.h / ggml.c (type_traits).
 * `decodable` says whether our dequantizers read it; the others are listed with correct sizes and refused
 * with a clear "not decodable yet" when their values are asked for.
 */
export const GGML_TYPES = [
  { id: 0, name: 'F32', blockSize: 1, typeSize: 4, decodable: true },
  { id: 1, name: 'F16', blockSize: 1, typeSize: 2, decodable: true },
  { id: 2, name: 'Q4_0', blockSize: 32, typeSize: 18, decodable: true },
  { id: 3, name: 'Q4_1', blockSize: 32, typeSize: 20, decodable: true },
  { id: 6, name: 'Q5_0', blockSize: 32, typeSize: 22, decodable: true },
  { id: 7, name: 'Q5_1', blockSize: 32, typeSize: 24, decodable: true },
  { id: 8, name: 'Q8_0', blockSize: 32, typeSize: 34, decodable: true },
  { id: 9, name: 'Q8_1', blockSize: 32, typeSize: 36, decodable: false },
  { id: 10, name: 'Q2_K', blockSize: 256, typeSize: 84, decodable: true },
  { id: 11, name: 'Q3_K', blockSize: 256, typeSize: 110, decodable: true },
  { id: 12, name: 'Q4_K', blockSize: 256, typeSize: 144, decodable: true },
  { id: 13, name: 'Q5_K', blockSize: 256, typeSize: 176, decodable: true },
  { id: 14, name: 'Q6_K', blockSize: 256, typeSize: 210, decodable: true },
  { id: 15, name: 'Q8_K', blockSize: 256, typeSize: 292, decodable: false },
  { id: 16, name: 'IQ2_XXS', blockSize: 256, typeSize: 66, decodable: false },
  { id: 17, name: 'IQ2_XS', blockSize: 256, typeSize: 74, decodable: false },
  { id: 18, name: 'IQ3_XXS', blockSize: 256, typeSize: 98, decodable: false },
  { id: 19, name: 'IQ1_S', blockSize: 256, typeSize: 50, decodable: false },
  { id: 20, name: 'IQ4_NL', blockSize: 32, typeSize: 18, decodable: false },
  { id: 21, name: 'IQ3_S', blockSize: 256, typeSize: 110, decodable: false },
  { id: 22, name: 'IQ2_S', blockSize: 256, typeSize: 82, decodable: false },
  { id: 23, name: 'IQ4_XS', blockSize: 256, typeSize: 136, decodable: false },
  { id: 24, name: 'I8', blockSize: 1, typeSize: 1, decodable: false },
  { id: 25, name: 'I16', blockSize: 1, typeSize: 2, decodable: false },
  { id: 26, name: 'I32', blockSize: 1, typeSize: 4, decodable: false },
  { id: 27, name: 'I64', blockSize: 1, typeSize: 8, decodable: false },
  { id: 28, name: 'F64', blockSize: 1, typeSize: 8, decodable: false },
  { id: 29, name: 'IQ1_M', blockSize: 256, typeSize: 56, decodable: false },
  { id: 30, name: 'BF16', blockSize: 1, typeSize: 2, decodable: true },
  { id: 34, name: 'TQ1_0', blockSize: 256, typeSize: 54, decodable: false },
  { id: 35, name: 'TQ2_0', blockSize: 256, typeSize: 66, decodable: false },
  { id: 39, name: 'MXFP4', blockSize: 32, typeSize: 17, decodable: false },
] as const;

export type GgmlTypeInfo = (typeof GGML_TYPES)[number];
export type GgmlTypeName = GgmlTypeInfo['name'];

const BY_ID = new Map<number, GgmlTypeInfo>(GGML_TYPES.map((t) => [t.id, t]));
const BY_NAME = new Map<string, GgmlTypeInfo>(GGML_TYPES.map((t) => [t.name, t]));

export function ggmlTypeById(id: number): GgmlTypeInfo | undefined {
  return BY_ID.get(id);
}

export function ggmlTypeByName(name: string): GgmlTypeInfo | undefined {
  return BY_NAME.get(name.toUpperCase());
}

/** Bytes of one row of `ne0` elements; ne0 must be a multiple of the block size (checked by callers). */
export function ggmlRowBytes(type: GgmlTypeInfo, ne0: number): number {
  return (ne0 / type.blockSize) * type.typeSize;
}

/** GGUF metadata value types (gguf.h). */
export const GGUF_VALUE_TYPE = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** llama.cpp's LLAMA_FTYPE values written to `general.file_type` (llama.h). */
export const LLAMA_FTYPE = {
  ALL_F32: 0,
  MOSTLY_F16: 1,
  MOSTLY_Q4_0: 2,
  MOSTLY_Q4_1: 3,
  MOSTLY_Q8_0: 7,
  MOSTLY_Q5_0: 8,
  MOSTLY_Q5_1: 9,
  MOSTLY_Q2_K: 10,
  MOSTLY_Q3_K_S: 11,
  MOSTLY_Q3_K_M: 12,
  MOSTLY_Q3_K_L: 13,
  MOSTLY_Q4_K_S: 14,
  MOSTLY_Q4_K_M: 15,
  MOSTLY_Q5_K_S: 16,
  MOSTLY_Q5_K_M: 17,
  MOSTLY_Q6_K: 18,
  MOSTLY_BF16: 32,
} as const;
