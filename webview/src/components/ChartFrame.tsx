import { useRef, useState, type ReactNode } from 'react';
import VscodeButton from '@vscode-elements/react-elements/dist/components/VscodeButton.js';
import { composeChartSvg, rasterizeChart, toCsv } from '../exportChart';
import { useHost } from '../host';

export type CsvRow = Record<string, string | number | boolean | null>;

interface ChartFrameProps {
  /** Stable id: used for file names and as data-chart for tests. */
  id: string;
  title: string;
  subtitle?: string;
  /** The chart's data, for CSV / JSON export. */
  rows: () => CsvRow[];
  json?: () => unknown;
  children: ReactNode;
  compact?: boolean;
}

/**
 * A titled chart with export buttons: SVG / PNG of the whole frame (title, subtitle, every <svg> inside: chart,
 * colour legend, all small-multiple panels; composeChartSvg), CSV / JSON of its data.
 */
export function ChartFrame({ id, title, subtitle, rows, json, children, compact }: ChartFrameProps) {
  const host = useHost();
  const body = useRef<HTMLDivElement>(null);
  const [status, setStatus] = useState('');
  const run = async (format: 'svg' | 'png' | 'csv' | 'json'): Promise<void> => {
    try {
      let content: string;
      if (format === 'csv') content = toCsv(rows());
      else if (format === 'json') content = JSON.stringify(json !== undefined ? json() : rows(), null, 1);
      else {
        const el = body.current;
        if (el === null || el.querySelector('svg') === null) throw new Error('nothing drawn yet');
        const chart = composeChartSvg(el, title, subtitle);
        content = format === 'svg' ? chart.svg : await rasterizeChart(chart);
      }
      host.exportFile({ format, fileName: `${id}.${format}`, content });
      setStatus(`${format.toUpperCase()} sent`);
    } catch (e) {
      setStatus(e instanceof Error ? e.message : String(e));
    }
  };
  return (
    <section className={compact === true ? 'chart compact' : 'chart'} data-chart={id} aria-label={title}>
      <header className="chart-header">
        <div>
          <h3>{title}</h3>
          {subtitle !== undefined && <div className="subtitle">{subtitle}</div>}
        </div>
        {compact !== true && (
          <div className="export-buttons" role="group" aria-label={`Export ${title}`}>
            {(['svg', 'png', 'csv', 'json'] as const).map((f) => (
              <VscodeButton key={f} secondary onClick={() => void run(f)} data-export={f} title={`Export as ${f.toUpperCase()}`}>
                {f.toUpperCase()}
              </VscodeButton>
            ))}
            <span className="export-status" aria-live="polite">
              {status}
            </span>
          </div>
        )}
      </header>
      <div ref={body} className="chart-body">
        {children}
      </div>
    </section>
  );
}
