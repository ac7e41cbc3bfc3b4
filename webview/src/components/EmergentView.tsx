import { useMemo, useState, type KeyboardEvent } from 'react';
import { scaleBand, scaleLinear, scaleSequential, scaleSequentialLog } from 'd3-scale';
import { interpolateInferno } from 'd3-scale-chromatic';
import { line } from 'd3-shape';
import VscodeButton from '@vscode-elements/react-elements/dist/components/VscodeButton.js';
import type { OutlierMap } from '../../../src/protocol/webview';
import { ChartFrame } from './ChartFrame';
import { Axis } from './Axis';
import { ColorLegend } from './ColorLegend';
import { useTooltip } from './Tooltip';
import { fmtNum, fmtPct } from '../format';

interface EmergentViewProps {
  maps: OutlierMap[];
  mapId: string | null;
  selectedDim: number | null;
  onMap: (id: string) => void;
  onSelectDim: (dim: number) => void;
}

const SITE_LABELS: Record<string, string> = {
  attn_in: 'attention input (after RMSNorm) = input of q, k, v',
  attn_out: 'attention context = input of o',
  mlp_in: 'MLP input (after RMSNorm) = input of gate, up',
  mlp_act: 'silu(gate) × up = input of down',
  residual: 'residual stream (after each block)',
};

export function EmergentView({ maps, mapId, selectedDim, onMap, onSelectDim }: EmergentViewProps) {
  const map = maps.find((m) => m.id === mapId) ?? maps[0];
  const [metric, setMetric] = useState<'magnitude' | 'share'>('magnitude');
  const { tooltip, show, hide } = useTooltip();
  const width = 960;
  const cellH = 22;
  const margin = { top: 24, right: 16, bottom: 56, left: 56 };
  const layers = map?.layers ?? 0;
  const dims = map?.dims ?? 0;
  const innerW = width - margin.left - margin.right;
  const innerH = layers * cellH;
  const systematic = useMemo(() => new Set(map?.systematic.map((s) => s.dim) ?? []), [map]);
  const standout = useMemo(() => new Set(map?.standouts.map((s) => s.dim) ?? []), [map]);
  const scales = useMemo(() => {
    const x = scaleBand<number>()
      .domain(Array.from({ length: dims }, (_, d) => d))
      .range([0, innerW]);
    const y = scaleBand<number>()
      .domain(Array.from({ length: layers }, (_, l) => l))
      .range([0, innerH]);
    const values = metric === 'magnitude' ? (map?.magnitude ?? []) : (map?.tokenShare ?? []);
    const top = Math.max(1e-6, ...values);
    const colour =
      metric === 'magnitude'
        ? scaleSequentialLog(interpolateInferno).domain([Math.max(1e-3, Math.min(...values.filter((v) => v > 0), top)), top])
        : scaleSequential(interpolateInferno).domain([0, top]);
    return { x, y, colour, values };
  }, [map, metric, dims, layers, innerW, innerH]);
  if (map === undefined) return <p className="empty">No activation statistics yet: run a calibration pass (Quant Lens: Analyze) to fill this view.</p>;
  const detail = map.details.find((d) => d.dim === selectedDim);
  const onKey = (e: KeyboardEvent<SVGSVGElement>): void => {
    const current = selectedDim ?? map.systematic[0]?.dim ?? 0;
    if (e.key === 'ArrowRight') onSelectDim(Math.min(dims - 1, current + 1));
    else if (e.key === 'ArrowLeft') onSelectDim(Math.max(0, current - 1));
    else return;
    e.preventDefault();
  };
  const { x, y, colour, values } = scales;
  const bw = x.bandwidth();
  return (
    <div className="view emergent-view">
      <div className="controls">
        <span className="segmented" role="group" aria-label="Capture site and threshold">
          {maps.map((m) => (
            <VscodeButton key={m.id} secondary={m.id !== map.id} aria-pressed={m.id === map.id ? 'true' : 'false'} onClick={() => onMap(m.id)} data-map={m.id}>
              {m.site} ({m.systematic.length + m.standouts.length})
            </VscodeButton>
          ))}
        </span>
        <span className="segmented" role="group" aria-label="Colour by">
          <VscodeButton secondary={metric !== 'magnitude'} aria-pressed={metric === 'magnitude' ? 'true' : 'false'} onClick={() => setMetric('magnitude')}>
            max |x|
          </VscodeButton>
          <VscodeButton secondary={metric !== 'share'} aria-pressed={metric === 'share' ? 'true' : 'false'} onClick={() => setMetric('share')} data-metric="share">
            share ≥ {map.criterion.threshold}
          </VscodeButton>
        </span>
      </div>
      <ChartFrame
        id={`emergent-${map.site}-${map.criterion.threshold}`}
        title={`Emergent-feature dimensions: ${SITE_LABELS[map.site] ?? map.site}`}
        subtitle={`${layers} layers × ${dims} channels, ${map.tokens} tokens. ▼ systematic (LLM.int8()): |x| ≥ ${map.criterion.threshold} in ≥ ${fmtPct(map.criterion.minTokenShare)} of tokens in ≥ ${fmtPct(map.criterion.minLayerShare)} of layers. ● recurring standout: max |x| ≥ ${map.criterion.standoutFactor}× the layer's median channel in ≥ ${fmtPct(map.criterion.minStandoutLayerShare)} of layers.`}
        rows={() =>
          values.map((v, i) => ({ layer: Math.floor(i / dims), dim: i % dims, magnitude: map.magnitude[i] ?? 0, tokenShare: map.tokenShare[i] ?? 0, systematic: systematic.has(i % dims), standout: standout.has(i % dims) }))
        }
        json={() => map}
      >
        <svg
          className="heatmap emergent"
          width={width}
          height={innerH + margin.top + margin.bottom}
          viewBox={`0 0 ${width} ${innerH + margin.top + margin.bottom}`}
          role="img"
          aria-label="Layers by hidden dimension heat map; arrow keys move the selected dimension"
          tabIndex={0}
          onKeyDown={onKey}
        >
          <g transform={`translate(${margin.left},${margin.top})`}>
            {values.map((v, i) => {
              const l = Math.floor(i / dims);
              const d = i % dims;
              return (
                <rect
                  key={i}
                  className="cell"
                  x={x(d)}
                  y={y(l)}
                  width={bw + 0.3}
                  height={y.bandwidth()}
                  fill={v > 0 ? colour(v) : 'var(--ql-empty-cell)'}
                  onMouseMove={(e) => show(e, `layer ${l}, dim ${d}: max |x| ${fmtNum(map.magnitude[i] ?? 0)}, ${fmtPct(map.tokenShare[i] ?? 0)} of tokens ≥ ${map.criterion.threshold}`)}
                  onMouseLeave={hide}
                  onClick={() => onSelectDim(d)}
                />
              );
            })}
            {map.systematic.map((s) => (
              <g key={s.dim} className="systematic-marker" data-dim={s.dim} transform={`translate(${(x(s.dim) ?? 0) + bw / 2},0)`}>
                <path d="M-5,-12 L5,-12 L0,-3 Z" />
                <rect className="systematic-outline" x={-bw / 2 - 1} y={0} width={bw + 2} height={innerH} />
              </g>
            ))}
            {map.standouts.map((s) => (
              <g key={s.dim} className="standout-marker" data-dim={s.dim} transform={`translate(${(x(s.dim) ?? 0) + bw / 2},${innerH + 6})`}>
                <circle r={3.5} />
              </g>
            ))}
            {selectedDim !== null && <rect className="selected-dim" x={(x(selectedDim) ?? 0) - 1} y={-1} width={bw + 2} height={innerH + 2} />}
            <Axis scale={scaleLinear().domain([0, dims]).range([0, innerW])} orient="bottom" transform={`translate(0,${innerH + 12})`} ticks={12} tickFormat={(d) => String(d)} label="channel" />
            <Axis scale={y} orient="left" tickFormat={(l) => `L${l}`} label="layer" labelOffset={40} />
          </g>
        </svg>
        <ColorLegend
          colour={(t) => {
            const [a = 0, b = 1] = colour.domain();
            return metric === 'magnitude' ? colour(a * Math.pow(b / a, t)) : colour(a + t * (b - a));
          }}
          low={fmtNum(colour.domain()[0] ?? 0)}
          high={metric === 'magnitude' ? fmtNum(colour.domain()[1] ?? 0) : fmtPct(colour.domain()[1] ?? 0)}
          label={metric === 'magnitude' ? 'max |x| (log)' : `share of tokens ≥ ${map.criterion.threshold}`}
        />
      </ChartFrame>
      <div className="two-columns">
        <section className="panel" aria-label="Systematic dimensions">
          <h3>Systematic dimensions ({map.systematic.length})</h3>
          {map.systematic.length === 0 ? (
            <p className="empty">No dimension meets the criterion at this site.</p>
          ) : (
            <ul className="dim-list">
              {map.systematic.map((s) => (
                <li key={s.dim}>
                  <button type="button" data-systematic-dim={s.dim} className={s.dim === selectedDim ? 'selected' : ''} onClick={() => onSelectDim(s.dim)}>
                    dim {s.dim}: max |x| {fmtNum(s.maxMagnitude)}, {fmtPct(s.layerShare)} of layers, {fmtPct(s.tokenShare)} of tokens
                  </button>
                </li>
              ))}
            </ul>
          )}
          <h4>Recurring standouts ({map.standouts.length})</h4>
          {map.standouts.length === 0 ? (
            <p className="empty">No channel stands out in enough layers.</p>
          ) : (
            <ul className="dim-list">
              {map.standouts.map((s) => (
                <li key={s.dim}>
                  <button type="button" data-standout-dim={s.dim} className={s.dim === selectedDim ? 'selected' : ''} onClick={() => onSelectDim(s.dim)}>
                    dim {s.dim}: {fmtNum(s.meanRatio)}× the median channel, {fmtPct(s.layerShare)} of layers, max |x| {fmtNum(s.maxMagnitude)}
                  </button>
                </li>
              ))}
            </ul>
          )}
          <h4>Strongest other dimensions</h4>
          <ul className="dim-list">
            {map.details
              .filter((d) => !systematic.has(d.dim) && !standout.has(d.dim))
              .map((d) => (
                <li key={d.dim}>
                  <button type="button" data-detail-dim={d.dim} className={d.dim === selectedDim ? 'selected' : ''} onClick={() => onSelectDim(d.dim)}>
                    dim {d.dim}: max |x| {fmtNum(Math.max(...d.magnitudeByLayer))}
                  </button>
                </li>
              ))}
          </ul>
        </section>
        {detail !== undefined ? (
          <DimDetailPanel map={map} dim={detail.dim} />
        ) : (
          selectedDim !== null && (
            <section className="panel">
              <h3>Dimension {selectedDim}</h3>
              <p>
                max |x| per layer:{' '}
                {Array.from({ length: layers }, (_, l) => fmtNum(map.magnitude[l * dims + selectedDim] ?? 0)).join(', ')}
              </p>
            </section>
          )
        )}
      </div>
      {tooltip}
    </div>
  );
}

function DimDetailPanel({ map, dim }: { map: OutlierMap; dim: number }) {
  const detail = map.details.find((d) => d.dim === dim);
  if (detail === undefined) return null;
  const width = 420;
  const height = 200;
  const margin = { top: 10, right: 12, bottom: 40, left: 48 };
  const innerW = width - margin.left - margin.right;
  const innerH = height - margin.top - margin.bottom;
  const x = scaleLinear()
    .domain([0, Math.max(1, map.layers - 1)])
    .range([0, innerW]);
  const y = scaleLinear()
    .domain([0, Math.max(...detail.magnitudeByLayer) * 1.15])
    .range([innerH, 0])
    .nice();
  const path = line<number>()
    .x((_, i) => x(i))
    .y((v) => y(v))(detail.magnitudeByLayer);
  return (
    <section className="panel dim-detail" data-dim-detail={dim} aria-label={`Dimension ${dim}`}>
      <ChartFrame
        id={`dim-${map.site}-${dim}`}
        title={`Dimension ${dim}: max |x| per layer`}
        rows={() => detail.magnitudeByLayer.map((m, l) => ({ layer: l, maxAbs: m, tokenShare: detail.tokenShareByLayer[l] ?? 0 }))}
        json={() => detail}
      >
        <svg width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`max |x| of dimension ${dim} per layer`}>
          <g transform={`translate(${margin.left},${margin.top})`}>
            {map.criterion.threshold <= y.domain()[1]! && <line className="threshold" x1={0} x2={innerW} y1={y(map.criterion.threshold)} y2={y(map.criterion.threshold)} />}
            <path className="series" d={path ?? ''} />
            {detail.magnitudeByLayer.map((v, l) => (
              <circle key={l} className="point" cx={x(l)} cy={y(v)} r={3.5}>
                <title>{`layer ${l}: ${fmtNum(v)} (${fmtPct(detail.tokenShareByLayer[l] ?? 0)} of tokens ≥ ${map.criterion.threshold})`}</title>
              </circle>
            ))}
            <Axis scale={x} orient="bottom" transform={`translate(0,${innerH})`} ticks={Math.min(map.layers, 12)} tickFormat={(d) => (Number.isInteger(Number(d)) ? `L${Number(d)}` : '')} label="layer" />
            <Axis scale={y} orient="left" ticks={5} tickFormat={(d) => fmtNum(Number(d))} label="max |x|" labelOffset={36} />
          </g>
        </svg>
      </ChartFrame>
      {detail.readers.length > 0 && (
        <table className="readers">
          <caption>Weight columns that read dimension {dim}</caption>
          <thead>
            <tr>
              <th>tensor</th>
              <th>max |W[:, {dim}]|</th>
              <th>median column</th>
              <th>ratio</th>
              <th>AWQ 1 %</th>
            </tr>
          </thead>
          <tbody>
            {detail.readers.map((r) => (
              <tr key={r.tensor}>
                <td>{r.tensor}</td>
                <td>{fmtNum(r.columnAbsMax)}</td>
                <td>{fmtNum(r.medianColumnAbsMax)}</td>
                <td>{r.medianColumnAbsMax > 0 ? `${fmtNum(r.columnAbsMax / r.medianColumnAbsMax)}×` : ''}</td>
                <td>{r.awqProtected ? 'protected' : ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
