/**
 * The `quantizeTensors` job: quantizes every 2-D tensor whose rows are whole blocks (32 values, 256 for the K types) to one
 * ggml type and writes the blocks, tensor after tensor, to one file (no container: offsets are in the
 * result). It exercises the GPU kernels and the job machinery end to end until the real quantize
 * pipeline runs in the worker. Output goes through an atomic file: cancel or crash leaves nothing
 * at outputPath; the source is opened read-only and an output equal to an input is refused.
 */
import type { QuantizeTensorsJobResult, QuantizeTensorsJobSpec, QuantizedTensorRecord } from '../../protocol/jobs';
import { CancelledError, NumericError } from '../errors';
import { openCheckpoint } from '../formats/openCheckpoint';
import { blockElementsOf, quantizeOnGpu, quantizedSize } from '../gpu/quantize';
import { assertNotSamePath, withAtomicFile } from '../io/atomicWrite';
import { findNonFinite, quantizeGgml } from '../quant/ggml/index';
import { ComputeDevice } from './computeDevice';
import { sleep, type JobContext } from './jobContext';
import { ProgressTracker } from './progressTracker';
import { selectTensors } from './statsJob';

const WINDOW_BYTES = 32 * 1024 * 1024;

export async function runQuantizeTensorsJob(spec: QuantizeTensorsJobSpec, ctx: JobContext): Promise<QuantizeTensorsJobResult> {
  const checkpoint = await openCheckpoint(spec.modelPath);
  let device: ComputeDevice | null = null;
  try {
    await assertNotSamePath(checkpoint.files.length > 0 ? checkpoint.files : [spec.modelPath], spec.outputPath);
    const selected = selectTensors(checkpoint, spec.tensorNames);
    const skipped: { name: string; reason: string }[] = [];
    const qk = blockElementsOf(spec.ggmlType);
    const tensors = selected.filter((t) => {
      const reason = t.shape.length !== 2 ? `${t.shape.length}-D` : t.shape[1]! % qk !== 0 ? `rows of ${t.shape[1]} values are not whole ${qk}-value blocks` : null;
      if (reason !== null) skipped.push({ name: t.name, reason });
      return reason === null;
    });
    const bytesTotal = tensors.reduce((a, t) => a + t.nbytes, 0);
    const tracker = new ProgressTracker(ctx.jobId, tensors.length, bytesTotal, ctx.progress);
    tracker.update('open', 0, tensors[0]?.name ?? '');
    device = await ComputeDevice.open(spec.device, ctx.notice);
    const compute = device;
    const records: QuantizedTensorRecord[] = [];
    await withAtomicFile(
      spec.outputPath,
      async (file) => {
        let bytesDone = 0;
        for (const [index, tensor] of tensors.entries()) {
          const [rows, rowLength] = tensor.shape as [number, number];
          const offset = file.position;
          const rowsPerWindow = Math.max(1, Math.floor(WINDOW_BYTES / 4 / rowLength));
          for (let rowStart = 0; rowStart < rows; rowStart += rowsPerWindow) {
            if (ctx.signal.aborted) throw new CancelledError();
            const rowCount = Math.min(rowsPerWindow, rows - rowStart);
            tracker.update('read', index, tensor.name);
            const values = await checkpoint.readRowsF32(tensor.name, rowStart, rowCount);
            const out = new Uint8Array(quantizedSize(spec.ggmlType, values.length));
            const label = `${tensor.name} rows ${rowStart}..${rowStart + rowCount - 1}`;
            await compute.run(
              (gpu) =>
                quantizeOnGpu(gpu, spec.ggmlType, values, out, {
                  signal: ctx.signal,
                  label,
                  onPhase: (phase) => {
                    if (phase === 'compute' && spec.testFaults?.loseGpuAtTensor === index) gpu.destroy();
                    tracker.update(phase, index, tensor.name);
                  },
                }),
              async () => {
                tracker.update('compute', index, tensor.name);
                const bad = findNonFinite(values);
                if (bad >= 0) throw new NumericError(`${label}: value ${bad} is ${values[bad]}, which cannot be quantized`);
                quantizeGgml(spec.ggmlType, values, out);
              },
            );
            tracker.update('write', index, tensor.name);
            await file.write(out);
          }
          records.push({ name: tensor.name, shape: [...tensor.shape], ggmlType: spec.ggmlType, offset, nbytes: file.position - offset });
          bytesDone += tensor.nbytes;
          tracker.update('write', index, tensor.name, bytesDone);
          if (spec.testFaults?.delayMsPerTensor !== undefined) await sleep(spec.testFaults.delayMsPerTensor, ctx.signal);
        }
        if (ctx.signal.aborted) throw new CancelledError();
      },
      { signal: ctx.signal },
    );
    tracker.update('done', Math.max(0, tensors.length - 1), tensors.at(-1)?.name ?? '', bytesTotal);
    return { kind: 'quantizeTensors', outputPath: spec.outputPath, device: compute.kind, deviceDescription: compute.description, tensors: records, skipped, seconds: tracker.secondsSinceStart() };
  } finally {
    device?.dispose();
    await checkpoint.close();
  }
}
