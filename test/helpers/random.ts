import { mulberry32 } from '../fixtures/oracles/syntheticValues';

/** Deterministic standard-normal samples: mulberry32 uniforms through Box-Muller. */
export function normalRng(seed: number): () => number {
  const uniform = mulberry32(seed);
  return () => Math.sqrt(-2 * Math.log(uniform() + 1e-12)) * Math.cos(2 * Math.PI * uniform());
}
