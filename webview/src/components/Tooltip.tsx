import { useCallback, useState, type ReactNode } from 'react';

export interface TooltipState {
  x: number;
  y: number;
  content: ReactNode;
}

/** One floating tooltip per chart: `show` on pointer move / focus, `hide` on leave / blur. */
export function useTooltip(): {
  tooltip: ReactNode;
  show: (event: { clientX: number; clientY: number } | { currentTarget: Element }, content: ReactNode) => void;
  hide: () => void;
} {
  const [state, setState] = useState<TooltipState | null>(null);
  const show = useCallback((event: { clientX: number; clientY: number } | { currentTarget: Element }, content: ReactNode) => {
    if ('clientX' in event) setState({ x: event.clientX, y: event.clientY, content });
    else {
      const r = event.currentTarget.getBoundingClientRect();
      setState({ x: r.right, y: r.top, content });
    }
  }, []);
  const hide = useCallback(() => setState(null), []);
  const tooltip =
    state === null ? null : (
      <div className="tooltip" role="tooltip" style={{ left: state.x + 12, top: state.y + 12 }}>
        {state.content}
      </div>
    );
  return { tooltip, show, hide };
}
