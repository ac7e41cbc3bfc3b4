import { scaleBand, scaleLog, scaleOrdinal } from 'd3-scale';
import type { ComparisonRow, ComparisonTable } from '../../../src/protocol/webview';
import { ChartFrame } from './ChartFrame';
import { Axis } from './Axis';
import { fmtBytes, fmtNum } from '../format';
import { useTooltip } from './Tooltip';

/** The VS Code chart palette, in order (theme variables; fallbacks are the Dark+ values). */
const SERIES_COLOURS = ['var(--vscode-charts-blue, #3794ff)', 'var(--vscode-charts-orange, #d18616)', 'var(--vscode-charts-green, #89d185)', 'var(--vscode-charts-purple, #b180d7)', 'var(--vscode-charts-red, #f14c4c)', 'var(--vscode-charts-yellow, #cca700)'];

const rowLabel = (r: ComparisonRow): string => `${r.method} W${r.bits}${r.group > 0 ? ` g${r.group}` : ' per row'}`;

export function CompareView({ table }: { table: ComparisonTable }) {
  const { tooltip, show, hide } = useTooltip();
  const width = 720;
  const height = 340;
  const margin = { top: 16, right: 150, bottom: 48, left: 60 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const all = [table.baseline, ...table.rows];
  const methods = [...new Set(table.rows.map((r) => r.method))];
  const bitWidths = [...new Set(table.rows.map((r) => r.bits))].sort((a, b) => a - b);
  // methods x bits: one band per bit width, one lollipop per method from the FP16 line to its perplexity.
  const x = scaleBand<number>().domain(bitWidths).range([0, innerW]).padding(0.2);
  const inner = scaleBand<string>().domain(methods).range([0, x.bandwidth()]).padding(0.25);
  const pplMin = Math.min(...all.map((r) => r.ppl));
  const pplMax = Math.max(...all.map((r) => r.ppl));
  const y = scaleLog()
    .domain([pplMin / 1.03, pplMax * 1.05])
    .range([innerH, 0]);
  const colour = scaleOrdinal<string, string>().domain(methods).range(SERIES_COLOURS);
  const cx = (r: ComparisonRow): number => (x(r.bits) ?? 0) + (inner(r.method) ?? 0) + inner.bandwidth() / 2;
  const csvRows = () => all.map((r) => ({ method: r.method, bits: r.bits, group: r.group, bitsPerWeight: r.bitsPerWeight, ppl: r.ppl, deltaPpl: r.ppl - table.baseline.ppl, bytes: r.bytes, seconds: r.seconds }));
  return (
    <div className="view compare-view">
      <ChartFrame id="method-comparison" title="Method comparison: perplexity per method and bit width" subtitle={table.evalDescription} rows={csvRows} json={() => table}>
        <svg className="compare-chart" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label="Perplexity against size per method">
          <g transform={`translate(${margin.left},${margin.top})`}>
            <line className="baseline-line" x1={0} x2={innerW} y1={y(table.baseline.ppl)} y2={y(table.baseline.ppl)} />
            <text className="baseline-label" x={innerW + 6} y={y(table.baseline.ppl)} dominantBaseline="middle">
              {table.baseline.method} {fmtNum(table.baseline.ppl)}
            </text>
            {table.rows.map((r) => (
              <g key={rowLabel(r)} className="method-series" data-method={r.method}>
                <line className="lollipop" x1={cx(r)} x2={cx(r)} y1={y(table.baseline.ppl)} y2={y(r.ppl)} style={{ stroke: colour(r.method) }} />
                <circle
                  className="point compare-point"
                  cx={cx(r)}
                  cy={y(r.ppl)}
                  r={5}
                  style={{ fill: colour(r.method) }}
                  tabIndex={0}
                  aria-label={`${rowLabel(r)}: perplexity ${fmtNum(r.ppl)}, ${fmtBytes(r.bytes)}`}
                  onMouseMove={(e) => show(e, `${rowLabel(r)}: ppl ${fmtNum(r.ppl)} (${r.ppl >= table.baseline.ppl ? '+' : ''}${fmtNum(r.ppl - table.baseline.ppl)} vs ${table.baseline.method}), ${fmtBytes(r.bytes)}`)}
                  onFocus={(e) => {
                    if (e.currentTarget.matches(':focus-visible')) show(e, `${rowLabel(r)}: ppl ${fmtNum(r.ppl)}`);
                  }}
                  onMouseLeave={hide}
                  onBlur={hide}
                />
              </g>
            ))}
            {methods.map((method, i) => (
              <g key={method} className="legend" transform={`translate(${innerW + 10},${8 + 16 * i})`}>
                <circle r={4} cx={4} cy={0} style={{ fill: colour(method) }} />
                <text x={12} y={0} dominantBaseline="middle">
                  {method}
                </text>
              </g>
            ))}
            <Axis scale={x} orient="bottom" transform={`translate(0,${innerH})`} tickFormat={(d) => `W${d}`} label="weight bits" />
            <Axis scale={y} orient="left" ticks={6} tickFormat={(d) => fmtNum(Number(d))} label="perplexity (log)" labelOffset={44} />
          </g>
        </svg>
      </ChartFrame>
      <table className="compare-table" data-table="comparison">
        <thead>
          <tr>
            <th>method</th>
            <th>bits</th>
            <th>group</th>
            <th>perplexity</th>
            <th>Δ vs {table.baseline.method}</th>
            <th>bits / param</th>
            <th>checkpoint size</th>
            <th>calibrate + quantize</th>
          </tr>
        </thead>
        <tbody>
          {all.map((r, i) => (
            <tr key={`${rowLabel(r)}-${i}`} className={i === 0 ? 'baseline-row' : ''}>
              <td>{r.method}</td>
              <td>{r.bits}</td>
              <td>{r.group > 0 ? r.group : 'row'}</td>
              <td>{fmtNum(r.ppl)}</td>
              <td>{i === 0 ? '—' : `${r.ppl >= table.baseline.ppl ? '+' : ''}${fmtNum(r.ppl - table.baseline.ppl)}`}</td>
              <td>{fmtNum(r.bitsPerWeight)}</td>
              <td>{fmtBytes(r.bytes)}</td>
              <td>{i === 0 ? '—' : r.seconds < 0.001 ? '< 1 ms' : `${fmtNum(r.seconds)} s`}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {tooltip}
    </div>
  );
}
