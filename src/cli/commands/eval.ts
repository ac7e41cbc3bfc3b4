/**
 * `quantlens eval <model> --text <file>`: perplexity of the model (and of simulated quantization
 * settings) on a text, computed as micro-llama-reference.json describes: no BOS, consecutive
 * non-overlapping windows from token 0, every next-token prediction scored.
 */
import { basename } from 'node:path';
import { InvalidArgumentError } from '../../core/errors';
import { GpuModelCache, perplexityOnDevice } from '../../core/gpu/forward/devicePerplexity';
import { describeGpuMemoryPlan, type GpuForwardMemoryPlan } from '../../core/gpu/forward/memoryPlan';
import { ComputeDevice } from '../../core/jobs/computeDevice';
import { readTextFile } from '../../core/model/calibration';
import { BASELINE_SETTING, isBaseline, parseQuantSetting, type QuantSetting } from '../../core/model/fakeQuant';
import { loadModel } from '../../core/model/loadModel';
import { makeWindows } from '../../core/model/perplexity';
import { isDeviceChoice, type DeviceChoice } from '../../protocol/jobs';
import type { CliCommand, CliIo } from '../cliTypes';
import { cancellableCommand, parseModelTextArgs } from '../modelCommand';

const HELP = `usage: quantlens eval <model> --text <file> [--ctx 256] [--windows 64] [--quant W4,W8A8,...] [--group 64] [--device auto|gpu|cpu] [--json]

Perplexity on <file>: the text is tokenized without BOS, cut into --windows consecutive windows of
--ctx tokens from token 0, and every next-token prediction is scored (ppl = exp(mean loss)).
The first row is the model as stored (a GGUF file's real quantized weights; safetensors in f32).

--quant adds simulated settings (Qllm-Eval style), comma separated:
  W8                 weights 8-bit, symmetric absmax per output row
  W4, W3, W2         weights asymmetric min/max per group of --group input columns (W4g32 sets it)
  A8, A4 (W4A8 ...)  inputs of every linear layer, per token, symmetric absmax
  KV8, KV4, KV2      keys (after RoPE) and values, per token and per head, asymmetric
lm_head, embeddings and norms are never quantized.

options:
  --text <file>      UTF-8 text to evaluate (required)
  --ctx <n>          window length in tokens (default 256; at most max_position_embeddings)
  --windows <n>      number of windows (default 64)
  --quant <list>     settings to evaluate besides the baseline
  --group <n>        default weight group size for W<8 (default 64)
  --device <d>       auto (default: the GPU when a hardware WebGPU adapter exists, else the CPU; a
                     GPU failing mid-pass hands the pass to the CPU), gpu (required), or cpu
  --json             print one JSON object instead of the table
  --help             this text`;

export interface EvalRow {
  setting: string;
  perplexity: number;
  deltaVsBaseline: number;
  relativeDelta: number;
  seconds: number;
  tokensPerSecond: number;
  /** Where this setting's pass ran. */
  device: 'gpu' | 'cpu';
  /** The GPU pass's memory estimate, made before anything was uploaded (absent on the CPU). */
  gpuMemory?: GpuForwardMemoryPlan;
}

export interface EvalReport {
  model: string;
  text: string;
  ctx: number;
  windows: number;
  tokens: number;
  /** The GPU adapter when one was used, else 'CPU'. */
  deviceDescription: string;
  rows: EvalRow[];
}

function positiveInt(value: string | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new InvalidArgumentError(`${name} must be a positive integer, got '${value}'`);
  return n;
}

export async function runEval(args: string[], io: CliIo, signal?: AbortSignal): Promise<number> {
  const parsed = parseModelTextArgs(
    args,
    {
      text: { type: 'string' },
      ctx: { type: 'string' },
      windows: { type: 'string' },
      quant: { type: 'string' },
      group: { type: 'string' },
      device: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean' },
    },
    'text',
    HELP,
    io,
  );
  if (parsed === null) return 0;
  const { modelPath, textPath, values } = parsed;
  const ctx = positiveInt(values.ctx, '--ctx', 256);
  const windowCount = positiveInt(values.windows, '--windows', 64);
  const group = values.group === undefined ? 64 : Number(values.group);
  const choice: DeviceChoice = parseDeviceChoice(values.device);
  const settings: QuantSetting[] = [BASELINE_SETTING];
  for (const s of (values.quant ?? '').split(',').map((x) => x.trim()).filter((x) => x.length > 0)) {
    const setting = parseQuantSetting(s, group);
    if (!settings.some((e) => e.label === setting.label)) settings.push(setting);
  }
  const text = await readTextFile(textPath);
  const loaded = await loadModel(modelPath);
  let device: ComputeDevice | null = null;
  // One GPU model for every row: the weights are read and uploaded once per weight setting.
  const gpuModels = new GpuModelCache();
  try {
    const { model, tokenizer } = loaded;
    if (ctx > model.config.maxPositionEmbeddings) {
      throw new InvalidArgumentError(`--ctx ${ctx} is longer than the model's max_position_embeddings (${model.config.maxPositionEmbeddings})`);
    }
    const windows = makeWindows(tokenizer.encode(text), ctx, windowCount);
    // Under auto a software renderer (lavapipe) is passed over: it runs this pass far slower than the CPU path.
    device = await ComputeDevice.open(choice, (m) => io.err(m), { softwareAdapter: 'avoid' });
    const deviceDescription = device.description;
    const rows: EvalRow[] = [];
    let baseline = NaN;
    for (const setting of settings) {
      if (values.json !== true) io.err(`evaluating ${setting.label} (${windowCount} x ${ctx} tokens) on ${device.kind === 'gpu' ? `the GPU (${device.description})` : 'the CPU'} ...`);
      const r = await perplexityOnDevice(device, choice, model, windows, {
        quant: isBaseline(setting) ? undefined : setting,
        signal,
        notice: (m) => io.err(m),
        cache: gpuModels,
        onMemoryPlan: (plan) => {
          if (values.json !== true) io.err(describeGpuMemoryPlan(plan));
        },
      });
      if (isBaseline(setting)) baseline = r.perplexity;
      rows.push({
        setting: setting.label,
        perplexity: r.perplexity,
        deltaVsBaseline: r.perplexity - baseline,
        relativeDelta: (r.perplexity - baseline) / baseline,
        seconds: r.seconds,
        tokensPerSecond: r.tokensPerSecond,
        device: r.device,
        ...(r.gpuMemory === undefined ? {} : { gpuMemory: r.gpuMemory }),
      });
    }
    const report: EvalReport = { model: modelPath, text: textPath, ctx, windows: windowCount, tokens: windowCount * ctx, deviceDescription, rows };
    if (values.json === true) {
      io.out(JSON.stringify(report, null, 2));
      return 0;
    }
    // The weights as stored: a float checkpoint, a GGUF's quantized blocks or a research layout's reconstruction.
    const baselineLabel = loaded.checkpoint.format === 'gguf' ? `as stored (${basename(modelPath)})` : 'as stored (f32 compute)';
    io.out(`perplexity of ${modelPath} on ${textPath}: ${windowCount} windows x ${ctx} tokens, no BOS`);
    io.out(`${'setting'.padEnd(22)} ${'ppl'.padStart(10)} ${'delta'.padStart(9)} ${'delta %'.padStart(8)} ${'tok/s'.padStart(8)} device`);
    for (const r of rows) {
      const label = r.setting === BASELINE_SETTING.label ? baselineLabel : r.setting;
      io.out(`${label.padEnd(22)} ${r.perplexity.toFixed(4).padStart(10)} ${r.deltaVsBaseline.toFixed(4).padStart(9)} ${(100 * r.relativeDelta).toFixed(2).padStart(8)} ${r.tokensPerSecond.toFixed(0).padStart(8)} ${r.device}`);
    }
    if (rows.some((r) => r.device === 'gpu')) io.out(`GPU: ${deviceDescription}`);
    return 0;
  } finally {
    gpuModels.dispose();
    device?.dispose();
    await loaded.close();
  }
}

function parseDeviceChoice(value: string | undefined): DeviceChoice {
  if (value === undefined) return 'auto';
  if (!isDeviceChoice(value)) throw new InvalidArgumentError(`--device must be auto, gpu or cpu, got '${value}'`);
  return value;
}

export const command: CliCommand = cancellableCommand(runEval);
