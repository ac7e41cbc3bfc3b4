/**
 * `model.safetensors.index.json`: `{"metadata": {...}, "weight_map": {tensor: shard file}}`.
 * Shard names must be plain file names in the index's folder (no paths: an index cannot point elsewhere).
 */
import { FormatError } from '../../errors';
import type { ByteSource } from '../../io/byteSource';
import { readJsonObject } from '../hfConfig';

/** Index files list one line per tensor: tens of kB for real models. */
export const MAX_INDEX_BYTES = 64 * 1024 * 1024;
export const SHARD_INDEX_NAME = 'model.safetensors.index.json';

export interface ShardIndex {
  metadata: Record<string, unknown>;
  /** tensor name -> shard file name, in index order. */
  weightMap: Map<string, string>;
  /** Distinct shard file names, in first-mention order. */
  shards: string[];
}

export async function readShardIndex(source: ByteSource): Promise<ShardIndex> {
  const file = source.name;
  const json = await readJsonObject(source, MAX_INDEX_BYTES);
  const rawMetadata = json.metadata ?? {};
  if (typeof rawMetadata !== 'object' || rawMetadata === null || Array.isArray(rawMetadata)) {
    throw new FormatError(file, '"metadata" is not an object', 'index');
  }
  const rawMap = json.weight_map;
  if (typeof rawMap !== 'object' || rawMap === null || Array.isArray(rawMap)) {
    throw new FormatError(file, 'missing or non-object "weight_map"', 'index');
  }
  const weightMap = new Map<string, string>();
  const shards: string[] = [];
  for (const [tensor, shard] of Object.entries(rawMap as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard.length === 0) throw new FormatError(file, 'shard name is not a non-empty string', `weight_map['${tensor}']`);
    if (shard.includes('/') || shard.includes('\\') || shard === '.' || shard === '..' || shard.includes('\0')) {
      throw new FormatError(file, `shard name '${shard}' must be a file name in the index's folder, not a path`, `weight_map['${tensor}']`);
    }
    weightMap.set(tensor, shard);
    if (!shards.includes(shard)) shards.push(shard);
  }
  return { metadata: rawMetadata as Record<string, unknown>, weightMap, shards };
}
