import { useEffect, useRef } from 'react';
import { axisBottom, axisLeft, type AxisDomain, type AxisScale } from 'd3-axis';
import { select } from 'd3-selection';

interface AxisProps<D extends AxisDomain> {
  scale: AxisScale<D>;
  orient: 'bottom' | 'left';
  transform?: string;
  ticks?: number;
  tickFormat?: (value: D) => string;
  label?: string;
  labelOffset?: number;
}

/** d3-axis drawn into a <g> that React owns; colours come from CSS (.axis). */
export function Axis<D extends AxisDomain>({ scale, orient, transform, ticks, tickFormat, label, labelOffset }: AxisProps<D>) {
  const ref = useRef<SVGGElement>(null);
  useEffect(() => {
    if (ref.current === null) return;
    const axis = orient === 'bottom' ? axisBottom(scale) : axisLeft(scale);
    if (ticks !== undefined) axis.ticks(ticks);
    if (tickFormat !== undefined) axis.tickFormat((d) => tickFormat(d));
    select(ref.current).call(axis);
  }, [scale, orient, ticks, tickFormat]);
  const range = scale.range();
  const mid = ((range[0] ?? 0) + (range[range.length - 1] ?? 0)) / 2;
  return (
    <g className="axis" transform={transform}>
      <g ref={ref} />
      {label !== undefined &&
        (orient === 'bottom' ? (
          <text className="axis-label" x={mid} y={labelOffset ?? 32} textAnchor="middle">
            {label}
          </text>
        ) : (
          <text className="axis-label" transform={`rotate(-90)`} x={-mid} y={-(labelOffset ?? 40)} textAnchor="middle">
            {label}
          </text>
        ))}
    </g>
  );
}
