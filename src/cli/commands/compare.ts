/**
 * `quantlens compare <model> --calib <file> --eval <file> --methods rtn,awq,gptq,smoothquant,llm-int8 --bits 4,8`:
 * calibrates every method at every bit width and prints one table of perplexity, size and time
 * against the FP16 baseline (or, with --json, one object `{baseline: {ppl}, rows: [...]}`).
 */
import { InvalidArgumentError } from '../../core/errors';
import { openCheckpoint } from '../../core/formats/openCheckpoint';
import { LlamaModel } from '../../core/model/forward';
import { compareMethods, formatCompareTable, loadTokenizer, readTextFile } from '../../core/methods/compare';
import { isMethodName, METHOD_NAMES, type MethodName } from '../../core/methods/quantizeWithMethod';
import { ComputeDevice } from '../../core/jobs/computeDevice';
import { gptqOnLazyDevice } from '../../core/jobs/gptqDevice';
import { isDeviceChoice, type DeviceChoice } from '../../protocol/jobs';
import type { CliCommand, CliIo } from '../cliTypes';

const HELP = `usage: quantlens compare <model> --calib <file> --eval <file> [options]

Calibrates each method at each bit width on the calibration text, evaluates perplexity on the
evaluation text with the model runtime, and prints one table: method x bits x perplexity x size x time,
with the unquantized model (FP16) as the baseline.

options:
  --calib <file>          calibration text (required)
  --eval <file>           evaluation text (required)
  --methods <list>        comma list of ${METHOD_NAMES.join(', ')} (default rtn,awq,gptq,smoothquant,llm-int8)
                          rtn = round to nearest (weights only); rtn-a8 = plain W{bits}A8 without smoothing;
                          smoothquant = smoothed W{bits}A8; llm-int8 runs at 8 bits only;
                          llm-int8-zeroed = LLM.int8() with the outlier dims zeroed instead of kept
  --bits <list>           comma list of weight bit widths, 2..8 (default 4,8)
  --group <n>             input columns per group below 8 bits (default 128; -1 = per row)
  --ctx <n>               tokens per window (default 256)
  --calib-windows <n>     calibration windows (default 16)
  --eval-windows <n>      evaluation windows (default 16)
  --alpha <a>             SmoothQuant migration strength (default 0.5)
  --threshold <t>         LLM.int8() outlier threshold (default 6.0)
  --keep-fraction <f>     LLM.int8(): also keep this fraction of other dims in 16 bit (default 0)
  --damp <f>              GPTQ damping, fraction of mean diag H (default 0.01)
  --act-order             GPTQ: columns by descending Hessian diagonal
  --sym                   GPTQ: symmetric grid
  --device auto|gpu|cpu   where GPTQ's column updates run (default auto: the GPU when a hardware WebGPU
                          adapter exists, falling back to the CPU once, said so, if it fails; a software
                          renderer such as lavapipe is slower than the CPU and is passed over; gpu: required,
                          lavapipe included). Calibration, the other methods and perplexity run on the CPU.
  --json                  one JSON object on stdout
  --help                  this text`;

function numberList(value: string, flag: string): number[] {
  const out = value.split(',').map((s) => Number(s.trim()));
  if (out.length === 0 || out.some((n) => !Number.isFinite(n))) throw new InvalidArgumentError(`${flag}: expected a comma list of numbers, got '${value}'`);
  return out;
}

function positiveInt(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag}: expected a positive integer, got '${value}'`);
  return n;
}

interface CompareArgs {
  model: string;
  calib: string;
  eval: string;
  methods: MethodName[];
  bits: number[];
  group: number;
  ctx: number;
  calibWindows: number;
  evalWindows: number;
  alpha?: number;
  threshold?: number;
  keepFraction?: number;
  damp?: number;
  actOrder: boolean;
  sym: boolean;
  json: boolean;
  device: DeviceChoice;
}

export function parseCompareArgs(args: string[]): CompareArgs | 'help' {
  let model: string | undefined;
  const parsed: Partial<CompareArgs> & { actOrder: boolean; sym: boolean; json: boolean; device: DeviceChoice } = { actOrder: false, sym: false, json: false, device: 'auto' };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const value = (): string => {
      const v = args[++i];
      if (v === undefined) throw new InvalidArgumentError(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--help':
      case '-h':
        return 'help';
      case '--calib':
        parsed.calib = value();
        break;
      case '--eval':
        parsed.eval = value();
        break;
      case '--methods': {
        const names = value().split(',').map((s) => s.trim());
        for (const n of names) if (!isMethodName(n)) throw new InvalidArgumentError(`--methods: unknown method '${n}' (known: ${METHOD_NAMES.join(', ')})`);
        parsed.methods = names as MethodName[];
        break;
      }
      case '--bits':
        parsed.bits = numberList(value(), '--bits');
        for (const b of parsed.bits) if (!Number.isInteger(b) || b < 2 || b > 8) throw new InvalidArgumentError(`--bits: ${b} is not 2..8`);
        break;
      case '--group': {
        const g = Number(value());
        if (!Number.isSafeInteger(g) || (g <= 0 && g !== -1)) throw new InvalidArgumentError(`--group: expected a positive integer or -1`);
        parsed.group = g;
        break;
      }
      case '--ctx':
        parsed.ctx = positiveInt(value(), a);
        break;
      case '--calib-windows':
        parsed.calibWindows = positiveInt(value(), a);
        break;
      case '--eval-windows':
        parsed.evalWindows = positiveInt(value(), a);
        break;
      case '--alpha':
        parsed.alpha = Number(value());
        break;
      case '--threshold':
        parsed.threshold = Number(value());
        break;
      case '--keep-fraction':
        parsed.keepFraction = Number(value());
        break;
      case '--damp':
        parsed.damp = Number(value());
        break;
      case '--act-order':
        parsed.actOrder = true;
        break;
      case '--sym':
        parsed.sym = true;
        break;
      case '--json':
        parsed.json = true;
        break;
      case '--device': {
        const d = value();
        if (!isDeviceChoice(d)) throw new InvalidArgumentError(`--device must be auto, gpu or cpu, got '${d}'`);
        parsed.device = d;
        break;
      }
      default:
        if (a.startsWith('-')) throw new InvalidArgumentError(`unknown option ${a}`);
        if (model !== undefined) throw new InvalidArgumentError(`one model only (got '${model}' and '${a}')`);
        model = a;
    }
  }
  if (model === undefined) throw new InvalidArgumentError('a model path is required');
  if (parsed.calib === undefined) throw new InvalidArgumentError('--calib <file> is required');
  if (parsed.eval === undefined) throw new InvalidArgumentError('--eval <file> is required');
  return {
    ...parsed,
    model,
    calib: parsed.calib,
    eval: parsed.eval,
    methods: parsed.methods ?? ['rtn', 'awq', 'gptq', 'smoothquant', 'llm-int8'],
    bits: parsed.bits ?? [4, 8],
    group: parsed.group ?? 128,
    ctx: parsed.ctx ?? 256,
    calibWindows: parsed.calibWindows ?? 16,
    evalWindows: parsed.evalWindows ?? 16,
  };
}

async function run(args: string[], io: CliIo): Promise<number> {
  const parsed = parseCompareArgs(args);
  if (parsed === 'help') {
    io.out(HELP);
    return 0;
  }
  const checkpoint = await openCheckpoint(parsed.model);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint);
    const calibIds = tokenizer.encode(await readTextFile(parsed.calib, 'calibration'));
    const evalIds = tokenizer.encode(await readTextFile(parsed.eval, 'evaluation'));
    const controller = new AbortController();
    const onSigint = (): void => controller.abort();
    process.once('SIGINT', onSigint);
    // The device opens at the first GPTQ layer (none when GPTQ is not compared).
    const onDevice = gptqOnLazyDevice(() => ComputeDevice.open(parsed.device, (line) => io.err(`compare: ${line}`), { softwareAdapter: 'avoid' }));
    try {
      const result = await compareMethods(model, calibIds, evalIds, {
        methods: parsed.methods,
        bits: parsed.bits,
        groupSize: parsed.group,
        ctx: parsed.ctx,
        calibWindows: parsed.calibWindows,
        evalWindows: parsed.evalWindows,
        extra: { alpha: parsed.alpha, threshold: parsed.threshold, keepFraction: parsed.keepFraction, percDamp: parsed.damp, actOrder: parsed.actOrder, sym: parsed.sym },
        gptqLayer: onDevice.run,
        signal: controller.signal,
        onStatus: (line) => io.err(`compare: ${line}`),
      });
      if (parsed.json) {
        io.out(JSON.stringify({ baseline: { ppl: result.baseline.ppl, bytes: result.baseline.bytes }, rows: result.rows, skipped: result.skipped, calibration: result.calibration, evaluation: result.evaluation }));
      } else io.out(formatCompareTable(result));
    } finally {
      onDevice.dispose();
      process.off('SIGINT', onSigint);
    }
  } finally {
    await checkpoint.close();
  }
  return 0;
}

export const command: CliCommand = { run };
