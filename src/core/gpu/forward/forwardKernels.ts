/**
 * The forward pass's WebGPU kernels as data (see ../kernels.ts): WGSL from kernels/fwd_*.wgsl, shapes
 * in uniforms, one cached pipeline per kernel and device.
 */
import type { Kernel } from '../kernels';
import { WGSL_SOURCES } from '../kernels/index';

/** Longest window the attention kernel holds in workgroup memory (its `scores` array). */
export const GPU_MAX_WINDOW = 2048;
/** Largest head size the attention kernel holds in workgroup memory (its `q_row` array). */
export const GPU_MAX_HEAD_DIM = 256;
/** Output tile of one matmul workgroup (64 x 64, 4 x 4 per thread). */
export const MATMUL_TILE = 64;

const perThread = (wg: number) => (items: number) => Math.ceil(items / wg);
const perItem = (items: number): number => items;

export const FORWARD_KERNELS = {
  /** Workgroups are laid out by the caller (a 2-D grid of 64 x 64 output tiles); workgroupsFor gives tiles per 64 columns. */
  matmul: {
    name: 'fwd_matmul',
    wgsl: WGSL_SOURCES.fwd_matmul,
    bindings: ['read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'uniform'],
    workgroupSize: 256,
    workgroupsFor: perThread(MATMUL_TILE),
  },
  /** The same product without workgroup memory, for software adapters (same bindings and grid). */
  matmulDirect: {
    name: 'fwd_matmul_direct',
    wgsl: WGSL_SOURCES.fwd_matmul_direct,
    bindings: ['read-only-storage', 'read-only-storage', 'read-only-storage', 'storage', 'uniform'],
    workgroupSize: 256,
    workgroupsFor: perThread(MATMUL_TILE),
  },
  /** One workgroup per row. */
  rmsNorm: { name: 'fwd_rmsnorm', wgsl: WGSL_SOURCES.fwd_rmsnorm, bindings: ['read-only-storage', 'read-only-storage', 'storage', 'uniform'], workgroupSize: 64, workgroupsFor: perItem },
  /** One thread per (row, head, pair of dimensions). */
  rope: { name: 'fwd_rope', wgsl: WGSL_SOURCES.fwd_rope, bindings: ['storage', 'read-only-storage', 'read-only-storage', 'uniform'], workgroupSize: 256, workgroupsFor: perThread(256) },
  /** One workgroup per (row, query head). */
  attention: { name: 'fwd_attention', wgsl: WGSL_SOURCES.fwd_attention, bindings: ['read-only-storage', 'storage', 'uniform'], workgroupSize: 64, workgroupsFor: perItem },
  /** One thread per output value. */
  swiglu: { name: 'fwd_swiglu', wgsl: WGSL_SOURCES.fwd_swiglu, bindings: ['read-only-storage', 'storage', 'uniform'], workgroupSize: 256, workgroupsFor: perThread(256) },
  /** One workgroup per (row, segment): activation (per token) and KV (per token and head) fake-quant. */
  fakeQuant: { name: 'fwd_fakequant', wgsl: WGSL_SOURCES.common + '\n' + WGSL_SOURCES.fwd_fakequant, bindings: ['storage', 'uniform'], workgroupSize: 64, workgroupsFor: perItem },
  /** One workgroup per row of logits. */
  nll: { name: 'fwd_nll', wgsl: WGSL_SOURCES.fwd_nll, bindings: ['read-only-storage', 'read-only-storage', 'storage', 'uniform'], workgroupSize: 256, workgroupsFor: perItem },
} as const satisfies Record<string, Kernel>;
