import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { LlamaModel } from '../../src/core/model/forward';
import { perplexity } from '../../src/core/model/perplexity';
import { loadTokenizer, textWindows } from '../../src/core/methods/compare';
import { evaluationOptions, quantizeWithMethod } from '../../src/core/methods/quantizeWithMethod';
import { sharedFile, tinyLlamaDir } from '../helpers/paths';

const calibText = sharedFile('data/calib.txt');
const evalText = sharedFile('data/eval.txt');
const skip = tinyLlamaDir.skip || calibText.skip || evalText.skip;

// A small run (2 calibration windows, 2 evaluation windows of 256 tokens) that still separates the
// methods on tiny-llama's outlier channels; the full figures are in src/core/methods/README.md.
test('tiny-llama: LLM.int8() finds the emergent outlier dims; SmoothQuant W8A8 is no worse than plain W8A8', { skip }, async () => {
  const checkpoint = await openCheckpoint(tinyLlamaDir.path);
  try {
    const model = LlamaModel.fromCheckpoint(checkpoint);
    const tokenizer = await loadTokenizer(checkpoint);
    const calib = textWindows(tokenizer.encode(readFileSync(calibText.path, 'utf8').slice(0, 40000)), 256, 2, 'calibration');
    const evalWindows = textWindows(tokenizer.encode(readFileSync(evalText.path, 'utf8').slice(0, 40000)), 256, 2, 'evaluation');

    const int8 = await quantizeWithMethod(model, calib, 'llm-int8', { bits: 8, groupSize: -1, threshold: 6 });
    const attnIn = int8.reports.filter((r) => r.site === 'attn_in').map((r) => r.llmInt8![0]!);
    const withOutliers = attnIn.filter((r) => r.outlierDims.length > 0);
    assert.ok(withOutliers.length >= 2, `outlier dims per layer at the q/k/v input: ${attnIn.map((r) => r.outlierDims.length).join(', ')}`);
    for (const r of withOutliers) assert.ok(r.relError.decomposed < r.relError.plainInt8, `${r.name}: ${JSON.stringify(r.relError)}`);

    const plain = await quantizeWithMethod(model, calib, 'rtn-a8', { bits: 8, groupSize: -1 });
    const smooth = await quantizeWithMethod(model, calib, 'smoothquant', { bits: 8, groupSize: -1, alpha: 0.5 });
    const pPlain = (await perplexity(model, evalWindows, evaluationOptions(plain))).perplexity;
    const pSmooth = (await perplexity(model, evalWindows, evaluationOptions(smooth))).perplexity;
    console.log(JSON.stringify({ outlierDims: attnIn.map((r) => r.outlierDims), plainW8A8: pPlain, smoothW8A8: pSmooth }));
    // On 64 windows SmoothQuant is ahead by 0.1 % (53.80 vs 53.86, src/core/methods/README.md); on 2 windows that
    // difference is below the noise (kernel-level f32 changes moved plain W8A8 by 0.6 % here), so this checks
    // "not worse beyond noise". A wrong fold (norm not divided, scales inverted) costs far more than 1 %.
    assert.ok(pSmooth <= pPlain * 1.01, `SmoothQuant W8A8 ${pSmooth} vs plain W8A8 ${pPlain}`);
  } finally {
    await checkpoint.close();
  }
});
