/**
 * What the quantize runs of this session did, for views that follow a checkpoint: the last output
 * written from each input (its quant card is `<output>.quant.json`), and events while a run goes on.
 */
import { resolve } from 'node:path';
import * as vscode from 'vscode';
import type { QuantRunEvent } from './liveHeatmap';

export type { QuantRunEvent };

const emitter = new vscode.EventEmitter<QuantRunEvent>();
const lastOutputByInput = new Map<string, string>();

/** Fires for every quantize run (inputs are absolute, resolved paths). */
export const onQuantRun = emitter.event;

export function reportQuantRun(event: QuantRunEvent): void {
  const normalized = { ...event, input: resolve(event.input), output: resolve(event.output) };
  if (normalized.kind === 'finished') lastOutputByInput.set(normalized.input, normalized.output);
  emitter.fire(normalized);
}

/** The output of the last finished quantize of `input` in this session, if any. */
export function lastQuantOutput(input: string): string | undefined {
  return lastOutputByInput.get(resolve(input));
}
