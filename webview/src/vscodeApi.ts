/**
 * The one door to the host. Inside VS Code it is `acquireVsCodeApi()` (callable once per page).
 * In a plain page (browser tests, the standalone preview) a stand-in plays the host: it answers the ready
 * handshake with the dataset from `window.__QUANTLENS_FIXTURE__` (or the JSON at `?fixture=<url>`),
 * answers block-map requests from that dataset, records every posted message in `window.__QUANTLENS_POSTED__`,
 * keeps setState's state in sessionStorage (a reload restores it),
 * and lets a test push host notifications through `window.__QUANTLENS_HOST__.notify(method, params)`.
 */
import type { MessageChannelLike, WireMessage } from '../../src/protocol/rpc';
import { BlockMapRequest, DatasetNotification, checkDataset, type WebviewDataset } from '../../src/protocol/webview';

export interface VsCodeApi {
  postMessage(message: unknown): void;
  getState(): unknown;
  setState(state: unknown): void;
}

interface StandInHost {
  notify(method: string, params: unknown): void;
}

declare global {
  interface Window {
    acquireVsCodeApi?: () => VsCodeApi;
    __QUANTLENS_FIXTURE__?: unknown;
    __QUANTLENS_POSTED__?: unknown[];
    __QUANTLENS_HOST__?: StandInHost;
    /** True when the stand-in plays the host (a plain page). */
    __QUANTLENS_STANDALONE__?: boolean;
  }
}

let api: VsCodeApi | undefined;

export function getVsCodeApi(): VsCodeApi {
  if (api !== undefined) return api;
  api = typeof window.acquireVsCodeApi === 'function' ? window.acquireVsCodeApi() : createStandIn();
  return api;
}

/** The rpc channel over the webview's postMessage / message events. */
export function webviewChannel(): MessageChannelLike {
  const vscode = getVsCodeApi();
  return {
    post: (message: WireMessage) => vscode.postMessage(message),
    listen: (handler) => {
      const onMessage = (event: MessageEvent): void => handler(event.data as unknown);
      window.addEventListener('message', onMessage);
      return () => window.removeEventListener('message', onMessage);
    },
  };
}

function deliver(message: WireMessage): void {
  // Asynchronous like the real host; structured-cloned like postMessage.
  window.postMessage(message, '*');
}

function createStandIn(): VsCodeApi {
  window.__QUANTLENS_STANDALONE__ = true;
  const posted: unknown[] = [];
  window.__QUANTLENS_POSTED__ = posted;
  // Kept in sessionStorage so a reload restores it, as VS Code restores a hidden webview's state.
  const STATE_KEY = 'quantlens.webviewState';
  let datasetPromise: Promise<WebviewDataset | null> | undefined;
  const params = new URLSearchParams(window.location.search);

  const loadDataset = (): Promise<WebviewDataset | null> => {
    datasetPromise ??= (async () => {
      let raw: unknown = window.__QUANTLENS_FIXTURE__;
      const url = params.get('fixture');
      if (raw === undefined && url !== null) raw = (await (await fetch(url)).json()) as unknown;
      if (raw === undefined) return null;
      const checked = checkDataset(raw);
      if (!checked.ok) {
        console.error(`quantlens stand-in: fixture rejected: ${checked.reason}`);
        return null;
      }
      return checked.dataset;
    })();
    return datasetPromise;
  };

  window.__QUANTLENS_HOST__ = { notify: (method, p) => deliver({ kind: 'notify', method, params: p }) };

  return {
    postMessage(message: unknown): void {
      posted.push(message);
      if (typeof message !== 'object' || message === null) return;
      const m = message as Partial<WireMessage>;
      if (m.kind === 'ready') {
        deliver({ kind: 'ready' });
        void loadDataset().then((dataset) => {
          if (dataset !== null) deliver({ kind: 'notify', method: DatasetNotification.method, params: { dataset } });
        });
      } else if (m.kind === 'request' && typeof m.id === 'number') {
        const id = m.id;
        if (m.method === BlockMapRequest.method) {
          const p = m.params as { tensor?: unknown; target?: unknown };
          void loadDataset().then((dataset) => {
            const map = dataset?.blockMaps?.find((b) => b.tensor === p.tensor && b.target === p.target) ?? null;
            deliver({ kind: 'response', id, result: { ok: true, value: map } });
          });
        } else {
          deliver({ kind: 'response', id, result: { ok: false, error: { code: 'UNKNOWN_METHOD', message: `stand-in host has no ${String(m.method)}` } } });
        }
      }
    },
    getState: (): unknown => {
      const saved = window.sessionStorage.getItem(STATE_KEY);
      return saved === null ? undefined : (JSON.parse(saved) as unknown);
    },
    setState: (s: unknown) => window.sessionStorage.setItem(STATE_KEY, JSON.stringify(s)),
  };
}
