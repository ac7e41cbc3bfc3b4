/**
 * `quantlens inspect <path> [--json]`: tensors, metadata, config and totals of a checkpoint, from its
 * headers only (milliseconds, whatever the size). Long metadata arrays (tokenizer vocabularies) are
 * summarised, never dumped.
 */
import { basename } from 'node:path';
import { InvalidArgumentError } from '../../core/errors';
import type { Checkpoint, MetadataValue } from '../../core/formats/checkpoint';
import type { GgufValue } from '../../core/formats/gguf/reader';
import { summarizeHfConfig } from '../../core/formats/hfConfig';
import { openCheckpoint } from '../../core/formats/openCheckpoint';
import { summarizeTensors, type CheckpointTotals, type TotalsBucket } from '../../core/formats/tensorRoles';
import { formatBytes } from '../../core/util/format';
import type { CliCommand, CliIo } from '../cliTypes';

/** Arrays longer than this are summarised as {type, elementType, length, head}. */
export const SUMMARY_ARRAY_LIMIT = 16;
/** Elements kept in a summary's `head`. */
export const SUMMARY_HEAD = 8;
/** Strings longer than this are cut in the human table (JSON keeps them whole). */
const TABLE_STRING_LIMIT = 80;

const HELP = `usage: quantlens inspect <path> [--json]

Lists every tensor (name, dtype, shape, size, byte range), the file metadata (long arrays summarised),
the Hugging Face config.json when present, and parameter/byte totals by dtype, layer and tensor role.
<path> is a .safetensors file, a model.safetensors.index.json, a Hugging Face folder, or a .gguf file.
Only headers are read.

options:
  --json     print one JSON object on stdout instead of the table
  --help     this text`;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

export interface ArraySummary {
  type: 'array';
  elementType: string;
  length: number;
  head: JsonValue[];
}

/** bigint as a number when it is exactly representable, else as a decimal string. */
export function bigintToJson(v: bigint): number | string {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
}

function scalarToJson(v: MetadataValue): JsonValue {
  if (typeof v === 'bigint') return bigintToJson(v);
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (Array.isArray(v)) return v.map(scalarToJson);
  return v;
}

function elementTypeOf(values: readonly MetadataValue[]): string {
  const kinds = new Set(values.map((v) => (Array.isArray(v) ? 'array' : typeof v)));
  return kinds.size === 1 ? ([...kinds][0] ?? 'unknown') : kinds.size === 0 ? 'unknown' : 'mixed';
}

/** A metadata value for JSON: long arrays summarised; `gguf` (when known) gives the exact element type. */
export function metadataToJson(value: MetadataValue, gguf?: GgufValue): JsonValue | ArraySummary {
  if (!Array.isArray(value)) return scalarToJson(value);
  if (value.length <= SUMMARY_ARRAY_LIMIT) return value.map(scalarToJson);
  const elementType = gguf !== undefined && gguf.type === 'ARRAY' ? gguf.elementType.toLowerCase() : elementTypeOf(value);
  return { type: 'array', elementType, length: value.length, head: value.slice(0, SUMMARY_HEAD).map(scalarToJson) };
}

export interface InspectReport {
  format: 'safetensors' | 'gguf';
  files: string[];
  metadata: Record<string, JsonValue | ArraySummary>;
  config: Record<string, unknown> | null;
  tensors: Array<{ name: string; dtype: string; shape: number[]; nbytes: number; file: string; offset: number }>;
  totals: CheckpointTotals;
  /** GGUF only: header facts and each key's GGUF value type (`UINT32`, `ARRAY<STRING>`, ...). */
  gguf?: { version: number; alignment: number; dataStart: number; types: Record<string, string> };
}

function ggufTypeName(v: GgufValue): string {
  if (v.type !== 'ARRAY') return v.type;
  if (v.elementType !== 'ARRAY') return `ARRAY<${v.elementType}>`;
  const inner = v.values[0];
  return `ARRAY<${inner !== undefined ? ggufTypeName(inner) : 'ARRAY'}>`;
}

/** The shortest decimal that reads back as the same f32 (GGUF FLOAT32 values: 1e-05, not 0.000009999999747378752). */
export function shortestF32(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  for (let digits = 1; digits <= 9; digits++) {
    const s = Number(v.toPrecision(digits));
    if (Math.fround(s) === v) return String(s);
  }
  return String(v);
}

export function buildInspectReport(checkpoint: Checkpoint): InspectReport {
  const metadata: Record<string, JsonValue | ArraySummary> = {};
  for (const [k, v] of Object.entries(checkpoint.metadata)) metadata[k] = metadataToJson(v, checkpoint.gguf?.kv.get(k));
  const report: InspectReport = {
    format: checkpoint.format,
    files: checkpoint.files,
    metadata,
    config: checkpoint.config,
    tensors: checkpoint.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, nbytes: t.nbytes, file: t.file, offset: t.offset })),
    totals: summarizeTensors(checkpoint.tensors),
  };
  if (checkpoint.gguf !== undefined) {
    const types: Record<string, string> = {};
    for (const [k, v] of checkpoint.gguf.kv) types[k] = ggufTypeName(v);
    report.gguf = { version: checkpoint.gguf.version, alignment: checkpoint.gguf.alignment, dataStart: checkpoint.gguf.dataStart, types };
  }
  return report;
}

function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

function cut(s: string, limit = TABLE_STRING_LIMIT): string {
  const oneLine = s.replace(/\n/g, '\\n');
  return oneLine.length > limit ? `${oneLine.slice(0, limit - 1)}…` : oneLine;
}

function describeMetadata(value: JsonValue | ArraySummary, ggufType: string | undefined): string {
  if (ggufType === 'FLOAT32' && typeof value === 'number') return shortestF32(value);
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && value.type === 'array' && 'length' in value) {
    const s = value as ArraySummary;
    return cut(`[${s.elementType} × ${formatCount(s.length)}] ${s.head.map((h) => JSON.stringify(h)).join(', ')}, …`);
  }
  return cut(typeof value === 'string' ? value : JSON.stringify(value));
}

function table(rows: string[][], rightAligned: ReadonlySet<number> = new Set()): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) =>
    r
      .map((c, i) => (rightAligned.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  );
}

function bucketRows(title: string, buckets: Record<string, TotalsBucket>, totalParameters: number): string[] {
  const rows = [[title, 'tensors', 'parameters', 'share', 'bytes']];
  for (const [k, b] of Object.entries(buckets)) {
    const share = totalParameters > 0 ? `${((100 * b.parameters) / totalParameters).toFixed(1)}%` : '-';
    rows.push([k, String(b.tensors), formatCount(b.parameters), share, formatBytes(b.bytes)]);
  }
  return table(rows, new Set([1, 2, 3, 4])).map((l) => `  ${l}`);
}

export function renderInspectReport(report: InspectReport): string[] {
  const out: string[] = [];
  const formatLine = report.gguf ? `gguf (v${report.gguf.version}, alignment ${report.gguf.alignment}, data at byte ${report.gguf.dataStart})` : report.format;
  out.push(`format    ${formatLine}`);
  out.push(`files     ${report.files.join(', ')}`);
  if (report.config !== null) {
    const c = summarizeHfConfig(report.config);
    const parts = [
      c.architectures.join(',') || c.modelType || 'unknown architecture',
      c.hiddenSize !== null ? `hidden ${c.hiddenSize}` : null,
      c.numLayers !== null ? `layers ${c.numLayers}` : null,
      c.numHeads !== null ? `heads ${c.numHeads}/${c.numKvHeads ?? c.numHeads} kv` : null,
      c.headDim !== null ? `head_dim ${c.headDim}` : null,
      c.intermediateSize !== null ? `ffn ${c.intermediateSize}` : null,
      c.vocabSize !== null ? `vocab ${c.vocabSize}` : null,
      c.ropeTheta !== null ? `rope_theta ${c.ropeTheta}` : null,
      c.rmsNormEps !== null ? `rms_eps ${c.rmsNormEps}` : null,
      c.torchDtype !== null ? `dtype ${c.torchDtype}` : null,
    ].filter((p): p is string => p !== null);
    out.push(`config    ${parts.join(', ')}`);
  } else {
    out.push('config    (none)');
  }
  const metaKeys = Object.keys(report.metadata);
  out.push('', `metadata (${metaKeys.length} ${metaKeys.length === 1 ? 'key' : 'keys'})`);
  const metaRows = metaKeys.map((k) => [k, describeMetadata(report.metadata[k] ?? null, report.gguf?.types[k])]);
  out.push(...table(metaRows).map((l) => `  ${l}`));

  const multiFile = report.files.length > 1;
  out.push('', `tensors (${report.tensors.length})`);
  const rows = [['name', 'dtype', 'shape', 'parameters', 'bytes', 'byte range', ...(multiFile ? ['file'] : [])]];
  for (const t of report.tensors) {
    let n = 1;
    for (const d of t.shape) n *= d;
    rows.push([t.name, t.dtype, `[${t.shape.join(', ')}]`, formatCount(n), formatBytes(t.nbytes), `${t.offset}..${t.offset + t.nbytes}`, ...(multiFile ? [basename(t.file)] : [])]);
  }
  out.push(...table(rows, new Set([3, 4])).map((l) => `  ${l}`));

  const totals = report.totals;
  out.push('', `totals    ${formatCount(totals.parameters)} parameters, ${formatBytes(totals.bytes)} in ${totals.tensors} tensors`);
  out.push('', ...bucketRows('dtype', totals.byDtype, totals.parameters));
  out.push('', ...bucketRows('layer', totals.byLayer, totals.parameters));
  out.push('', ...bucketRows('role', totals.byRole, totals.parameters));
  return out;
}

export function stringifyReport(report: InspectReport): string {
  return JSON.stringify(report, (_key, value: unknown) => (typeof value === 'bigint' ? bigintToJson(value) : value));
}

export const command: CliCommand = {
  async run(args: string[], io: CliIo): Promise<number> {
    if (args.includes('--help') || args.includes('-h')) {
      io.out(HELP);
      return 0;
    }
    const json = args.includes('--json');
    const rest = args.filter((a) => a !== '--json');
    const unknown = rest.filter((a) => a.startsWith('--'));
    if (unknown.length > 0) throw new InvalidArgumentError(`unknown option ${unknown[0]} (see quantlens inspect --help)`);
    if (rest.length !== 1 || rest[0] === undefined) throw new InvalidArgumentError('expected exactly one <path> (see quantlens inspect --help)');
    const checkpoint = await openCheckpoint(rest[0]);
    try {
      const report = buildInspectReport(checkpoint);
      if (json) io.out(stringifyReport(report));
      else for (const line of renderInspectReport(report)) io.out(line);
    } finally {
      await checkpoint.close();
    }
    return 0;
  },
};
