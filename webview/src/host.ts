import { createContext, useContext } from 'react';
import type { BlockErrorMap, ExportParams } from '../../src/protocol/webview';

/** What views may ask of the host. */
export interface HostActions {
  exportFile(params: ExportParams): void;
  requestBlockMap(tensor: string, target: string): Promise<BlockErrorMap | null>;
}

export const HostContext = createContext<HostActions>({
  exportFile: () => undefined,
  requestBlockMap: () => Promise.resolve(null),
});

export const useHost = (): HostActions => useContext(HostContext);
