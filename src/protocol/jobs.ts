/**
 * Jobs: what the host asks a worker to do, and what comes back. Carried over the RPC protocol of
 * rpc.ts: `job.start` is a request whose Result reply is the job's result (or its error, with the
 * QuantLensError code: CANCELLED when cancelled); progress, notices and cancel are notifications.
 */
import type { QuantizeRequest, QuantizeResult } from '../core/quant/pipeline';
import type { QuantizedTensorResult } from '../core/quant/quantCard';
import type { AnalysisReport } from './analysis';
import type { MomentSummary } from '../core/analysis/weightStats';
import {
  defineNotification,
  defineRequest,
  isArrayOf,
  isBoolean,
  isFiniteNumber,
  isNonNegativeInteger,
  isOneOf,
  isOptional,
  isRecord,
  isShape,
  isString,
  type Guard,
} from './rpc';

export const DEVICE_CHOICES = ['auto', 'gpu', 'cpu'] as const;
export type DeviceChoice = (typeof DEVICE_CHOICES)[number];
export const isDeviceChoice = isOneOf(DEVICE_CHOICES);

/** The ggml types the `quantizeTensors` job (and the GPU kernels) produce. */
export const JOB_QUANT_TYPES = ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_0', 'Q5_1', 'Q2_K', 'Q3_K', 'Q4_K', 'Q5_K', 'Q6_K'] as const;
export type JobQuantType = (typeof JOB_QUANT_TYPES)[number];

export interface StatsJobSpec {
  kind: 'stats';
  modelPath: string;
  device: DeviceChoice;
  histogramBins: number;
  logOctaves: number;
  outlierSigma: number;
  topChannels: number;
  /** Only these tensors (all when absent). */
  tensorNames?: string[];
  testFaults?: JobTestFaults;
}

/**
 * Test seams: `loseGpuAtTensor` destroys the GPU device when the compute phase of that tensor starts
 * (an adapter vanishing mid-job); `delayMsPerTensor` slows the job so tests can cancel or kill it midway.
 */
export interface JobTestFaults {
  loseGpuAtTensor?: number;
  delayMsPerTensor?: number;
  /** Quantize job under auto: keep a software adapter (lavapipe) instead of preferring the CPU, so tests on such machines reach the GPU path. */
  useSoftwareAdapter?: boolean;
}

const isJobTestFaults: Guard<JobTestFaults | undefined> = (v): v is JobTestFaults | undefined =>
  v === undefined ||
  (isRecord(v) && isOptional(isNonNegativeInteger)(v.loseGpuAtTensor) && isOptional(isNonNegativeInteger)(v.delayMsPerTensor) && isOptional(isBoolean)(v.useSoftwareAdapter));

/** Quantizes the 2-D tensors of a checkpoint to one ggml type and writes them, concatenated, to outputPath. */
export interface QuantizeTensorsJobSpec {
  kind: 'quantizeTensors';
  modelPath: string;
  outputPath: string;
  ggmlType: JobQuantType;
  device: DeviceChoice;
  tensorNames?: string[];
  testFaults?: JobTestFaults;
}

/**
 * Test hook: lets tests kill the worker from inside (`exit`), crash it (`uncaught`), keep it busy (`sleep`)
 * or grow its JS heap without bound (`allocate`, to check the heap limit).
 */
export interface DiagnosticJobSpec {
  kind: 'diagnostic';
  action: 'exit' | 'uncaught' | 'sleep' | 'allocate';
  ms: number;
}

/** The real quantize pipeline (core/quant/pipeline.ts runQuantize) run in the worker. */
export interface QuantizeJobSpec {
  kind: 'quantize';
  request: QuantizeRequest;
  /** Where GGUF targets are quantized (default 'auto': the GPU when an adapter exists). */
  device?: DeviceChoice;
  /** GGUF targets: quantizing threads of the CPU path (default: the exporter's, hardware concurrency for large models). */
  threads?: number;
  /**
   * GGUF targets: a llama.cpp importance matrix file (GGUF or legacy .dat), as llama-quantize --imatrix;
   * quantized on the CPU (the GPU kernels run the `_ref` paths only: device gpu is refused).
   */
  imatrix?: string;
  /** `loseGpuAtTensor` counts the GPU windows (a tensor is one window unless it holds more than 16 M values). */
  testFaults?: JobTestFaults;
}

/** The calibration pass + outlier analysis of `quantlens analyze` (core/model/analyzeModel.ts) run in the worker. */
export interface AnalyzeJobSpec {
  kind: 'analyze';
  modelPath: string;
  /** UTF-8 calibration text. */
  calibrationFile: string;
  tokens: number;
  /** Window length (the analysis default when absent). */
  ctx?: number;
  /** Activation outlier magnitude (the LLM.int8() 6.0 when absent). */
  threshold?: number;
}

export type JobSpec = StatsJobSpec | QuantizeTensorsJobSpec | QuantizeJobSpec | AnalyzeJobSpec | DiagnosticJobSpec;

const isTensorNames = isOptional(isArrayOf(isString));

export const isStatsJobSpec: Guard<StatsJobSpec> = (v): v is StatsJobSpec =>
  isRecord(v) &&
  v.kind === 'stats' &&
  isString(v.modelPath) &&
  isDeviceChoice(v.device) &&
  isNonNegativeInteger(v.histogramBins) &&
  isNonNegativeInteger(v.logOctaves) &&
  isFiniteNumber(v.outlierSigma) &&
  isNonNegativeInteger(v.topChannels) &&
  isTensorNames(v.tensorNames) &&
  isJobTestFaults(v.testFaults);

export const isQuantizeTensorsJobSpec: Guard<QuantizeTensorsJobSpec> = (v): v is QuantizeTensorsJobSpec =>
  isRecord(v) &&
  v.kind === 'quantizeTensors' &&
  isString(v.modelPath) &&
  isString(v.outputPath) &&
  isOneOf(JOB_QUANT_TYPES)(v.ggmlType) &&
  isDeviceChoice(v.device) &&
  isTensorNames(v.tensorNames) &&
  isJobTestFaults(v.testFaults);

export const isDiagnosticJobSpec: Guard<DiagnosticJobSpec> = (v): v is DiagnosticJobSpec =>
  isRecord(v) && v.kind === 'diagnostic' && isOneOf(['exit', 'uncaught', 'sleep', 'allocate'] as const)(v.action) && isNonNegativeInteger(v.ms);

const isOptionalNumber = isOptional((x: unknown): x is number => typeof x === 'number' && Number.isFinite(x));

/** The --method block of a quantize request (core/methods/methodQuantize.ts MethodQuantizeSpec). */
const isMethodQuantizeSpec: Guard<NonNullable<QuantizeRequest['method']>> = (v): v is NonNullable<QuantizeRequest['method']> =>
  isRecord(v) &&
  isOneOf(['gptq', 'awq', 'smoothquant', 'llm-int8'] as const)(v.method) &&
  isString(v.calib) &&
  isOptionalNumber(v.calibWindows) &&
  isOptionalNumber(v.ctx) &&
  isOptionalNumber(v.bits) &&
  isOptional(isBoolean)(v.actOrder) &&
  isOptionalNumber(v.percDamp) &&
  isOptionalNumber(v.alpha) &&
  isOptionalNumber(v.threshold) &&
  isOptionalNumber(v.keepFraction);

export const isQuantizeRequest: Guard<QuantizeRequest> = (v): v is QuantizeRequest =>
  isRecord(v) &&
  isString(v.input) &&
  isString(v.output) &&
  isString(v.target) &&
  isOptional((x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x))(v.groupSize) &&
  isOptional(isBoolean)(v.symmetric) &&
  isOptional(isBoolean)(v.doubleQuant) &&
  isOptional(isOneOf(['tensor', 'channel'] as const))(v.scale) &&
  isOptional(isBoolean)(v.includeEmbeddings) &&
  isOptional(isMethodQuantizeSpec)(v.method);

export const isQuantizeJobSpec: Guard<QuantizeJobSpec> = (v): v is QuantizeJobSpec =>
  isRecord(v) &&
  v.kind === 'quantize' &&
  isQuantizeRequest(v.request) &&
  isOptional(isDeviceChoice)(v.device) &&
  isOptional((x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x) && x > 0)(v.threads) &&
  isOptional((x: unknown): x is string => typeof x === 'string' && x.length > 0)(v.imatrix) &&
  isJobTestFaults(v.testFaults);

export const isAnalyzeJobSpec: Guard<AnalyzeJobSpec> = (v): v is AnalyzeJobSpec =>
  isRecord(v) &&
  v.kind === 'analyze' &&
  isString(v.modelPath) &&
  isString(v.calibrationFile) &&
  isNonNegativeInteger(v.tokens) &&
  isOptional(isNonNegativeInteger)(v.ctx) &&
  isOptional(isFiniteNumber)(v.threshold);

export const isJobSpec: Guard<JobSpec> = (v): v is JobSpec => isStatsJobSpec(v) || isQuantizeTensorsJobSpec(v) || isQuantizeJobSpec(v) || isAnalyzeJobSpec(v) || isDiagnosticJobSpec(v);

// ---- progress ----

const isFiniteOrNull = (v: unknown): v is number | null => v === null || isFiniteNumber(v);
export const isQuantizedTensorResult: Guard<QuantizedTensorResult> = isShape<QuantizedTensorResult>({
  name: isString,
  type: isString,
  sqnrDb: isFiniteOrNull,
  relRmse: isFiniteOrNull,
  maxAbsError: isFiniteOrNull,
  bitsPerWeight: isFiniteNumber,
});

export const JOB_PHASES = ['open', 'read', 'upload', 'compute', 'readback', 'write', 'done'] as const;
export type JobPhase = (typeof JOB_PHASES)[number];

export interface JobProgress {
  jobId: number;
  phase: JobPhase;
  /** 0-based index of the tensor being worked on, of tensorCount. */
  tensorIndex: number;
  tensorCount: number;
  tensorName: string;
  bytesDone: number;
  bytesTotal: number;
  /** Bytes per second since the job started. */
  bytesPerSecond: number;
  /** Seconds left at the current rate; null before a rate is known. */
  etaSeconds: number | null;
  /** Quantize jobs: the card metrics of the tensor just finished (error heatmaps fill in from these). */
  tensorResult?: QuantizedTensorResult;
}

export const isJobProgress: Guard<JobProgress> = isShape<JobProgress>({
  jobId: isNonNegativeInteger,
  phase: isOneOf(JOB_PHASES),
  tensorIndex: isNonNegativeInteger,
  tensorCount: isNonNegativeInteger,
  tensorName: isString,
  bytesDone: isNonNegativeInteger,
  bytesTotal: isNonNegativeInteger,
  bytesPerSecond: isFiniteNumber,
  etaSeconds: (v): v is number | null => v === null || isFiniteNumber(v),
  tensorResult: isOptional(isQuantizedTensorResult),
});

/** A one-line message for the user (e.g. "no GPU adapter: running on the CPU"), said once per job. */
export interface JobNotice {
  jobId: number;
  message: string;
}
export const isJobNotice: Guard<JobNotice> = isShape<JobNotice>({ jobId: isNonNegativeInteger, message: isString });

// ---- results ----

export interface ChannelCountSummary {
  index: number;
  count: number;
}
const isChannelCount: Guard<ChannelCountSummary> = isShape<ChannelCountSummary>({ index: isNonNegativeInteger, count: isNonNegativeInteger });

/** One tensor's statistics, in plain JSON-able form: its moments plus outliers and histograms. */
export interface TensorStatsSummary extends MomentSummary {
  name: string;
  dtype: string;
  shape: number[];
  /** Outliers are values with |x - outlierCenter| > outlierThreshold (center = the tensor mean). */
  outlierThreshold: number;
  outlierCenter: number;
  outlierCount: number;
  /** Rows (output channels) and columns (input dims) with the most outliers. */
  topOutlierRows: ChannelCountSummary[];
  topOutlierColumns: ChannelCountSummary[];
  /** Per-row absmax (one per output channel). */
  rowAbsMax: number[];
  histogram: { lo: number; hi: number; counts: number[] };
  logHistogram: { octaves: number; topExponent: number; underflow: number; counts: number[] };
}

const isNumberArray = isArrayOf(isFiniteNumber);
export const isTensorStatsSummary: Guard<TensorStatsSummary> = (v): v is TensorStatsSummary =>
  isRecord(v) &&
  isString(v.name) &&
  isString(v.dtype) &&
  isArrayOf(isNonNegativeInteger)(v.shape) &&
  ['count', 'nanCount', 'infCount', 'outlierCount'].every((k) => isNonNegativeInteger(v[k])) &&
  ['min', 'max', 'absMax', 'mean', 'variance', 'kurtosis', 'outlierThreshold', 'outlierCenter'].every((k) => isFiniteNumber(v[k])) &&
  isArrayOf(isChannelCount)(v.topOutlierRows) &&
  isArrayOf(isChannelCount)(v.topOutlierColumns) &&
  isNumberArray(v.rowAbsMax) &&
  isRecord(v.histogram) &&
  isNumberArray(v.histogram.counts) &&
  isRecord(v.logHistogram) &&
  isNumberArray(v.logHistogram.counts);

export interface StatsJobResult {
  kind: 'stats';
  modelPath: string;
  /** Where the work ran, and the adapter's description. */
  device: 'gpu' | 'cpu';
  deviceDescription: string;
  tensors: TensorStatsSummary[];
  bytesRead: number;
  seconds: number;
}

export interface QuantizedTensorRecord {
  name: string;
  shape: number[];
  ggmlType: JobQuantType;
  /** Offset of the tensor's bytes in the output file. */
  offset: number;
  nbytes: number;
}

export interface QuantizeTensorsJobResult {
  kind: 'quantizeTensors';
  outputPath: string;
  device: 'gpu' | 'cpu';
  deviceDescription: string;
  tensors: QuantizedTensorRecord[];
  /** Tensors left out (1-D, or rows not a multiple of the block size), with the reason. */
  skipped: { name: string; reason: string }[];
  seconds: number;
}

export interface DiagnosticJobResult {
  kind: 'diagnostic';
}

export interface QuantizeJobResult {
  kind: 'quantize';
  result: QuantizeResult;
}

export interface AnalyzeJobResult {
  kind: 'analyze';
  report: AnalysisReport;
  seconds: number;
}

export type JobResult = StatsJobResult | QuantizeTensorsJobResult | QuantizeJobResult | AnalyzeJobResult | DiagnosticJobResult;

export const isJobResult: Guard<JobResult> = (v): v is JobResult => {
  if (!isRecord(v)) return false;
  switch (v.kind) {
    case 'stats':
      return isString(v.modelPath) && isOneOf(['gpu', 'cpu'] as const)(v.device) && isString(v.deviceDescription) && isArrayOf(isTensorStatsSummary)(v.tensors) && isFiniteNumber(v.seconds);
    case 'quantizeTensors':
      return isString(v.outputPath) && isOneOf(['gpu', 'cpu'] as const)(v.device) && Array.isArray(v.tensors) && Array.isArray(v.skipped) && isFiniteNumber(v.seconds);
    case 'quantize':
      // The pipeline's own result (plan, card, paths): checked here for the fields callers rely on.
      return isRecord(v.result) && isString(v.result.outputPath) && isString(v.result.cardPath) && isRecord(v.result.card) && Array.isArray(v.result.sideFiles) && isFiniteNumber(v.result.seconds);
    case 'analyze':
      // The analysis report, checked for the fields the view adapters read.
      return (
        isRecord(v.report) &&
        isString(v.report.model) &&
        isFiniteNumber(v.report.threshold) &&
        isArrayOf(isRecord)(v.report.sites) &&
        Array.isArray(v.report.systematic) &&
        Array.isArray(v.report.recurringStandouts) &&
        Array.isArray(v.report.weights) &&
        isFiniteNumber(v.seconds)
      );
    case 'diagnostic':
      return true;
    default:
      return false;
  }
};

/** The result type that belongs to each spec. */
export type ResultFor<S extends JobSpec> = S extends StatsJobSpec
  ? StatsJobResult
  : S extends QuantizeTensorsJobSpec
    ? QuantizeTensorsJobResult
    : S extends QuantizeJobSpec
      ? QuantizeJobResult
      : S extends AnalyzeJobSpec
        ? AnalyzeJobResult
        : DiagnosticJobResult;

// ---- the messages ----

export interface StartJobParams {
  jobId: number;
  spec: JobSpec;
}
export const isStartJobParams: Guard<StartJobParams> = isShape<StartJobParams>({ jobId: isNonNegativeInteger, spec: isJobSpec });

export interface CancelJobParams {
  jobId: number;
}
export const isCancelJobParams: Guard<CancelJobParams> = isShape<CancelJobParams>({ jobId: isNonNegativeInteger });

/** Host -> worker: run a job; the reply settles when the job ends (result, error or CANCELLED). */
export const StartJobRequest = defineRequest('job.start', isStartJobParams, isJobResult);
/** Host -> worker: cancel a running job (it ends with a CANCELLED error reply). */
export const CancelJobNotification = defineNotification('job.cancel', isCancelJobParams);
/** Worker -> host. */
export const JobProgressNotification = defineNotification('job.progress', isJobProgress);
export const JobNoticeNotification = defineNotification('job.notice', isJobNotice);
