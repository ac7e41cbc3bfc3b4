/**
 * What crosses between the extension host and the Quant Lens webview: summary view models (never raw
 * tensors) and the messages that carry them. Shared by the host (src/editor), the webview bundle and the
 * fixture script; no vscode and no DOM import here.
 *
 * Messages ride on src/protocol/rpc.ts: the webview registers its notification handlers and posts
 * `ready`; the host waits for it (`whenReady`), posts its own `ready`, then sends `webview/dataset`.
 * The webview asks for block-error maps with the `webview/blockMap` request (Result<T> reply).
 * Everything received is `unknown` until the guards below accept it.
 */
import { defineNotification, defineRequest, isRecord, type Guard } from './rpc';

export const WEBVIEW_PROTOCOL_VERSION = 1;

export const VIEW_NAMES = ['overview', 'outliers', 'emergent', 'errors', 'compare'] as const;
export type ViewName = (typeof VIEW_NAMES)[number];

/** Roles of a LLaMA-family tensor, in the column order of the error heatmap. */
export const TENSOR_ROLES = ['embed', 'q', 'k', 'v', 'o', 'gate', 'up', 'down', 'attn_norm', 'ffn_norm', 'norm', 'output', 'other'] as const;
export type TensorRole = (typeof TENSOR_ROLES)[number];

// ---------------------------------------------------------------------------------------------
// View models

export interface TensorRow {
  name: string;
  /** Transformer block index, or null for embeddings, final norm and output head. */
  layer: number | null;
  role: TensorRole;
  dtype: string;
  shape: number[];
  params: number;
  bytes: number;
}

export interface DtypeShare {
  dtype: string;
  params: number;
  bytes: number;
}

/** Estimated size of the whole checkpoint at one quantization target (bits per weight incl. scales). */
export interface TargetSize {
  target: string;
  bitsPerWeight: number;
  bytes: number;
}

export interface ModelOverview {
  name: string;
  format: 'safetensors' | 'gguf';
  architecture: string;
  layers: number;
  hiddenSize: number;
  heads: number;
  kvHeads: number;
  intermediateSize: number;
  vocabSize: number;
  parameterCount: number;
  totalBytes: number;
  dtypeMix: DtypeShare[];
  sizeByTarget: TargetSize[];
  tensors: TensorRow[];
}

/**
 * A value histogram with exact summary statistics. `edges` has `counts.length + 1` entries.
 * `exceedance` gives the exact share of |x| >= t at a grid of thresholds t (ascending), so the
 * webview can show the share beyond an adjustable threshold without the raw values.
 */
export interface HistogramSummary {
  id: string;
  /** Tensor name (weights) or capture site (activations, e.g. `layers.3.attn_in`). */
  label: string;
  source: 'weights' | 'activations';
  layer: number | null;
  role: TensorRole | 'attn_in' | 'ffn_in';
  /** Unit of the values and of the threshold: raw values, or multiples of the tensor's std. */
  unit: 'value' | 'std';
  /** 'linear': signed values, equal-width bins. 'log': magnitudes |x| with log-spaced edges. */
  xScale: 'linear' | 'log';
  edges: number[];
  counts: number[];
  count: number;
  mean: number;
  std: number;
  /** Excess kurtosis (normal = 0); null when only a binned summary was available. */
  kurtosis: number | null;
  absmax: number;
  /** 99.9th percentile of |x|. */
  p999: number;
  exceedance: { thresholds: number[]; shares: number[] };
}

/** The LLM.int8() criterion for systematic outlier dimensions, and the scale-free standout criterion. */
export interface EmergentCriterion {
  threshold: number;
  /** A dimension must count in at least this share of layers ... */
  minLayerShare: number;
  /** ... where, in a layer, it counts when at least this share of tokens reach the threshold. */
  minTokenShare: number;
  /** Standout: absmax >= standoutFactor x the site's median channel absmax ... */
  standoutFactor: number;
  /** ... in at least this share of the layers. */
  minStandoutLayerShare: number;
}

export interface SystematicDim {
  dim: number;
  layerShare: number;
  /** Mean token share over the layers where it counts. */
  tokenShare: number;
  maxMagnitude: number;
}

/** A dimension that stands out from its layer's median channel in many layers (small models' emergent features). */
export interface StandoutDim {
  dim: number;
  layerShare: number;
  /** Mean over those layers of absmax / median channel absmax. */
  meanRatio: number;
  maxMagnitude: number;
}

/** Column `dim` of a weight that reads the hidden state: its magnitude against the other columns. */
export interface ReaderColumn {
  tensor: string;
  layer: number;
  role: TensorRole;
  /** max_i |W[i, dim]|. */
  columnAbsMax: number;
  /** Median over all input columns of max_i |W[i, j]|, for scale. */
  medianColumnAbsMax: number;
  /** Whether AWQ (1%) would protect this input channel. */
  awqProtected: boolean;
}

export interface DimDetail {
  dim: number;
  /** Per layer: max |x| at this dim. */
  magnitudeByLayer: number[];
  /** Per layer: share of tokens with |x| >= threshold. */
  tokenShareByLayer: number[];
  readers: ReaderColumn[];
}

/** Layers x hidden dims map of activation magnitude at one capture site. Row-major values. */
export interface OutlierMap {
  /** `${site}@${threshold}`: the same site may come at several thresholds. */
  id: string;
  site: string;
  layers: number;
  dims: number;
  tokens: number;
  /** max |x| per (layer, dim). */
  magnitude: number[];
  /** share of tokens with |x| >= criterion.threshold per (layer, dim). */
  tokenShare: number[];
  criterion: EmergentCriterion;
  systematic: SystematicDim[];
  standouts: StandoutDim[];
  details: DimDetail[];
}

export interface ErrorCell {
  layer: number | null;
  role: TensorRole;
  tensor: string;
  /** What was written for this tensor (a research scheme or a ggml type). */
  type: string;
  /** Signal-to-quantization-noise ratio in dB: 10 log10(sum x^2 / sum (x - q)^2); null when exact. */
  sqnrDb: number | null;
  /** Relative RMSE ||x - q|| / ||x||. */
  relError: number | null;
  maxAbsError: number | null;
  bitsPerWeight: number;
}

export interface ErrorHeatmap {
  target: string;
  layers: number;
  roles: TensorRole[];
  /** Rows of the heatmap besides the numbered layers (embeddings, output head): label -> cells. */
  cells: ErrorCell[];
}

/** Error per block of one tensor: rows x column groups, downsampled to at most 64 x 64. Row-major. */
export interface BlockErrorMap {
  tensor: string;
  target: string;
  /** What each cell holds: the MSE of its block (quant card), or its relative error. */
  metric: 'mse' | 'relError';
  rows: number;
  cols: number;
  /** How many tensor rows / columns each map cell covers (rounded: bands may differ by one). */
  rowsPerCell: number;
  colsPerCell: number;
  /** Cell values in units of `scale` (the metric of a cell is values[i] * scale; absent = 1). */
  values: number[];
  scale?: number;
  /**
   * Histogram of the element-wise error q - x (dequantized minus original, in the tensor's units): edges.length =
   * counts.length + 1; `zeros` = elements reconstructed exactly (also counted in the bin holding 0). Absent when the
   * source (a quant card written before cards had it) has none.
   */
  errorHistogram?: { edges: number[]; counts: number[]; zeros?: number };
}

export interface ComparisonRow {
  method: string;
  bits: number;
  /** Group size along the input dimension; -1 = one scale per output row. */
  group: number;
  /** Average bits per parameter of the whole checkpoint: 8 * bytes / parameters. */
  bitsPerWeight: number;
  ppl: number;
  bytes: number;
  /** Calibration + quantization time (not the evaluation). */
  seconds: number;
}

export interface ComparisonTable {
  evalDescription: string;
  baseline: ComparisonRow;
  rows: ComparisonRow[];
}

/** Everything a view can show; any part may be absent until the host has computed it. */
export interface WebviewDataset {
  version: number;
  overview?: ModelOverview;
  histograms?: HistogramSummary[];
  /** One map per capture site family (attn_in, mlp_in, residual). */
  outlierMaps?: OutlierMap[];
  errors?: ErrorHeatmap;
  blockMaps?: BlockErrorMap[];
  comparison?: ComparisonTable;
}

export interface WebviewState {
  view: ViewName;
  threshold: number;
  histogramId: string | null;
  selectedDim: number | null;
  selectedCell: string | null;
  errorMetric: 'sqnr' | 'rel';
  tableQuery: string;
  tableSort: { key: TensorSortKey; descending: boolean };
}

export type TensorSortKey = 'name' | 'layer' | 'role' | 'dtype' | 'params' | 'bytes';

// ---------------------------------------------------------------------------------------------
// Messages (on src/protocol/rpc.ts)

export interface DatasetParams {
  /** View to show first; absent keeps the current (restored) view. */
  view?: ViewName;
  dataset: WebviewDataset;
}

export interface ErrorCellParams {
  target: string;
  /** The run the cell belongs to: a cell of a new run starts a fresh heatmap (absent: added to the current one). */
  run?: string;
  cell: ErrorCell;
  done: number;
  total: number;
}

export interface BlockMapParams {
  tensor: string;
  target: string;
}

export interface ExportParams {
  format: 'svg' | 'png' | 'csv' | 'json';
  fileName: string;
  /** Text, or a data: URL for PNG. */
  content: string;
}

const isDatasetParams: Guard<DatasetParams> = (x): x is DatasetParams =>
  isRecord(x) && (x.view === undefined || isViewName(x.view)) && checkDataset(x.dataset).ok;

const isErrorCellParams: Guard<ErrorCellParams> = (x): x is ErrorCellParams =>
  isRecord(x) && typeof x.target === 'string' && (x.run === undefined || typeof x.run === 'string') && isErrorCell(x.cell) && typeof x.done === 'number' && typeof x.total === 'number';

const isBlockMapParams: Guard<BlockMapParams> = (x): x is BlockMapParams => isRecord(x) && typeof x.tensor === 'string' && typeof x.target === 'string';

const isExportParams: Guard<ExportParams> = (x): x is ExportParams =>
  isRecord(x) && (x.format === 'svg' || x.format === 'png' || x.format === 'csv' || x.format === 'json') && typeof x.fileName === 'string' && typeof x.content === 'string';

const isShowViewParams: Guard<{ view: ViewName }> = (x): x is { view: ViewName } => isRecord(x) && isViewName(x.view);

/** Host -> webview: the whole dataset (or a newer one), optionally selecting the view. */
export const DatasetNotification = defineNotification<DatasetParams>('webview/dataset', isDatasetParams);
/** Host -> webview: one heatmap cell of a running quant-card job (the heatmap fills in live). */
export const ErrorCellNotification = defineNotification<ErrorCellParams>('webview/errorCell', isErrorCellParams);
/** Host -> webview: switch view (command palette, editor title buttons). */
export const ShowViewNotification = defineNotification<{ view: ViewName }>('webview/showView', isShowViewParams);
/** Webview -> host: the block-error map of one tensor at one target (null when the host has none). */
export const BlockMapRequest = defineRequest<BlockMapParams, BlockErrorMap | null>(
  'webview/blockMap',
  isBlockMapParams,
  (x): x is BlockErrorMap | null => x === null || isBlockErrorMap(x),
);
/** Webview -> host: save an exported chart or its data (the host shows a save dialog). */
export const ExportNotification = defineNotification<ExportParams>('webview/export', isExportParams);

// ---------------------------------------------------------------------------------------------
// Guards: structural checks of what arrives over postMessage.

function isNumberArray(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((v) => typeof v === 'number');
}

export function isViewName(x: unknown): x is ViewName {
  return typeof x === 'string' && (VIEW_NAMES as readonly string[]).includes(x);
}

export function isTensorRole(x: unknown): x is TensorRole {
  return typeof x === 'string' && (TENSOR_ROLES as readonly string[]).includes(x);
}

function isErrorCell(x: unknown): x is ErrorCell {
  return (
    isRecord(x) &&
    (x.layer === null || typeof x.layer === 'number') &&
    isTensorRole(x.role) &&
    typeof x.tensor === 'string' &&
    typeof x.type === 'string' &&
    (x.sqnrDb === null || typeof x.sqnrDb === 'number') &&
    (x.relError === null || typeof x.relError === 'number') &&
    (x.maxAbsError === null || typeof x.maxAbsError === 'number') &&
    typeof x.bitsPerWeight === 'number'
  );
}

function isBlockErrorMap(x: unknown): x is BlockErrorMap {
  return (
    isRecord(x) &&
    typeof x.tensor === 'string' &&
    typeof x.target === 'string' &&
    typeof x.rows === 'number' &&
    typeof x.cols === 'number' &&
    (x.metric === 'mse' || x.metric === 'relError') &&
    x.rows <= 64 &&
    x.cols <= 64 &&
    isNumberArray(x.values) &&
    x.values.length === x.rows * x.cols &&
    (x.scale === undefined || typeof x.scale === 'number') &&
    (x.errorHistogram === undefined ||
      (isRecord(x.errorHistogram) &&
        isNumberArray(x.errorHistogram.edges) &&
        isNumberArray(x.errorHistogram.counts) &&
        x.errorHistogram.edges.length === x.errorHistogram.counts.length + 1 &&
        (x.errorHistogram.zeros === undefined || typeof x.errorHistogram.zeros === 'number')))
  );
}

function isHistogram(x: unknown): x is HistogramSummary {
  return (
    isRecord(x) &&
    typeof x.id === 'string' &&
    typeof x.label === 'string' &&
    isNumberArray(x.edges) &&
    isNumberArray(x.counts) &&
    x.edges.length === x.counts.length + 1 &&
    isRecord(x.exceedance) &&
    isNumberArray(x.exceedance.thresholds) &&
    isNumberArray(x.exceedance.shares)
  );
}

/** Accepts a dataset whose present parts have the right shape; returns a reason when it does not. */
export function checkDataset(x: unknown): { ok: true; dataset: WebviewDataset } | { ok: false; reason: string } {
  if (!isRecord(x)) return { ok: false, reason: 'dataset is not an object' };
  if (x.version !== WEBVIEW_PROTOCOL_VERSION) return { ok: false, reason: `dataset version ${String(x.version)} is not ${WEBVIEW_PROTOCOL_VERSION}` };
  const o = x.overview;
  if (o !== undefined && !(isRecord(o) && Array.isArray(o.tensors) && typeof o.parameterCount === 'number' && Array.isArray(o.dtypeMix))) {
    return { ok: false, reason: 'overview lacks tensors, parameterCount or dtypeMix' };
  }
  if (x.histograms !== undefined && !(Array.isArray(x.histograms) && x.histograms.every(isHistogram))) {
    return { ok: false, reason: 'a histogram has edges that do not match its counts' };
  }
  const maps = x.outlierMaps;
  if (maps !== undefined && !Array.isArray(maps)) return { ok: false, reason: 'outlierMaps is not an array' };
  for (const m of maps ?? []) {
    if (
      !(
        isRecord(m) &&
        typeof m.layers === 'number' &&
        typeof m.dims === 'number' &&
        isNumberArray(m.magnitude) &&
        m.magnitude.length === m.layers * m.dims &&
        isNumberArray(m.tokenShare) &&
        m.tokenShare.length === m.layers * m.dims &&
        Array.isArray(m.systematic) &&
        Array.isArray(m.standouts) &&
        Array.isArray(m.details)
      )
    ) {
      return { ok: false, reason: 'outlierMap values do not match layers x dims' };
    }
  }
  const e = x.errors;
  if (e !== undefined && !(isRecord(e) && typeof e.target === 'string' && Array.isArray(e.roles) && e.roles.every(isTensorRole) && Array.isArray(e.cells) && e.cells.every(isErrorCell))) {
    return { ok: false, reason: 'errors heatmap has malformed cells' };
  }
  if (x.blockMaps !== undefined && !(Array.isArray(x.blockMaps) && x.blockMaps.every(isBlockErrorMap))) {
    return { ok: false, reason: 'a block-error map is malformed or larger than 64 x 64' };
  }
  const c = x.comparison;
  if (c !== undefined && !(isRecord(c) && isRecord(c.baseline) && Array.isArray(c.rows))) {
    return { ok: false, reason: 'comparison lacks baseline or rows' };
  }
  return { ok: true, dataset: x as unknown as WebviewDataset };
}
