/**
 * `quantlens stats <model>`: per-tensor statistics, histograms and outlier channels of the weights,
 * computed in the job worker (GPU when there is one, or as --device says). Progress on stderr; the
 * table, or --json, on stdout.
 */
import { InvalidArgumentError } from '../../core/errors';
import { runJobInWorker } from '../../core/jobs/jobRunner';
import { isDeviceChoice, type DeviceChoice, type StatsJobResult, type StatsJobSpec, type TensorStatsSummary } from '../../protocol/jobs';
import type { CliCommand } from '../cliTypes';
import { formatBytes } from '../../core/util/format';
import { createProgressRenderer, formatDuration } from '../progress';

const HELP = `usage: quantlens stats <model> [options]

Statistics of every weight tensor of a checkpoint (HF folder, .safetensors, index or .gguf): min, max,
absmax, mean, std, excess kurtosis, a histogram, a log-scale histogram and the rows (output channels)
and columns (input dimensions) with the most outliers (|x| > sigma * std).

options:
  --device auto|gpu|cpu  where to compute (default auto: a hardware GPU when one exists; software renderers such as lavapipe are left to the CPU path)
  --json                 print the full result (histograms, per-row absmax) as JSON on stdout
  --tensor <name>        only this tensor (repeatable)
  --bins <n>             fixed histogram bins, 1..256 (default 64)
  --sigma <k>            outlier threshold in standard deviations (default 6)
  --top <n>              outlier rows/columns listed per tensor (default 8)
  --help                 this text`;

interface StatsArgs {
  model: string | undefined;
  device: DeviceChoice;
  json: boolean;
  help: boolean;
  tensors: string[];
  bins: number;
  sigma: number;
  top: number;
}

export function parseStatsArgs(args: string[]): StatsArgs {
  const parsed: StatsArgs = { model: undefined, device: 'auto', json: false, help: false, tensors: [], bins: 64, sigma: 6, top: 8 };
  const value = (i: number, flag: string): string => {
    const v = args[i + 1];
    if (v === undefined) throw new InvalidArgumentError(`${flag} needs a value`);
    return v;
  };
  const integer = (v: string, flag: string, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min || n > max) throw new InvalidArgumentError(`${flag} must be an integer in ${min}..${max}, got '${v}'`);
    return n;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    switch (a) {
      case '--help':
      case '-h':
        parsed.help = true;
        break;
      case '--json':
        parsed.json = true;
        break;
      case '--device': {
        const d = value(i++, a);
        if (!isDeviceChoice(d)) throw new InvalidArgumentError(`--device must be auto, gpu or cpu, got '${d}'`);
        parsed.device = d;
        break;
      }
      case '--tensor':
        parsed.tensors.push(value(i++, a));
        break;
      case '--bins':
        parsed.bins = integer(value(i++, a), a, 1, 256);
        break;
      case '--top':
        parsed.top = integer(value(i++, a), a, 0, 1000);
        break;
      case '--sigma': {
        const v = value(i++, a);
        const k = Number(v);
        if (!(k > 0) || !Number.isFinite(k)) throw new InvalidArgumentError(`--sigma must be a positive number, got '${v}'`);
        parsed.sigma = k;
        break;
      }
      default:
        if (a.startsWith('-')) throw new InvalidArgumentError(`unknown option ${a}; see --help`);
        if (parsed.model !== undefined) throw new InvalidArgumentError(`give one model (got '${parsed.model}' and '${a}')`);
        parsed.model = a;
    }
  }
  return parsed;
}

const SPARK = '▁▂▃▄▅▆▇█';

/** A histogram as one line of block characters (log-scaled heights so tails stay visible). */
export function sparkline(counts: readonly number[]): string {
  const max = Math.max(0, ...counts);
  if (max === 0) return '';
  return counts.map((c) => (c === 0 ? ' ' : SPARK[Math.min(7, Math.floor((Math.log1p(c) / Math.log1p(max)) * 7.999))]!)).join('');
}

function fmt(x: number): string {
  if (x === 0) return '0';
  const a = Math.abs(x);
  return a >= 1e4 || a < 1e-3 ? x.toExponential(2) : x.toPrecision(4);
}

function table(rows: string[][], right: ReadonlySet<number>): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  return rows.map((r) => r.map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd());
}

function outlierList(list: TensorStatsSummary['topOutlierColumns']): string {
  return list.length === 0 ? '-' : list.map((c) => `${c.index}:${c.count}`).join(' ');
}

export function renderStats(result: StatsJobResult): string[] {
  const header = ['tensor', 'dtype', 'shape', 'mean', 'std', 'absmax', 'kurt', 'outliers', 'top columns', 'histogram'];
  const rows = result.tensors.map((t) => [
    t.name,
    t.dtype,
    t.shape.join('x'),
    fmt(t.mean),
    fmt(Math.sqrt(t.variance)),
    fmt(t.absMax),
    t.kurtosis.toFixed(2),
    `${t.outlierCount}${t.nanCount + t.infCount > 0 ? ` (${t.nanCount} NaN, ${t.infCount} Inf)` : ''}`,
    outlierList(t.topOutlierColumns),
    sparkline(t.histogram.counts),
  ]);
  const lines = table([header, ...rows], new Set([3, 4, 5, 6, 7]));
  const heavy = [...result.tensors].sort((a, b) => b.kurtosis - a.kurtosis).slice(0, 3);
  lines.push('');
  lines.push(`${result.tensors.length} tensors, ${formatBytes(result.bytesRead, 1)} read in ${formatDuration(result.seconds)} on ${result.device === 'gpu' ? `the GPU (${result.deviceDescription})` : 'the CPU'}`);
  if (heavy.length > 0) lines.push(`heaviest tails (kurtosis): ${heavy.map((t) => `${t.name} ${t.kurtosis.toFixed(1)}`).join(', ')}`);
  return lines;
}

export const command: CliCommand = {
  async run(args, io) {
    const parsed = parseStatsArgs(args);
    if (parsed.help) {
      io.out(HELP);
      return 0;
    }
    if (parsed.model === undefined) throw new InvalidArgumentError('give a model path; see --help');
    const spec: StatsJobSpec = { kind: 'stats', modelPath: parsed.model, device: parsed.device, histogramBins: parsed.bins, logOctaves: 24, outlierSigma: parsed.sigma, topChannels: parsed.top };
    if (parsed.tensors.length > 0) spec.tensorNames = parsed.tensors;
    const controller = new AbortController();
    const onSigint = (): void => controller.abort();
    process.once('SIGINT', onSigint);
    const progress = createProgressRenderer(io);
    try {
      const result = await runJobInWorker(spec, { signal: controller.signal, onProgress: (p) => progress.update(p), onNotice: (m) => progress.notice(m) });
      progress.finish();
      if (parsed.json) io.out(JSON.stringify(result));
      else for (const line of renderStats(result)) io.out(line);
      return 0;
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
