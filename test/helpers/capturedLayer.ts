/**
 * One layer of a real model on real text: its linear weights and the inputs of its linears (per calibration site),
 * from a forward pass over `windows` windows of 256 tokens of `calib`. For tests of GPTQ and its linear algebra on
 * real Hessians rather than synthetic ones.
 */
import { loadTokenizer, readTextFile, textWindows } from '../../src/core/methods/compare';
import { LlamaModel, type LinearRole } from '../../src/core/model/forward';
import { withCheckpoint } from './scoped';

/** A site's input rows: row-major `tokens x cols`, all windows one after another. */
export interface CapturedInput {
  x: Float32Array;
  tokens: number;
  cols: number;
}

export async function capturedLayer(modelDir: string, calib: string, windows: number, layer: number): Promise<{ weights: Record<LinearRole, Float32Array>; inputs: Map<string, CapturedInput>; model: LlamaModel }> {
  return withCheckpoint(modelDir, async (c) => {
    const model = LlamaModel.fromCheckpoint(c);
    const ids = (await loadTokenizer(c)).encode(await readTextFile(calib, 'calibration'));
    const weights = {} as Record<LinearRole, Float32Array>;
    const parts = new Map<string, { rows: Float32Array[]; cols: number }>();
    await model.run(textWindows(ids, 256, windows, 'calibration'), () => undefined, {
      skipLogits: true,
      hooks: {
        onLayerWeights(l, lw) {
          if (l !== layer) return;
          for (const role of Object.keys(lw.linear) as LinearRole[]) weights[role] ??= lw.linear[role].slice();
        },
        onActivation(site, x, rowCount, width) {
          if (site.layer !== layer) return;
          const part = parts.get(site.kind) ?? { rows: [], cols: width };
          part.rows.push(x.slice(0, rowCount * width));
          parts.set(site.kind, part);
        },
      },
    });
    const inputs = new Map<string, CapturedInput>();
    for (const [kind, { rows, cols }] of parts) {
      const x = new Float32Array(rows.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of rows) {
        x.set(p, at);
        at += p.length;
      }
      inputs.set(kind, { x, tokens: x.length / cols, cols });
    }
    return { weights, inputs, model };
  });
}
