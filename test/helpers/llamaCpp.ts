/**
 * llama.cpp itself (node-llama-cpp's prebuilt CPU build) as a reference runtime for our GGUF files: each window is
 * evaluated in a fresh context from position 0 (context twice the window, so llama.cpp never shifts it), with
 * F32 K/V caches, no flash attention and one thread, so that both sides compute in f32.
 */
import assert from 'node:assert/strict';
import type { ControlledEvaluateInputItem, Token } from 'node-llama-cpp';

export interface LlamaCppWindow {
  /** Dense logits [rows, vocab]: rows = ids.length - 1 (each predicts the next id), or ids.length with allRows. */
  logits: Float32Array;
  /** Summed next-token loss over the window's ids.length - 1 predictions. */
  nll: number;
}

export type LlamaCppRun = (ids: readonly number[], options?: { allRows?: boolean }) => Promise<LlamaCppWindow>;

export async function withLlamaCppModel<T>(modelPath: string, fn: (run: LlamaCppRun) => Promise<T>): Promise<T> {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  try {
    const model = await llama.loadModel({ modelPath });
    try {
      const run: LlamaCppRun = async (ids, options = {}) => {
        const n = ids.length;
        const rows = options.allRows === true ? n : n - 1;
        const context = await model.createContext({
          contextSize: 2 * n,
          batchSize: n,
          threads: 1,
          flashAttention: false,
          experimentalKvCacheKeyType: 'F32',
          experimentalKvCacheValueType: 'F32',
        });
        try {
          const input: ControlledEvaluateInputItem[] = ids.map((id, i) => (i < rows ? [id as Token, { generateNext: { logits: true, totalLogitWeight: true } }] : (id as Token)));
          const results = await context.getSequence().controlledEvaluate(input);
          const width = results[0]?.next?.logits?.size ?? 0;
          const logits = new Float32Array(rows * width).fill(Number.NaN);
          let nll = 0;
          for (let i = 0; i < rows; i++) {
            const next = results[i]?.next;
            assert.ok(next?.logits !== undefined && next.totalLogitWeight !== undefined, `llama.cpp gave no logits at position ${i}`);
            assert.equal(next.logits.size, width, `llama.cpp gave ${next.logits.size} logits at position ${i}, not the whole vocabulary`);
            for (const [token, value] of next.logits) logits[i * width + Number(token)] = value;
            if (i + 1 < n) {
              // The logits map is sorted by value: its first entry is the maximum.
              const maxLogit = next.logits.values().next().value as number;
              const target = next.logits.get(ids[i + 1]! as Token);
              assert.ok(target !== undefined);
              nll += Math.log(next.totalLogitWeight) + maxLogit - target;
            }
          }
          return { logits, nll };
        } finally {
          await context.dispose();
        }
      };
      return await fn(run);
    } finally {
      await model.dispose();
    }
  } finally {
    await llama.dispose();
  }
}
