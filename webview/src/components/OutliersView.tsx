import { useMemo } from 'react';
import VscodeSingleSelect from '@vscode-elements/react-elements/dist/components/VscodeSingleSelect.js';
import VscodeOption from '@vscode-elements/react-elements/dist/components/VscodeOption.js';
import VscodeTextfield from '@vscode-elements/react-elements/dist/components/VscodeTextfield.js';
import type { HistogramSummary } from '../../../src/protocol/webview';
import { shareBeyond } from '../../../src/protocol/viewModels';
import { ChartFrame } from './ChartFrame';
import { HistogramChart } from './HistogramChart';
import { fmtCount, fmtNum, fmtPct } from '../format';

interface OutliersViewProps {
  histograms: HistogramSummary[];
  selectedId: string | null;
  threshold: number;
  onSelect: (id: string) => void;
  onThreshold: (t: number) => void;
}

/** Histograms in the same family as `h` (same source and role), one per layer, in layer order. */
function familyOf(all: HistogramSummary[], h: HistogramSummary): HistogramSummary[] {
  return all.filter((o) => o.source === h.source && o.role === h.role && o.layer !== null).sort((a, b) => (a.layer ?? 0) - (b.layer ?? 0));
}

export function OutliersView({ histograms, selectedId, threshold, onSelect, onThreshold }: OutliersViewProps) {
  const selected = histograms.find((h) => h.id === selectedId) ?? histograms.find((h) => h.role === 'q') ?? histograms[0];
  const family = useMemo(() => (selected === undefined ? [] : familyOf(histograms, selected)), [histograms, selected]);
  if (selected === undefined) return <p className="empty">No histograms yet: run an analysis (Quant Lens: Analyze) to fill this view.</p>;
  const share = shareBeyond(selected, threshold);
  const unit = selected.unit === 'std' ? 'σ' : '';
  const groups: [string, HistogramSummary[]][] = [
    ['Weights', histograms.filter((h) => h.source === 'weights')],
    ['Activations', histograms.filter((h) => h.source === 'activations')],
  ];
  const setThreshold = (raw: string): void => {
    const t = Number(raw);
    if (Number.isFinite(t) && t > 0) onThreshold(t);
  };
  return (
    <div className="view outliers-view">
      <div className="controls">
        <label>
          Tensor or site
          <VscodeSingleSelect value={selected.id} onChange={(e) => onSelect((e.target as HTMLSelectElement).value)} data-control="histogram-select" combobox>
            {groups.flatMap(([group, hs]) =>
              hs.map((h) => (
                <VscodeOption key={h.id} value={h.id} description={group}>
                  {h.label}
                </VscodeOption>
              )),
            )}
          </VscodeSingleSelect>
        </label>
        <label>
          Outlier threshold ({selected.unit === 'std' ? 'multiples of std' : '|x|'})
          <span className="threshold-inputs">
            <input
              type="range"
              min={0.5}
              max={20}
              step={0.25}
              value={threshold}
              aria-label="Outlier threshold"
              data-control="threshold-range"
              onChange={(e) => setThreshold(e.target.value)}
            />
            <VscodeTextfield type="number" value={String(threshold)} min={0.25} step={0.25} data-control="threshold" onChange={(e) => setThreshold((e.target as HTMLInputElement).value)} />
          </span>
        </label>
      </div>
      <dl className="stats" aria-label="Statistics">
        <div>
          <dt>Share beyond {fmtNum(threshold)}{unit}</dt>
          <dd data-stat="share-beyond">{fmtPct(share)}</dd>
        </div>
        <div>
          <dt>Values</dt>
          <dd>{fmtCount(selected.count)}</dd>
        </div>
        <div>
          <dt>Excess kurtosis</dt>
          <dd data-stat="kurtosis">{selected.kurtosis === null ? 'n/a' : fmtNum(selected.kurtosis)}</dd>
        </div>
        <div>
          <dt>absmax</dt>
          <dd data-stat="absmax">
            {fmtNum(selected.absmax)}
            {unit}
          </dd>
        </div>
        <div>
          <dt>p99.9 |x|</dt>
          <dd data-stat="p999">
            {selected.kurtosis === null ? '≤ ' : ''}
            {fmtNum(selected.p999)}
            {unit}
          </dd>
        </div>
        <div>
          <dt>absmax / p99.9</dt>
          <dd data-stat="absmax-ratio">{selected.p999 > 0 ? `${fmtNum(selected.absmax / selected.p999)}×` : 'n/a'}</dd>
        </div>
      </dl>
      <ChartFrame
        id={`histogram-${selected.label}`}
        title={`${selected.source === 'weights' ? 'Weights' : 'Activations'}: ${selected.label}`}
        subtitle={`${selected.counts.length} bins, log-count scale; ${selected.unit === 'std' ? 'values in multiples of the tensor std' : 'activation magnitudes'}`}
        rows={() => selected.counts.map((count, i) => ({ lower: selected.edges[i] ?? 0, upper: selected.edges[i + 1] ?? 0, count }))}
        json={() => selected}
      >
        <div data-role="main-histogram">
          <HistogramChart summary={selected} threshold={threshold} width={720} height={300} />
        </div>
      </ChartFrame>
      {family.length > 1 && (
        <ChartFrame
          id={`layers-${selected.source}-${selected.role}`}
          title={`Down the layers: ${selected.role} ${selected.source}`}
          subtitle="share beyond the threshold and absmax per layer; click one to open it"
          rows={() => family.map((h) => ({ layer: h.layer, tensor: h.label, shareBeyond: shareBeyond(h, threshold), kurtosis: h.kurtosis, absmax: h.absmax, p999: h.p999 }))}
        >
          <div className="small-multiples" role="list">
            {family.map((h) => (
              <button
                key={h.id}
                type="button"
                role="listitem"
                className={h.id === selected.id ? 'multiple selected' : 'multiple'}
                onClick={() => onSelect(h.id)}
                data-histogram={h.id}
                aria-label={`Layer ${h.layer ?? ''}: ${fmtPct(shareBeyond(h, threshold))} beyond threshold`}
              >
                <span className="multiple-title" data-export-text>
                  L{h.layer}
                </span>
                <HistogramChart summary={h} threshold={threshold} width={150} height={70} small title={h.label} />
                <span className="multiple-stats" data-export-text>
                  {fmtPct(shareBeyond(h, threshold))} · max {fmtNum(h.absmax)}
                  {unit}
                </span>
              </button>
            ))}
          </div>
        </ChartFrame>
      )}
    </div>
  );
}
