import { useMemo, useRef, useState, type KeyboardEvent } from 'react';
import VscodeTextfield from '@vscode-elements/react-elements/dist/components/VscodeTextfield.js';
import VscodeCheckbox from '@vscode-elements/react-elements/dist/components/VscodeCheckbox.js';
import { TENSOR_ROLES, type TensorRow, type TensorSortKey } from '../../../src/protocol/webview';
import { fmtBytes, fmtInt } from '../format';

export const ROW_HEIGHT = 24;
/** Rows drawn above and below the visible window, so fast scrolling does not show gaps. */
const OVERSCAN = 8;

interface TensorTableProps {
  rows: TensorRow[];
  query: string;
  sort: { key: TensorSortKey; descending: boolean };
  onQuery: (q: string) => void;
  onSort: (sort: { key: TensorSortKey; descending: boolean }) => void;
  height?: number;
}

type DisplayRow = { kind: 'group'; label: string; count: number; params: number } | { kind: 'tensor'; row: TensorRow };

const roleOrder = new Map<string, number>(TENSOR_ROLES.map((r, i) => [r, i]));

function compare(a: TensorRow, b: TensorRow, key: TensorSortKey): number {
  switch (key) {
    case 'name':
      return a.name.localeCompare(b.name, undefined, { numeric: true });
    case 'layer':
      return (a.layer ?? -1) - (b.layer ?? -1) || (roleOrder.get(a.role) ?? 0) - (roleOrder.get(b.role) ?? 0);
    case 'role':
      return (roleOrder.get(a.role) ?? 0) - (roleOrder.get(b.role) ?? 0);
    case 'dtype':
      return a.dtype.localeCompare(b.dtype);
    case 'params':
      return a.params - b.params;
    case 'bytes':
      return a.bytes - b.bytes;
  }
}

/** Filter by every whitespace-separated term (name, role, dtype or `L<n>`), sort, then group by layer (or by role when sorting by role). */
export function arrangeRows(rows: TensorRow[], query: string, sort: { key: TensorSortKey; descending: boolean }, grouped: boolean): DisplayRow[] {
  const terms = query.toLowerCase().split(/\s+/).filter(Boolean);
  const filtered = rows.filter((r) => {
    const haystack = `${r.name} ${r.role} ${r.dtype} ${r.layer === null ? 'model' : `l${r.layer}`}`.toLowerCase();
    return terms.every((t) => haystack.includes(t));
  });
  const sign = sort.descending ? -1 : 1;
  const sorted = filtered.sort((a, b) => sign * compare(a, b, sort.key) || a.name.localeCompare(b.name, undefined, { numeric: true }));
  if (!grouped) return sorted.map((row) => ({ kind: 'tensor', row }));
  const byRole = sort.key === 'role';
  const groupOf = (r: TensorRow): string => (byRole ? `role ${r.role}` : r.layer === null ? 'model (embeddings, final norm, head)' : `layer ${r.layer}`);
  const groups = new Map<string, TensorRow[]>();
  for (const r of sorted) {
    const g = groupOf(r);
    const list = groups.get(g);
    if (list === undefined) groups.set(g, [r]);
    else list.push(r);
  }
  const ordered = [...groups.entries()];
  if (!byRole && sort.key !== 'layer') {
    // Keep groups in layer order unless the user sorts by layer explicitly; rows within a group keep the sort.
    ordered.sort(([, a], [, b]) => ((a[0]?.layer ?? -1) - (b[0]?.layer ?? -1)));
  }
  return ordered.flatMap(([label, list]) => [
    { kind: 'group' as const, label, count: list.length, params: list.reduce((s, r) => s + r.params, 0) },
    ...list.map((row) => ({ kind: 'tensor' as const, row })),
  ]);
}

const COLUMNS: { key: TensorSortKey; label: string; className?: string }[] = [
  { key: 'name', label: 'name' },
  { key: 'layer', label: 'layer' },
  { key: 'role', label: 'role' },
  { key: 'dtype', label: 'dtype' },
  { key: 'params', label: 'params', className: 'num' },
  { key: 'bytes', label: 'size', className: 'num' },
];

/**
 * The tensor table, virtualised: only the rows in the scroll window (plus a few) are in the DOM, inside a
 * spacer as tall as all rows, so 10,000+ tensors scroll as smoothly as ten.
 */
export function TensorTable({ rows, query, sort, onQuery, onSort, height = 420 }: TensorTableProps) {
  const [grouped, setGrouped] = useState(true);
  const [scrollTop, setScrollTop] = useState(0);
  const scroller = useRef<HTMLDivElement>(null);
  const display = useMemo(() => arrangeRows([...rows], query, sort, grouped), [rows, query, sort, grouped]);
  const first = Math.max(0, Math.floor(scrollTop / ROW_HEIGHT) - OVERSCAN);
  const last = Math.min(display.length, Math.ceil((scrollTop + height) / ROW_HEIGHT) + OVERSCAN);
  const visible = display.slice(first, last);
  const tensorCount = display.filter((d) => d.kind === 'tensor').length;
  const headerClick = (key: TensorSortKey): void => onSort({ key, descending: sort.key === key ? !sort.descending : key === 'params' || key === 'bytes' });
  const onKey = (e: KeyboardEvent<HTMLDivElement>): void => {
    const el = scroller.current;
    if (el === null) return;
    const step = { ArrowDown: ROW_HEIGHT, ArrowUp: -ROW_HEIGHT, PageDown: height - ROW_HEIGHT, PageUp: -(height - ROW_HEIGHT) }[e.key];
    if (step !== undefined) {
      el.scrollTop += step;
      e.preventDefault();
    } else if (e.key === 'Home' || e.key === 'End') {
      el.scrollTop = e.key === 'Home' ? 0 : el.scrollHeight;
      e.preventDefault();
    }
  };
  return (
    <section className="tensor-table" aria-label="Tensors">
      <div className="controls">
        <VscodeTextfield
          placeholder="Filter tensors: name, role, dtype, L3…"
          value={query}
          onInput={(e) => onQuery((e.target as HTMLInputElement).value)}
          data-control="tensor-filter"
          aria-label="Filter tensors"
        />
        <VscodeCheckbox checked={grouped} onChange={(e) => setGrouped((e.target as HTMLInputElement).checked)} label="Group by layer / role" />
        <span className="count" data-count={tensorCount}>
          {fmtInt(tensorCount)} of {fmtInt(rows.length)} tensors
        </span>
      </div>
      <div className="table-head" role="row">
        {COLUMNS.map((c) => (
          <button
            key={c.key}
            type="button"
            role="columnheader"
            className={`col col-${c.key} ${c.className ?? ''}`}
            aria-sort={sort.key === c.key ? (sort.descending ? 'descending' : 'ascending') : 'none'}
            onClick={() => headerClick(c.key)}
            data-sort={c.key}
          >
            {c.label}
            {sort.key === c.key ? (sort.descending ? ' ▾' : ' ▴') : ''}
          </button>
        ))}
      </div>
      <div
        ref={scroller}
        className="table-scroll"
        style={{ height }}
        tabIndex={0}
        role="grid"
        aria-rowcount={display.length}
        onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
        onKeyDown={onKey}
        data-total-rows={display.length}
      >
        <div className="table-spacer" style={{ height: display.length * ROW_HEIGHT }}>
          {visible.map((d, i) => {
            const index = first + i;
            const top = index * ROW_HEIGHT;
            if (d.kind === 'group') {
              return (
                <div key={`g:${d.label}`} className="table-row group-row" role="row" aria-rowindex={index + 1} style={{ top, height: ROW_HEIGHT }}>
                  <span className="group-label">
                    {d.label} · {d.count} tensors · {fmtInt(d.params)} params
                  </span>
                </div>
              );
            }
            const r = d.row;
            return (
              <div key={r.name} className="table-row tensor-row" role="row" aria-rowindex={index + 1} style={{ top, height: ROW_HEIGHT }} data-tensor={r.name}>
                <span className="col col-name" title={r.name}>
                  {r.name}
                </span>
                <span className="col col-layer">{r.layer ?? '—'}</span>
                <span className="col col-role">{r.role}</span>
                <span className="col col-dtype">{r.dtype}</span>
                <span className="col col-params num">{fmtInt(r.params)}</span>
                <span className="col col-bytes num">{fmtBytes(r.bytes)}</span>
              </div>
            );
          })}
        </div>
      </div>
    </section>
  );
}
