import { scaleBand, scaleLinear, scaleOrdinal } from 'd3-scale';
import { schemeTableau10 } from 'd3-scale-chromatic';
import type { ModelOverview, TensorSortKey } from '../../../src/protocol/webview';
import { ChartFrame } from './ChartFrame';
import { Axis } from './Axis';
import { TensorTable } from './TensorTable';
import { fmtBytes, fmtCount, fmtInt } from '../format';

interface OverviewViewProps {
  overview: ModelOverview;
  query: string;
  sort: { key: TensorSortKey; descending: boolean };
  onQuery: (q: string) => void;
  onSort: (s: { key: TensorSortKey; descending: boolean }) => void;
}

export function OverviewView({ overview, query, sort, onQuery, onSort }: OverviewViewProps) {
  const width = 520;
  const barH = 22;
  const margin = { top: 8, right: 90, bottom: 36, left: 120 };
  const targets = overview.sizeByTarget;
  const innerW = width - margin.left - margin.right;
  const innerH = targets.length * barH;
  const x = scaleLinear()
    .domain([0, Math.max(overview.totalBytes, ...targets.map((t) => t.bytes))])
    .range([0, innerW])
    .nice();
  const y = scaleBand<string>()
    .domain(targets.map((t) => t.target))
    .range([0, innerH])
    .padding(0.2);
  const dtypeColour = scaleOrdinal<string, string>().domain(overview.dtypeMix.map((d) => d.dtype)).range(schemeTableau10);
  const totalParams = overview.dtypeMix.reduce((a, d) => a + d.params, 0) || 1;
  return (
    <div className="view overview-view">
      <div className="facts" data-facts>
        <dl>
          <div>
            <dt>model</dt>
            <dd>{overview.name}</dd>
          </div>
          <div>
            <dt>architecture</dt>
            <dd>{overview.architecture}</dd>
          </div>
          <div>
            <dt>parameters</dt>
            <dd data-stat="parameters" title={fmtInt(overview.parameterCount)}>
              {fmtCount(overview.parameterCount)}
            </dd>
          </div>
          <div>
            <dt>size on disk</dt>
            <dd>{fmtBytes(overview.totalBytes)}</dd>
          </div>
          <div>
            <dt>layers</dt>
            <dd>{overview.layers}</dd>
          </div>
          <div>
            <dt>hidden / FFN</dt>
            <dd>
              {overview.hiddenSize} / {overview.intermediateSize}
            </dd>
          </div>
          <div>
            <dt>heads (KV)</dt>
            <dd>
              {overview.heads} ({overview.kvHeads})
            </dd>
          </div>
          <div>
            <dt>vocabulary</dt>
            <dd>{fmtInt(overview.vocabSize)}</dd>
          </div>
        </dl>
        <div className="dtype-mix" aria-label="dtype mix">
          <div className="dtype-bar">
            {overview.dtypeMix.map((d) => (
              <span key={d.dtype} style={{ width: `${(100 * d.params) / totalParams}%`, background: dtypeColour(d.dtype) }} title={`${d.dtype}: ${fmtInt(d.params)} params`} />
            ))}
          </div>
          <div className="dtype-legend">
            {overview.dtypeMix.map((d) => (
              <span key={d.dtype}>
                <i style={{ background: dtypeColour(d.dtype) }} /> {d.dtype} {((100 * d.params) / totalParams).toFixed(1)} % · {fmtBytes(d.bytes)}
              </span>
            ))}
          </div>
        </div>
      </div>
      <ChartFrame
        id="size-by-target"
        title="Estimated size per quantization target"
        subtitle="2-D tensors at the target's bits per weight (scales included); norms as stored"
        rows={() => targets.map((t) => ({ target: t.target, bitsPerWeight: t.bitsPerWeight, bytes: t.bytes }))}
      >
        <svg width={width} height={innerH + margin.top + margin.bottom} viewBox={`0 0 ${width} ${innerH + margin.top + margin.bottom}`} role="img" aria-label="Estimated size per target">
          <g transform={`translate(${margin.left},${margin.top})`}>
            {targets.map((t) => (
              <g key={t.target} className="size-bar">
                <rect className="bar" x={0} y={y(t.target)} width={x(t.bytes)} height={y.bandwidth()}>
                  <title>{`${t.target}: ${fmtBytes(t.bytes)} (${t.bitsPerWeight} bits/weight)`}</title>
                </rect>
                <text className="bar-value" x={x(t.bytes) + 4} y={(y(t.target) ?? 0) + y.bandwidth() / 2} dominantBaseline="middle">
                  {fmtBytes(t.bytes)}
                </text>
              </g>
            ))}
            <Axis scale={y} orient="left" />
            <Axis scale={x} orient="bottom" transform={`translate(0,${innerH})`} ticks={4} tickFormat={(d) => fmtBytes(Number(d))} />
          </g>
        </svg>
      </ChartFrame>
      <TensorTable rows={overview.tensors} query={query} sort={sort} onQuery={onQuery} onSort={onSort} />
    </div>
  );
}
