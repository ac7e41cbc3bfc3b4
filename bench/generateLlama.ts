/**
 * A generated LLaMA-shaped checkpoint for the quantize bench: a Hugging Face folder (config.json, one BF16
 * model.safetensors, the micro-llama fixture's byte-level BPE tokenizer, ids past its 8192 become [PAD<id>])
 * plus the BF16 GGUF of the same weights written by our own converter (exportGguf with target BF16, as
 * `convert_hf_to_gguf.py --outtype bf16` would write it): the one input both llama-quantize and ours read
 * in the quantize bench (the "same input, BF16"), and the F32 GGUF (exportGguf with target F32, as
 * `--outtype f32`), which the GPU bench reads. Each GGUF is written only when a caller asks for it.
 *
 * Shapes: hidden 2048, ffn 5632, 16 heads of 128 with 4 KV heads (GQA), vocab 32000; the layer count is the
 * smallest that reaches the asked BF16 size. Values: seeded xorshift32, a sum of four uniforms (near normal,
 * std 0.02) with one in 4096 values scaled by 20 (outliers as real LLMs have), norms near 1.
 * Streaming: at most one window of CHUNK_VALUES values is in memory; the folder is reused when its
 * `complete.json` says it was written for the same shapes and seed.
 */
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { exportGguf } from '../src/core/convert/exportGguf';
import { openCheckpoint } from '../src/core/formats/openCheckpoint';

export interface GeneratedLlamaShape {
  hidden: number;
  ffn: number;
  heads: number;
  kvHeads: number;
  vocab: number;
  layers: number;
  seed: number;
}

export interface GeneratedLlama {
  shape: GeneratedLlamaShape;
  hfFolder: string;
  /** The same weights as an F32 GGUF (exists when 'F32' was among the GGUFs asked for). */
  f32Gguf: string;
  /** The same weights as a BF16 GGUF (exists when 'BF16' was asked for): the quantize bench's input for both tools. */
  bf16Gguf: string;
  parameters: number;
  bf16Bytes: number;
  /** Values of the largest tensor (the embedding / lm_head, vocab x hidden). */
  largestTensorValues: number;
  /** True when this call wrote the files (false: reused). */
  written: boolean;
}

const CHUNK_VALUES = 4 * 1024 * 1024;

interface TensorSpec {
  name: string;
  shape: [number] | [number, number];
  /** Norm weights: values near 1. */
  norm: boolean;
}

export function llamaTensors(s: GeneratedLlamaShape): TensorSpec[] {
  const headDim = s.hidden / s.heads;
  const kv = s.kvHeads * headDim;
  const list: TensorSpec[] = [{ name: 'model.embed_tokens.weight', shape: [s.vocab, s.hidden], norm: false }];
  for (let i = 0; i < s.layers; i++) {
    const p = `model.layers.${i}`;
    list.push(
      { name: `${p}.input_layernorm.weight`, shape: [s.hidden], norm: true },
      { name: `${p}.self_attn.q_proj.weight`, shape: [s.hidden, s.hidden], norm: false },
      { name: `${p}.self_attn.k_proj.weight`, shape: [kv, s.hidden], norm: false },
      { name: `${p}.self_attn.v_proj.weight`, shape: [kv, s.hidden], norm: false },
      { name: `${p}.self_attn.o_proj.weight`, shape: [s.hidden, s.hidden], norm: false },
      { name: `${p}.post_attention_layernorm.weight`, shape: [s.hidden], norm: true },
      { name: `${p}.mlp.gate_proj.weight`, shape: [s.ffn, s.hidden], norm: false },
      { name: `${p}.mlp.up_proj.weight`, shape: [s.ffn, s.hidden], norm: false },
      { name: `${p}.mlp.down_proj.weight`, shape: [s.hidden, s.ffn], norm: false },
    );
  }
  list.push({ name: 'model.norm.weight', shape: [s.hidden], norm: true }, { name: 'lm_head.weight', shape: [s.vocab, s.hidden], norm: false });
  return list;
}

function countValues(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The shape with hidden 2048 / ffn 5632 / vocab 32000 and the fewest layers (>= 1) reaching `bf16Bytes`. */
export function llamaShapeForSize(bf16Bytes: number, seed = 1): GeneratedLlamaShape {
  const base: GeneratedLlamaShape = { hidden: 2048, ffn: 5632, heads: 16, kvHeads: 4, vocab: 32000, layers: 0, seed };
  const fixed = llamaTensors(base).reduce((a, t) => a + countValues(t.shape), 0);
  const perLayer = llamaTensors({ ...base, layers: 1 }).reduce((a, t) => a + countValues(t.shape), 0) - fixed;
  const layers = Math.max(1, Math.ceil((bf16Bytes / 2 - fixed) / perLayer));
  return { ...base, layers };
}

/** xorshift32 state -> BF16 bits of near-normal values (see the file comment). */
function fillBf16(out: Uint16Array, count: number, state: { x: number }, norm: boolean): void {
  const f32 = new Float32Array(1);
  const bits = new Uint32Array(f32.buffer);
  let x = state.x;
  for (let i = 0; i < count; i++) {
    let sum = 0;
    for (let k = 0; k < 4; k++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      sum += (x >>> 0) / 4294967296;
    }
    // sum of 4 U(0,1): mean 2, std sqrt(1/3)
    let v = (sum - 2) * 1.7320508 * 0.02;
    if (norm) v = 1 + v * 5;
    else if ((x & 4095) === 0) v *= 20;
    f32[0] = v;
    out[i] = bits[0]! >>> 16; // truncation: any bf16 value is as good a generated weight as another
  }
  state.x = x;
}

function writeSafetensors(path: string, tensors: TensorSpec[], seed: number): void {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt', generator: 'quantlens bench/generateLlama.ts' } };
  let offset = 0;
  for (const t of tensors) {
    const bytes = countValues(t.shape) * 2;
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, prefix);
    writeSync(fd, Buffer.from(json, 'utf8'));
    const chunk = new Uint16Array(CHUNK_VALUES);
    const state = { x: seed >>> 0 || 1 };
    for (const t of tensors) {
      let left = countValues(t.shape);
      while (left > 0) {
        const n = Math.min(left, CHUNK_VALUES);
        fillBf16(chunk, n, state, t.norm);
        writeSync(fd, new Uint8Array(chunk.buffer, 0, n * 2));
        left -= n;
      }
    }
  } finally {
    closeSync(fd);
  }
}

function configJson(s: GeneratedLlamaShape): Record<string, unknown> {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
    hidden_size: s.hidden,
    intermediate_size: s.ffn,
    num_attention_heads: s.heads,
    num_key_value_heads: s.kvHeads,
    head_dim: s.hidden / s.heads,
    num_hidden_layers: s.layers,
    vocab_size: s.vocab,
    max_position_embeddings: 4096,
    rms_norm_eps: 1e-5,
    rope_theta: 10000.0,
    hidden_act: 'silu',
    bos_token_id: 0,
    eos_token_id: 1,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
  };
}

/**
 * Writes (or reuses) the generated model under `folder`: `<folder>/hf/` and the GGUFs in `ggufs`
 * (`<folder>/model-f32.gguf`, `<folder>/model-bf16.gguf`). A GGUF missing beside a complete HF folder is
 * converted from it (the folder is not generated again). `tokenizerFolder` holds tokenizer.json and
 * tokenizer_config.json to copy (the micro-llama fixture).
 */
export async function generateLlama(
  folder: string,
  shape: GeneratedLlamaShape,
  tokenizerFolder: string,
  log: (line: string) => void = () => {},
  ggufs: ReadonlyArray<'F32' | 'BF16'> = ['F32'],
): Promise<GeneratedLlama> {
  const tensors = llamaTensors(shape);
  const parameters = tensors.reduce((a, t) => a + countValues(t.shape), 0);
  const hfFolder = join(folder, 'hf');
  const bf16Gguf = join(folder, 'model-bf16.gguf');
  const f32Gguf = join(folder, 'model-f32.gguf');
  const marker = join(folder, 'complete.json');
  let written = false;
  const folderComplete = existsSync(marker) && JSON.stringify(JSON.parse(readFileSync(marker, 'utf8')) as unknown) === JSON.stringify(shape);
  if (!folderComplete) {
    rmSync(folder, { recursive: true, force: true });
    mkdirSync(hfFolder, { recursive: true });
    log(`generating ${shape.layers} layers, ${(parameters / 1e6).toFixed(0)} M parameters, ${(parameters * 2 / 2 ** 30).toFixed(2)} GiB BF16 into ${folder}`);
    writeFileSync(join(hfFolder, 'config.json'), JSON.stringify(configJson(shape), null, 2));
    for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerFolder, f), join(hfFolder, f));
    writeSafetensors(join(hfFolder, 'model.safetensors'), tensors, shape.seed);
    writeFileSync(marker, JSON.stringify(shape));
    written = true;
  }
  // exportGguf writes to a temporary file and renames it at the end: an existing GGUF is a complete one
  const convert = async (target: 'BF16' | 'F32', path: string): Promise<void> => {
    if (existsSync(path)) return;
    log(`writing the ${target} GGUF with exportGguf (our converter)`);
    const checkpoint = await openCheckpoint(hfFolder);
    try {
      await exportGguf(checkpoint, { target, outputPath: path, modelName: 'Bench Llama' });
    } finally {
      await checkpoint.close();
    }
    written = true;
  };
  if (ggufs.includes('F32')) await convert('F32', f32Gguf);
  if (ggufs.includes('BF16')) await convert('BF16', bf16Gguf);
  return {
    shape,
    hfFolder,
    f32Gguf,
    bf16Gguf,
    parameters,
    bf16Bytes: parameters * 2,
    largestTensorValues: shape.vocab * shape.hidden,
    written,
  };
}
