/**
 * Pure adapters from tensor data / producer outputs to the webview's view models (src/protocol/webview.ts).
 * No vscode, no DOM, no I/O: the extension host, the CLI, the fixture script and the webview reuse them.
 */
import type { ActivationSiteKind, AnalysisReport } from './analysis';
import type {
  BlockErrorMap,
  DimDetail,
  OutlierMap,
  DtypeShare,
  EmergentCriterion,
  ErrorCell,
  HistogramSummary,
  SystematicDim,
  TargetSize,
  TensorRole,
  TensorRow,
} from './webview';

/** Bytes per stored element of the float dtypes a checkpoint holds unquantized. */
const FLOAT_DTYPE_BYTES: Record<string, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, F8_E4M3: 1, F8_E5M2: 1, I8: 1, U8: 1 };

/** Layer index and role of a tensor from its HF (`model.layers.3.self_attn.q_proj.weight`) or GGUF (`blk.3.attn_q.weight`) name. */
export function classifyTensorName(name: string): { layer: number | null; role: TensorRole } {
  const layerMatch = /(?:^|\.)(?:layers|blk|h|block)\.(\d+)\./.exec(name);
  const layer = layerMatch?.[1] !== undefined ? Number(layerMatch[1]) : null;
  const rules: [RegExp, TensorRole][] = [
    [/(q_proj|attn_q)\./, 'q'],
    [/(k_proj|attn_k)\./, 'k'],
    [/(v_proj|attn_v)\./, 'v'],
    [/(o_proj|attn_output)\./, 'o'],
    [/(gate_proj|ffn_gate)\./, 'gate'],
    [/(up_proj|ffn_up)\./, 'up'],
    [/(down_proj|ffn_down)\./, 'down'],
    [/(input_layernorm|attn_norm)\./, 'attn_norm'],
    [/(post_attention_layernorm|ffn_norm)\./, 'ffn_norm'],
    [/(embed_tokens|token_embd)\./, 'embed'],
    [/(^|\.)(lm_head|output)\./, 'output'],
    [/(^|\.)(norm|output_norm)\./, 'norm'],
  ];
  for (const [pattern, role] of rules) if (pattern.test(name)) return { layer, role };
  return { layer, role: 'other' };
}

export function tensorRow(entry: { name: string; dtype: string; shape: number[]; nbytes: number }): TensorRow {
  const { layer, role } = classifyTensorName(entry.name);
  const params = entry.shape.reduce((a, b) => a * b, 1);
  return { name: entry.name, layer, role, dtype: entry.dtype, shape: [...entry.shape], params, bytes: entry.nbytes };
}

export function dtypeMix(rows: TensorRow[]): DtypeShare[] {
  const byDtype = new Map<string, DtypeShare>();
  for (const r of rows) {
    const share = byDtype.get(r.dtype) ?? { dtype: r.dtype, params: 0, bytes: 0 };
    share.params += r.params;
    share.bytes += r.bytes;
    byDtype.set(r.dtype, share);
  }
  return [...byDtype.values()].sort((a, b) => b.params - a.params);
}

/**
 * Estimated checkpoint size per quantization target. Every 2-D tensor (embeddings and head included)
 * takes the target's bits per weight including its scales; 1-D tensors (norms) stay as stored.
 * Bits per weight: INT8 per-row absmax ~8, Q8_0 = 34 B / 32 = 8.5, Q4_0 = 18 B / 32 = 4.5,
 * Q4_K = 144 B / 256 = 4.5, NF4 g64 with an FP16 scale = 4.25, INT4 g128 with FP16 scale + zero = 4.25.
 */
export const SIZE_TARGETS: { target: string; bitsPerWeight: number }[] = [
  { target: 'FP16', bitsPerWeight: 16 },
  { target: 'Q8_0', bitsPerWeight: 8.5 },
  { target: 'INT8 (per row)', bitsPerWeight: 8 },
  { target: 'Q4_K', bitsPerWeight: 4.5 },
  { target: 'NF4 g64', bitsPerWeight: 4.25 },
  { target: 'INT4 g128', bitsPerWeight: 4.25 },
];

export function estimateTargetSizes(rows: TensorRow[]): TargetSize[] {
  return SIZE_TARGETS.map(({ target, bitsPerWeight }) => {
    let bytes = 0;
    for (const r of rows) {
      if (r.shape.length >= 2) bytes += Math.ceil((r.params * bitsPerWeight) / 8);
      else bytes += r.params * (FLOAT_DTYPE_BYTES[r.dtype] ?? 4);
    }
    return { target, bitsPerWeight, bytes };
  });
}

/** Default grid of thresholds for `exceedance`: 0.25 .. 32 in steps of 0.25 (exact at 6.0). */
export function defaultThresholdGrid(): number[] {
  const grid: number[] = [];
  for (let t = 0.25; t <= 32 + 1e-9; t += 0.25) grid.push(Math.round(t * 100) / 100);
  return grid;
}

export interface SummarizeOptions {
  id: string;
  label: string;
  source: HistogramSummary['source'];
  layer: number | null;
  role: HistogramSummary['role'];
  unit: HistogramSummary['unit'];
  bins: number;
  thresholds?: number[];
}

/**
 * Histogram and exact statistics of `values`. With unit 'std', values are divided by their std first, so a
 * threshold of 6.0 means 6 sigma (weights); with 'value' the raw values are used (activations, where 6.0 is the
 * LLM.int8() magnitude). Bins are equal-width over [-absmax, absmax] so the histogram is symmetric about 0.
 */
export function summarizeValues(values: Float32Array, options: SummarizeOptions): HistogramSummary {
  const n = values.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += values[i] ?? 0;
  const rawMean = n > 0 ? sum / n : 0;
  let m2 = 0;
  let m4 = 0;
  for (let i = 0; i < n; i++) {
    const d = (values[i] ?? 0) - rawMean;
    const d2 = d * d;
    m2 += d2;
    m4 += d2 * d2;
  }
  m2 = n > 0 ? m2 / n : 0;
  m4 = n > 0 ? m4 / n : 0;
  const rawStd = Math.sqrt(m2);
  const kurtosis = m2 > 0 ? m4 / (m2 * m2) - 3 : 0;
  const scale = options.unit === 'std' && rawStd > 0 ? 1 / rawStd : 1;

  const magnitudes = new Float32Array(n);
  let absmax = 0;
  for (let i = 0; i < n; i++) {
    const a = Math.abs((values[i] ?? 0) * scale);
    magnitudes[i] = a;
    if (a > absmax) absmax = a;
  }
  magnitudes.sort();
  const p999 = n > 0 ? (magnitudes[Math.min(n - 1, Math.floor(0.999 * (n - 1)))] ?? 0) : 0;

  const bins = Math.max(1, options.bins);
  const range = absmax > 0 ? absmax : 1;
  const width = (2 * range) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < n; i++) {
    const v = (values[i] ?? 0) * scale;
    const b = Math.min(bins - 1, Math.max(0, Math.floor((v + range) / width)));
    counts[b] = (counts[b] ?? 0) + 1;
  }
  const edges = Array.from({ length: bins + 1 }, (_, i) => -range + i * width);

  const thresholds = options.thresholds ?? defaultThresholdGrid();
  const shares = thresholds.map((t) => (n > 0 ? (n - lowerBound(magnitudes, t)) / n : 0));

  return {
    id: options.id,
    label: options.label,
    source: options.source,
    layer: options.layer,
    role: options.role,
    unit: options.unit,
    xScale: 'linear',
    edges,
    counts,
    count: n,
    mean: rawMean * scale,
    std: rawStd * scale,
    kurtosis,
    absmax,
    p999,
    exceedance: { thresholds, shares },
  };
}

/** First index with sorted[i] >= value. */
function lowerBound(sorted: Float32Array, value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] ?? 0) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Share of |x| >= threshold: exact on the grid points, linear between them (in log share, so the
 * interpolation follows the roughly exponential tail); 0 past the last grid point beyond absmax.
 */
export function shareBeyond(summary: Pick<HistogramSummary, 'exceedance' | 'absmax'>, threshold: number): number {
  const { thresholds, shares } = summary.exceedance;
  if (threshold > summary.absmax) return 0;
  if (thresholds.length === 0) return 0;
  const first = thresholds[0] ?? 0;
  if (threshold <= first) return shares[0] ?? 0;
  for (let i = 1; i < thresholds.length; i++) {
    const t1 = thresholds[i] ?? 0;
    if (threshold <= t1) {
      const t0 = thresholds[i - 1] ?? 0;
      const s0 = shares[i - 1] ?? 0;
      const s1 = shares[i] ?? 0;
      if (threshold === t1) return s1;
      const f = (threshold - t0) / (t1 - t0);
      if (s0 > 0 && s1 > 0) return Math.exp(Math.log(s0) + f * (Math.log(s1) - Math.log(s0)));
      return s0 + f * (s1 - s0);
    }
  }
  return shares[shares.length - 1] ?? 0;
}

/** SQNR, relative error and max error of a quantized copy `q` of `x`. */
export function errorCell(x: Float32Array, q: Float32Array, where: { tensor: string; layer: number | null; role: TensorRole }): ErrorCell {
  let signal = 0;
  let noise = 0;
  let maxAbsError = 0;
  for (let i = 0; i < x.length; i++) {
    const xi = x[i] ?? 0;
    const e = xi - (q[i] ?? 0);
    signal += xi * xi;
    noise += e * e;
    if (Math.abs(e) > maxAbsError) maxAbsError = Math.abs(e);
  }
  const sqnrDb = noise > 0 ? 10 * Math.log10(signal / noise) : Infinity;
  return { ...where, sqnrDb: Number.isFinite(sqnrDb) ? sqnrDb : 999, relError: signal > 0 ? Math.sqrt(noise / signal) : 0, maxAbsError };
}

/**
 * Block-error map of a rows x cols tensor: relative error ||x - q|| / ||x|| per block of
 * ceil(rows / mapRows) rows x ceil(cols / mapCols) columns, at most 64 x 64 blocks.
 */
export function blockErrorMap(
  x: Float32Array,
  q: Float32Array,
  rows: number,
  cols: number,
  options: { tensor: string; target: string; mapRows?: number; mapCols?: number; histogramBins?: number },
): BlockErrorMap {
  const mapRows = Math.min(rows, Math.min(64, options.mapRows ?? 64));
  const mapCols = Math.min(cols, Math.min(64, options.mapCols ?? 64));
  const rowsPerCell = Math.ceil(rows / mapRows);
  const colsPerCell = Math.ceil(cols / mapCols);
  const outRows = Math.ceil(rows / rowsPerCell);
  const outCols = Math.ceil(cols / colsPerCell);
  const signal = new Float64Array(outRows * outCols);
  const noise = new Float64Array(outRows * outCols);
  let sum = 0;
  let sumSq = 0;
  for (let r = 0; r < rows; r++) {
    const br = Math.floor(r / rowsPerCell);
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const xi = x[i] ?? 0;
      const e = xi - (q[i] ?? 0);
      const cell = br * outCols + Math.floor(c / colsPerCell);
      signal[cell] = (signal[cell] ?? 0) + xi * xi;
      noise[cell] = (noise[cell] ?? 0) + e * e;
      sum += xi;
      sumSq += xi * xi;
    }
  }
  const relError = Array.from(signal, (s, i) => (s > 0 ? Math.sqrt((noise[i] ?? 0) / s) : 0));
  const n = rows * cols;
  const mean = n > 0 ? sum / n : 0;
  const std = Math.sqrt(Math.max(0, sumSq / Math.max(1, n) - mean * mean)) || 1;
  const bins = options.histogramBins ?? 41;
  let maxErr = 0;
  for (let i = 0; i < n; i++) maxErr = Math.max(maxErr, Math.abs(((x[i] ?? 0) - (q[i] ?? 0)) / std));
  const range = maxErr > 0 ? maxErr : 1;
  const width = (2 * range) / bins;
  const counts = new Array<number>(bins).fill(0);
  for (let i = 0; i < n; i++) {
    const e = ((x[i] ?? 0) - (q[i] ?? 0)) / std;
    const b = Math.min(bins - 1, Math.max(0, Math.floor((e + range) / width)));
    counts[b] = (counts[b] ?? 0) + 1;
  }
  return {
    tensor: options.tensor,
    target: options.target,
    rows: outRows,
    cols: outCols,
    rowsPerCell,
    colsPerCell,
    relError,
    errorHistogram: { edges: Array.from({ length: bins + 1 }, (_, i) => -range + i * width), counts },
  };
}

/**
 * Systematic outlier dimensions (LLM.int8(), Dettmers et al. 2022): a dimension counts in a layer when at
 * least `minTokenShare` of the tokens reach |x| >= threshold there; it is systematic when it counts in at
 * least `minLayerShare` of the layers. `tokenShare` is row-major layers x dims.
 */
export function findSystematicDims(magnitude: ArrayLike<number>, tokenShare: ArrayLike<number>, layers: number, dims: number, criterion: EmergentCriterion): SystematicDim[] {
  const out: SystematicDim[] = [];
  for (let d = 0; d < dims; d++) {
    let layersHit = 0;
    let shareSum = 0;
    let maxMagnitude = 0;
    for (let l = 0; l < layers; l++) {
      const share = tokenShare[l * dims + d] ?? 0;
      maxMagnitude = Math.max(maxMagnitude, magnitude[l * dims + d] ?? 0);
      if (share >= criterion.minTokenShare) {
        layersHit++;
        shareSum += share;
      }
    }
    const layerShare = layers > 0 ? layersHit / layers : 0;
    if (layersHit > 0 && layerShare >= criterion.minLayerShare) out.push({ dim: d, layerShare, tokenShare: shareSum / layersHit, maxMagnitude });
  }
  return out.sort((a, b) => b.maxMagnitude - a.maxMagnitude);
}

/** Rounds every number in a JSON-able value to `digits` significant digits (keeps committed fixtures small). */
export function roundForJson<T>(value: T, digits = 4): T {
  const walk = (v: unknown): unknown => {
    if (typeof v === 'number') return Number.isInteger(v) ? v : Number(v.toPrecision(digits));
    if (Array.isArray(v)) return v.map(walk);
    if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    return v;
  };
  return walk(value) as T;
}

/**
 * The emergent-feature map of one site family of an analysis report (`quantlens analyze --json`):
 * layers x channels of max |x| and of the share of tokens at or over the threshold, the report's systematic
 * dims for that family, and details (per-layer magnitude + reading weight columns) for those dims and the
 * strongest others.
 */
export function outlierMapFromAnalysis(report: AnalysisReport, kind: ActivationSiteKind = 'attn_in', extraDetails = 8): OutlierMap {
  const sites = report.sites.filter((s) => s.kind === kind).sort((a, b) => a.layer - b.layer);
  const layers = sites.length;
  const dims = sites[0]?.channels ?? 0;
  const magnitude = new Array<number>(layers * dims).fill(0);
  const tokenShare = new Array<number>(layers * dims).fill(0);
  sites.forEach((s, l) => {
    for (let d = 0; d < dims; d++) {
      magnitude[l * dims + d] = s.absmax[d] ?? 0;
      tokenShare[l * dims + d] = s.tokens > 0 ? (s.countAtLeastThreshold[d] ?? 0) / s.tokens : 0;
    }
  });
  const systematic = report.systematic
    .filter((s) => s.kind === kind)
    .map((s) => ({ dim: s.dim, layerShare: s.layerShare, tokenShare: s.tokenShare, maxMagnitude: s.maxAbs }))
    .sort((a, b) => b.maxMagnitude - a.maxMagnitude);
  const strongest = Array.from({ length: dims }, (_, d) => d)
    .map((d) => [Math.max(...sites.map((s) => s.absmax[d] ?? 0)), d] as const)
    .sort((a, b) => b[0] - a[0])
    .map(([, d]) => d);
  const detailDims = [...new Set([...systematic.map((s) => s.dim), ...strongest.slice(0, extraDetails)])];
  const siteIds = new Set(sites.map((s) => s.id));
  const views = report.weights.filter((v) => siteIds.has(v.site));
  const details: DimDetail[] = detailDims.map((dim) => ({
    dim,
    magnitudeByLayer: sites.map((s) => s.absmax[dim] ?? 0),
    tokenShareByLayer: sites.map((s) => (s.tokens > 0 ? (s.countAtLeastThreshold[dim] ?? 0) / s.tokens : 0)),
    readers: views.map((v) => {
      const { layer, role } = classifyTensorName(`${v.linear}.weight`);
      return {
        tensor: v.linear,
        layer: layer ?? 0,
        role,
        columnAbsMax: v.weightAbsmax[dim] ?? 0,
        medianColumnAbsMax: median(v.weightAbsmax),
        awqProtected: v.awqProtected.includes(dim),
      };
    }),
  }));
  return {
    id: `${kind}@${report.threshold}`,
    site: kind,
    layers,
    dims,
    tokens: sites[0]?.tokens ?? 0,
    magnitude,
    tokenShare,
    criterion: { threshold: report.threshold, minLayerShare: report.criteria.minLayerShare, minTokenShare: report.criteria.minTokenShare },
    systematic,
    details,
  };
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[mid] ?? 0) : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * Activation histograms of an analysis report: |x| on log2-spaced edges. The share beyond a threshold is
 * exact at every edge (the report counts whole bins); p99.9 is the upper edge of the bin that crosses
 * 99.9 %, so it is an upper bound; kurtosis needs the raw values and is null.
 */
export function activationHistogramsFromAnalysis(report: AnalysisReport): HistogramSummary[] {
  return report.sites.map((s) => {
    const { edges, counts, belowFirst, aboveLast } = s.histogram;
    const total = belowFirst + aboveLast + counts.reduce((a, b) => a + b, 0);
    const shares = edges.map((_, i) => (total > 0 ? (counts.slice(i).reduce((a, b) => a + b, 0) + aboveLast) / total : 0));
    let cumulative = belowFirst;
    let p999 = edges[edges.length - 1] ?? 0;
    for (let i = 0; i < counts.length; i++) {
      cumulative += counts[i] ?? 0;
      if (cumulative >= 0.999 * total) {
        p999 = edges[i + 1] ?? p999;
        break;
      }
    }
    let sum = 0;
    let sumSq = 0;
    counts.forEach((c, i) => {
      const centre = Math.sqrt((edges[i] ?? 0) * (edges[i + 1] ?? 0));
      sum += c * centre;
      sumSq += c * centre * centre;
    });
    const mean = total > 0 ? sum / total : 0;
    return {
      id: `a:${s.id}`,
      label: s.id,
      source: 'activations' as const,
      layer: s.layer,
      role: s.kind === 'mlp_in' ? ('ffn_in' as const) : ('attn_in' as const),
      unit: 'value' as const,
      xScale: 'log' as const,
      edges: [...edges],
      counts: [...counts],
      count: total,
      mean,
      std: Math.sqrt(Math.max(0, (total > 0 ? sumSq / total : 0) - mean * mean)),
      kurtosis: null,
      absmax: Math.max(0, ...s.absmax),
      p999,
      exceedance: { thresholds: [...edges], shares },
    };
  });
}
