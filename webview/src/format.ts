import { format } from 'd3-format';

const siFormat = format('.3~s');
export const fmtInt = format(',d');
export const fmtPct = (share: number): string => (share === 0 ? '0 %' : share < 1e-4 ? `${(share * 100).toExponential(1)} %` : `${(share * 100).toPrecision(3)} %`);
export const fmtNum = (v: number): string => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : Number(v.toPrecision(4)).toString());
export const fmtCount = (v: number): string => siFormat(v).replace('G', 'B');

export function fmtBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}
