/**
 * Seeded fuzzing of both header readers with mutations of REAL headers (micro-llama's safetensors and
 * llama.cpp-written GGUF): bit flips, random bytes, truncation, length fields set huge, inserted and
 * deleted ranges. Every case must end in a parsed header or a QuantLensError subclass: no other
 * exception, no hang (each case is timed), and no read (hence no allocation) larger than the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { isQuantLensError } from '../../src/core/errors';
import { checkRange, MemoryByteSource, type ByteSource } from '../../src/core/io/byteSource';
import { readSafetensorsHeader } from '../../src/core/formats/safetensors/header';
import { readGgufHeader, type GgufValue } from '../../src/core/formats/gguf/reader';
import { encodeGgufHeader, encodeOptionsFromHeader } from '../../src/core/formats/gguf/encodeHeader';
import { SAFETENSORS_DTYPES } from '../../src/core/formats/dtypes';
import { microLlamaDir, microLlamaF32Gguf } from '../helpers/paths';

const SEED = 0x5eed_2026;
const GGUF_CASES = 2500;
const GGUF_FULL_HEADER_CASES = 300;
const SAFETENSORS_CASES = 3000;
/** A case that takes longer than this is treated as a hang. */
const MAX_CASE_MS = 1000;
/** Heap growth over the run's baseline that counts as a runaway allocation (the file itself is a few MB). */
const MAX_HEAP_GROWTH = 256 * 1024 * 1024;

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The header bytes followed by `size - header.length` virtual zero bytes (the data section), so a
 * multi-megabyte file costs nothing to mutate. Records the largest single read.
 */
class OverlaySource implements ByteSource {
  largestRead = 0;
  totalRead = 0;
  constructor(
    private readonly header: Uint8Array,
    readonly size: number,
    readonly name = 'fuzz.bin',
  ) {}
  async read(offset: number, target: Uint8Array): Promise<void> {
    checkRange(this, offset, target.byteLength);
    this.largestRead = Math.max(this.largestRead, target.byteLength);
    this.totalRead += target.byteLength;
    target.fill(0);
    if (offset < this.header.byteLength) target.set(this.header.subarray(offset, Math.min(this.header.byteLength, offset + target.byteLength)));
  }
  async close(): Promise<void> {}
}

const HUGE_U64 = [2n ** 63n, 2n ** 64n - 1n, 2n ** 32n, 2n ** 31n, 2n ** 53n + 1n, 0n, 1n, 64n, 0xffffffffn];

type Mutator = (bytes: Uint8Array, size: number, rand: () => number) => { bytes: Uint8Array; size: number };

function pick<T>(items: readonly T[], rand: () => number): T {
  const item = items[Math.floor(rand() * items.length)];
  if (item === undefined) throw new Error('empty choice');
  return item;
}

const int = (n: number, rand: () => number): number => Math.floor(rand() * n);

function commonMutators(u64Fields: readonly number[]): Mutator[] {
  return [
    (b, size, r) => {
      const out = b.slice();
      for (let i = 1 + int(8, r); i > 0; i--) {
        const at = int(out.length, r);
        out[at] = (out[at] ?? 0) ^ (1 << int(8, r));
      }
      return { bytes: out, size };
    },
    (b, size, r) => {
      const out = b.slice();
      for (let i = 1 + int(4, r); i > 0; i--) out[int(out.length, r)] = int(256, r);
      return { bytes: out, size };
    },
    // Truncation: mostly inside the header, sometimes inside the data.
    (b, size, r) => {
      const cut = r() < 0.7 ? int(b.length, r) : b.length + int(size - b.length, r);
      return { bytes: b.subarray(0, Math.min(cut, b.length)), size: cut };
    },
    // A length/count/offset field set to something huge or odd.
    (b, size, r) => {
      const out = b.slice();
      const at = u64Fields.length > 0 ? pick(u64Fields, r) : int(Math.max(1, out.length - 8), r);
      if (at + 8 <= out.length) {
        const value = r() < 0.8 ? pick(HUGE_U64, r) : BigInt(size + int(3, r) - 1);
        new DataView(out.buffer, out.byteOffset).setBigUint64(at, value, true);
      }
      return { bytes: out, size };
    },
    // Delete a range (everything after shifts).
    (b, size, r) => {
      const at = int(b.length, r);
      const n = Math.min(1 + int(32, r), b.length - at);
      const out = new Uint8Array(b.length - n);
      out.set(b.subarray(0, at));
      out.set(b.subarray(at + n), at);
      return { bytes: out, size: size - (b.length - out.length) };
    },
    // Insert random bytes.
    (b, size, r) => {
      const at = int(b.length, r);
      const n = 1 + int(16, r);
      const out = new Uint8Array(b.length + n);
      out.set(b.subarray(0, at));
      for (let i = 0; i < n; i++) out[at + i] = int(256, r);
      out.set(b.subarray(at), at + n);
      return { bytes: out, size: size + n };
    },
    // A u32 somewhere set to an extreme (types, n_dims, versions).
    (b, size, r) => {
      const out = b.slice();
      const at = int(Math.max(1, out.length - 4), r);
      new DataView(out.buffer, out.byteOffset).setUint32(at, pick([0xffffffff, 5, 13, 9, 0, 40, 0x80000000], r), true);
      return { bytes: out, size };
    },
  ];
}

interface Outcome {
  parsed: number;
  rejected: number;
  messages: Set<string>;
}

async function fuzz(label: string, cases: number, seed: number, base: Uint8Array, baseSize: number, mutators: Mutator[], parse: (s: ByteSource) => Promise<unknown>): Promise<Outcome> {
  const rand = prng(seed);
  const outcome: Outcome = { parsed: 0, rejected: 0, messages: new Set() };
  const heapBase = getHeapStatistics().used_heap_size;
  for (let i = 0; i < cases; i++) {
    let bytes = base;
    let size = baseSize;
    for (let m = 1 + int(3, rand); m > 0; m--) ({ bytes, size } = pick(mutators, rand)(bytes, size, rand));
    size = Math.max(size, bytes.length);
    const source = new OverlaySource(bytes, size);
    const started = performance.now();
    try {
      await parse(source);
      outcome.parsed++;
    } catch (e) {
      if (!isQuantLensError(e)) {
        assert.fail(`${label} case ${i} (seed ${seed}): untyped ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`);
      }
      outcome.rejected++;
      outcome.messages.add(e.message.replace(/\d+/g, 'N').slice(0, 80));
    }
    const elapsed = performance.now() - started;
    assert.ok(elapsed < MAX_CASE_MS, `${label} case ${i} (seed ${seed}) took ${elapsed.toFixed(0)} ms`);
    assert.ok(source.largestRead <= size, `${label} case ${i}: a read of ${source.largestRead} bytes from a ${size}-byte file`);
    assert.ok(source.totalRead <= 2 * size + 4 * 1024 * 1024, `${label} case ${i}: read ${source.totalRead} bytes of a ${size}-byte file`);
    const growth = getHeapStatistics().used_heap_size - heapBase;
    assert.ok(growth < MAX_HEAP_GROWTH, `${label} case ${i}: heap grew by ${growth} bytes`);
  }
  return outcome;
}

test('fuzz: GGUF headers mutated from micro-llama-f32.gguf end in a header or a typed error', { timeout: 240_000 }, async () => {
  const real = new Uint8Array(readFileSync(microLlamaF32Gguf));
  const header = await readGgufHeader(new MemoryByteSource(real, 'micro-llama-f32.gguf'));
  // The full real header (8192 tokens, 7934 merges), and the same header with the three tokenizer arrays cut to 64 entries (faster cases).
  const full = encodeGgufHeader(encodeOptionsFromHeader(header));
  const trimmedOptions = encodeOptionsFromHeader(header);
  trimmedOptions.kv = [...header.kv].map(([k, v]): [string, GgufValue] => {
    if (v.type === 'ARRAY' && v.elementType !== 'ARRAY' && v.values.length > 64) return [k, { ...v, values: v.values.slice(0, 64) }];
    return [k, v];
  });
  const trimmed = encodeGgufHeader(trimmedOptions);
  const dataSize = real.byteLength - header.dataStart;
  const outcomes = [
    await fuzz('gguf-trimmed', GGUF_CASES, SEED, trimmed.bytes, trimmed.bytes.byteLength + dataSize, commonMutators(trimmed.u64Fields), readGgufHeader),
    await fuzz('gguf-full', GGUF_FULL_HEADER_CASES, SEED + 1, full.bytes, full.bytes.byteLength + dataSize, commonMutators(full.u64Fields), readGgufHeader),
  ];
  const rejected = outcomes.reduce((s, o) => s + o.rejected, 0);
  const parsed = outcomes.reduce((s, o) => s + o.parsed, 0);
  const kinds = new Set(outcomes.flatMap((o) => [...o.messages]));
  console.log(`gguf fuzz: ${parsed} parsed, ${rejected} rejected with typed errors, ${kinds.size} distinct messages`);
  // The mutations must exercise many different checks, not die at the magic every time.
  assert.ok(rejected > GGUF_CASES / 2, 'most mutations are rejected');
  assert.ok(kinds.size >= 25, `only ${kinds.size} distinct rejections: ${[...kinds].join(' | ')}`);
});

test('fuzz: safetensors headers mutated from micro-llama end in a header or a typed error', { timeout: 240_000 }, async () => {
  const real = new Uint8Array(readFileSync(join(microLlamaDir, 'model.safetensors')));
  const headerLength = Number(new DataView(real.buffer, real.byteOffset).getBigUint64(0, true));
  const base = real.slice(0, 8 + headerLength);
  const text = new TextDecoder().decode(base.subarray(8));
  const encoder = new TextEncoder();
  const dtypeNames = SAFETENSORS_DTYPES.map((d) => d.name);
  const withJson = (json: string, size: number, keepLength: boolean): { bytes: Uint8Array; size: number } => {
    const body = encoder.encode(json);
    const out = new Uint8Array(8 + body.byteLength);
    new DataView(out.buffer).setBigUint64(0, BigInt(keepLength ? headerLength : body.byteLength), true);
    out.set(body, 8);
    return { bytes: out, size: size - base.length + out.length };
  };
  const jsonMutators: Mutator[] = [
    // A number in the JSON replaced by something huge, negative, fractional or out of range.
    (b, size, r) => {
      const current = new TextDecoder().decode(b.subarray(8));
      const numbers = [...current.matchAll(/\d+/g)];
      if (numbers.length === 0) return { bytes: b, size };
      const m = pick(numbers, r);
      const replacement = pick(['18446744073709551615', '9007199254740993', '-1', '1.5', '1e999', '0', '4294967296', String(size), '2296320'], r);
      const at = m.index ?? 0;
      return withJson(current.slice(0, at) + replacement + current.slice(at + m[0].length), size, r() < 0.3);
    },
    // A dtype swapped for another (sizes no longer match) or for a wrong name.
    (b, size, r) => {
      const current = new TextDecoder().decode(b.subarray(8));
      const next = current.replace(/"BF16"/, `"${pick([...dtypeNames, 'bf16', 'F128', ''], r)}"`);
      return withJson(next, size, false);
    },
    // Two tensors' offsets swapped or duplicated (overlaps, holes).
    (b, size, r) => {
      const current = new TextDecoder().decode(b.subarray(8));
      const offsets = [...current.matchAll(/"data_offsets":\[\d+,\d+\]/g)];
      if (offsets.length < 2) return { bytes: b, size };
      const a = pick(offsets, r);
      const c = pick(offsets, r);
      const at = a.index ?? 0;
      return withJson(current.slice(0, at) + c[0] + current.slice(at + a[0].length), size, r() < 0.5);
    },
    // The header length set to something else.
    (b, size, r) => {
      const out = b.slice();
      new DataView(out.buffer).setBigUint64(0, pick([...HUGE_U64, 100_000_001n, BigInt(b.length), BigInt(b.length - 9)], r), true);
      return { bytes: out, size };
    },
  ];
  const outcome = await fuzz('safetensors', SAFETENSORS_CASES, SEED + 2, base, real.byteLength, [...commonMutators([0]), ...jsonMutators, ...jsonMutators], readSafetensorsHeader);
  console.log(`safetensors fuzz: ${outcome.parsed} parsed, ${outcome.rejected} rejected with typed errors, ${outcome.messages.size} distinct messages`);
  assert.ok(text.startsWith('{'));
  assert.ok(outcome.rejected > SAFETENSORS_CASES / 2, 'most mutations are rejected');
  assert.ok(outcome.messages.size >= 15, `only ${outcome.messages.size} distinct rejections: ${[...outcome.messages].join(' | ')}`);
});
