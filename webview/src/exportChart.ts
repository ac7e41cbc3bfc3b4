/**
 * Export of a chart frame to SVG or PNG (title, subtitle, every <svg> of the frame: chart, legend, small-multiple
 * panels) and of its data to CSV or JSON. The content goes to the host, which asks where to save it
 * (webview/export); theme colours are resolved into the SVG so the file looks the same outside the editor.
 */
import type { ExportParams } from '../../src/protocol/webview';

const STYLE_PROPERTIES = ['fill', 'stroke', 'stroke-width', 'stroke-dasharray', 'stop-color', 'opacity', 'fill-opacity', 'font-size', 'font-family', 'font-weight', 'text-anchor', 'dominant-baseline'];
/** Presentation attributes that may hold a theme variable (`var(--ql-...)`): replaced by their computed value. */
const THEMED_ATTRIBUTES = ['fill', 'stroke', 'stop-color'];
const SVG_NS = 'http://www.w3.org/2000/svg';

/** A copy of `svg` whose every element carries its computed style inline (CSS variables resolved to literal colours). */
function inlineStyles(svg: SVGSVGElement): SVGSVGElement {
  const clone = svg.cloneNode(true) as SVGSVGElement;
  const source = [svg, ...Array.from(svg.querySelectorAll('*'))];
  const target = [clone, ...Array.from(clone.querySelectorAll('*'))];
  source.forEach((el, i) => {
    const out = target[i];
    if (!(out instanceof Element)) return;
    const computed = getComputedStyle(el);
    out.setAttribute('style', STYLE_PROPERTIES.map((p) => `${p}:${computed.getPropertyValue(p)}`).join(';'));
    for (const attribute of THEMED_ATTRIBUTES) {
      if (out.getAttribute(attribute)?.includes('var(') === true) out.setAttribute(attribute, computed.getPropertyValue(attribute));
    }
    out.removeAttribute('class');
    out.removeAttribute('tabindex');
  });
  return clone;
}

export interface ComposedChart {
  /** The SVG document. */
  svg: string;
  width: number;
  height: number;
}

/**
 * One self-contained SVG of a whole chart frame: its title and subtitle, then every top-level <svg> in
 * `body` (the chart, its colour legend, each small-multiple panel) at the place it has on screen, plus the
 * HTML labels marked `data-export-text` (panel titles, per-panel figures) as SVG text. Theme colours are
 * resolved to literal values and the background is painted, so the file renders the same outside VS Code.
 */
export function composeChartSvg(body: HTMLElement, title: string, subtitle: string | undefined): ComposedChart {
  const bodyStyle = getComputedStyle(document.body);
  const background = bodyStyle.getPropertyValue('background-color') || '#ffffff';
  const foreground = bodyStyle.getPropertyValue('color') || '#000000';
  const font = bodyStyle.getPropertyValue('font-family') || 'sans-serif';
  const muted = getComputedStyle(body).getPropertyValue('--ql-muted').trim() || foreground;
  const pad = 12;
  const headerHeight = subtitle !== undefined && subtitle !== '' ? 46 : 30;
  const origin = body.getBoundingClientRect();
  const offset = (r: DOMRect): { x: number; y: number } => ({ x: r.left - origin.left + body.scrollLeft + pad, y: r.top - origin.top + body.scrollTop + headerHeight });
  const doc = document.implementation.createDocument(SVG_NS, 'svg', null);
  const root = doc.documentElement as unknown as SVGSVGElement;
  const make = (name: string, attributes: Record<string, string | number>, text?: string): Element => {
    const el = doc.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attributes)) el.setAttribute(k, String(v));
    if (text !== undefined) el.textContent = text;
    return el;
  };
  const backdrop = make('rect', { x: 0, y: 0, fill: background });
  root.appendChild(backdrop);
  const measure = document.createElement('canvas').getContext('2d');
  const textWidth = (text: string, size: number, weight: string): number => {
    if (measure === null) return text.length * size * 0.6;
    measure.font = `${weight} ${size}px ${font}`;
    return measure.measureText(text).width;
  };
  let width = pad + textWidth(title, 14, '600') + pad;
  root.appendChild(make('text', { x: pad, y: 20, fill: foreground, 'font-family': font, 'font-size': 14, 'font-weight': 600, 'data-export': 'title' }, title));
  if (subtitle !== undefined && subtitle !== '') {
    root.appendChild(make('text', { x: pad, y: 38, fill: muted, 'font-family': font, 'font-size': 11, 'data-export': 'subtitle' }, subtitle));
    width = Math.max(width, pad + textWidth(subtitle, 11, 'normal') + pad);
  }
  let height = headerHeight;
  const panels = Array.from(body.querySelectorAll('svg')).filter((s) => s.parentElement?.closest('svg') == null);
  for (const svg of panels) {
    const r = svg.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const at = offset(r);
    const clone = inlineStyles(svg);
    clone.setAttribute('x', String(at.x));
    clone.setAttribute('y', String(at.y));
    clone.setAttribute('width', String(r.width));
    clone.setAttribute('height', String(r.height));
    clone.setAttribute('data-export', 'panel');
    root.appendChild(doc.importNode(clone, true));
    width = Math.max(width, at.x + r.width + pad);
    height = Math.max(height, at.y + r.height);
  }
  for (const label of Array.from(body.querySelectorAll<HTMLElement>('[data-export-text]'))) {
    const r = label.getBoundingClientRect();
    const text = label.textContent?.trim() ?? '';
    if (r.width === 0 || text === '') continue;
    const style = getComputedStyle(label);
    const size = parseFloat(style.fontSize) || 11;
    const at = offset(r);
    root.appendChild(make('text', { x: at.x, y: at.y + size, fill: style.color, 'font-family': font, 'font-size': size, 'font-weight': style.fontWeight, 'data-export': 'label' }, text));
    width = Math.max(width, at.x + r.width + pad);
    height = Math.max(height, at.y + r.height);
  }
  width = Math.ceil(width);
  height = Math.ceil(height + pad);
  root.setAttribute('width', String(width));
  root.setAttribute('height', String(height));
  root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  backdrop.setAttribute('width', String(width));
  backdrop.setAttribute('height', String(height));
  return { svg: `<?xml version="1.0" encoding="UTF-8"?>\n${new XMLSerializer().serializeToString(root)}`, width, height };
}

/** PNG data: URL of a composed chart at 2x, drawn through an <img> of its SVG. */
export async function rasterizeChart(chart: ComposedChart): Promise<string> {
  const url = URL.createObjectURL(new Blob([chart.svg], { type: 'image/svg+xml' }));
  try {
    const image = new Image();
    await new Promise<void>((resolve, reject) => {
      image.onload = () => resolve();
      image.onerror = () => reject(new Error('the chart could not be rasterized'));
      image.src = url;
    });
    const canvas = document.createElement('canvas');
    canvas.width = chart.width * 2;
    canvas.height = chart.height * 2;
    const ctx = canvas.getContext('2d');
    if (ctx === null) throw new Error('no 2D canvas');
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL('image/png');
  } finally {
    URL.revokeObjectURL(url);
  }
}

/** RFC 4180 CSV: fields with a comma, quote or newline are quoted. */
export function toCsv(rows: Record<string, string | number | boolean | null>[]): string {
  if (rows.length === 0) return '';
  const columns = Object.keys(rows[0] ?? {});
  const cell = (v: string | number | boolean | null): string => {
    const s = v === null ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [columns.join(','), ...rows.map((r) => columns.map((c) => cell(r[c] ?? null)).join(','))].join('\n') + '\n';
}

export type ExportSink = (params: ExportParams) => void;
