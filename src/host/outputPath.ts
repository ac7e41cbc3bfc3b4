import { basename, dirname, extname, join, resolve } from 'node:path';
import { outputExtension, targetSuffix, type TargetInfo } from './targets';

/** Name of a checkpoint without its extension; a HF folder or index file gives the folder's name. */
export function checkpointStem(inputPath: string): string {
  const name = basename(inputPath);
  if (name === 'model.safetensors.index.json' || name === 'model.safetensors') return basename(dirname(inputPath));
  const ext = extname(name);
  return ext === '.safetensors' || ext === '.gguf' ? name.slice(0, -ext.length) : name;
}

/**
 * Default output: `<folder from the pattern>/<stem>-[<method>-]<target>.<ext>`, next to the input by default.
 * Pattern variables: ${inputDir}, ${workspaceFolder}, ${inputName}.
 */
export function defaultOutputPath(
  inputPath: string,
  inputIsFolder: boolean,
  target: TargetInfo,
  groupSize: number | undefined,
  pattern: string,
  workspaceFolder: string | undefined,
  /** A calibrated method goes in the name too: `<stem>-gptq-int4-g128`. */
  methodId?: string,
): string {
  const inputDir = inputIsFolder ? dirname(resolve(inputPath)) : dirname(resolve(inputPath));
  const stem = inputIsFolder ? basename(resolve(inputPath)) : checkpointStem(inputPath);
  const folder = pattern
    .replaceAll('${inputDir}', inputDir)
    .replaceAll('${workspaceFolder}', workspaceFolder ?? inputDir)
    .replaceAll('${inputName}', stem);
  return join(resolve(inputDir, folder), `${stem}-${methodId === undefined ? '' : `${methodId}-`}${targetSuffix(target, groupSize)}${outputExtension(target)}`);
}
