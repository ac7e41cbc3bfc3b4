/**
 * `quantlens quantize <input> --to <target> -o <output>`: one checkpoint to one target, with a quant
 * card beside the output. Progress goes to stderr as plain lines; results to stdout.
 */
import { InvalidArgumentError } from '../../core/errors';
import { formatBytes } from '../../core/util/format';
import {
  allTargetNames,
  isGgufTarget,
  planQuantize,
  type QuantizePlan,
  type QuantizeRequest,
  type QuantizeResult,
} from '../../core/quant/pipeline';
import { RESEARCH_SCHEMES } from '../../core/quant/researchSchemes';
import type { CliCommand, CliIo } from '../cliTypes';
import { runJobInWorker } from '../../core/jobs/jobRunner';
import { isDeviceChoice, type DeviceChoice, type QuantizeJobSpec } from '../../protocol/jobs';
import { createProgressRenderer } from '../progress';
import { checkMethodRequest, EXPORT_METHODS, isExportMethod, type MethodQuantizeSpec } from '../../core/methods/methodQuantize';

const HELP = `usage: quantlens quantize <input> --to <target> -o <output> [options]

<input> is a Hugging Face folder, a .safetensors file (or index) or a .gguf file. Research targets write
safetensors (<output> ending in .safetensors, or a folder that gets model.safetensors, config.json,
tokenizer files and quantize_config.json); GGUF targets write a .gguf. Every output gets
<output file>.quant.json: source hash, recipe and per-tensor error metrics.

targets:
${RESEARCH_SCHEMES.map((s) => `  ${s.name.padEnd(12)} ${s.summary}`).join('\n')}
  GGUF         F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K Q4_K Q5_K Q6_K, presets Q3_K_S/M/L Q4_K_S/M Q5_K_S/M

options:
  --to <target>          what to write (required)
  -o, --output <path>    output file or folder (required)
  --group <n>            input columns per group for the group-wise targets; -1 = per output channel
  --sym                  symmetric group-wise quantization (zero point 2^(bits-1))
  --double-quant         nf4: quantize the absmax values to 8 bits (bitsandbytes compress_statistics)
  --scale tensor|channel fp8 / int8: one scale per tensor or per output channel
  --include-embeddings   also quantize the embedding and lm_head matrices
  --device auto|gpu|cpu  GGUF targets: where to quantize (default auto: the GPU when a hardware WebGPU
                         adapter exists, else the CPU; a software renderer such as lavapipe is slower than
                         the CPU path and is used only with gpu; a GPU that fails mid-job under auto hands
                         over to the CPU and says so once). Same bytes everywhere; the card's
                         recipe.device says which ran. With --method gptq: where GPTQ's column
                         updates run (same choice and fallback; f32 on the GPU, so a rare code may
                         differ from the CPU's float64 path); calibration stays on the CPU.
  --threads <n>          GGUF targets: quantizing threads of the CPU path (default: the hardware's
                         threads for models above 16 M quantized values, else 1)
  --method <m>           calibrate first: gptq | awq (GPTQ-layout targets: int4-g128, int4-g64, ...) or
                         smoothquant (any research target, e.g. int8). GGUF: awq to any quantized
                         type or preset, smoothquant to any, gptq to any quantized type or preset (its own blocks, K types included).
                         llm-int8 to int8 (bitsandbytes Linear8bitLt + the 16-bit outlier columns). Runs in the job worker.
  --calib <file>         calibration text (required with --method)
  --calib-windows <n>    windows of 256 tokens from the calibration text (default 16)
  --bits <n>             with --method: must agree with the target's bits
  --damp <f>             gptq: damping fraction of the Hessian's mean diagonal (default 0.01)
  --act-order            gptq, GPTQ-layout targets: columns in descending Hessian-diagonal order; g_idx
                         stored, quantize_config desc_act: true (refused for GGUF: ggml blocks are consecutive)
  --alpha <f>            smoothquant: migration strength (default 0.5)
  --threshold <f>        llm-int8: an input dimension whose calibration max |x| reaches it stays 16-bit (> 0, default 6)
  --keep-fraction <f>    llm-int8: also keep this fraction in [0, 1) of the other dimensions (largest max |x|
                         first) in 16 bit (default 0)
  --imatrix <file>       GGUF targets: llama.cpp importance matrix (GGUF imatrix or legacy .dat, e.g. from
                         quantlens imatrix or llama-imatrix), as llama-quantize --imatrix: each tensor
                         with an entry goes through ggml's weighted (_impl) quantizer, same bytes as
                         llama-quantize; quantized on the CPU (refused with --device gpu and --method);
                         the card's recipe records the file and its sha256
  --dry-run              print the per-tensor plan, output size and bits per weight; write nothing
  --json                 print JSON on stdout
  --help                 this text`;

/** The method knobs are MethodQuantizeSpec's own fields; `method` and `calib` stay loose until checkMethodRequest. */
export interface ParsedQuantizeArgs extends Pick<MethodQuantizeSpec, 'calibWindows' | 'bits' | 'actOrder' | 'percDamp' | 'alpha' | 'threshold' | 'keepFraction'> {
  positional: string[];
  target: string | undefined;
  output: string | undefined;
  groupSize?: number;
  symmetric?: boolean;
  doubleQuant?: boolean;
  scale?: 'tensor' | 'channel';
  includeEmbeddings?: boolean;
  method?: string;
  calib?: string;
  device: DeviceChoice;
  threads?: number;
  imatrix?: string;
  dryRun: boolean;
  json: boolean;
  help: boolean;
}

function integerValue(flag: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${flag} ${text}: give a positive integer`);
  return n;
}

function positiveNumber(flag: string, text: string, zeroAllowed = false): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || n < 0 || (n === 0 && !zeroAllowed)) throw new InvalidArgumentError(`${flag} ${text}: give a ${zeroAllowed ? 'non-negative' : 'positive'} number`);
  return n;
}

/** Hand-rolled so that `--group -1` is a value, not an option. */
export function parseQuantizeArgs(args: readonly string[]): ParsedQuantizeArgs {
  const parsed: ParsedQuantizeArgs = { positional: [], target: undefined, output: undefined, device: 'auto', dryRun: false, json: false, help: false };
  const value = (i: number, flag: string): string => {
    const v = args[i + 1];
    if (v === undefined) throw new InvalidArgumentError(`${flag} needs a value`);
    return v;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.startsWith('--') ? a.indexOf('=') : -1;
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const take = (): string => {
      if (inline !== undefined) return inline;
      const v = value(i, flag);
      i += 1;
      return v;
    };
    switch (flag) {
      case '--to':
        parsed.target = take();
        break;
      case '-o':
      case '--output':
        parsed.output = take();
        break;
      case '--group': {
        const text = take();
        const n = Number(text);
        if (!Number.isInteger(n) || (n <= 0 && n !== -1)) throw new InvalidArgumentError(`--group ${text}: give a positive integer or -1 (per channel)`);
        parsed.groupSize = n;
        break;
      }
      case '--scale': {
        const s = take();
        if (s !== 'tensor' && s !== 'channel') throw new InvalidArgumentError(`--scale ${s}: give tensor or channel`);
        parsed.scale = s;
        break;
      }
      case '--sym':
        parsed.symmetric = true;
        break;
      case '--method':
        parsed.method = take();
        break;
      case '--calib':
        parsed.calib = take();
        break;
      case '--calib-windows':
        parsed.calibWindows = integerValue(flag, take());
        break;
      case '--bits':
        parsed.bits = integerValue(flag, take());
        break;
      case '--act-order':
        parsed.actOrder = true;
        break;
      case '--damp':
        parsed.percDamp = positiveNumber(flag, take());
        break;
      case '--alpha':
        parsed.alpha = positiveNumber(flag, take());
        break;
      case '--threshold':
        parsed.threshold = positiveNumber(flag, take());
        break;
      case '--keep-fraction':
        parsed.keepFraction = positiveNumber(flag, take(), true);
        break;
      case '--double-quant':
        parsed.doubleQuant = true;
        break;
      case '--device': {
        const d = take();
        if (!isDeviceChoice(d)) throw new InvalidArgumentError(`--device must be auto, gpu or cpu, got '${d}'`);
        parsed.device = d;
        break;
      }
      case '--threads':
        parsed.threads = integerValue(flag, take());
        break;
      case '--include-embeddings':
        parsed.includeEmbeddings = true;
        break;
      case '--imatrix':
        parsed.imatrix = take();
        break;
      case '--dry-run':
        parsed.dryRun = true;
        break;
      case '--json':
        parsed.json = true;
        break;
      case '--help':
      case '-h':
        parsed.help = true;
        break;
      default:
        if (a.startsWith('-') && a !== '-') throw new InvalidArgumentError(`unknown option ${a} (see --help)`);
        parsed.positional.push(a);
    }
  }
  return parsed;
}

export function formatTable(header: string[], rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string[] {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: string[]): string => cells.map((cell, c) => (rightAligned.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

/**
 * Runs one quantize job in the job worker (the CLI's thread only draws progress): GGUF and research
 * targets alike. Progress goes to stderr, a bar on a terminal and plain lines otherwise.
 */
export async function quantizeInWorker(request: QuantizeRequest, io: CliIo, signal: AbortSignal, run: { device?: DeviceChoice; threads?: number; imatrix?: string } = {}): Promise<QuantizeResult> {
  const progress = createProgressRenderer(io);
  try {
    const spec: QuantizeJobSpec = { kind: 'quantize', request };
    if (run.device !== undefined) spec.device = run.device;
    if (run.threads !== undefined) spec.threads = run.threads;
    if (run.imatrix !== undefined) spec.imatrix = run.imatrix;
    const { result } = await runJobInWorker(spec, { signal, onProgress: (p) => progress.update(p), onNotice: (m) => progress.notice(`warning: ${m}`) });
    return result;
  } finally {
    progress.finish();
  }
}

function printPlan(plan: QuantizePlan, io: CliIo): void {
  const rows = plan.tensors.map((t) => [t.name, `[${t.shape.join(', ')}]`, t.sourceDtype, t.action === 'quantize' ? t.type : `copy ${t.type}`, formatBytes(t.outputBytes), t.bitsPerWeight.toFixed(3)]);
  for (const l of formatTable(['tensor', 'shape', 'source', 'output', 'bytes', 'bpw'], rows, new Set([4, 5]))) io.out(l);
  const t = plan.totals;
  io.out('');
  io.out(`target ${plan.target}: ${plan.tensors.filter((x) => x.action === 'quantize').length} of ${plan.tensors.length} tensors quantized (${t.quantizedParameters} of ${t.parameters} parameters)`);
  io.out(`output ${plan.outputPath}: ${formatBytes(t.outputBytes)} (${t.outputBytes} bytes), source tensors ${formatBytes(t.sourceBytes)}, ${t.bitsPerWeight.toFixed(3)} bits per weight`);
}

/** --dry-run for GGUF targets: the GGUF exporter's own plan (types, llama.cpp's fallbacks, exact file size). */
async function printGgufPlan(request: QuantizeRequest, json: boolean, io: CliIo, imatrixPath?: string): Promise<void> {
  const [{ planGgufExport }, { openCheckpoint }, { loadImatrixFile }] = await Promise.all([
    import('../../core/convert/exportGguf'),
    import('../../core/formats/openCheckpoint'),
    import('../../core/methods/imatrix'),
  ]);
  const checkpoint = await openCheckpoint(request.input);
  try {
    const loaded = imatrixPath === undefined ? undefined : await loadImatrixFile(imatrixPath);
    const plan = await planGgufExport(checkpoint, {
      target: request.target.toUpperCase(),
      onWarning: (m) => io.err(`warning: ${m}`),
      ...(loaded === undefined ? {} : { imatrix: { imatrix: loaded.imatrix, file: loaded.path } }),
    });
    if (json) {
      io.out(JSON.stringify(plan, null, 1));
      return;
    }
    let parameters = 0;
    const rows = plan.tensors.map((t) => {
      const count = t.shape.reduce((a, b) => a * b, 1);
      parameters += count;
      return [t.name, `[${t.shape.join(', ')}]`, t.sourceType, t.fallback === undefined ? t.type : `${t.type} (fallback)`, formatBytes(t.bytes), ((t.bytes * 8) / Math.max(1, count)).toFixed(3)];
    });
    for (const l of formatTable(['tensor', 'shape', 'source', 'output', 'bytes', 'bpw'], rows, new Set([4, 5]))) io.out(l);
    io.out('');
    for (const t of plan.tensors) if (t.fallback !== undefined) io.out(`fallback ${t.name}: ${t.fallback}`);
    io.out(`target ${plan.target} (file type ${plan.fileType}): ${plan.tensors.length} tensors, ${parameters} parameters`);
    io.out(`output ${request.output}: ${formatBytes(plan.fileBytes)} (${plan.fileBytes} bytes), ${((plan.fileBytes * 8) / Math.max(1, parameters)).toFixed(3)} bits per weight`);
  } finally {
    await checkpoint.close();
  }
}

export function resultSummary(result: QuantizeResult): { output: string; card: string; sourceBytes: number; outputBytes: number; bitsPerWeight: number; meanSqnrDb: number | null; seconds: number } {
  const sourceBytes = result.card.source.files.reduce((s, f) => s + f.bytes, 0);
  return {
    output: result.outputPath,
    card: result.cardPath,
    sourceBytes,
    outputBytes: result.card.output.bytes,
    bitsPerWeight: result.card.totals.bitsPerWeight,
    meanSqnrDb: result.card.totals.meanSqnrDb,
    seconds: result.seconds,
  };
}


export function requestFrom(parsed: ParsedQuantizeArgs, input: string, target: string, output: string): QuantizeRequest {
  const request: QuantizeRequest = { input, target, output };
  if (parsed.groupSize !== undefined) request.groupSize = parsed.groupSize;
  if (parsed.symmetric !== undefined) request.symmetric = parsed.symmetric;
  if (parsed.doubleQuant !== undefined) request.doubleQuant = parsed.doubleQuant;
  if (parsed.scale !== undefined) request.scale = parsed.scale;
  if (parsed.includeEmbeddings !== undefined) request.includeEmbeddings = parsed.includeEmbeddings;
  return request;
}

/** --imatrix goes with GGUF targets, without --method, on the CPU (the job checks the same again). */
export function checkImatrixArgs(parsed: Pick<ParsedQuantizeArgs, 'imatrix' | 'device'>, request: QuantizeRequest, methodSpec: MethodQuantizeSpec | null): void {
  if (parsed.imatrix === undefined) return;
  if (!isGgufTarget(request.target)) throw new InvalidArgumentError(`--imatrix ${parsed.imatrix}: an importance matrix applies to GGUF targets (llama-quantize's types and presets), not ${request.target}`);
  if (methodSpec !== null) throw new InvalidArgumentError(`--imatrix ${parsed.imatrix}: not combined with --method ${methodSpec.method}; quantize with one or the other`);
  if (parsed.device === 'gpu') {
    throw new InvalidArgumentError(`--imatrix ${parsed.imatrix}: the GPU kernels run llama.cpp's _ref quantizers only, without importance weights; use --device cpu or auto (auto quantizes on the CPU with an imatrix)`);
  }
}

/** The --method half of the arguments; null without --method (then its options are refused). */
export function methodSpecFrom(parsed: ParsedQuantizeArgs): MethodQuantizeSpec | null {
  const methodOnly: [string, unknown][] = [
    ['--calib', parsed.calib],
    ['--calib-windows', parsed.calibWindows],
    ['--bits', parsed.bits],
    ['--act-order', parsed.actOrder],
    ['--damp', parsed.percDamp],
    ['--alpha', parsed.alpha],
    ['--threshold', parsed.threshold],
    ['--keep-fraction', parsed.keepFraction],
  ];
  if (parsed.method === undefined) {
    const given = methodOnly.filter(([, v]) => v !== undefined).map(([f]) => f);
    if (given.length > 0) throw new InvalidArgumentError(`${given.join(', ')} need --method (gptq, awq, smoothquant)`);
    return null;
  }
  const method = parsed.method;
  if (!isExportMethod(method)) throw new InvalidArgumentError(`unknown --method '${method}'; give one of ${EXPORT_METHODS.join(', ')}`);
  if (parsed.calib === undefined) throw new InvalidArgumentError(`--method ${method} needs --calib <calibration text file>`);
  const spec: MethodQuantizeSpec = { method, calib: parsed.calib };
  if (parsed.calibWindows !== undefined) spec.calibWindows = parsed.calibWindows;
  if (parsed.bits !== undefined) spec.bits = parsed.bits;
  if (parsed.actOrder !== undefined) spec.actOrder = parsed.actOrder;
  if (parsed.percDamp !== undefined) spec.percDamp = parsed.percDamp;
  if (parsed.alpha !== undefined) spec.alpha = parsed.alpha;
  if (parsed.threshold !== undefined) spec.threshold = parsed.threshold;
  if (parsed.keepFraction !== undefined) spec.keepFraction = parsed.keepFraction;
  return spec;
}

export const command: CliCommand = {
  async run(args, io) {
    const parsed = parseQuantizeArgs(args);
    if (parsed.help) {
      io.out(HELP);
      return 0;
    }
    if (parsed.positional.length !== 1) throw new InvalidArgumentError(`give exactly one input (got ${parsed.positional.length}); see --help`);
    if (parsed.target === undefined) throw new InvalidArgumentError(`--to is required; valid targets: ${allTargetNames().join(', ')}`);
    if (parsed.output === undefined) throw new InvalidArgumentError('-o <output> is required');
    const request = requestFrom(parsed, parsed.positional[0]!, parsed.target, parsed.output);
    const methodSpec = methodSpecFrom(parsed);
    // Refuse a bad method / target pair before anything is read.
    if (methodSpec !== null) checkMethodRequest(request, methodSpec);
    if (parsed.imatrix !== undefined) checkImatrixArgs(parsed, request, methodSpec);
    if (parsed.dryRun && isGgufTarget(request.target)) {
      await printGgufPlan(request, parsed.json, io, parsed.imatrix);
      return 0;
    }
    if (parsed.dryRun) {
      const plan = await planQuantize(request);
      if (parsed.json) io.out(JSON.stringify(plan, null, 1));
      else printPlan(plan, io);
      return 0;
    }
    const controller = new AbortController();
    const onSigint = (): void => controller.abort();
    process.once('SIGINT', onSigint);
    try {
      const result = await quantizeInWorker(methodSpec === null ? request : { ...request, method: methodSpec }, io, controller.signal, {
        device: parsed.device,
        threads: parsed.threads,
        ...(parsed.imatrix === undefined ? {} : { imatrix: parsed.imatrix }),
      });
      const s = resultSummary(result);
      // The method's warnings already went to stderr as notices; --json also carries them.
      const report = result.methodReport;
      const methodLines = report === undefined ? [] : [...report.lines, `${methodSpec?.method ?? 'method'}: calibrated in ${report.seconds.toFixed(1)} s`];
      if (parsed.json) {
        io.out(JSON.stringify(methodSpec === null ? s : { ...s, method: methodSpec.method, reports: methodLines, warnings: report?.warnings ?? [] }, null, 1));
      } else {
        for (const l of methodLines) io.out(l);
        io.out(`wrote ${s.output} (${formatBytes(s.outputBytes)}, ${s.bitsPerWeight.toFixed(3)} bits per weight) in ${s.seconds.toFixed(1)} s`);
        if (result.sideFiles.length > 0) io.out(`also ${result.sideFiles.join(', ')}`);
        io.out(`quant card ${s.card}: mean SQNR ${s.meanSqnrDb === null ? 'n/a' : `${s.meanSqnrDb.toFixed(2)} dB`} over ${result.card.tensors.filter((t) => t.quantized).length} quantized tensors`);
      }
      return 0;
    } finally {
      process.removeListener('SIGINT', onSigint);
    }
  },
};
