import { useEffect, useMemo, useState } from 'react';
import { scaleBand, scaleSequential, scaleSequentialLog } from 'd3-scale';
import { interpolateRdYlGn, interpolateYlOrRd } from 'd3-scale-chromatic';
import { bin, extent } from 'd3-array';
import VscodeButton from '@vscode-elements/react-elements/dist/components/VscodeButton.js';
import VscodeProgressBar from '@vscode-elements/react-elements/dist/components/VscodeProgressBar.js';
import type { BlockErrorMap, ErrorCell, ErrorHeatmap, HistogramSummary, TensorRole } from '../../../src/protocol/webview';
import { ChartFrame } from './ChartFrame';
import { Axis } from './Axis';
import { HistogramChart } from './HistogramChart';
import { ColorLegend } from './ColorLegend';
import { useTooltip } from './Tooltip';
import { useHost } from '../host';
import { fmtCount, fmtNum, fmtPct } from '../format';

interface ErrorsViewProps {
  heatmap: ErrorHeatmap;
  progress: { done: number; total: number } | null;
  metric: 'sqnr' | 'rel';
  selectedTensor: string | null;
  onMetric: (m: 'sqnr' | 'rel') => void;
  onSelect: (tensor: string) => void;
}

/** Row label of a cell: its layer, or the model-level tensors (embeddings, output head) in their own row. */
const rowKey = (cell: { layer: number | null }): string => (cell.layer === null ? 'model' : `L${cell.layer}`);

export function ErrorsView({ heatmap, progress, metric, selectedTensor, onMetric, onSelect }: ErrorsViewProps) {
  const { tooltip, show, hide } = useTooltip();
  const rows = useMemo(() => {
    const hasModelRow = heatmap.cells.some((c) => c.layer === null) || heatmap.roles.some((r) => r === 'embed' || r === 'output');
    return [...(hasModelRow ? ['model'] : []), ...Array.from({ length: heatmap.layers }, (_, l) => `L${l}`)];
  }, [heatmap]);
  const byKey = useMemo(() => new Map(heatmap.cells.map((c) => [`${rowKey(c)}|${c.role}`, c])), [heatmap]);
  /** null = exact (infinite SQNR, zero error). */
  const value = (c: ErrorCell): number | null => (metric === 'sqnr' ? c.sqnrDb : c.relError);
  const colour = useMemo(() => {
    const [min = 0, max = 1] = extent(heatmap.cells, (c) => value(c) ?? undefined);
    // A minimum span (3 dB, or 20 % of the mean relative error) so that tiny spreads do not look like red vs green.
    const span = metric === 'sqnr' ? 3 : 0.2 * ((min + max) / 2 || 1);
    const mid = (min + max) / 2;
    const [lo, hi] = max - min >= span ? [min, max] : [mid - span / 2, mid + span / 2];
    // Green = good: high SQNR, low relative error.
    return metric === 'sqnr' ? scaleSequential(interpolateRdYlGn).domain([lo, hi]) : scaleSequential(interpolateYlOrRd).domain([lo, hi]);
  }, [heatmap, metric]);
  const cellW = 64;
  const cellH = 26;
  const margin = { top: 28, right: 16, bottom: 16, left: 60 };
  const width = margin.left + margin.right + heatmap.roles.length * cellW;
  const height = margin.top + margin.bottom + rows.length * cellH;
  const x = scaleBand<TensorRole>().domain(heatmap.roles).range([0, heatmap.roles.length * cellW]).padding(0.06);
  const y = scaleBand<string>().domain(rows).range([0, rows.length * cellH]).padding(0.08);
  const selected = heatmap.cells.find((c) => c.tensor === selectedTensor);
  const unit = metric === 'sqnr' ? 'dB' : '';
  return (
    <div className="view errors-view">
      <div className="controls">
        <span className="segmented" role="group" aria-label="Colour by">
          <VscodeButton secondary={metric !== 'sqnr'} aria-pressed={metric === 'sqnr' ? 'true' : 'false'} onClick={() => onMetric('sqnr')} data-metric="sqnr">
            SQNR (dB)
          </VscodeButton>
          <VscodeButton secondary={metric !== 'rel'} aria-pressed={metric === 'rel' ? 'true' : 'false'} onClick={() => onMetric('rel')} data-metric="rel">
            relative error
          </VscodeButton>
        </span>
        {progress !== null && progress.done < progress.total && (
          <span className="progress" data-progress={`${progress.done}/${progress.total}`}>
            <VscodeProgressBar value={progress.done} max={progress.total} />
            {progress.done} / {progress.total} tensors
          </span>
        )}
      </div>
      <div className="two-columns">
        <ChartFrame
          id={`errors-${heatmap.target}`}
          title={`Quantization error: ${heatmap.target}`}
          subtitle={`layers × tensor roles, ${metric === 'sqnr' ? 'SQNR in dB (higher is better)' : '‖x − q‖ / ‖x‖ (lower is better)'}; click a cell for its block-error map`}
          rows={() => heatmap.cells.map((c) => ({ tensor: c.tensor, layer: c.layer, role: c.role, sqnrDb: c.sqnrDb, relError: c.relError, maxAbsError: c.maxAbsError }))}
          json={() => heatmap}
        >
          <svg className="heatmap errors" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="grid" aria-label="Error heat map">
            <g transform={`translate(${margin.left},${margin.top})`}>
              {rows.map((r) => (
                <g key={r} role="row">
                  {heatmap.roles.map((role) => {
                    const cell = byKey.get(`${r}|${role}`);
                    const modelRow = r === 'model';
                    const belongs = modelRow ? role === 'embed' || role === 'output' : role !== 'embed' && role !== 'output';
                    if (!belongs) return null;
                    if (cell === undefined) {
                      return <rect key={role} className="cell pending" x={x(role)} y={y(r)} width={x.bandwidth()} height={y.bandwidth()} role="gridcell" aria-label={`${r} ${role}: pending`} />;
                    }
                    const v = value(cell);
                    const fill = v === null ? 'var(--ql-exact)' : colour(v);
                    const label = v === null ? 'exact' : metric === 'sqnr' ? v.toFixed(1) : fmtPct(v);
                    return (
                      <g
                        key={role}
                        className={cell.tensor === selectedTensor ? 'error-cell selected' : 'error-cell'}
                        role="gridcell"
                        tabIndex={0}
                        data-tensor={cell.tensor}
                        aria-label={`${cell.tensor} (${cell.type}): ${describe(cell)}`}
                        onClick={() => onSelect(cell.tensor)}
                        onKeyDown={(e) => {
                          if (e.key === 'Enter' || e.key === ' ') {
                            e.preventDefault();
                            onSelect(cell.tensor);
                          }
                        }}
                        onMouseMove={(e) => show(e, `${cell.tensor}\n${cell.type}, ${fmtNum(cell.bitsPerWeight)} bits/weight\n${describe(cell)}`)}
                        onMouseLeave={hide}
                        onFocus={(e) => {
                          // Keyboard focus only: a click also focuses, and the pointer tooltip covers that.
                          if (e.currentTarget.matches(':focus-visible')) show(e, `${cell.tensor}: ${describe(cell)}`);
                        }}
                        onBlur={hide}
                      >
                        <rect className="cell" x={x(role)} y={y(r)} width={x.bandwidth()} height={y.bandwidth()} fill={fill} />
                        <text className="cell-label" x={(x(role) ?? 0) + x.bandwidth() / 2} y={(y(r) ?? 0) + y.bandwidth() / 2} style={{ fill: contrastText(fill) }}>
                          {label}
                        </text>
                      </g>
                    );
                  })}
                </g>
              ))}
              <g className="axis top-labels">
                {heatmap.roles.map((role) => (
                  <text key={role} className="axis-label" x={(x(role) ?? 0) + x.bandwidth() / 2} y={-10} textAnchor="middle">
                    {role}
                  </text>
                ))}
              </g>
              <Axis scale={y} orient="left" />
            </g>
          </svg>
          <ColorLegend
            colour={(t) => colour(colour.domain()[0]! + t * (colour.domain()[1]! - colour.domain()[0]!))}
            low={metric === 'sqnr' ? `${fmtNum(colour.domain()[0] ?? 0)} dB` : fmtPct(colour.domain()[0] ?? 0)}
            high={metric === 'sqnr' ? `${fmtNum(colour.domain()[1] ?? 0)} dB` : fmtPct(colour.domain()[1] ?? 0)}
            label={metric === 'sqnr' ? 'SQNR' : 'relative error'}
          />
        </ChartFrame>
        {selected !== undefined && <BlockMapPanel key={selected.tensor} cell={selected} target={heatmap.target} unit={unit} />}
      </div>
      {tooltip}
    </div>
  );
}

function describe(cell: ErrorCell): string {
  const sqnr = cell.sqnrDb === null ? 'exact' : `SQNR ${fmtNum(cell.sqnrDb)} dB`;
  const rel = cell.relError === null ? '' : ` · rel. error ${fmtPct(cell.relError)}`;
  const max = cell.maxAbsError === null ? '' : ` · max |err| ${fmtNum(cell.maxAbsError)}`;
  return `${sqnr}${rel}${max}`;
}

/** Black or white text, whichever reads better on an rgb(...) fill. */
function contrastText(fill: string): string {
  const m = /rgb\((\d+), ?(\d+), ?(\d+)\)/.exec(fill);
  if (m === null) return 'currentColor';
  const [r, g, b] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return 0.299 * r + 0.587 * g + 0.114 * b > 150 ? '#111' : '#fff';
}

function BlockMapPanel({ cell, target }: { cell: ErrorCell; target: string; unit: string }) {
  const host = useHost();
  const [map, setMap] = useState<BlockErrorMap | null | 'loading' | string>('loading');
  const { tooltip, show, hide } = useTooltip();
  useEffect(() => {
    let live = true;
    host.requestBlockMap(cell.tensor, target).then(
      (m) => live && setMap(m),
      (e: unknown) => live && setMap(e instanceof Error ? e.message : String(e)),
    );
    return () => {
      live = false;
    };
  }, [host, cell.tensor, target]);
  if (map === 'loading') return <section className="panel">Loading the block-error map of {cell.tensor}…</section>;
  if (map === null || typeof map === 'string') return <section className="panel">No block-error map for {cell.tensor}{typeof map === 'string' ? `: ${map}` : ''}.</section>;
  const size = 300;
  const margin = { top: 8, right: 8, bottom: 40, left: 48 };
  const cw = size / map.cols;
  const ch = size / map.rows;
  const scale = map.scale ?? 1;
  const positive = map.values.filter((v) => v > 0);
  const lo = positive.length > 0 ? Math.min(...positive) : 0;
  const hi = Math.max(0, ...map.values);
  // Block MSE spans orders of magnitude across a tensor: colour on a log scale.
  const colour = hi > lo && lo > 0 ? scaleSequentialLog(interpolateYlOrRd).domain([lo, hi]) : scaleSequential(interpolateYlOrRd).domain([0, hi || 1]);
  const quantity = map.metric === 'mse' ? 'block MSE' : 'block relative error';
  /** `v` in stored units (x scale = the metric). */
  const fmtValue = (v: number): string => (map.metric === 'mse' ? fmtNum(v * scale) : fmtPct(v * scale));
  const elementwise = map.errorHistogram;
  const histogram: HistogramSummary = elementwise !== undefined ? elementwiseHistogram(map, cell, elementwise) : blockValueHistogram(map, cell);
  return (
    <section className="panel block-map" data-block-map={map.tensor} aria-label={`Block-error map of ${map.tensor}`}>
      <ChartFrame
        id={`block-errors-${map.tensor}`}
        title={`Block errors: ${map.tensor}`}
        subtitle={`${map.rows} × ${map.cols} blocks of ≈${map.rowsPerCell} rows × ${map.colsPerCell} columns; ${quantity} ${fmtValue(lo)} – ${fmtValue(hi)} (log colour)`}
        rows={() => map.values.map((v, i) => ({ blockRow: Math.floor(i / map.cols), blockCol: i % map.cols, [map.metric]: v * scale }))}
        json={() => map}
      >
        <svg className="heatmap blocks" width={size + margin.left + margin.right} height={size + margin.top + margin.bottom} viewBox={`0 0 ${size + margin.left + margin.right} ${size + margin.top + margin.bottom}`} role="img" aria-label="Block-error map">
          <g transform={`translate(${margin.left},${margin.top})`}>
            {map.values.map((v, i) => {
              const r = Math.floor(i / map.cols);
              const c = i % map.cols;
              return (
                <rect
                  key={i}
                  className="block"
                  x={c * cw}
                  y={r * ch}
                  width={cw + 0.3}
                  height={ch + 0.3}
                  fill={v > 0 ? colour(v) : 'var(--ql-exact)'}
                  onMouseMove={(e) => show(e, `rows ≈${r * map.rowsPerCell}–${(r + 1) * map.rowsPerCell - 1}, cols ≈${c * map.colsPerCell}–${(c + 1) * map.colsPerCell - 1}: ${quantity} ${fmtValue(v)}`)}
                  onMouseLeave={hide}
                />
              );
            })}
            <text className="axis-label" x={size / 2} y={size + 28} textAnchor="middle">
              input columns →
            </text>
            <text className="axis-label" transform="rotate(-90)" x={-size / 2} y={-20} textAnchor="middle">
              output rows →
            </text>
          </g>
        </svg>
        <ColorLegend
          colour={(t) => (hi > lo && lo > 0 ? colour(lo * (hi / lo) ** t) : colour(t * (hi || 1)))}
          low={fmtValue(hi > lo && lo > 0 ? lo : 0)}
          high={fmtValue(hi)}
          label={hi > lo && lo > 0 ? `${quantity} (log scale)` : quantity}
        />
      </ChartFrame>
      {elementwise !== undefined ? (
        <ChartFrame
          id={`error-histogram-${map.tensor}`}
          title={`Error histogram: ${map.tensor}`}
          subtitle={`element-wise error q − x (dequantized − original) of ${fmtCount(histogram.count)} values, ${histogram.counts.length} bins, log-count${elementwise.zeros !== undefined ? `; ${fmtCount(elementwise.zeros)} exact (${fmtPct(elementwise.zeros / Math.max(1, histogram.count))})` : ''}`}
          rows={() => histogram.counts.map((count, i) => ({ lower: histogram.edges[i] ?? 0, upper: histogram.edges[i + 1] ?? 0, count }))}
          json={() => elementwise}
        >
          <div data-role="error-histogram" data-kind="elementwise">
            <HistogramChart summary={histogram} threshold={Infinity} width={360} height={190} xLabel="q − x" title={`Histogram of the element-wise error of ${map.tensor}`} />
          </div>
        </ChartFrame>
      ) : (
        <ChartFrame
          id={`block-mse-histogram-${map.tensor}`}
          title={`Distribution of the ${quantity}`}
          subtitle={`${map.rows * map.cols} blocks, log10 of the ${quantity}, log-count`}
          rows={() => histogram.counts.map((count, i) => ({ lower: histogram.edges[i] ?? 0, upper: histogram.edges[i + 1] ?? 0, count }))}
        >
          <p className="note" data-role="no-error-histogram">
            This quant card has no element-wise error histogram (it was written before cards carried one): shown instead, how the block errors spread.
          </p>
          <div data-role="error-histogram" data-kind="block">
            <HistogramChart summary={histogram} threshold={Infinity} width={360} height={180} xLabel={`log10 ${quantity}`} />
          </div>
        </ChartFrame>
      )}
      {tooltip}
    </section>
  );
}

function baseHistogram(map: BlockErrorMap, cell: ErrorCell): Omit<HistogramSummary, 'edges' | 'counts' | 'count' | 'unit'> {
  return {
    id: `err:${map.tensor}`,
    label: `error of ${map.tensor}`,
    source: 'weights',
    layer: cell.layer,
    role: cell.role,
    xScale: 'linear',
    mean: 0,
    std: 1,
    kurtosis: null,
    absmax: 0,
    p999: 0,
    exceedance: { thresholds: [], shares: [] },
  };
}

function elementwiseHistogram(map: BlockErrorMap, cell: ErrorCell, h: NonNullable<BlockErrorMap['errorHistogram']>): HistogramSummary {
  return { ...baseHistogram(map, cell), unit: 'value', edges: h.edges, counts: h.counts, count: h.counts.reduce((a, b) => a + b, 0) };
}

/** The distribution of the map's block values, binned by d3 on log10 (what a quant card alone allows). */
function blockValueHistogram(map: BlockErrorMap, cell: ErrorCell): HistogramSummary {
  const scale = map.scale ?? 1;
  const logs = map.values.filter((v) => v > 0).map((v) => Math.log10(v * scale));
  const binner = bin().thresholds(24);
  const bins = binner(logs);
  const edges = bins.length > 0 ? [bins[0]?.x0 ?? 0, ...bins.map((b) => b.x1 ?? 0)] : [0, 1];
  return { ...baseHistogram(map, cell), unit: 'value', edges, counts: bins.map((b) => b.length), count: logs.length };
}
