/**
 * The GGUF exporter hook for the quantize pipeline (`QuantizeRunOptions.ggufExporter` in quant/pipeline.ts):
 * opens the input, runs exportGguf, reports every tensor, closes the input.
 */
import { openCheckpoint } from '../formats/openCheckpoint';
import type { GgufExporter } from '../quant/pipeline';
import { exportGguf } from './exportGguf';

export const ggufExporter: GgufExporter = async (job) => {
  const checkpoint = await openCheckpoint(job.input);
  try {
    await exportGguf(
      checkpoint,
      { target: job.target, outputPath: job.output, onWarning: job.onWarning, onTensor: job.onTensor, threads: job.threads, quantizeWindow: job.quantizeWindow },
      job.onProgress,
      job.signal,
    );
  } finally {
    await checkpoint.close();
  }
};
