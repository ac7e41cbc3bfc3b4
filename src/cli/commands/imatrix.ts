/**
 * `quantlens imatrix <model> --calib <file> -o <out.gguf|out.dat>`: llama.cpp's importance matrix computed
 * by our runtime (core/methods/imatrix.ts computeImatrix), written as llama-imatrix writes it: the GGUF
 * imatrix format, or the legacy .dat format by extension; atomically (temp file, fsync, rename).
 */
import { basename, extname } from 'node:path';
import { InvalidArgumentError } from '../../core/errors';
import { writeFileAtomic, assertNotSamePath } from '../../core/io/atomicWrite';
import { readTextFile } from '../../core/model/calibration';
import { loadModel } from '../../core/model/loadModel';
import { makeWindows } from '../../core/model/perplexity';
import { computeImatrix, encodeImatrixGguf, encodeImatrixLegacy } from '../../core/methods/imatrix';
import type { CliIo } from '../cliTypes';
import { cancellableCommand, parseModelTextArgs } from '../modelCommand';

const DEFAULT_CTX = 512;

const HELP = `usage: quantlens imatrix <model> --calib <file> -o <out.gguf|out.dat> [--ctx N] [--chunks N] [--json]

Computes llama.cpp's importance matrix with our forward pass, as llama-imatrix does: the calibration text
is tokenized once and cut into chunks of --ctx consecutive tokens (the tail that does not fill a chunk is
left out); each chunk runs through the model on its own. Accumulated, for every linear weight of every
layer (blk.N.attn_q / attn_k / attn_v / attn_output / ffn_gate / ffn_up / ffn_down, by GGUF name; not the
output head or the embedding): the sum over all tokens of all chunks of x_j^2 for each input column j of
that layer (the RMS-normed hidden state for q/k/v and gate/up, the attention output for attn_output, the
SwiGLU activation for ffn_down), and the number of tokens. llama-quantize divides the sums by the count and
uses them as the quantizers' importance weights (quantlens quantize --imatrix does the same).

options:
  --calib <file>     UTF-8 calibration text (required); its path is stored as the imatrix's dataset
  -o, --output <f>   where to write: .gguf = the GGUF imatrix format (imatrix.datasets, chunk_count,
                     chunk_size; <name>.in_sum2 and <name>.counts per entry), .dat = the legacy format
  --ctx <n>          tokens per chunk (default ${DEFAULT_CTX}, at most the model's max_position_embeddings)
  --chunks <n>       use the first n chunks (default: every whole chunk of the text)
  --json             print a JSON summary on stdout
  --help             this text`;

function positiveInteger(flag: string, text: string | undefined, min: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new InvalidArgumentError(`${flag} ${text}: give an integer >= ${min}`);
  return n;
}

export async function runImatrix(args: string[], io: CliIo, signal?: AbortSignal): Promise<number> {
  // -o is not a parseArgs long option: map it to --output first
  const normalized = args.map((a) => (a === '-o' ? '--output' : a));
  const parsed = parseModelTextArgs(
    normalized,
    { calib: { type: 'string' }, output: { type: 'string' }, ctx: { type: 'string' }, chunks: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' } },
    'calib',
    HELP,
    io,
  );
  if (parsed === null) return 0;
  const { modelPath, textPath, values } = parsed;
  const output = values.output;
  if (output === undefined) throw new InvalidArgumentError('-o <out.gguf|out.dat> is required');
  const ext = extname(output).toLowerCase();
  if (ext !== '.gguf' && ext !== '.dat') throw new InvalidArgumentError(`${output}: the output must end in .gguf (GGUF imatrix) or .dat (legacy format)`);
  const ctxOption = positiveInteger('--ctx', values.ctx, 2);
  const chunksOption = positiveInteger('--chunks', values.chunks, 1);
  await assertNotSamePath([textPath], output);
  const text = await readTextFile(textPath);
  const loaded = await loadModel(modelPath);
  try {
    await assertNotSamePath(loaded.checkpoint.files, output);
    const maxPositions = loaded.model.config.maxPositionEmbeddings;
    const ctx = ctxOption ?? Math.min(DEFAULT_CTX, maxPositions);
    if (ctx > maxPositions) throw new InvalidArgumentError(`--ctx ${ctx} is longer than the model's max_position_embeddings (${maxPositions})`);
    const ids = loaded.tokenizer.encode(text);
    const available = Math.floor(ids.length / ctx);
    if (available < 1) throw new InvalidArgumentError(`${textPath}: ${ids.length} tokens do not fill one chunk of ${ctx} (give more text or a smaller --ctx)`);
    if (chunksOption !== undefined && chunksOption > available) {
      throw new InvalidArgumentError(`${textPath}: ${ids.length} tokens hold ${available} chunks of ${ctx}, --chunks asks for ${chunksOption}`);
    }
    const chunks = chunksOption ?? available;
    const started = Date.now();
    const imatrix = await computeImatrix(loaded.model, makeWindows(ids, ctx, chunks), textPath, {
      signal,
      onChunk: values.json === true ? undefined : (done, total) => io.err(`chunk ${done}/${total}`),
    });
    const bytes = ext === '.dat' ? encodeImatrixLegacy(imatrix) : encodeImatrixGguf(imatrix);
    await writeFileAtomic(output, bytes);
    const seconds = (Date.now() - started) / 1000;
    const summary = { output, format: ext === '.dat' ? 'legacy' : 'gguf', entries: imatrix.entries.size, chunks, chunkSize: ctx, tokens: chunks * ctx, dataset: textPath, bytes: bytes.byteLength, seconds };
    if (values.json === true) io.out(JSON.stringify(summary, null, 1));
    else io.out(`wrote ${output} (${summary.format}, ${summary.entries} entries): ${chunks} chunks of ${ctx} tokens of ${basename(textPath)} in ${seconds.toFixed(1)} s`);
    return 0;
  } finally {
    await loaded.close();
  }
}

export const command = cancellableCommand(runImatrix);
