/**
 * Opens a checkpoint for running: the LlamaModel over it and the tokenizer that goes with it
 * (tokenizer.model or tokenizer.json beside safetensors weights, or the GGUF's own tokenizer.ggml.* keys).
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FormatError, IoError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { openDequantizedCheckpoint } from '../quant/researchCheckpoint';
import { LlamaModel } from './forward';
import { readSentencePieceModel, SentencePieceTokenizer } from './sentencepiece';
import { tokenizerFromGgufMetadata, tokenizerFromHfJson, type Tokenizer } from './tokenizer';

export interface LoadedModel {
  checkpoint: Checkpoint;
  model: LlamaModel;
  tokenizer: Tokenizer;
  close(): Promise<void>;
}

/**
 * The tokenizer that sits in `folder`: tokenizer.model (SentencePiece) first, as llama.cpp's converter
 * picks it, else tokenizer.json. Null when neither is there. Reads only these small files.
 */
export async function loadFolderTokenizer(folder: string, special: { bosTokenId: number | null; eosTokenId: number | null }): Promise<Tokenizer | null> {
  const spmPath = join(folder, 'tokenizer.model');
  if (existsSync(spmPath)) return new SentencePieceTokenizer(await readSentencePieceModel(spmPath), special);
  const path = join(folder, 'tokenizer.json');
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    if (e instanceof SyntaxError) throw new FormatError(path, `not valid JSON (${e.message})`);
    throw new IoError(`${path}: cannot read`, e);
  }
  return tokenizerFromHfJson(raw, path, special);
}

/** The tokenizer of a checkpoint: the GGUF's tokenizer.ggml.* keys, or the files beside the weights. */
export async function loadTokenizer(checkpoint: Checkpoint, model: LlamaModel): Promise<Tokenizer> {
  if (checkpoint.format === 'gguf') return tokenizerFromGgufMetadata(checkpoint.metadata, checkpoint.path);
  const special = { bosTokenId: model.config.bosTokenId, eosTokenId: model.config.eosTokenId };
  const folders = [checkpoint.path, ...checkpoint.files.map((f) => dirname(f))];
  for (const folder of new Set(folders)) {
    const tokenizer = await loadFolderTokenizer(folder, special);
    if (tokenizer !== null) return tokenizer;
  }
  throw new FormatError(checkpoint.path, 'no tokenizer.model or tokenizer.json next to the weights');
}

/**
 * Opens `path` (HF folder, .safetensors, index.json or .gguf) ready to run. A quantize output in one of our research
 * layouts (GPTQ, INT8, NF4, FP8, LLM.int8()) runs as the weights a loader reconstructs from it. Close it when done.
 */
export async function loadModel(path: string): Promise<LoadedModel> {
  const checkpoint = await openDequantizedCheckpoint(path);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint, model);
    return { checkpoint, model, tokenizer, close: () => checkpoint.close() };
  } catch (e) {
    await checkpoint.close();
    throw e;
  }
}
