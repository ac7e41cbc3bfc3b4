/**
 * Hugging Face `config.json`: read through a ByteSource with a size limit, validated as a JSON object,
 * and the LLaMA-family fields summarised with their types checked.
 */
import { FormatError } from '../errors';
import { readBytes, type ByteSource } from '../io/byteSource';

/** config.json files are a few kB; anything this large is not one. */
export const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

export async function readJsonObject(source: ByteSource, limit: number): Promise<Record<string, unknown>> {
  if (source.size > limit) throw new FormatError(source.name, `${source.size} bytes is above the limit of ${limit} for this JSON file`);
  const bytes = await readBytes(source, 0, source.size);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(source.name, 'not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new FormatError(source.name, `not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new FormatError(source.name, 'the JSON is not an object');
  return parsed as Record<string, unknown>;
}

export async function readHfConfig(source: ByteSource): Promise<Record<string, unknown>> {
  return readJsonObject(source, MAX_CONFIG_BYTES);
}

/** The fields a LLaMA-family runtime needs; null where the config does not say (or says it with the wrong type). */
export interface HfModelSummary {
  architectures: string[];
  modelType: string | null;
  hiddenSize: number | null;
  numLayers: number | null;
  numHeads: number | null;
  numKvHeads: number | null;
  headDim: number | null;
  intermediateSize: number | null;
  vocabSize: number | null;
  maxPositionEmbeddings: number | null;
  rmsNormEps: number | null;
  /** Top-level `rope_theta` (older files) or `rope_parameters.rope_theta` (newer). */
  ropeTheta: number | null;
  tieWordEmbeddings: boolean | null;
  torchDtype: string | null;
}

function num(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function summarizeHfConfig(config: Record<string, unknown>): HfModelSummary {
  const archs = Array.isArray(config.architectures) ? config.architectures.filter((a): a is string => typeof a === 'string') : [];
  const ropeParameters = config.rope_parameters;
  const nestedTheta =
    typeof ropeParameters === 'object' && ropeParameters !== null && !Array.isArray(ropeParameters)
      ? num((ropeParameters as Record<string, unknown>).rope_theta)
      : null;
  const hiddenSize = num(config.hidden_size);
  const numHeads = num(config.num_attention_heads);
  const headDim = num(config.head_dim) ?? (hiddenSize !== null && numHeads !== null && numHeads > 0 ? hiddenSize / numHeads : null);
  const dtype = config.torch_dtype ?? config.dtype;
  return {
    architectures: archs,
    modelType: typeof config.model_type === 'string' ? config.model_type : null,
    hiddenSize,
    numLayers: num(config.num_hidden_layers),
    numHeads,
    numKvHeads: num(config.num_key_value_heads) ?? numHeads,
    headDim,
    intermediateSize: num(config.intermediate_size),
    vocabSize: num(config.vocab_size),
    maxPositionEmbeddings: num(config.max_position_embeddings),
    rmsNormEps: num(config.rms_norm_eps),
    ropeTheta: num(config.rope_theta) ?? nestedTheta,
    tieWordEmbeddings: typeof config.tie_word_embeddings === 'boolean' ? config.tie_word_embeddings : null,
    torchDtype: typeof dtype === 'string' ? dtype : null,
  };
}
