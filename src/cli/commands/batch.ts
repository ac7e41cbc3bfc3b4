/**
 * `quantlens batch <inputs...> --to A,B,... [-o <dir>]`: every input x every target, one after the
 * other, then a summary table. A failing item is reported and the rest still run; exit 2 if any failed.
 */
import { basename, extname, join } from 'node:path';
import { describeError, InvalidArgumentError } from '../../core/errors';
import { allTargetNames, isGgufTarget } from '../../core/quant/pipeline';
import type { CliCommand } from '../cliTypes';
import { formatBytes } from '../../core/util/format';
import { checkImatrixArgs, formatTable, parseQuantizeArgs, quantizeInWorker, requestFrom, resultSummary } from './quantize';

const HELP = `usage: quantlens batch <inputs...> --to <target>[,<target>...] [-o <dir>] [options]

Quantizes every input to every target, one after the other, and ends with a summary table
(input, target, size before / after, bits per weight, mean SQNR, seconds). Outputs go to
<dir>/<input name>-<target>/ (safetensors targets, a folder with model.safetensors and side files) or
<dir>/<input name>-<target>.gguf (GGUF targets); <dir> defaults to the current folder.
A failure is reported for its item and the others still run; the exit code is 2 if any failed.
Options --group, --sym, --double-quant, --scale, --include-embeddings apply to every item where
they make sense (see quantlens quantize --help); --json prints the summary as JSON.

  --device auto|gpu|cpu  GGUF targets: where to quantize (default auto: the GPU when a hardware WebGPU adapter exists)
  --threads <n>          GGUF targets: quantizing threads of the CPU path (default: the hardware's threads
                         for models above 16 M quantized values, else 1)
  --imatrix <file>       llama.cpp importance matrix for every item (GGUF targets only, CPU; see quantlens
                         quantize --help); an input whose tensors do not match its entries fails

targets: ${allTargetNames().join(', ')}`;

export interface BatchRow {
  input: string;
  target: string;
  output: string;
  ok: boolean;
  sourceBytes: number | null;
  outputBytes: number | null;
  bitsPerWeight: number | null;
  meanSqnrDb: number | null;
  seconds: number;
  error: string | null;
}

export function inputStem(input: string): string {
  const trimmed = input.replace(/[\\/]+$/, '');
  const base = basename(trimmed);
  const ext = extname(base);
  return ext === '.safetensors' || ext === '.gguf' || ext === '.json' ? base.slice(0, -ext.length) : base;
}

export const command: CliCommand = {
  async run(args, io) {
    const parsed = parseQuantizeArgs(args);
    if (parsed.help) {
      io.out(HELP);
      return 0;
    }
    if (parsed.positional.length === 0) throw new InvalidArgumentError('give at least one input; see --help');
    if (parsed.target === undefined) throw new InvalidArgumentError(`--to is required (comma-separated); valid targets: ${allTargetNames().join(', ')}`);
    if (parsed.dryRun) throw new InvalidArgumentError('--dry-run is for quantlens quantize');
    const targets = parsed.target.split(',').map((t) => t.trim()).filter((t) => t.length > 0);
    const valid = new Set(allTargetNames().map((t) => t.toLowerCase()));
    const unknown = targets.filter((t) => !valid.has(t.toLowerCase()));
    if (unknown.length > 0) throw new InvalidArgumentError(`unknown target ${unknown.join(', ')}; valid targets: ${allTargetNames().join(', ')}`);
    if (parsed.imatrix !== undefined) for (const target of targets) checkImatrixArgs(parsed, { input: parsed.positional[0]!, target, output: '' }, null);
    const dir = parsed.output ?? '.';
    const controller = new AbortController();
    const onSigint = (): void => controller.abort();
    process.once('SIGINT', onSigint);
    const rows: BatchRow[] = [];
    try {
      const total = parsed.positional.length * targets.length;
      for (const input of parsed.positional) {
        for (const target of targets) {
          const output = join(dir, isGgufTarget(target) ? `${inputStem(input)}-${target}.gguf` : `${inputStem(input)}-${target}`);
          io.err(`== (${rows.length + 1}/${total}) ${input} -> ${target}: ${output}`);
          const started = Date.now();
          try {
            const result = await quantizeInWorker(requestFrom(parsed, input, target, output), io, controller.signal, {
              device: parsed.device,
              threads: parsed.threads,
              ...(parsed.imatrix === undefined ? {} : { imatrix: parsed.imatrix }),
            });
            const s = resultSummary(result);
            rows.push({ input, target, output: s.output, ok: true, sourceBytes: s.sourceBytes, outputBytes: s.outputBytes, bitsPerWeight: s.bitsPerWeight, meanSqnrDb: s.meanSqnrDb, seconds: s.seconds, error: null });
          } catch (e) {
            if (controller.signal.aborted) throw e;
            io.err(`failed: ${input} -> ${target}: ${describeError(e)}`);
            rows.push({ input, target, output, ok: false, sourceBytes: null, outputBytes: null, bitsPerWeight: null, meanSqnrDb: null, seconds: (Date.now() - started) / 1000, error: describeError(e) });
          }
        }
      }
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
    if (parsed.json) {
      io.out(JSON.stringify(rows, null, 1));
    } else {
      const table = rows.map((r) => [
        r.input,
        r.target,
        r.sourceBytes === null ? '-' : formatBytes(r.sourceBytes),
        r.outputBytes === null ? '-' : formatBytes(r.outputBytes),
        r.bitsPerWeight === null ? '-' : r.bitsPerWeight.toFixed(3),
        r.meanSqnrDb === null ? '-' : r.meanSqnrDb.toFixed(2),
        r.seconds.toFixed(1),
        r.ok ? 'ok' : `FAILED: ${r.error ?? ''}`,
      ]);
      for (const l of formatTable(['input', 'target', 'before', 'after', 'bpw', 'SQNR dB', 'seconds', 'status'], table, new Set([2, 3, 4, 5, 6]))) io.out(l);
    }
    return rows.some((r) => !r.ok) ? 2 : 0;
  },
};
