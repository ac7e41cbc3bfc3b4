/**
 * What the commands that run a model over a text file (analyze, eval) share: `<model> --<text option>
 * <file> [options]` parsing with --help, and Ctrl-C cancelling the run.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { InvalidArgumentError } from '../core/errors';
import type { CliCommand, CliIo } from './cliTypes';

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;

interface ModelTextConfig<O extends ParseArgsOptionsConfig> {
  args: string[];
  allowPositionals: true;
  strict: true;
  options: O;
}

/** The typed option values parseArgs gives for `options`. */
export type ModelTextValues<O extends ParseArgsOptionsConfig> = ReturnType<typeof parseArgs<ModelTextConfig<O>>>['values'];

/**
 * Parses `args` strictly with `options` (which include `help`). Returns null after printing `help`
 * for --help; otherwise the one model path, the value of the required string option `textOption`
 * and all the values.
 */
export function parseModelTextArgs<const O extends ParseArgsOptionsConfig & { help: { type: 'boolean' } }>(
  args: string[],
  options: O,
  textOption: keyof O & string,
  help: string,
  io: CliIo,
): { modelPath: string; textPath: string; values: ModelTextValues<O> } | null {
  const { values, positionals } = parseArgs<ModelTextConfig<O>>({ args, allowPositionals: true, strict: true, options });
  const byName = values as Readonly<Record<string, unknown>>;
  if (byName.help === true) {
    io.out(help);
    return null;
  }
  const modelPath = positionals[0];
  if (modelPath === undefined || positionals.length > 1) throw new InvalidArgumentError(`expected one model path\n${help}`);
  const textPath = byName[textOption];
  if (typeof textPath !== 'string') throw new InvalidArgumentError(`--${textOption} <file> is required`);
  return { modelPath, textPath, values };
}

/** Ctrl-C cancels the pass between windows (CancelledError, exit code 2). */
export function abortOnSigint(): { signal: AbortSignal; dispose(): void } {
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  return { signal: controller.signal, dispose: () => process.off('SIGINT', onSigint) };
}

/** A command whose run is cancelled by Ctrl-C. */
export function cancellableCommand(run: (args: string[], io: CliIo, signal: AbortSignal) => Promise<number>): CliCommand {
  return {
    async run(args, io) {
      const sigint = abortOnSigint();
      try {
        return await run(args, io, sigint.signal);
      } finally {
        sigint.dispose();
      }
    },
  };
}
