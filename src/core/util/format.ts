/**
 * Human-readable byte sizes for the CLI, the extension host and the webview bundle. Pure (no node or
 * vscode imports) so the webview can bundle it.
 */

const BYTE_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'] as const;

/**
 * Binary units (1 KiB = 1024 B). Whole bytes below 1 KiB; above, `maxDecimals` digits below 10,
 * at most one below 100 and none from 100 on: `512 B`, `2.41 KiB`, `12.5 MiB`, `130 GiB`
 * (maxDecimals 1, as on the progress line: `2.4 KiB`).
 */
export function formatBytes(bytes: number, maxDecimals: 1 | 2 = 2): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const decimals = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : maxDecimals;
  return `${value.toFixed(decimals)} ${BYTE_UNITS[unit]}`;
}
