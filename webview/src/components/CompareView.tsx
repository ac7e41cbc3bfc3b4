import { scaleLinear, scaleLog, scaleOrdinal } from 'd3-scale';
import { line } from 'd3-shape';
import { groups } from 'd3-array';
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
  // x: bits per parameter of the whole checkpoint (scales and kept tensors included).
  const x = scaleLinear()
    .domain([0, Math.max(...all.map((r) => r.bitsPerWeight)) * 1.05])
    .range([0, innerW])
    .nice();
  const pplMin = Math.min(...all.map((r) => r.ppl));
  const pplMax = Math.max(...all.map((r) => r.ppl));
  const y = scaleLog()
    .domain([pplMin * 0.95, pplMax * 1.1])
    .range([innerH, 0]);
  const methods = groups(table.rows, (r) => r.method);
  const colour = scaleOrdinal<string, string>()
    .domain(methods.map(([m]) => m))
    .range(SERIES_COLOURS);
  const path = line<ComparisonRow>()
    .x((r) => x(r.bitsPerWeight))
    .y((r) => y(r.ppl));
  const csvRows = () => all.map((r) => ({ method: r.method, bits: r.bits, group: r.group, bitsPerWeight: r.bitsPerWeight, ppl: r.ppl, deltaPpl: r.ppl - table.baseline.ppl, bytes: r.bytes, seconds: r.seconds }));
  return (
    <div className="view compare-view">
      <ChartFrame id="method-comparison" title="Method comparison: perplexity vs bits per weight" subtitle={table.evalDescription} rows={csvRows} json={() => table}>
        <svg className="compare-chart" width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label="Perplexity against size per method">
          <g transform={`translate(${margin.left},${margin.top})`}>
            <line className="baseline-line" x1={0} x2={innerW} y1={y(table.baseline.ppl)} y2={y(table.baseline.ppl)} />
            <text className="baseline-label" x={innerW + 6} y={y(table.baseline.ppl)} dominantBaseline="middle">
              {table.baseline.method} {fmtNum(table.baseline.ppl)}
            </text>
            {methods.map(([method, rows]) => {
              const sorted = [...rows].sort((a, b) => a.bitsPerWeight - b.bitsPerWeight);
              return (
                <g key={method} className="method-series" data-method={method}>
                  {sorted.length > 1 && <path className="series" d={path(sorted) ?? ''} style={{ stroke: colour(method) }} />}
                  {sorted.map((r) => (
                    <circle
                      key={rowLabel(r)}
                      className="point compare-point"
                      cx={x(r.bitsPerWeight)}
                      cy={y(r.ppl)}
                      r={5}
                      style={{ fill: colour(method) }}
                      tabIndex={0}
                      aria-label={`${rowLabel(r)}: perplexity ${fmtNum(r.ppl)}, ${fmtBytes(r.bytes)}`}
                      onMouseMove={(e) => show(e, `${rowLabel(r)}: ppl ${fmtNum(r.ppl)} (${r.ppl >= table.baseline.ppl ? '+' : ''}${fmtNum(r.ppl - table.baseline.ppl)}), ${fmtBytes(r.bytes)}`)}
                      onFocus={(e) => {
                        if (e.currentTarget.matches(':focus-visible')) show(e, `${rowLabel(r)}: ppl ${fmtNum(r.ppl)}`);
                      }}
                      onMouseLeave={hide}
                      onBlur={hide}
                    />
                  ))}
                </g>
              );
            })}
            <circle className="point baseline-point" cx={x(table.baseline.bitsPerWeight)} cy={y(table.baseline.ppl)} r={5} />
            {methods.map(([method], i) => (
              <g key={method} className="legend" transform={`translate(${innerW + 10},${8 + 16 * i})`}>
                <circle r={4} cx={4} cy={0} style={{ fill: colour(method) }} />
                <text x={12} y={0} dominantBaseline="middle">
                  {method}
                </text>
              </g>
            ))}
            <Axis scale={x} orient="bottom" transform={`translate(0,${innerH})`} ticks={6} tickFormat={(d) => String(d)} label="bits per parameter (whole checkpoint)" />
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
              <td>{i === 0 ? '—' : `${fmtNum(r.seconds)} s`}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {tooltip}
    </div>
  );
}
