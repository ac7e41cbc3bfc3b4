/**
 * The GGUF exporter hook for the quantize pipeline (`QuantizeRunOptions.ggufExporter` in quant/pipeline.ts):
 * runs exportGguf over the job's checkpoint (a calibrated method's rewritten weights, see
 * methods/methodCheckpoint.ts) or, without one, over the input it opens and closes; reports every tensor.
 */
import { openCheckpoint } from '../formats/openCheckpoint';
import type { GgufExporter } from '../quant/pipeline';
import { exportGguf, type ExportImatrix } from './exportGguf';

export const ggufExporter: GgufExporter = ggufExporterWith();

/** The exporter with llama-quantize --imatrix's importance weights (see exportGguf's `imatrix`). */
export function ggufExporterWith(imatrix?: ExportImatrix): GgufExporter {
  return (job) => runExport(job, imatrix);
}

async function runExport(job: Parameters<GgufExporter>[0], imatrix: ExportImatrix | undefined): Promise<void> {
  const checkpoint = job.checkpoint ?? (await openCheckpoint(job.input));
  try {
    await exportGguf(
      checkpoint,
      {
        target: job.target,
        outputPath: job.output,
        onWarning: job.onWarning,
        onTensorRows: job.onTensorRows,
        threads: job.threads,
        quantizeWindow: job.quantizeWindow,
        precomputed: job.precomputed,
        imatrix,
      },
      job.onProgress,
      job.signal,
    );
  } finally {
    // The caller owns a checkpoint it passed in.
    if (job.checkpoint === undefined) await checkpoint.close();
  }
}
