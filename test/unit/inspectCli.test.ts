import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../../src/cli/main';
import type { CliIo } from '../../src/cli/cliTypes';
import { encodeGgufHeader } from '../../src/core/formats/gguf/encodeHeader';
import { microLlamaDir, microLlamaF32Gguf, repoRoot } from '../helpers/paths';

async function runCli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { out: (s) => out.push(s), err: (s) => err.push(s), isTTY: false };
  const code = await main(args, io);
  return { code, out, err };
}

function parseOne(out: string[]): Record<string, unknown> {
  assert.equal(out.length, 1, 'exactly one object on stdout');
  const parsed: unknown = JSON.parse(out[0] ?? '');
  assert.ok(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed));
  return parsed as Record<string, unknown>;
}

interface JsonTensor {
  name: string;
  dtype: string;
  shape: number[];
  nbytes: number;
  file: string;
  offset: number;
}

test('inspect --json on micro-llama-f32.gguf', async () => {
  const { code, out, err } = await runCli(['inspect', microLlamaF32Gguf, '--json']);
  assert.equal(code, 0, err.join('\n'));
  const report = parseOne(out);
  assert.equal(report.format, 'gguf');
  assert.deepEqual(report.files, [microLlamaF32Gguf]);
  assert.equal(report.config, null);
  const metadata = report.metadata as Record<string, unknown>;
  assert.equal(metadata['general.architecture'], 'llama');
  assert.equal(metadata['llama.attention.head_count_kv'], 2);
  const tokens = metadata['tokenizer.ggml.tokens'] as Record<string, unknown>;
  assert.deepEqual(tokens, { type: 'array', elementType: 'string', length: 8192, head: ['<|bos|>', '<|eos|>', '!', '"', '#', '$', '%', '&'] });
  assert.equal((metadata['tokenizer.ggml.token_type'] as Record<string, unknown>).elementType, 'int32');
  assert.ok(out[0]!.length < 20_000, 'long arrays are summarised, not dumped');
  const gguf = report.gguf as { version: number; types: Record<string, string> };
  assert.equal(gguf.version, 3);
  assert.equal(gguf.types['tokenizer.ggml.tokens'], 'ARRAY<STRING>');
  assert.equal(gguf.types['llama.rope.freq_base'], 'FLOAT32');
  assert.equal(metadata['llama.attention.layer_norm_rms_epsilon'], Math.fround(1e-5), 'JSON keeps the exact f32 value');
  const tensors = report.tensors as JsonTensor[];
  assert.equal(tensors.length, 21);
  const k = tensors.find((t) => t.name === 'blk.0.attn_k.weight');
  assert.deepEqual(k, { name: 'blk.0.attn_k.weight', dtype: 'F32', shape: [32, 64], nbytes: 8192, file: microLlamaF32Gguf, offset: 272128 + 4342272 });
  const totals = report.totals as { parameters: number; bytes: number; byDtype: Record<string, { parameters: number }>; byRole: Record<string, { parameters: number }>; byLayer: Record<string, { tensors: number }> };
  assert.equal(totals.parameters, 1_147_200);
  assert.equal(totals.bytes, 4 * 1_147_200);
  assert.deepEqual(Object.keys(totals.byDtype), ['F32']);
  assert.equal(totals.byRole.attn_q?.parameters, 2 * 64 * 64);
  assert.equal(totals.byRole.embedding?.parameters, 8192 * 64);
  assert.equal(totals.byRole.norm?.parameters, 5 * 64);
  assert.deepEqual(Object.keys(totals.byLayer), ['0', '1', 'none']);
  assert.equal(totals.byLayer['0']?.tensors, 9);
});

test('inspect --json on the micro-llama HF folder: same parameters, config present', async () => {
  const { code, out } = await runCli(['inspect', microLlamaDir, '--json']);
  assert.equal(code, 0);
  const report = parseOne(out);
  assert.equal(report.format, 'safetensors');
  assert.deepEqual(report.files, [join(microLlamaDir, 'model.safetensors')]);
  assert.deepEqual(report.metadata, { format: 'pt' });
  assert.equal((report.config as Record<string, unknown>).hidden_size, 64);
  const totals = report.totals as { parameters: number; bytes: number; byDtype: Record<string, { bytes: number }>; byRole: Record<string, { parameters: number }> };
  assert.equal(totals.parameters, 1_147_200);
  assert.equal(totals.byDtype.BF16?.bytes, 2 * 1_147_200);
  assert.equal(totals.byRole.mlp_down?.parameters, 2 * 64 * 192);
  assert.equal(totals.byRole.output?.parameters, 8192 * 64);
  const q = (report.tensors as JsonTensor[]).find((t) => t.name === 'model.layers.0.self_attn.k_proj.weight');
  assert.deepEqual(q?.shape, [32, 64]);
});

test('inspect prints a readable table with long arrays summarised', async () => {
  const { code, out } = await runCli(['inspect', microLlamaF32Gguf]);
  assert.equal(code, 0);
  assert.ok(out.length < 120, `${out.length} lines`);
  const text = out.join('\n');
  assert.match(text, /^format\s+gguf \(v3, alignment 32/m);
  assert.match(text, /tokenizer\.ggml\.tokens\s+\[string × 8,192\] "<\|bos\|>", "<\|eos\|>"/);
  assert.match(text, /blk\.0\.attn_k\.weight\s+F32\s+\[32, 64\]\s+2,048/);
  assert.match(text, /^totals\s+1,147,200 parameters/m);
  assert.match(text, /llama\.attention\.layer_norm_rms_epsilon\s+0\.00001$/m, 'FLOAT32 shown as the shortest decimal of that f32');
  assert.match(text, /^\s+attn_q\s+2\s+8,192/m);
  const help = await runCli(['inspect', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.out.join('\n'), /usage: quantlens inspect <path> \[--json\]/);
});

test('u64 metadata: a number when safe, a string otherwise', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-inspect-'));
  try {
    const path = join(dir, 'u64.gguf');
    const { bytes } = encodeGgufHeader({
      kv: [
        ['t.small', { type: 'UINT64', value: 5n }],
        ['t.big', { type: 'UINT64', value: 2n ** 60n + 1n }],
        ['t.neg', { type: 'INT64', value: -(2n ** 62n) }],
        ['t.arr', { type: 'ARRAY', elementType: 'UINT64', values: [1n, 2n ** 63n] }],
      ],
      tensors: [],
    });
    writeFileSync(path, bytes);
    const { code, out } = await runCli(['inspect', path, '--json']);
    assert.equal(code, 0);
    const metadata = parseOne(out).metadata as Record<string, unknown>;
    assert.deepEqual(metadata, { 't.small': 5, 't.big': '1152921504606846977', 't.neg': '-4611686018427387904', 't.arr': [1, '9223372036854775808'] });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a corrupt file: one line on stderr naming the file and the defect, exit 2; --verbose adds the stack', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ql-inspect-'));
  try {
    const path = join(dir, 'broken.gguf');
    writeFileSync(path, readFileSync(microLlamaF32Gguf).subarray(0, 100_000));
    const { code, out, err } = await runCli(['inspect', path, '--json']);
    assert.equal(code, 2);
    assert.deepEqual(out, []);
    assert.equal(err.length, 1);
    assert.match(err[0] ?? '', /^quantlens inspect: .*broken\.gguf: offset \d+: .*(ends before|bytes left)/);
    const verbose = await runCli(['inspect', path, '--verbose']);
    assert.equal(verbose.code, 2);
    assert.ok(verbose.err.length === 2 && /at /.test(verbose.err[1] ?? ''), 'stack only with --verbose');
    const missing = await runCli(['inspect', join(dir, 'nope.safetensors')]);
    assert.equal(missing.code, 2);
    assert.match(missing.err[0] ?? '', /nope\.safetensors: cannot open/);
    const noPath = await runCli(['inspect']);
    assert.equal(noPath.code, 2);
    assert.match(noPath.err[0] ?? '', /expected exactly one <path>/);

    // The real process: stdout is exactly the JSON object, stderr one line, exit codes as above.
    const cli = join(repoRoot, 'src', 'cli', 'main.ts');
    const ok = spawnSync(process.execPath, ['--import', 'tsx', cli, 'inspect', microLlamaF32Gguf, '--json'], { encoding: 'utf8', cwd: repoRoot });
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(ok.stdout.trimEnd().split('\n').length, 1);
    assert.equal((JSON.parse(ok.stdout) as { format: string }).format, 'gguf');
    const bad = spawnSync(process.execPath, ['--import', 'tsx', cli, 'inspect', path, '--json'], { encoding: 'utf8', cwd: repoRoot });
    assert.equal(bad.status, 2);
    assert.equal(bad.stdout, '');
    assert.equal(bad.stderr.trimEnd().split('\n').length, 1, bad.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
