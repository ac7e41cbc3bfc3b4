/** llama-quantize oracles (test/fixtures/oracles/*.json): their shape, and the tensors of a GGUF that differ from one. */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { readGgufHeader } from '../../src/core/formats/gguf/reader';
import { withFileSource } from '../../src/core/io/byteSource';

/** One llama-quantize output: the whole file's size and hash, and each tensor's type and data hash. */
export interface OracleOutput {
  fileBytes: number;
  fileSha256: string;
  tensors: Record<string, { type: string; sha256: string }>;
}

/** An oracle file: the input's hash and size, and llama-quantize's outputs by name. */
export interface Oracle<Output extends OracleOutput = OracleOutput> {
  inputSha256: string;
  inputBytes: number;
  outputs: Record<string, Output>;
}

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Tensors of the GGUF at `path` whose type or bytes differ from the oracle's, for a useful failure message. */
export async function differingTensors(path: string, expected: OracleOutput): Promise<string[]> {
  const bytes = new Uint8Array(await readFile(path));
  const header = await withFileSource(path, (s) => readGgufHeader(s));
  const out: string[] = [];
  for (const t of header.tensors) {
    const want = expected.tensors[t.name];
    const got = sha256(bytes.subarray(header.dataStart + t.offset, header.dataStart + t.offset + t.nbytes));
    if (want === undefined || want.type !== t.type.name || want.sha256 !== got) out.push(`${t.name} (${t.type.name}, expected ${want?.type ?? 'absent'})`);
  }
  return out;
}
