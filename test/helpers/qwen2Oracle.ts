/** The tiny Qwen2 fixture and its PyTorch reference (test/fixtures/README.md says how both were made). */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fixturesDir } from './paths';

export const qwen2TinyDir = join(fixturesDir, 'qwen2-tiny');

export interface Qwen2Oracle {
  ppl_fp32: number;
  ctx: number;
  windows: number;
  probe_ids: number[];
  probe_last_logits: number[];
  probe_first8_logits: number[][];
  probe_argmax: number[];
}

export const qwen2Oracle = JSON.parse(readFileSync(join(fixturesDir, 'qwen2-tiny-oracle.json'), 'utf8')) as Qwen2Oracle;
