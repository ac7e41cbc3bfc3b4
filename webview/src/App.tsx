import { useCallback, useEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import { RpcEndpoint } from '../../src/protocol/rpc';
import {
  BlockMapRequest,
  DatasetNotification,
  ErrorCellNotification,
  ExportNotification,
  ShowViewNotification,
  VIEW_NAMES,
  isViewName,
  type BlockErrorMap,
  type ErrorHeatmap,
  type ViewName,
  type WebviewDataset,
  type WebviewState,
} from '../../src/protocol/webview';
import { HEATMAP_ROLES } from '../../src/protocol/viewModels';
import { getVsCodeApi, webviewChannel } from './vscodeApi';
import { HostContext, type HostActions } from './host';
import { OverviewView } from './components/OverviewView';
import { OutliersView } from './components/OutliersView';
import { EmergentView } from './components/EmergentView';
import { ErrorsView } from './components/ErrorsView';
import { CompareView } from './components/CompareView';

const VIEW_TITLES: Record<ViewName, string> = {
  overview: 'Overview',
  outliers: 'Outlier histograms',
  emergent: 'Emergent features',
  errors: 'Quantization error',
  compare: 'Method comparison',
};

export const DEFAULT_STATE: WebviewState = {
  view: 'overview',
  threshold: 6,
  histogramId: null,
  selectedDim: null,
  selectedCell: null,
  errorMetric: 'sqnr',
  tableQuery: '',
  tableSort: { key: 'layer', descending: false },
};

/** Saved state is `unknown` (it may come from an older version): keep only the fields that still check out. */
function restoreState(saved: unknown, initialView: ViewName | null): WebviewState & { mapId: string | null } {
  const s = typeof saved === 'object' && saved !== null ? (saved as Record<string, unknown>) : {};
  return {
    view: isViewName(s.view) ? s.view : (initialView ?? DEFAULT_STATE.view),
    threshold: typeof s.threshold === 'number' && s.threshold > 0 ? s.threshold : DEFAULT_STATE.threshold,
    histogramId: typeof s.histogramId === 'string' ? s.histogramId : null,
    selectedDim: typeof s.selectedDim === 'number' ? s.selectedDim : null,
    selectedCell: typeof s.selectedCell === 'string' ? s.selectedCell : null,
    errorMetric: s.errorMetric === 'rel' ? 'rel' : 'sqnr',
    tableQuery: typeof s.tableQuery === 'string' ? s.tableQuery : '',
    tableSort: DEFAULT_STATE.tableSort,
    mapId: typeof s.mapId === 'string' ? s.mapId : null,
  };
}

export function App({ initialView }: { initialView: ViewName | null }) {
  const vscode = getVsCodeApi();
  const [state, setState] = useState(() => restoreState(vscode.getState(), initialView));
  const [dataset, setDataset] = useState<WebviewDataset | null>(null);
  const [progress, setProgress] = useState<{ done: number; total: number } | null>(null);
  const [endpoint] = useState(() => new RpcEndpoint(webviewChannel()));
  const liveRun = useRef<string | undefined>(undefined);

  const update = useCallback((patch: Partial<WebviewState & { mapId: string | null }>) => setState((s) => ({ ...s, ...patch })), []);

  useEffect(() => {
    vscode.setState(state);
  }, [vscode, state]);

  useEffect(() => {
    endpoint.onNotification(DatasetNotification, ({ view, dataset: next }) => {
      setDataset(next);
      // A dataset with a heatmap is a finished one (a run's card): the live progress is over.
      if (next.errors !== undefined) setProgress(null);
      if (view !== undefined) update({ view });
    });
    endpoint.onNotification(ShowViewNotification, ({ view }) => update({ view }));
    endpoint.onNotification(ErrorCellNotification, ({ target, run, cell, done, total }) => {
      setProgress({ done, total });
      // The first cell of a new run clears the last run's cells (same target or not).
      const newRun = run !== undefined && run !== liveRun.current;
      if (run !== undefined) liveRun.current = run;
      setDataset((d) => {
        const base: WebviewDataset = d ?? { version: 1 };
        const previous: ErrorHeatmap =
          base.errors !== undefined && base.errors.target === target && !newRun ? base.errors : { target, layers: base.overview?.layers ?? 0, roles: HEATMAP_ROLES, cells: [] };
        const cells = [...previous.cells.filter((c) => c.tensor !== cell.tensor), cell];
        const layers = Math.max(previous.layers, ...cells.map((c) => (c.layer ?? -1) + 1));
        // A new run's block maps come with its final dataset; the last run's would describe other weights.
        return { ...base, errors: { ...previous, layers, cells }, ...(newRun ? { blockMaps: undefined } : {}) };
      });
    });
    endpoint.ready();
    return () => endpoint.dispose('the webview closed');
  }, [endpoint, update]);

  const blockMaps = dataset?.blockMaps;
  const host: HostActions = useMemo(
    () => ({
      exportFile: (params) => endpoint.notify(ExportNotification, params),
      requestBlockMap: async (tensor: string, target: string): Promise<BlockErrorMap | null> => {
        const local = blockMaps?.find((b) => b.tensor === tensor && b.target === target);
        if (local !== undefined) return local;
        return endpoint.request(BlockMapRequest, { tensor, target });
      },
    }),
    [endpoint, blockMaps],
  );

  const available: Record<ViewName, boolean> = {
    overview: dataset?.overview !== undefined,
    outliers: (dataset?.histograms?.length ?? 0) > 0,
    emergent: (dataset?.outlierMaps?.length ?? 0) > 0,
    errors: dataset?.errors !== undefined,
    compare: dataset?.comparison !== undefined,
  };
  const onTabKey = (e: KeyboardEvent<HTMLButtonElement>, view: ViewName): void => {
    const i = VIEW_NAMES.indexOf(view);
    const next = e.key === 'ArrowRight' ? VIEW_NAMES[(i + 1) % VIEW_NAMES.length] : e.key === 'ArrowLeft' ? VIEW_NAMES[(i + VIEW_NAMES.length - 1) % VIEW_NAMES.length] : undefined;
    if (next !== undefined) {
      e.preventDefault();
      update({ view: next });
      document.getElementById(`tab-${next}`)?.focus();
    }
  };

  return (
    <HostContext.Provider value={host}>
      <div className="app" data-ready={dataset !== null ? 'true' : 'false'} data-view={state.view}>
        <nav className="tabs" role="tablist" aria-label="Quant Lens views">
          {VIEW_NAMES.map((v) => (
            <button
              key={v}
              id={`tab-${v}`}
              type="button"
              role="tab"
              aria-selected={state.view === v}
              aria-controls="view-panel"
              tabIndex={state.view === v ? 0 : -1}
              className={available[v] ? 'tab' : 'tab unavailable'}
              onClick={() => update({ view: v })}
              onKeyDown={(e) => onTabKey(e, v)}
              data-tab={v}
            >
              {VIEW_TITLES[v]}
            </button>
          ))}
        </nav>
        <main id="view-panel" role="tabpanel" aria-labelledby={`tab-${state.view}`}>
          {dataset === null ? (
            <p className="empty">Waiting for the extension…</p>
          ) : (
            <CurrentView state={state} dataset={dataset} progress={progress} update={update} />
          )}
        </main>
      </div>
    </HostContext.Provider>
  );
}

function CurrentView({
  state,
  dataset,
  progress,
  update,
}: {
  state: WebviewState & { mapId: string | null };
  dataset: WebviewDataset;
  progress: { done: number; total: number } | null;
  update: (patch: Partial<WebviewState & { mapId: string | null }>) => void;
}) {
  switch (state.view) {
    case 'overview':
      return dataset.overview === undefined ? (
        <p className="empty">No model summary yet.</p>
      ) : (
        <OverviewView overview={dataset.overview} query={state.tableQuery} sort={state.tableSort} onQuery={(tableQuery) => update({ tableQuery })} onSort={(tableSort) => update({ tableSort })} />
      );
    case 'outliers':
      return (
        <OutliersView
          histograms={dataset.histograms ?? []}
          selectedId={state.histogramId}
          threshold={state.threshold}
          onSelect={(histogramId) => update({ histogramId })}
          onThreshold={(threshold) => update({ threshold })}
        />
      );
    case 'emergent':
      return <EmergentView maps={dataset.outlierMaps ?? []} mapId={state.mapId} selectedDim={state.selectedDim} onMap={(mapId) => update({ mapId, selectedDim: null })} onSelectDim={(selectedDim) => update({ selectedDim })} />;
    case 'errors':
      return dataset.errors === undefined ? (
        <p className="empty">No quantization errors yet: run a quant card (Quant Lens: Quantize) to fill this view.</p>
      ) : (
        <ErrorsView
          heatmap={dataset.errors}
          progress={progress}
          metric={state.errorMetric}
          selectedTensor={state.selectedCell}
          onMetric={(errorMetric) => update({ errorMetric })}
          onSelect={(selectedCell) => update({ selectedCell })}
        />
      );
    case 'compare':
      return dataset.comparison === undefined ? <p className="empty">No comparison yet: run Quant Lens: Compare Methods.</p> : <CompareView table={dataset.comparison} />;
  }
}
