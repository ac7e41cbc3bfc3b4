/**
 * Simulated ("fake") quantization settings in the Qllm-Eval manner: values are quantized and
 * immediately dequantized in f32, so the forward pass sees exactly the rounding error a real
 * low-bit kernel would introduce.
 *
 * - W<b>[g<n>]: weights of every linear layer except lm_head (embeddings and norms untouched).
 *   8 bits: symmetric absmax, per output row unless a group is given, levels [-127, 127].
 *   < 8 bits: asymmetric min/max per group of g input columns (default --group, 64), levels [0, 2^b-1].
 *   (These are the rules of micro-llama-reference.json's `fake_quant_how`.)
 * - A<b>: the input of every quantized linear layer, per token (row), symmetric absmax,
 *   levels [-(2^(b-1)-1), 2^(b-1)-1].
 * - KV<b>: keys (after RoPE) and values, per token and per KV head, asymmetric min/max,
 *   levels [0, 2^b-1] (the KV-cache layout of Qllm-Eval / KIVI-style per-token quantization).
 * Rounding rule everywhere: round half to even (torch.round) of the f32 quotient; all steps in f32.
 */
import { InvalidArgumentError } from '../errors';

export interface QuantSetting {
  /** Canonical label, e.g. `W4g64A8`, `KV4`, `FP16`. */
  label: string;
  weightBits: number | null;
  /** Input columns per weight group; -1 = one group per output row. */
  weightGroup: number;
  activationBits: number | null;
  kvBits: number | null;
}

export const BASELINE_SETTING: QuantSetting = { label: 'FP16', weightBits: null, weightGroup: -1, activationBits: null, kvBits: null };

const ALLOWED_BITS = new Set([2, 3, 4, 5, 6, 8]);

/** Parses `W4`, `W4g32`, `W8A8`, `W4A8`, `KV4`, `W8KV4`, `W4g128A8KV4`, `FP16` (case-insensitive). */
export function parseQuantSetting(text: string, defaultGroup: number): QuantSetting {
  const s = text.trim().toUpperCase();
  if (s === 'FP16' || s === 'BF16' || s === 'F32' || s === 'W16A16') return BASELINE_SETTING;
  const m = /^(?:W(\d+)(?:G(\d+))?)?(?:A(\d+))?(?:KV(\d+))?$/.exec(s);
  if (m === null || s.length === 0 || (m[1] === undefined && m[3] === undefined && m[4] === undefined)) {
    throw new InvalidArgumentError(`quant setting '${text}' is not of the form W<bits>[g<group>][A<bits>][KV<bits>] (e.g. W4, W4g32, W8A8, W4A8, KV4, W8KV4)`);
  }
  const bits = (v: string | undefined, what: string): number | null => {
    if (v === undefined) return null;
    const b = Number(v);
    if (b === 16) return null;
    if (!ALLOWED_BITS.has(b)) throw new InvalidArgumentError(`quant setting '${text}': ${what} bits ${v} is not one of 2, 3, 4, 5, 6, 8, 16`);
    return b;
  };
  const weightBits = bits(m[1], 'weight');
  const explicitGroup = m[2] === undefined ? undefined : Number(m[2]);
  if (explicitGroup !== undefined && (!Number.isSafeInteger(explicitGroup) || explicitGroup <= 0)) throw new InvalidArgumentError(`quant setting '${text}': group must be a positive integer`);
  if (!Number.isSafeInteger(defaultGroup) || (defaultGroup <= 0 && defaultGroup !== -1)) throw new InvalidArgumentError(`--group must be a positive integer or -1, got ${defaultGroup}`);
  const weightGroup = weightBits === null ? -1 : (explicitGroup ?? (weightBits === 8 ? -1 : defaultGroup));
  const activationBits = bits(m[3], 'activation');
  const kvBits = bits(m[4], 'KV');
  let label = '';
  if (weightBits !== null) label += `W${weightBits}${weightGroup > 0 ? `g${weightGroup}` : ''}`;
  if (activationBits !== null) label += `A${activationBits}`;
  if (kvBits !== null) label += `KV${kvBits}`;
  if (label === '') return BASELINE_SETTING;
  return { label, weightBits, weightGroup, activationBits, kvBits };
}

export function isBaseline(s: QuantSetting): boolean {
  return s.weightBits === null && s.activationBits === null && s.kvBits === null;
}

/** Round half to even (torch.round); JS Math.round rounds ties up and would not match. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** Symmetric absmax over data[start, start+len): q = clamp(roundEven(x/s), -qmax, qmax), x' = q*s. */
function fakeQuantSymmetric(data: Float32Array, start: number, len: number, qmax: number): void {
  let absmax = 0;
  for (let i = start; i < start + len; i++) {
    const a = Math.abs(data[i]!);
    if (a > absmax) absmax = a;
  }
  if (absmax === 0) return;
  const scale = Math.fround(absmax / qmax);
  for (let i = start; i < start + len; i++) {
    let q = roundHalfEven(Math.fround(data[i]! / scale));
    if (q > qmax) q = qmax;
    else if (q < -qmax) q = -qmax;
    data[i] = Math.fround(q * scale);
  }
}

/**
 * Asymmetric min/max over data[start, start+len) with levels [0, maxq]:
 * scale = f32((max - min) / maxq), zero = clamp(roundEven(-min / scale), 0, maxq),
 * q = clamp(roundEven(x / scale) + zero, 0, maxq), x' = f32((q - zero) * scale).
 */
function fakeQuantAsymmetric(data: Float32Array, start: number, len: number, maxq: number): void {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = start; i < start + len; i++) {
    const v = data[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (!(hi > lo)) return; // a constant group is represented exactly
  const scale = Math.fround(Math.max(Math.fround(hi - lo), 1e-5) / maxq);
  let zero = roundHalfEven(Math.fround(-lo / scale));
  if (zero < 0) zero = 0;
  else if (zero > maxq) zero = maxq;
  for (let i = start; i < start + len; i++) {
    let q = roundHalfEven(Math.fround(data[i]! / scale)) + zero;
    if (q < 0) q = 0;
    else if (q > maxq) q = maxq;
    data[i] = Math.fround((q - zero) * scale);
  }
}

/** Fake-quantizes a weight [rows, cols] in place with the W rule above. */
export function fakeQuantizeWeight(w: Float32Array, rows: number, cols: number, bits: number, group: number): void {
  const g = group <= 0 ? cols : group;
  if (cols % g !== 0) throw new InvalidArgumentError(`weight group size ${g} does not divide the ${cols} input columns`);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c += g) {
      if (bits === 8) fakeQuantSymmetric(w, r * cols + c, g, 127);
      else fakeQuantAsymmetric(w, r * cols + c, g, (1 << bits) - 1);
    }
  }
}

/** Fake-quantizes activations [rows, cols] in place: per token (row), symmetric absmax. */
export function fakeQuantizeActivations(x: Float32Array, rows: number, cols: number, bits: number): void {
  const qmax = (1 << (bits - 1)) - 1;
  for (let r = 0; r < rows; r++) fakeQuantSymmetric(x, r * cols, cols, qmax);
}

/** Fake-quantizes a K or V cache [rows, heads * headDim] in place: per token and per head, asymmetric. */
export function fakeQuantizeKv(x: Float32Array, rows: number, heads: number, headDim: number, bits: number): void {
  const maxq = (1 << bits) - 1;
  for (let r = 0; r < rows; r++) {
    for (let h = 0; h < heads; h++) fakeQuantAsymmetric(x, (r * heads + h) * headDim, headDim, maxq);
  }
}
