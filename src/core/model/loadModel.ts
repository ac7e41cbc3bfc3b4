/**
 * Opens a checkpoint for running: the LlamaModel over it and the tokenizer that goes with it
 * (tokenizer.json beside safetensors weights, or the GGUF's own tokenizer.ggml.* keys).
 */
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FormatError, IoError } from '../errors';
import type { Checkpoint } from '../formats/checkpoint';
import { openCheckpoint } from '../formats/openCheckpoint';
import { LlamaModel } from './forward';
import { tokenizerFromGgufMetadata, tokenizerFromHfJson, type BpeTokenizer } from './tokenizer';

export interface LoadedModel {
  checkpoint: Checkpoint;
  model: LlamaModel;
  tokenizer: BpeTokenizer;
  close(): Promise<void>;
}

/** The tokenizer of a checkpoint. Reads tokenizer.json (a small JSON file, never model weights). */
export async function loadTokenizer(checkpoint: Checkpoint, model: LlamaModel): Promise<BpeTokenizer> {
  if (checkpoint.format === 'gguf') return tokenizerFromGgufMetadata(checkpoint.metadata, checkpoint.path);
  const candidates = [join(checkpoint.path, 'tokenizer.json'), ...checkpoint.files.map((f) => join(dirname(f), 'tokenizer.json'))];
  const path = candidates.find((p) => existsSync(p));
  if (path === undefined) throw new FormatError(checkpoint.path, 'no tokenizer.json next to the weights');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    if (e instanceof SyntaxError) throw new FormatError(path, `not valid JSON (${e.message})`);
    throw new IoError(`${path}: cannot read`, e);
  }
  return tokenizerFromHfJson(raw, path, { bosTokenId: model.config.bosTokenId, eosTokenId: model.config.eosTokenId });
}

/** Opens `path` (HF folder, .safetensors, index.json or .gguf) ready to run. Close it when done. */
export async function loadModel(path: string): Promise<LoadedModel> {
  const checkpoint = await openCheckpoint(path);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint, model);
    return { checkpoint, model, tokenizer, close: () => checkpoint.close() };
  } catch (e) {
    await checkpoint.close();
    throw e;
  }
}
