/**
 * test/fixtures/spm-llama (a SentencePiece tokenizer.model, no tokenizer.json) exported to GGUF and read
 * by llama.cpp itself (node-llama-cpp's CPU build): its tokenizer gives sentencepiece's ids, our reader of
 * the GGUF gives the same, and the perplexity of the folder equals that of its F32 export (ours and
 * llama.cpp's).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturesDir } from '../helpers/paths';
import { withLlamaCppModel } from '../helpers/llamaCpp';
import { exportGguf } from '../../src/core/convert/exportGguf';
import { openCheckpoint } from '../../src/core/formats/openCheckpoint';
import { loadModel } from '../../src/core/model/loadModel';
import { makeWindows, perplexity, windowNll } from '../../src/core/model/perplexity';
import { SentencePieceTokenizer } from '../../src/core/model/sentencepiece';

const spmDir = join(fixturesDir, 'spm-llama');
const evalText = readFileSync(join(fixturesDir, 'eval.txt'), 'utf8');
interface Probe {
  text: string;
  sentencepiece: number[];
}
const probes = (JSON.parse(readFileSync(join(fixturesDir, 'spm-llama-oracle.json'), 'utf8')) as { probes: Probe[] }).probes;
const CTX = 64;
const WINDOWS = 2;

let dir = '';
const gguf = { F32: '', Q8_0: '' };

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'quantlens-spm-gguf-'));
  const checkpoint = await openCheckpoint(spmDir);
  try {
    for (const target of ['F32', 'Q8_0'] as const) {
      gguf[target] = join(dir, `spm-llama-${target}.gguf`);
      await exportGguf(checkpoint, { target, outputPath: gguf[target], threads: 1 });
    }
  } finally {
    await checkpoint.close();
  }
});

after(async () => {
  if (dir !== '') await rm(dir, { recursive: true, force: true });
});

test("llama.cpp's tokenizer on our GGUF export (F32 and Q8_0) gives sentencepiece's ids, and so does our reader of the GGUF", async () => {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  try {
    for (const target of ['F32', 'Q8_0'] as const) {
      const theirs = await llama.loadModel({ modelPath: gguf[target] });
      const ours = await loadModel(gguf[target]);
      try {
        assert.ok(ours.tokenizer instanceof SentencePieceTokenizer);
        assert.equal(theirs.tokens.bos, 1);
        assert.equal(theirs.tokens.eos, 2);
        for (const probe of probes) {
          const label = `${target} ${JSON.stringify(probe.text.slice(0, 30))}`;
          // specialTokens false: "<s>" in the text is text, as in sentencepiece.
          const llamaIds = Array.from(theirs.tokenize(probe.text, false), Number);
          assert.deepEqual(llamaIds, probe.sentencepiece, `llama.cpp ${label}`);
          assert.deepEqual(ours.tokenizer.encode(probe.text), probe.sentencepiece, `ours ${label}`);
        }
        // All of eval.txt (the oracle holds its first 4,000 characters): llama.cpp's ids = ours.
        const whole = ours.tokenizer.encode(evalText);
        assert.deepEqual(Array.from(theirs.tokenize(evalText, false), Number), whole, `${target}: eval.txt (${whole.length} tokens)`);
        // With special tokens parsed, llama.cpp reads "<s>" and "</s>" in the text as the control tokens;
        // our encode never does (it tokenizes text as sentencepiece does).
        const special = Array.from(theirs.tokenize('<s> not a special token </s>', true), Number);
        assert.equal(special[0], 1);
        assert.equal(special.at(-1), 2);
      } finally {
        await ours.close();
        await theirs.dispose();
      }
    }
  } finally {
    await llama.dispose();
  }
});

test('perplexity of the spm-llama folder equals that of its F32 GGUF read back by us, and llama.cpp on the same windows within 1e-3', async () => {
  const folder = await loadModel(spmDir);
  const exported = await loadModel(gguf.F32);
  let ourNll: number[] = [];
  let windows: Int32Array[] = [];
  try {
    windows = makeWindows(folder.tokenizer.encode(evalText), CTX, WINDOWS);
    const fromGgufWindows = makeWindows(exported.tokenizer.encode(evalText), CTX, WINDOWS);
    assert.deepEqual(fromGgufWindows, windows);
    const a = await perplexity(folder.model, windows);
    const b = await perplexity(exported.model, windows);
    assert.ok(Number.isFinite(a.perplexity) && a.perplexity > 1);
    assert.ok(Math.abs(a.perplexity / b.perplexity - 1) < 1e-6, `folder ${a.perplexity} vs GGUF F32 ${b.perplexity}`);
    const vocab = exported.model.config.vocabSize;
    ourNll = [];
    await exported.model.run(windows, (w, logits) => ourNll.push(windowNll(logits, CTX, vocab, windows[w]!)));
  } finally {
    await folder.close();
    await exported.close();
  }

  await withLlamaCppModel(gguf.F32, async (run) => {
    for (let w = 0; w < windows.length; w++) {
      const theirs = await run(Array.from(windows[w]!));
      const ourPerplexity = Math.exp(ourNll[w]! / (CTX - 1));
      const theirPerplexity = Math.exp(theirs.nll / (CTX - 1));
      assert.ok(Math.abs(ourPerplexity / theirPerplexity - 1) < 1e-3, `window ${w}: ours ${ourPerplexity} vs llama.cpp ${theirPerplexity}`);
    }
  });
});
