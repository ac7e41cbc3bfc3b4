/**
 * Host side of each forward kernel: the uniform layout its WGSL `Params` expects and its grid, so
 * the pass (gpuLlama.ts) and the kernel tests record dispatches the same way.
 */
import { UnsupportedError } from '../../errors';
import type { GpuContext } from '../device';
import { createUniformBuffer, encodeKernel, gridFor, type Kernel } from '../kernels';
import { FORWARD_KERNELS } from './forwardKernels';

/** Uniform buffers made once per distinct content and destroyed together (one pass's worth). */
export class UniformPool {
  private readonly buffers = new Map<string, GPUBuffer>();
  constructor(private readonly gpu: GpuContext) {}

  get(name: string, words: Uint32Array): GPUBuffer {
    const key = `${name}:${words.join(',')}`;
    let b = this.buffers.get(key);
    if (b === undefined) {
      b = createUniformBuffer(this.gpu, name, words);
      this.buffers.set(key, b);
    }
    return b;
  }

  destroy(): void {
    for (const b of this.buffers.values()) b.destroy();
    this.buffers.clear();
  }
}

/** The bits of `v` rounded to f32, for a uniform word. */
export function f32Bits(v: number): number {
  return new Uint32Array(Float32Array.of(v).buffer)[0]!;
}

export interface MatmulArgs {
  /** Activations [*, inner]; rows xRow0 .. xRow0 + rows are read. */
  x: GPUBuffer;
  xRow0: number;
  rows: number;
  /** Weight rows [outs, inner] (one part of a matrix). */
  w: GPUBuffer;
  outs: number;
  inner: number;
  /** bias[outs], or null. */
  bias: GPUBuffer | null;
  /** Any 4-byte buffer, bound where there is no bias. */
  unused: GPUBuffer;
  /** out[m * outStride + outCol + n]. */
  out: GPUBuffer;
  outStride: number;
  outCol: number;
  /** Add to what out holds (the residual add). */
  accumulate: boolean;
}

/** out[m, outCol + n] (+)= x[xRow0 + m, :] . w[n, :] (+ bias[n]) with the tiled or direct kernel. */
export function encodeMatmul(gpu: GpuContext, encoder: GPUCommandEncoder, uniforms: UniformPool, kernel: Kernel, a: MatmulArgs): void {
  const tilesAcross = kernel.workgroupsFor(a.outs);
  const tilesDown = kernel.workgroupsFor(a.rows);
  const maxGrid = gpu.limits.maxComputeWorkgroupsPerDimension;
  if (tilesAcross > maxGrid || tilesDown > maxGrid) throw new UnsupportedError(`a ${a.rows} x ${a.outs} matmul needs more than ${maxGrid} workgroups in one dimension`);
  const flags = (a.accumulate ? 1 : 0) | (a.bias !== null ? 2 : 0);
  const params = uniforms.get('fwd matmul', Uint32Array.of(a.rows, a.outs, a.inner, flags, a.outStride, a.outCol, a.xRow0, 0));
  encodeKernel(gpu, encoder, kernel, [a.x, a.w, a.bias ?? a.unused, a.out, params], { x: tilesAcross, y: tilesDown });
}

/** out[r, :] = RMSNorm(x[r, :]) * weight for r < rows. */
export function encodeRmsNorm(gpu: GpuContext, encoder: GPUCommandEncoder, uniforms: UniformPool, x: GPUBuffer, weight: GPUBuffer, out: GPUBuffer, rows: number, width: number, eps: number): void {
  const grid = gridFor(rows, gpu.limits.maxComputeWorkgroupsPerDimension);
  const params = uniforms.get('fwd rmsnorm', Uint32Array.of(rows, width, f32Bits(eps), grid.x));
  encodeKernel(gpu, encoder, FORWARD_KERNELS.rmsNorm, [x, weight, out, params], grid);
}

/** Layout of the fused projection output qkv [rows, rowStride]: Q heads at column 0, K at kCol, V at vCol. */
export interface QkvLayout {
  rows: number;
  rowStride: number;
  qHeads: number;
  kvHeads: number;
  headDim: number;
  kCol: number;
  vCol: number;
  /** Tokens per window (row r is at position r % window). */
  window: number;
}

/** RoPE on the Q and K heads of qkv in place; cos/sin tables [window, headDim / 2]. */
export function encodeRope(gpu: GpuContext, encoder: GPUCommandEncoder, uniforms: UniformPool, qkv: GPUBuffer, cos: GPUBuffer, sin: GPUBuffer, l: QkvLayout, interleaved: boolean): void {
  const threads = l.rows * (l.qHeads + l.kvHeads) * (l.headDim / 2);
  const grid = gridFor(FORWARD_KERNELS.rope.workgroupsFor(threads), gpu.limits.maxComputeWorkgroupsPerDimension);
  const params = uniforms.get('fwd rope', Uint32Array.of(l.rows, l.rowStride, l.qHeads, l.kvHeads, l.headDim, l.kCol, l.window, interleaved ? 1 : 0, grid.x, 0, 0, 0));
  encodeKernel(gpu, encoder, FORWARD_KERNELS.rope, [qkv, cos, sin, params], grid);
}

/** Causal GQA attention of every window of qkv into out [rows, outStride] (head h at column h * headDim). */
export function encodeAttention(gpu: GpuContext, encoder: GPUCommandEncoder, uniforms: UniformPool, qkv: GPUBuffer, out: GPUBuffer, l: QkvLayout, outStride: number): void {
  const grid = gridFor(l.rows * l.qHeads, gpu.limits.maxComputeWorkgroupsPerDimension);
  const params = uniforms.get(
    'fwd attention',
    Uint32Array.of(l.rows, l.rowStride, l.qHeads, l.kvHeads, l.headDim, l.kCol, l.vCol, l.window, f32Bits(1 / Math.sqrt(l.headDim)), grid.x, outStride, 0),
  );
  encodeKernel(gpu, encoder, FORWARD_KERNELS.attention, [qkv, out, params], grid);
}

/** act[r, j] = silu(gateUp[r, j]) * gateUp[r, inter + j]. */
export function encodeSwiglu(gpu: GpuContext, encoder: GPUCommandEncoder, uniforms: UniformPool, gateUp: GPUBuffer, act: GPUBuffer, rows: number, inter: number): void {
  const grid = gridFor(FORWARD_KERNELS.swiglu.workgroupsFor(rows * inter), gpu.limits.maxComputeWorkgroupsPerDimension);
  encodeKernel(gpu, encoder, FORWARD_KERNELS.swiglu, [gateUp, act, uniforms.get('fwd swiglu', Uint32Array.of(rows, inter, grid.x, 0))], grid);
}

/** nll[targetRow0 + r] = the loss of logits row r at targets[targetRow0 + r] (0 where the target is -1). */
export function encodeNll(gpu: GpuContext, encoder: GPUCommandEncoder, uniforms: UniformPool, logits: GPUBuffer, targets: GPUBuffer, nll: GPUBuffer, rows: number, vocab: number, targetRow0: number): void {
  const grid = gridFor(rows, gpu.limits.maxComputeWorkgroupsPerDimension);
  const params = uniforms.get('fwd nll', Uint32Array.of(rows, vocab, targetRow0, grid.x));
  encodeKernel(gpu, encoder, FORWARD_KERNELS.nll, [logits, targets, nll, params], grid);
}

/**
 * Fake-quantizes in place `segs` segments of `segLen` values per row (from column col0 of rows of
 * rowStride): `symmetric` with levels = qmax (activations per token), else asymmetric with
 * levels = maxq (K/V per token and head). The rules of model/fakeQuant.ts.
 */
export function encodeFakeQuant(
  gpu: GpuContext,
  encoder: GPUCommandEncoder,
  uniforms: UniformPool,
  x: GPUBuffer,
  a: { rows: number; rowStride: number; col0: number; segLen: number; segs: number; symmetric: boolean; levels: number },
): void {
  const grid = gridFor(a.rows * a.segs, gpu.limits.maxComputeWorkgroupsPerDimension);
  const params = uniforms.get('fwd fakequant', Uint32Array.of(a.rows, a.rowStride, a.col0, a.segLen, a.segs, a.symmetric ? 0 : 1, a.levels, grid.x));
  encodeKernel(gpu, encoder, FORWARD_KERNELS.fakeQuant, [x, params], grid);
}
