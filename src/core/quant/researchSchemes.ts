/**
 * The research (non-ggml) targets of `quantlens quantize --to <name>`: what each name means, and
 * how CLI options (--group, --sym, --double-quant, --scale) refine it into one recipe.
 * The output layout of each kind is described in docs/formats-output.md.
 */
import { InvalidArgumentError } from '../errors';
import type { IntBits } from './intN';

export type ResearchKind = 'int8-absmax' | 'int8-zeropoint' | 'gptq' | 'nf4' | 'fp8';

export interface ResearchScheme {
  name: string;
  kind: ResearchKind;
  summary: string;
  bits: IntBits;
  /** Default input columns per group (gptq only); -1 = per output channel. */
  groupSize?: number;
  granularity?: 'tensor' | 'channel';
}

export const RESEARCH_SCHEMES: readonly ResearchScheme[] = [
  { name: 'int8', kind: 'int8-absmax', bits: 8, granularity: 'channel', summary: 'INT8 absmax per output channel (vector-wise), I8 weight + F32 weight_scale' },
  { name: 'int8-tensor', kind: 'int8-absmax', bits: 8, granularity: 'tensor', summary: 'INT8 absmax, one scale per tensor' },
  { name: 'int8-zp', kind: 'int8-zeropoint', bits: 8, granularity: 'channel', summary: 'INT8 zero-point (asymmetric) per output channel, U8 weight + scale + zero point' },
  { name: 'int8-g128', kind: 'gptq', bits: 8, groupSize: 128, summary: 'group-wise INT8, groups of 128, GPTQ layout' },
  { name: 'int4-g128', kind: 'gptq', bits: 4, groupSize: 128, summary: 'group-wise INT4, groups of 128, GPTQ layout' },
  { name: 'int4-g64', kind: 'gptq', bits: 4, groupSize: 64, summary: 'group-wise INT4, groups of 64, GPTQ layout' },
  { name: 'int4-g32', kind: 'gptq', bits: 4, groupSize: 32, summary: 'group-wise INT4, groups of 32, GPTQ layout' },
  { name: 'int3-g128', kind: 'gptq', bits: 3, groupSize: 128, summary: 'group-wise INT3, groups of 128, GPTQ layout (AutoGPTQ 3-bit packing)' },
  { name: 'int2-g64', kind: 'gptq', bits: 2, groupSize: 64, summary: 'group-wise INT2, groups of 64, GPTQ layout' },
  { name: 'nf4', kind: 'nf4', bits: 4, summary: 'bitsandbytes NF4, blocks of 64 (--double-quant for 8-bit absmax)' },
  { name: 'fp8', kind: 'fp8', bits: 8, granularity: 'tensor', summary: 'FP8 E4M3 weight + F32 weight_scale (--scale tensor|channel)' },
];

export interface ResearchRecipe {
  target: string;
  kind: ResearchKind;
  bits: IntBits;
  /** gptq: effective group size (-1 = per channel); others: null. */
  groupSize: number | null;
  /** gptq: symmetric (zero 2^(bits-1)) or asymmetric; int8-absmax and fp8 are symmetric, int8-zp and nf4 are not "sym" schemes. */
  symmetric: boolean;
  granularity: 'tensor' | 'channel' | null;
  doubleQuant: boolean;
  includeEmbeddings: boolean;
}

export interface ResearchOptions {
  groupSize?: number;
  symmetric?: boolean;
  doubleQuant?: boolean;
  scale?: 'tensor' | 'channel';
  includeEmbeddings?: boolean;
}

export function findResearchScheme(name: string): ResearchScheme | undefined {
  return RESEARCH_SCHEMES.find((s) => s.name === name.toLowerCase());
}

export function researchTargetNames(): string[] {
  return RESEARCH_SCHEMES.map((s) => s.name);
}

/** Combines a scheme with the options; refuses options that do not apply to it. */
export function resolveResearchRecipe(scheme: ResearchScheme, options: ResearchOptions = {}): ResearchRecipe {
  const { kind } = scheme;
  if (options.groupSize !== undefined && kind !== 'gptq') throw new InvalidArgumentError(`--group applies to the group-wise targets (int4-g128 ...), not to ${scheme.name}`);
  if (options.symmetric === true && kind !== 'gptq') throw new InvalidArgumentError(`--sym applies to the group-wise targets, not to ${scheme.name}`);
  if (options.doubleQuant === true && kind !== 'nf4') throw new InvalidArgumentError(`--double-quant applies to nf4, not to ${scheme.name}`);
  if (options.scale !== undefined && kind !== 'fp8' && kind !== 'int8-absmax' && kind !== 'int8-zeropoint') {
    throw new InvalidArgumentError(`--scale applies to fp8 and the int8 targets, not to ${scheme.name}`);
  }
  let groupSize: number | null = null;
  if (kind === 'gptq') {
    groupSize = options.groupSize ?? scheme.groupSize ?? 128;
    if (groupSize !== -1 && (!Number.isInteger(groupSize) || groupSize <= 0)) throw new InvalidArgumentError(`--group ${groupSize}: give a positive group size or -1 for per channel`);
  }
  return {
    target: scheme.name,
    kind,
    bits: scheme.bits,
    groupSize,
    symmetric: kind === 'gptq' ? options.symmetric === true : kind === 'int8-absmax' || kind === 'fp8',
    granularity: kind === 'gptq' || kind === 'nf4' ? null : (options.scale ?? scheme.granularity ?? 'channel'),
    doubleQuant: options.doubleQuant === true,
    includeEmbeddings: options.includeEmbeddings === true,
  };
}
