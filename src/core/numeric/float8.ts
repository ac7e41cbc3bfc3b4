/**
 * 8-bit floating point formats found in safetensors files (F8_E4M3, F8_E5M2, F8_E8M0).
 * Decoding is exact: every 8-bit code maps to one f32 value, so each format is a 256-entry table.
 *
 * - E4M3 ("e4m3fn", OCP FP8): 1 sign, 4 exponent (bias 7), 3 mantissa bits; no infinities;
 *   S.1111.111 is NaN; largest finite is 448.
 * - E5M2: 1 sign, 5 exponent (bias 15), 2 mantissa bits; IEEE-like with infinities and NaNs; max 57344.
 * - E8M0 (OCP MX scale): 8 exponent bits, no sign, no mantissa: 2^(e - 127); 0xFF is NaN.
 */

function buildE4M3Table(): Float32Array {
  const table = new Float32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 3) & 0x0f;
    const mantissa = code & 0x07;
    let value: number;
    if (exponent === 0x0f && mantissa === 0x07) value = NaN;
    else if (exponent === 0) value = (mantissa / 8) * 2 ** -6;
    else value = (1 + mantissa / 8) * 2 ** (exponent - 7);
    table[code] = sign * value;
  }
  return table;
}

function buildE5M2Table(): Float32Array {
  const table = new Float32Array(256);
  for (let code = 0; code < 256; code++) {
    const sign = code & 0x80 ? -1 : 1;
    const exponent = (code >> 2) & 0x1f;
    const mantissa = code & 0x03;
    let value: number;
    if (exponent === 0x1f) value = mantissa === 0 ? Infinity : NaN;
    else if (exponent === 0) value = (mantissa / 4) * 2 ** -14;
    else value = (1 + mantissa / 4) * 2 ** (exponent - 15);
    table[code] = sign * value;
  }
  return table;
}

function buildE8M0Table(): Float32Array {
  const table = new Float32Array(256);
  // 2^-127 is an f32 subnormal, still exact.
  for (let code = 0; code < 256; code++) table[code] = code === 0xff ? NaN : 2 ** (code - 127);
  return table;
}

/** Code -> value tables; index with the stored byte. */
export const F8_E4M3_TO_F32: Float32Array = buildE4M3Table();
export const F8_E5M2_TO_F32: Float32Array = buildE5M2Table();
export const F8_E8M0_TO_F32: Float32Array = buildE8M0Table();

export const F8_E4M3_MAX = 448;
export const F8_E5M2_MAX = 57344;
