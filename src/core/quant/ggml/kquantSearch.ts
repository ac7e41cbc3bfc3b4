/**
 * get_scale_min_k4 of ggml-quants.c, shared by the Q4_K / Q5_K dequantizers. (The K-quant scale searches
 * make_qkx2_quants, make_q3_quants and make_qx_quants are in the WebAssembly quantizers, wasm/ggmlQuants.as.)
 */
/** get_scale_min_k4: the j-th 6-bit scale and min of a Q4_K / Q5_K block's 12 scale bytes at q[o..o+12). */
export const scaleMinOut = { sc: 0, m: 0 };
export function getScaleMinK4(j: number, q: Uint8Array, o: number): void {
  if (j < 4) {
    scaleMinOut.sc = q[o + j]! & 63;
    scaleMinOut.m = q[o + j + 4]! & 63;
  } else {
    scaleMinOut.sc = (q[o + j + 4]! & 0xf) | ((q[o + j - 4]! >>> 6) << 4);
    scaleMinOut.m = (q[o + j + 4]! >>> 4) | ((q[o + j]! >>> 6) << 4);
  }
}
