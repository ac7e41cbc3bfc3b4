/**
 * The quantization targets the Quantize… flow offers. `id` is what the pipeline receives; the bits per
 * weight here are the storage cost including scales, used only until the pipeline's dry-run plan answers.
 */
import { InvalidArgumentError, UnsupportedError } from '../core/errors';

export type TargetFormat = 'gguf' | 'safetensors';

export interface TargetInfo {
  id: string;
  label: string;
  format: TargetFormat;
  detail: string;
  /** Storage bits per weight of the quantized tensors, scales included (before the pipeline's exact plan). */
  nominalBitsPerWeight: number;
  /** Group-wise schemes ask for a group size. */
  usesGroupSize: boolean;
  available: boolean;
  /** Why an unavailable target cannot be chosen (shown in the quick pick). */
  unavailableReason?: string;
}

/**
 * GGUF outputs come from the GGUF exporter (src/core/convert), which the pipeline takes as a hook;
 * until it is part of the build the GGUF targets are listed but cannot be chosen.
 */
export const GGUF_EXPORT_AVAILABLE = true;

const gguf = (type: string, bpw: number, detail: string): TargetInfo => ({
  id: `gguf:${type}`,
  label: `GGUF ${type}`,
  format: 'gguf',
  detail,
  nominalBitsPerWeight: bpw,
  usesGroupSize: false,
  available: GGUF_EXPORT_AVAILABLE,
  ...(GGUF_EXPORT_AVAILABLE ? {} : { unavailableReason: 'GGUF export is not in this build yet' }),
});

const safetensors = (id: string, label: string, bpw: number, detail: string, usesGroupSize: boolean): TargetInfo => ({
  id,
  label,
  format: 'safetensors',
  detail,
  nominalBitsPerWeight: bpw,
  usesGroupSize,
  available: true,
});

export const TARGETS: readonly TargetInfo[] = [
  gguf('F16', 16, 'half precision, lossless for BF16 weights that fit F16'),
  gguf('Q8_0', 8.5, 'blocks of 32, one F16 scale: near lossless'),
  gguf('Q6_K', 6.5625, 'K-quant, 6 bits'),
  gguf('Q5_K_M', 5.69, 'llama.cpp preset: Q5_K with Q6_K for sensitive tensors'),
  gguf('Q4_K_M', 4.89, 'llama.cpp preset: Q4_K with Q6_K for sensitive tensors'),
  gguf('Q4_0', 4.5, 'blocks of 32, one F16 scale'),
  safetensors('int8', 'INT8 (safetensors)', 8, 'absmax per output channel, round to nearest', false),
  safetensors('int4', 'INT4 (safetensors, GPTQ layout)', 4.31, 'group-wise asymmetric, round to nearest, F16 scale per group', true),
  safetensors('nf4', 'NF4 (safetensors, bitsandbytes)', 4.5, 'NormalFloat4 code book, absmax per block of 64', false),
  safetensors('fp8', 'FP8 E4M3 (safetensors)', 8, 'per-tensor scale, round to nearest even', false),
];

export function findTarget(id: string): TargetInfo | undefined {
  return TARGETS.find((t) => t.id === id || t.id.toLowerCase() === id.toLowerCase());
}

/**
 * The pipeline's target name and options for one of ours: `int4` + group 64 -> `int4-g64`
 * (the group size also goes in as an option so sizes the table lacks still work); GGUF ids lose their prefix.
 */
export function pipelineTarget(target: TargetInfo, groupSize: number | undefined): { target: string; groupSize: number | undefined } {
  if (target.format === 'gguf') return { target: target.id.slice('gguf:'.length), groupSize: undefined };
  if (target.id === 'int4') return { target: 'int4-g128', groupSize: groupSize ?? 128 };
  return { target: target.id, groupSize: undefined };
}

/** File extension of the output for a target. */
export function outputExtension(target: TargetInfo): string {
  return target.format === 'gguf' ? '.gguf' : '.safetensors';
}

/** Short suffix for output names: `gguf:Q4_K_M` -> `Q4_K_M`, `nf4` with group 64 -> `nf4-g64`. */
export function targetSuffix(target: TargetInfo, groupSize: number | undefined): string {
  const base = target.format === 'gguf' ? target.id.slice('gguf:'.length) : target.id;
  return target.usesGroupSize && groupSize !== undefined ? `${base}-g${groupSize}` : base;
}

export type CalibratedMethodId = 'gptq' | 'awq' | 'smoothquant' | 'llm-int8';

/** A calibrated method of the Quantize… flow: a calibration pass, then one of `targetIds` is written. */
export interface MethodInfo {
  id: CalibratedMethodId;
  label: string;
  detail: string;
  /** The targets the core writes for this method (see checkMethodRequest in core/methods/methodQuantize.ts). */
  targetIds: readonly string[];
  available: boolean;
  unavailableReason?: string;
}

export const METHODS: readonly MethodInfo[] = [
  // GPTQ writes its own blocks: INT4 in the GPTQ layout, or each GGUF linear's planned ggml type (K types included; not F16).
  {
    id: 'gptq',
    label: 'GPTQ',
    detail: 'second-order error compensation: INT4 (GPTQ layout) or GGUF blocks of any quantized type or preset',
    targetIds: ['int4', 'gguf:Q4_0', 'gguf:Q4_K_M', 'gguf:Q5_K_M', 'gguf:Q6_K', 'gguf:Q8_0'],
    available: true,
  },
  // AWQ and SmoothQuant rewrite the weights; the target's own quantizer then writes them (AWQ needs a quantized grid).
  { id: 'awq', label: 'AWQ', detail: 'activation-aware weight scaling, then INT4 (GPTQ layout) or a quantized GGUF type', targetIds: ['int4', 'gguf:Q4_0', 'gguf:Q4_K_M', 'gguf:Q5_K_M', 'gguf:Q6_K', 'gguf:Q8_0'], available: true },
  {
    id: 'smoothquant',
    label: 'SmoothQuant',
    detail: 'migrates activation outliers into weights, then any target',
    targetIds: ['int8', 'int4', 'nf4', 'fp8', 'gguf:F16', 'gguf:Q8_0', 'gguf:Q6_K', 'gguf:Q5_K_M', 'gguf:Q4_K_M', 'gguf:Q4_0'],
    available: true,
  },
  // LLM.int8(): bitsandbytes' Linear8bitLt (vector-wise INT8) with the calibrated outlier columns kept in 16 bit.
  {
    id: 'llm-int8',
    label: 'LLM.int8()',
    detail: 'mixed-precision decomposition: outlier input dims in 16 bit, the rest vector-wise INT8',
    targetIds: ['int8'],
    available: true,
  },
];

export function findMethod(id: string): MethodInfo | undefined {
  return METHODS.find((m) => m.id === id.toLowerCase());
}

/**
 * Refuses a method/target pair the core would refuse (one line naming what to change); returns the method.
 * The core checks again in the worker (checkMethodRequest) with the exact recipe.
 */
export function checkMethodTarget(methodId: string, target: TargetInfo): MethodInfo {
  const method = findMethod(methodId);
  if (!method) throw new InvalidArgumentError(`unknown calibrated method "${methodId}"; give one of ${METHODS.filter((m) => m.available).map((m) => m.id).join(', ')}`);
  if (!method.available) throw new UnsupportedError(`${method.label}: ${method.unavailableReason ?? 'not available'}`);
  if (!method.targetIds.includes(target.id)) {
    throw new InvalidArgumentError(`${method.label} cannot write ${target.label}; give one of ${method.targetIds.map((id) => findTarget(id)?.label ?? id).join(', ')}`);
  }
  return method;
}
