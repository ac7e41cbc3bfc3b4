/**
 * The `quantize` job: the quantize pipeline (core/quant/pipeline.ts, written atomically there) run in
 * the worker, its step progress turned into JobProgress with bytes from the checkpoint's headers.
 *
 * GGUF targets quantize on the GPU when the job holds one (`device` gpu, or auto with a hardware adapter): each
 * window of rows the exporter reads goes through quantizeOnGpu (same bytes as the CPU port), through
 * ComputeDevice.run so that a GPU failure under auto hands the rest to the CPU path and says so once.
 * Types without a GPU kernel, and F16/F32 outputs, stay on the CPU. Research targets (INT8, INTn/GPTQ
 * layout, NF4, FP8) call the GPU counterparts of their quantizers the same way. The card's
 * recipe.device says where the work ran: gpu, cpu, or gpu+cpu.
 */
import type { QuantizeJobResult, QuantizeJobSpec } from '../../protocol/jobs';
import { ggufExporter as ggufExporterImpl, ggufExporterWith } from '../convert/ggufExporter';
import { InvalidArgumentError, UnsupportedError } from '../errors';
import { loadImatrixFile, type LoadedImatrix } from '../methods/imatrix';
import { openCheckpoint } from '../formats/openCheckpoint';
import { runMethodQuantize } from '../methods/methodQuantize';
import { isGpuQuantType, quantizeOnGpu, quantizedSize, type GpuPhase } from '../gpu/quantize';
import type { GpuContext } from '../gpu/device';
import {
  encodeFp8WithScaleOnGpu,
  quantizeAsymmetricWithParamsOnGpu,
  quantizeFp8E4M3OnGpu,
  quantizeInt8AbsmaxOnGpu,
  quantizeInt8WithScaleOnGpu,
  quantizeInt8ZeroPointOnGpu,
  quantizeNf4OnGpu,
  quantizeRowsIntNOnGpu,
} from '../gpu/researchQuant';
import { CPU_RESEARCH_CODEC, isGgufTarget, runQuantize, type GgufWindowQuantizer, type QuantizeProgress, type ResearchCodec } from '../quant/pipeline';
import { ComputeDevice } from './computeDevice';
import { gptqOnLazyDevice } from './gptqDevice';
import type { JobContext } from './jobContext';
import { ProgressTracker } from './progressTracker';

export async function runQuantizeJob(spec: QuantizeJobSpec, ctx: JobContext): Promise<QuantizeJobResult> {
  const sizes = new Map<string, number>();
  const checkpoint = await openCheckpoint(spec.request.input);
  try {
    for (const t of checkpoint.tensors) sizes.set(t.name, t.nbytes);
  } finally {
    await checkpoint.close();
  }
  const bytesTotal = [...sizes.values()].reduce((a, b) => a + b, 0);
  // A finished tensor's card metrics ride on the next progress message (live error heatmaps).
  let pendingResult: QuantizeProgress['result'];
  const tracker = new ProgressTracker(ctx.jobId, sizes.size, bytesTotal, (p) => {
    const tensorResult = pendingResult;
    pendingResult = undefined;
    ctx.progress(tensorResult === undefined ? p : { ...p, tensorResult });
  });
  const counted = new Set<string>();
  let bytesDone = 0;
  tracker.update('open', 0, '');
  const imatrix = spec.imatrix !== undefined ? await loadJobImatrix(spec, spec.imatrix) : undefined;
  // GGUF targets go through the llama.cpp-exact exporter (imported statically: a dynamic import of a
  // .ts module would not resolve in the worker when it runs from source under tsx).
  const ggufExporter = !isGgufTarget(spec.request.target)
    ? undefined
    : imatrix !== undefined
      ? ggufExporterWith({ imatrix: imatrix.imatrix, file: imatrix.path })
      : ggufExporterImpl;
  let stepIndex = 0;
  let stepTensor = '';
  const onProgress = (p: QuantizeProgress): void => {
    pendingResult = p.result;
    if ((p.action === 'quantize' || p.action === 'copy') && p.result === undefined && !counted.has(p.tensor)) {
      counted.add(p.tensor);
      // GGUF outputs report llama.cpp tensor names (blk.0.attn_q.weight), not the source's: those count an even share.
      bytesDone = Math.min(bytesTotal, bytesDone + (sizes.get(p.tensor) ?? bytesTotal / Math.max(1, p.total)));
    }
    tracker.setTensorCount(p.total);
    const phase = p.action === 'hash' ? 'read' : p.action === 'quantize' ? 'compute' : 'write';
    stepIndex = Math.max(0, Math.min(p.step - 1, Math.max(0, p.total - 1)));
    stepTensor = p.tensor;
    tracker.update(phase, stepIndex, p.tensor, bytesDone);
  };
  // On a software renderer (lavapipe) the CPU path is faster (measured: bench/gpu.ts, bench methods), so auto prefers the CPU there.
  const softwareAdapter = spec.testFaults?.useSoftwareAdapter === true ? 'use' : 'avoid';
  const method = spec.request.method;
  if (method !== undefined) {
    // GPTQ's calibration Hessians and lazy batch updates run on the GPU when the job holds one (jobs/gptqDevice.ts);
    // the rest of the calibration pass and the other methods run on the CPU.
    // The device opens at the first GPTQ layer: a run refused before calibration opens none.
    const onDevice = method.method === 'gptq' ? gptqOnLazyDevice(() => ComputeDevice.open(spec.device ?? 'auto', ctx.notice, { softwareAdapter })) : undefined;
    if (onDevice === undefined && spec.device === 'gpu') ctx.notice(`--method ${method.method} calibrates and quantizes on the CPU: the GPU path covers plain quantization and GPTQ`);
    try {
      const { result } = await runMethodQuantize(spec.request, method, {
        signal: ctx.signal,
        onWarning: ctx.notice,
        onProgress,
        // Calibration first, one step per layer; bytes move only once tensors are written.
        onCalibration: (done, layers) => {
          tracker.setTensorCount(layers);
          tracker.update('compute', Math.min(done, layers - 1), `calibrating ${method.method}: layer ${Math.min(done + 1, layers)} of ${layers}`, 0);
        },
        gptqLayer: onDevice?.run,
        deviceUsed: onDevice?.deviceUsed,
      });
      tracker.update('done', Math.max(0, sizes.size - 1), '', bytesTotal);
      return { kind: 'quantize', result };
    } finally {
      onDevice?.dispose();
    }
  }
  // With an importance matrix the work is the CPU's (the GPU kernels run the `_ref` paths only).
  const device = await ComputeDevice.open(imatrix !== undefined ? 'cpu' : (spec.device ?? 'auto'), ctx.notice, { softwareAdapter });
  try {
    const onPhase = (phase: GpuPhase): void => tracker.update(phase, stepIndex, stepTensor, bytesDone);
    const windows = gpuWindowQuantizer(device, spec, ctx, onPhase);
    const research = gpuResearchCodec(device, ctx, onPhase);
    const result = await runQuantize(spec.request, {
      ggufExporter,
      signal: ctx.signal,
      onWarning: ctx.notice,
      onProgress,
      // --device gpu never falls back and every quantized ggml type has a kernel: no idle CPU workers.
      threads: spec.threads ?? (spec.device === 'gpu' ? 1 : undefined),
      quantizeWindow: windows.quantizeWindow,
      researchCodec: research.codec,
      deviceUsed: ggufExporter !== undefined ? windows.deviceUsed : research.deviceUsed,
      ...(imatrix === undefined
        ? {}
        : { recipeExtra: { imatrix: imatrix.path, imatrixSha256: imatrix.sha256, imatrixEntries: imatrix.imatrix.entries.size, imatrixChunks: imatrix.imatrix.chunkCount } }),
    });
    tracker.update('done', Math.max(0, sizes.size - 1), '', bytesTotal);
    return { kind: 'quantize', result };
  } finally {
    device.dispose();
  }
}

/**
 * The job's --imatrix, checked against the rest of the spec before anything is read: GGUF targets only, no
 * calibrated method, not --device gpu (the GPU kernels run llama.cpp's `_ref` paths, without weights).
 */
async function loadJobImatrix(spec: QuantizeJobSpec, path: string): Promise<LoadedImatrix> {
  const { target, method } = spec.request;
  if (!isGgufTarget(target)) throw new InvalidArgumentError(`--imatrix ${path}: an importance matrix applies to GGUF targets (llama-quantize's types and presets), not ${target}`);
  if (method !== undefined) throw new UnsupportedError(`--imatrix ${path}: not combined with --method ${method.method}; quantize with one or the other`);
  if (spec.device === 'gpu') {
    throw new UnsupportedError(`--imatrix ${path}: the GPU kernels run llama.cpp's _ref quantizers only, without importance weights; use --device cpu or auto (auto quantizes on the CPU with an imatrix)`);
  }
  return loadImatrixFile(path);
}

/**
 * The research quantizers on `device`: each call runs its GPU counterpart (core/gpu/researchQuant.ts,
 * bit for bit the CPU's) through ComputeDevice.run, or the CPU one when no GPU is held or after a GPU
 * failure under auto. A call writes whole outputs, so a call redone on the CPU leaves the same result.
 */
function gpuResearchCodec(device: ComputeDevice, ctx: JobContext, onPhase: (phase: GpuPhase) => void): { codec: ResearchCodec; deviceUsed: () => string } {
  const calls = { gpu: 0, cpu: 0 };
  const options = { signal: ctx.signal, onPhase };
  const run = <T>(onGpu: (gpu: GpuContext) => Promise<T>, onCpu: () => Promise<T>): Promise<T> => {
    if (device.gpu === null) {
      calls.cpu++;
      return onCpu();
    }
    return device.run(
      async (gpu) => {
        const r = await onGpu(gpu);
        calls.gpu++;
        return r;
      },
      () => {
        calls.cpu++;
        return onCpu();
      },
    );
  };
  const cpu = CPU_RESEARCH_CODEC;
  const codec: ResearchCodec = {
    quantizeInt8Absmax: (w, rows, cols, g) => run((gpu) => quantizeInt8AbsmaxOnGpu(gpu, w, rows, cols, g, options), () => cpu.quantizeInt8Absmax(w, rows, cols, g)),
    quantizeInt8WithScale: (w, scale, out, at) => run((gpu) => quantizeInt8WithScaleOnGpu(gpu, w, scale, out, at, options), () => cpu.quantizeInt8WithScale(w, scale, out, at)),
    quantizeInt8ZeroPoint: (w, rows, cols, g) => run((gpu) => quantizeInt8ZeroPointOnGpu(gpu, w, rows, cols, g, options), () => cpu.quantizeInt8ZeroPoint(w, rows, cols, g)),
    quantizeAsymmetricWithParams: (w, start, length, scale, zero, bits, levels, at) =>
      run((gpu) => quantizeAsymmetricWithParamsOnGpu(gpu, w, start, length, scale, zero, bits, levels, at, options), () => cpu.quantizeAsymmetricWithParams(w, start, length, scale, zero, bits, levels, at)),
    quantizeRowsIntN: (w, out, minZero) => run((gpu) => quantizeRowsIntNOnGpu(gpu, w, out, minZero, options), () => cpu.quantizeRowsIntN(w, out, minZero)),
    quantizeFp8E4M3: (w, rows, cols, g) => run((gpu) => quantizeFp8E4M3OnGpu(gpu, w, rows, cols, g, options), () => cpu.quantizeFp8E4M3(w, rows, cols, g)),
    encodeFp8WithScale: (w, scale, codes, at) => run((gpu) => encodeFp8WithScaleOnGpu(gpu, w, scale, codes, at, options), () => cpu.encodeFp8WithScale(w, scale, codes, at)),
    quantizeNf4: (values) => run((gpu) => quantizeNf4OnGpu(gpu, values, options), () => cpu.quantizeNf4(values)),
  };
  return { codec, deviceUsed: () => (calls.gpu > 0 ? (calls.cpu > 0 ? 'gpu+cpu' : 'gpu') : 'cpu') };
}

/**
 * The exporter's window quantizer on `device`: ggml types with a GPU kernel go through quantizeOnGpu
 * while a GPU is held; anything else (and everything after a GPU failure under auto) is left to the
 * exporter's CPU path by resolving null. Counts where windows ran, for the card.
 */
function gpuWindowQuantizer(
  device: ComputeDevice,
  spec: QuantizeJobSpec,
  ctx: JobContext,
  onPhase: (phase: GpuPhase) => void,
): { quantizeWindow: GgufWindowQuantizer; deviceUsed: () => string } {
  const windows = { gpu: 0, cpu: 0 };
  const onCpu = async (): Promise<null> => {
    windows.cpu++;
    return null;
  };
  const quantizeWindow: GgufWindowQuantizer = async (type, values, rows, cols, label) => {
    if (!isGpuQuantType(type) || device.gpu === null) return onCpu();
    const gpuWindow = windows.gpu;
    return device.run(async (gpu) => {
      const out = new Uint8Array(quantizedSize(type, rows * cols));
      await quantizeOnGpu(gpu, type, values, out, {
        signal: ctx.signal,
        label,
        onPhase: (phase) => {
          if (phase === 'compute' && spec.testFaults?.loseGpuAtTensor === gpuWindow) gpu.destroy();
          onPhase(phase);
        },
      });
      windows.gpu++;
      return out;
    }, onCpu);
  };
  return { quantizeWindow, deviceUsed: () => (windows.gpu > 0 ? (windows.cpu > 0 ? 'gpu+cpu' : 'gpu') : 'cpu') };
}
