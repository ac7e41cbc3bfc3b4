/**
 * CPU reference kernels of the LLaMA forward pass over row-major Float32Arrays. Each one is a
 * separate pure function with a GPU-shaped signature (inputs, output, shape) so that a WebGPU
 * kernel can replace it one for one. No allocation inside the loops; callers own the buffers.
 * Sums accumulate in JS doubles (f64) and are stored as f32.
 */

/**
 * out[t, o] = sum_k x[t, k] * w[o, k]   (x: [rows, inner], w: [outs, inner] as stored by nn.Linear,
 * out: [rows, outs]). Register-blocked 4 x 4: sixteen dot products share eight loads per step.
 */
export function matmulTransposed(x: Float32Array, w: Float32Array, out: Float32Array, rows: number, inner: number, outs: number): void {
  const rows4 = rows - (rows % 4);
  const outs4 = outs - (outs % 4);
  for (let t = 0; t < rows4; t += 4) {
    const x0 = t * inner;
    const x1 = x0 + inner;
    const x2 = x1 + inner;
    const x3 = x2 + inner;
    const r0 = t * outs;
    const r1 = r0 + outs;
    const r2 = r1 + outs;
    const r3 = r2 + outs;
    for (let o = 0; o < outs4; o += 4) {
      const w0 = o * inner;
      const w1 = w0 + inner;
      const w2 = w1 + inner;
      const w3 = w2 + inner;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0;
      let s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      let s20 = 0, s21 = 0, s22 = 0, s23 = 0;
      let s30 = 0, s31 = 0, s32 = 0, s33 = 0;
      for (let k = 0; k < inner; k++) {
        const a0 = x[x0 + k]!, a1 = x[x1 + k]!, a2 = x[x2 + k]!, a3 = x[x3 + k]!;
        const b0 = w[w0 + k]!, b1 = w[w1 + k]!, b2 = w[w2 + k]!, b3 = w[w3 + k]!;
        s00 += a0 * b0; s01 += a0 * b1; s02 += a0 * b2; s03 += a0 * b3;
        s10 += a1 * b0; s11 += a1 * b1; s12 += a1 * b2; s13 += a1 * b3;
        s20 += a2 * b0; s21 += a2 * b1; s22 += a2 * b2; s23 += a2 * b3;
        s30 += a3 * b0; s31 += a3 * b1; s32 += a3 * b2; s33 += a3 * b3;
      }
      out[r0 + o] = s00; out[r0 + o + 1] = s01; out[r0 + o + 2] = s02; out[r0 + o + 3] = s03;
      out[r1 + o] = s10; out[r1 + o + 1] = s11; out[r1 + o + 2] = s12; out[r1 + o + 3] = s13;
      out[r2 + o] = s20; out[r2 + o + 1] = s21; out[r2 + o + 2] = s22; out[r2 + o + 3] = s23;
      out[r3 + o] = s30; out[r3 + o + 1] = s31; out[r3 + o + 2] = s32; out[r3 + o + 3] = s33;
    }
    for (let o = outs4; o < outs; o++) {
      const w0 = o * inner;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let k = 0; k < inner; k++) {
        const b = w[w0 + k]!;
        s0 += x[x0 + k]! * b; s1 += x[x1 + k]! * b; s2 += x[x2 + k]! * b; s3 += x[x3 + k]! * b;
      }
      out[r0 + o] = s0; out[r1 + o] = s1; out[r2 + o] = s2; out[r3 + o] = s3;
    }
  }
  for (let t = rows4; t < rows; t++) {
    const x0 = t * inner;
    const r0 = t * outs;
    for (let o = 0; o < outs; o++) {
      const w0 = o * inner;
      let s = 0;
      for (let k = 0; k < inner; k++) s += x[x0 + k]! * w[w0 + k]!;
      out[r0 + o] = s;
    }
  }
}

/** out[t, :] = x[t, :] / sqrt(mean(x[t, :]^2) + eps) * weight   (HF LlamaRMSNorm, in place allowed). */
export function rmsNorm(x: Float32Array, weight: Float32Array, out: Float32Array, rows: number, width: number, eps: number): void {
  for (let t = 0; t < rows; t++) {
    const base = t * width;
    let ss = 0;
    for (let i = 0; i < width; i++) {
      const v = x[base + i]!;
      ss += v * v;
    }
    // HF computes the variance in f32 and multiplies by rsqrt in f32 before the weight.
    const inv = Math.fround(1 / Math.sqrt(Math.fround(ss / width) + eps));
    for (let i = 0; i < width; i++) out[base + i] = Math.fround(x[base + i]! * inv) * weight[i]!;
  }
}

/**
 * How a head's dimensions are paired for the rotation.
 * - `half` (HF rotate_half): dim i pairs with i + d/2; safetensors checkpoints.
 * - `interleaved`: dim 2i pairs with 2i + 1; GGUF files, whose Q/K rows llama.cpp's converter permuted.
 */
export type RopeLayout = 'half' | 'interleaved';

/** cos/sin tables [positions, headDim/2] for angle = pos * theta^(-2i/d) (inverse frequencies in f32, as HF). */
export function ropeTables(positions: number, headDim: number, theta: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let i = 0; i < half; i++) {
    const invFreq = Math.fround(1 / Math.pow(theta, Math.fround((2 * i) / headDim)));
    for (let p = 0; p < positions; p++) {
      const angle = Math.fround(p * invFreq);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Rotates every head of x: [rows, heads * headDim], row t at position positionOffset + t. In place. */
export function applyRope(
  x: Float32Array,
  rows: number,
  heads: number,
  headDim: number,
  tables: { cos: Float32Array; sin: Float32Array },
  layout: RopeLayout,
  positionOffset = 0,
): void {
  const half = headDim / 2;
  const width = heads * headDim;
  for (let t = 0; t < rows; t++) {
    const tab = (positionOffset + t) * half;
    for (let h = 0; h < heads; h++) {
      const base = t * width + h * headDim;
      for (let i = 0; i < half; i++) {
        const c = tables.cos[tab + i]!;
        const s = tables.sin[tab + i]!;
        const ia = layout === 'half' ? base + i : base + 2 * i;
        const ib = layout === 'half' ? base + i + half : base + 2 * i + 1;
        const a = x[ia]!;
        const b = x[ib]!;
        x[ia] = a * c - b * s;
        x[ib] = b * c + a * s;
      }
    }
  }
}

/**
 * Causal grouped-query attention for one sequence. q: [rows, heads*d], k, v: [rows, kvHeads*d],
 * out: [rows, heads*d]. Query head h reads kv head floor(h / (heads / kvHeads)). `scores` is scratch
 * of at least `rows` floats.
 */
export function causalAttention(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  rows: number,
  heads: number,
  kvHeads: number,
  headDim: number,
  scores: Float64Array,
): void {
  const group = heads / kvHeads;
  const qWidth = heads * headDim;
  const kvWidth = kvHeads * headDim;
  const scale = 1 / Math.sqrt(headDim);
  for (let h = 0; h < heads; h++) {
    const kvh = Math.floor(h / group);
    for (let t = 0; t < rows; t++) {
      const qBase = t * qWidth + h * headDim;
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        const kBase = s * kvWidth + kvh * headDim;
        let dot = 0;
        for (let i = 0; i < headDim; i++) dot += q[qBase + i]! * k[kBase + i]!;
        dot *= scale;
        scores[s] = dot;
        if (dot > max) max = dot;
      }
      let sum = 0;
      for (let s = 0; s <= t; s++) {
        const e = Math.exp(scores[s]! - max);
        scores[s] = e;
        sum += e;
      }
      const inv = 1 / sum;
      const oBase = t * qWidth + h * headDim;
      for (let i = 0; i < headDim; i++) out[oBase + i] = 0;
      for (let s = 0; s <= t; s++) {
        const p = scores[s]! * inv;
        const vBase = s * kvWidth + kvh * headDim;
        for (let i = 0; i < headDim; i++) out[oBase + i] = out[oBase + i]! + p * v[vBase + i]!;
      }
    }
  }
}

/** gate[i] = silu(gate[i]) * up[i], in place over `count` values. */
export function swiglu(gate: Float32Array, up: Float32Array, count: number): void {
  for (let i = 0; i < count; i++) {
    const g = gate[i]!;
    gate[i] = (g / (1 + Math.exp(-g))) * up[i]!;
  }
}

/** x[i] += delta[i] over `count` values. */
export function addInPlace(x: Float32Array, delta: Float32Array, count: number): void {
  for (let i = 0; i < count; i++) x[i] = x[i]! + delta[i]!;
}
