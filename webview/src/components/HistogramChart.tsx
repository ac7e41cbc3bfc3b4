import { useMemo } from 'react';
import { scaleLinear, scaleLog } from 'd3-scale';
import { max } from 'd3-array';
import type { HistogramSummary } from '../../../src/protocol/webview';
import { Axis } from './Axis';
import { fmtCount, fmtNum } from '../format';
import { useTooltip } from './Tooltip';

interface HistogramChartProps {
  summary: HistogramSummary;
  threshold: number;
  width: number;
  height: number;
  small?: boolean;
  title?: string;
  /** Overrides the x axis label. */
  xLabel?: string;
}

/**
 * Value histogram on a log-count axis (count + 1, so empty bins sit on the baseline and every bin has a bar).
 * Bars beyond the threshold take the outlier colour; the threshold is drawn at +-t (signed values) or t (|x|).
 */
export function HistogramChart({ summary, threshold, width, height, small, title, xLabel }: HistogramChartProps) {
  const margin = small === true ? { top: 4, right: 4, bottom: 14, left: 4 } : { top: 10, right: 16, bottom: 44, left: 56 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const { tooltip, show, hide } = useTooltip();
  const { x, y } = useMemo(() => {
    // Widen the axis to show the threshold line even when no value reaches it.
    const firstEdge = summary.edges[0] ?? 0;
    const lastEdge = summary.edges[summary.edges.length - 1] ?? 1;
    const shown = Number.isFinite(threshold) ? threshold * 1.08 : null;
    const first = summary.xScale === 'log' || shown === null ? firstEdge : Math.min(firstEdge, -shown);
    const last = shown === null ? lastEdge : Math.max(lastEdge, shown);
    const xs = summary.xScale === 'log' ? scaleLog().domain([first, last]).range([0, innerW]) : scaleLinear().domain([first, last]).range([0, innerW]);
    const ys = scaleLog()
      .domain([1, (max(summary.counts) ?? 1) + 1])
      .range([innerH, 0])
      .nice();
    return { x: xs, y: ys };
  }, [summary, innerW, innerH, threshold]);
  const unit = summary.unit === 'std' ? 'σ' : '';
  const thresholdXs = summary.xScale === 'log' ? [threshold] : [-threshold, threshold];
  return (
    <>
      <svg
        className={small === true ? 'histogram small' : 'histogram'}
        width={width}
        height={height}
        viewBox={`0 0 ${width} ${height}`}
        role="img"
        aria-label={title ?? `Histogram of ${summary.label}`}
        data-bins={summary.counts.length}
      >
        <g transform={`translate(${margin.left},${margin.top})`}>
          {summary.counts.map((count, i) => {
            const x0 = summary.edges[i] ?? 0;
            const x1 = summary.edges[i + 1] ?? x0;
            const left = x(x0);
            const right = x(x1);
            const top = y(count + 1);
            const beyond = summary.xScale === 'log' ? x0 >= threshold : x1 <= -threshold || x0 >= threshold;
            return (
              <rect
                key={i}
                className={beyond ? 'bar beyond' : 'bar'}
                x={left}
                y={top}
                width={Math.max(0.5, right - left - (small === true ? 0 : 0.5))}
                height={innerH - top}
                data-count={count}
                onMouseMove={small === true ? undefined : (e) => show(e, `[${fmtNum(x0)}${unit}, ${fmtNum(x1)}${unit}): ${fmtCount(count)} values`)}
                onMouseLeave={hide}
              />
            );
          })}
          {thresholdXs.map((t) =>
            x(t) >= 0 && x(t) <= innerW ? <line key={t} className="threshold" x1={x(t)} x2={x(t)} y1={0} y2={innerH} data-threshold={t} /> : null,
          )}
          {small !== true && (
            <>
              <Axis
                scale={x}
                orient="bottom"
                transform={`translate(0,${innerH})`}
                ticks={6}
                tickFormat={(d) => fmtNum(Number(d))}
                label={xLabel ?? (summary.xScale === 'log' ? '|x| (log scale)' : summary.unit === 'std' ? 'value / std (σ)' : 'value')}
              />
              <Axis scale={y} orient="left" ticks={5} tickFormat={(d) => (Number(d) === 1 ? '0' : Math.log10(Number(d)) % 1 === 0 ? fmtCount(Number(d)) : '')} label="count (log)" />
            </>
          )}
          {small === true && (
            <line className="baseline" x1={0} x2={innerW} y1={innerH} y2={innerH} />
          )}
        </g>
      </svg>
      {tooltip}
    </>
  );
}
