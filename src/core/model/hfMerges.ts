import { FormatError } from '../errors';

/**
 * The `model.merges` of a Hugging Face tokenizer.json BPE model, in rank order: each entry either the
 * older "a b" string (split at the first space after the first character, so a merge of " " works) or the
 * newer ["a", "b"] pair.
 */
export function parseHfMerges(merges: unknown, file: string): Array<[string, string]> {
  if (!Array.isArray(merges)) throw new FormatError(file, "field 'model.merges' must be an array");
  return (merges as unknown[]).map((m, i): [string, string] => {
    if (typeof m === 'string') {
      const at = m.indexOf(' ', 1);
      if (at < 0) throw new FormatError(file, `merge ${i} ${JSON.stringify(m)} has no separator`);
      return [m.slice(0, at), m.slice(at + 1)];
    }
    if (Array.isArray(m) && m.length === 2 && typeof m[0] === 'string' && typeof m[1] === 'string') return [m[0], m[1]];
    throw new FormatError(file, `merge ${i} is neither "a b" nor ["a", "b"]`);
  });
}
