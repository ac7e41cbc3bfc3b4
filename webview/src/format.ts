import { format } from 'd3-format';
import { formatBytes } from '../../src/core/util/format';

const siFormat = format('.3~s');
export const fmtInt = format(',d');
export const fmtPct = (share: number): string => (share === 0 ? '0 %' : share < 1e-4 ? `${(share * 100).toExponential(1)} %` : `${(share * 100).toPrecision(3)} %`);
export const fmtNum = (v: number): string => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(2) : Number(v.toPrecision(4)).toString());
export const fmtCount = (v: number): string => siFormat(v).replace('G', 'B');
export const fmtBytes = (bytes: number): string => formatBytes(bytes);
