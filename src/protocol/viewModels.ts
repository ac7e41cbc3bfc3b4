/**
 * Pure adapters from tensor data / producer outputs to the webview's view models (src/protocol/webview.ts).
 * No vscode, no DOM, no I/O: the extension host, the CLI, the fixture script and the webview reuse them.
 */
import type { ActivationSiteKind, AnalysisReport } from './analysis';
import type {
  BlockErrorMap,
  ComparisonTable,
  DimDetail,
  OutlierMap,
  DtypeShare,
  ErrorCell,
  ErrorHeatmap,
  HistogramSummary,
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

/** What a quant card (`<output>.quant.json`, src/core/quant/quantCard.ts) says per tensor, as far as the view needs it. */
export interface QuantCardLike {
  recipe: Record<string, string | number | boolean | null>;
  tensors: {
    name: string;
    shape: number[];
    type: string;
    quantized: boolean;
    bitsPerWeight: number;
    relRmse: number | null;
    sqnrDb: number | null;
    maxAbsError: number | null;
    errorMap: { rowBands: number; colBands: number; values: number[] } | null;
    /** Element-wise error histogram over [-range, range]; absent in older cards. */
    errorHistogram?: { range: number; counts: number[]; zeros: number } | null;
  }[];
}

/** Bin edges of a card's error histogram (bins equal over [-range, range]; range 0 = all exact: drawn over [-1, 1]). */
export function errorHistogramEdges(range: number, bins: number): number[] {
  const r = range > 0 ? range : 1;
  return Array.from({ length: bins + 1 }, (_, k) => -r + (2 * r * k) / bins);
}

/** Roles in heatmap column order: embeddings, the seven linears, the output head. */
export const HEATMAP_ROLES: TensorRole[] = ['embed', 'q', 'k', 'v', 'o', 'gate', 'up', 'down', 'output'];

/**
 * The error heatmap (layers x roles) and block-error maps of a quant card. Block maps are downsampled by
 * averaging `factor` x `factor` cells of the card's MSE map (the card's bands are equal to within one row or
 * column, so the average is the block MSE to that precision).
 */
export function errorsFromQuantCard(
  card: QuantCardLike,
  layers: number,
  options: { target?: string; downsample?: number; /** Store block values relative to their mean (short numbers in JSON). */ relative?: boolean } = {},
): { errors: ErrorHeatmap; blockMaps: BlockErrorMap[] } {
  const target = options.target ?? String(card.recipe.target ?? card.recipe.scheme ?? 'quantized');
  const factor = Math.max(1, Math.floor(options.downsample ?? 1));
  const cells: ErrorCell[] = [];
  const blockMaps: BlockErrorMap[] = [];
  for (const t of card.tensors) {
    if (!t.quantized) continue;
    const { layer, role } = classifyTensorName(t.name);
    cells.push({ layer, role, tensor: t.name, type: t.type, sqnrDb: t.sqnrDb, relError: t.relRmse, maxAbsError: t.maxAbsError, bitsPerWeight: t.bitsPerWeight });
    const m = t.errorMap;
    if (m === null) continue;
    const rows = Math.ceil(m.rowBands / factor);
    const cols = Math.ceil(m.colBands / factor);
    const values = new Array<number>(rows * cols).fill(0);
    const counts = new Array<number>(rows * cols).fill(0);
    for (let r = 0; r < m.rowBands; r++) {
      for (let c = 0; c < m.colBands; c++) {
        const cell = Math.floor(r / factor) * cols + Math.floor(c / factor);
        values[cell] = (values[cell] ?? 0) + (m.values[r * m.colBands + c] ?? 0);
        counts[cell] = (counts[cell] ?? 0) + 1;
      }
    }
    const [tensorRows = 1, tensorCols = 1] = t.shape.length >= 2 ? t.shape : [1, t.shape[0] ?? 1];
    const averaged = values.map((v, i) => v / Math.max(1, counts[i] ?? 1));
    const mean = averaged.reduce((a, b) => a + b, 0) / Math.max(1, averaged.length);
    const scale = options.relative === true && mean > 0 ? mean : 1;
    blockMaps.push({
      tensor: t.name,
      target,
      metric: 'mse',
      rows,
      cols,
      rowsPerCell: Math.round(tensorRows / rows),
      colsPerCell: Math.round(tensorCols / cols),
      values: scale === 1 ? averaged : averaged.map((v) => v / scale),
      ...(scale === 1 ? {} : { scale }),
      ...(t.errorHistogram == null
        ? {}
        : { errorHistogram: { edges: errorHistogramEdges(t.errorHistogram.range, t.errorHistogram.counts.length), counts: t.errorHistogram.counts, zeros: t.errorHistogram.zeros } }),
    });
  }
  const roles = HEATMAP_ROLES.filter((role) => cells.some((c) => c.role === role));
  return { errors: { target, layers, roles, cells }, blockMaps };
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
 * dims and recurring standouts for that family, and details (per-layer magnitude + reading weight columns) for those dims and the
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
  const standouts = report.recurringStandouts
    .filter((s) => s.kind === kind)
    .map((s) => ({ dim: s.dim, layerShare: s.layerShare, meanRatio: s.meanRatio, maxMagnitude: s.maxAbs }))
    .sort((a, b) => b.meanRatio - a.meanRatio);
  const strongest = Array.from({ length: dims }, (_, d) => d)
    .map((d) => [Math.max(...sites.map((s) => s.absmax[d] ?? 0)), d] as const)
    .sort((a, b) => b[0] - a[0])
    .map(([, d]) => d);
  const detailDims = [...new Set([...systematic.map((s) => s.dim), ...standouts.map((s) => s.dim), ...strongest.slice(0, extraDetails)])];
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
    criterion: {
      threshold: report.threshold,
      minLayerShare: report.criteria.minLayerShare,
      minTokenShare: report.criteria.minTokenShare,
      standoutFactor: report.criteria.standoutFactor,
      minStandoutLayerShare: report.criteria.minStandoutLayerShare,
    },
    systematic,
    standouts,
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

/** What `quantlens compare --json` prints (src/core/methods/compare.ts CompareResult), as far as the view needs it. */
export interface CompareResultLike {
  baseline: { ppl: number; bytes: number };
  rows: { method: string; bits: number; group: number; ppl: number; bytes: number; seconds: number }[];
  skipped?: { method: string; bits: number; reason: string }[];
  calibration: { windows: number; ctx: number; tokens: number };
  evaluation: { windows: number; ctx: number; tokens: number };
}

/** The comparison view model of a method comparison; `parameters` turns bytes into bits per parameter. */
export function comparisonFromCompareResult(result: CompareResultLike, parameters: number, texts: { calibration: string; evaluation: string }): ComparisonTable {
  const bpw = (bytes: number): number => (parameters > 0 ? (8 * bytes) / parameters : 0);
  const { calibration: c, evaluation: e } = result;
  return {
    evalDescription:
      `perplexity on ${texts.evaluation} (${e.windows} windows of ${e.ctx} tokens), calibration on ${texts.calibration} (${c.windows} x ${c.ctx} tokens)` +
      (result.skipped !== undefined && result.skipped.length > 0 ? `; not run: ${result.skipped.map((s) => `${s.method} W${s.bits} (${s.reason})`).join(', ')}` : ''),
    baseline: { method: 'FP16', bits: 16, group: -1, bitsPerWeight: bpw(result.baseline.bytes), ppl: result.baseline.ppl, bytes: result.baseline.bytes, seconds: 0 },
    rows: result.rows.map((r) => ({ method: r.method, bits: r.bits, group: r.group, bitsPerWeight: bpw(r.bytes), ppl: r.ppl, bytes: r.bytes, seconds: r.seconds })),
  };
}
