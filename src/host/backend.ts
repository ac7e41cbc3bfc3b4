/**
 * What the extension needs from the core, in one interface: the commands and the editor depend on
 * this, and `coreBackend.ts` implements it over openCheckpoint, the quantize pipeline and the job worker.
 * Tests in the extension host drive the real implementation through the commands.
 */
import type { QuantizedTensorResult } from '../core/quant/quantCard';
import type { AnalysisReport } from '../protocol/analysis';
import type { DevicePreference } from './settings';

export interface DtypeTotal {
  dtype: string;
  tensors: number;
  parameters: number;
  bytes: number;
}

export interface TensorSummary {
  name: string;
  dtype: string;
  shape: number[];
  parameters: number;
  bytes: number;
}

/** A checkpoint as the inspector shows it: headers only, no tensor data. */
export interface CheckpointSummary {
  path: string;
  format: 'safetensors' | 'gguf';
  files: string[];
  architecture: string | null;
  parameterCount: number;
  totalBytes: number;
  byDtype: DtypeTotal[];
  tensors: TensorSummary[];
  /** Metadata rendered to one line per key (long arrays abbreviated). */
  metadata: [string, string][];
  config: Record<string, unknown> | null;
}

export interface QuantRequest {
  input: string;
  /** A target id from targets.ts (`gguf:Q8_0`, `int4`, ...). */
  target: string;
  output: string;
  groupSize: number | undefined;
  device: DevicePreference;
  maxWorkerMemoryMB: number;
  /** A calibration pass first (GPTQ, AWQ, SmoothQuant), then `target` is written from its weights. */
  method?: QuantMethodRequest;
}

export interface QuantMethodRequest {
  /** A method id from targets.ts METHODS. */
  method: string;
  /** UTF-8 calibration text (absolute path). */
  calibrationFile: string;
  /** Windows of 256 tokens taken from the text (the core's default, 16, when absent). */
  calibrationWindows?: number;
}

export interface QuantPlan {
  inputBytes: number;
  outputBytes: number;
  bitsPerWeight: number;
  tensorCount: number;
}

export interface QuantProgressEvent {
  tensor: string;
  done: number;
  total: number;
  /** Quantize runs: a tensor just finished, with its card metrics (error heatmaps fill in from these). */
  result?: QuantizedTensorResult;
}

export interface QuantOutcome {
  output: string;
  inputBytes: number;
  outputBytes: number;
  bitsPerWeight: number;
  tensorCount: number;
  warnings: string[];
  seconds: number;
}

/** One tensor's weight statistics, as the outlier explorer lists them. */
export interface TensorOutlierRow {
  name: string;
  dtype: string;
  shape: number[];
  count: number;
  absMax: number;
  std: number;
  /** Excess kurtosis (normal = 0): heavy tails mean outliers. */
  kurtosis: number;
  /** Elements with |x - mean| >= thresholdSigma * std. */
  outlierCount: number;
  /** Input dimensions (columns) holding the most outliers, most first. */
  topColumns: { index: number; count: number }[];
}

export interface OutlierSummary {
  path: string;
  thresholdSigma: number;
  device: string;
  seconds: number;
  tensors: TensorOutlierRow[];
}

export interface QuantBackend {
  /** Weight statistics of every 2-D tensor; runs off the extension host's thread. */
  analyzeOutliers(path: string, thresholdSigma: number, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<OutlierSummary>;
  inspect(path: string): Promise<CheckpointSummary>;
  /** Dry run: the size and bits per weight the output will have, without writing anything. */
  plan(request: QuantRequest): Promise<QuantPlan>;
  /** Writes the output atomically (temp file + rename); on cancel or error no file is left at `output`. */
  quantize(request: QuantRequest, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<QuantOutcome>;
  /**
   * The calibration pass and outlier analysis of `quantlens analyze` on `calibrationFile` (the first
   * `tokens` tokens), in the job worker; progress per decoder layer.
   */
  analyzeActivations(path: string, calibrationFile: string, tokens: number, onProgress: (event: QuantProgressEvent) => void, signal: AbortSignal): Promise<AnalysisReport>;
  dispose(): void;
}
