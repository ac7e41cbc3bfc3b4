/** bench/llamaCpp.ts: LLAMA_CPP_BIN_DIR wins, a missing or non-executable tool is reported with the fix. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findLlamaCppTool } from '../../bench/llamaCpp';

test('findLlamaCppTool: executable in LLAMA_CPP_BIN_DIR is found; absent or not executable says why', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'quantlens-llamacpp-'));
  const saved = process.env.LLAMA_CPP_BIN_DIR;
  try {
    process.env.LLAMA_CPP_BIN_DIR = dir;
    const missing = findLlamaCppTool('llama-quantize');
    assert.equal(missing.found, false);
    assert.match(missing.found ? '' : missing.reason, /LLAMA_CPP_BIN_DIR=.* has no executable llama-quantize/);

    const tool = join(dir, 'llama-quantize');
    await writeFile(tool, '#!/bin/sh\n');
    await chmod(tool, 0o644);
    assert.equal(findLlamaCppTool('llama-quantize').found, false, 'not executable');
    await chmod(tool, 0o755);
    assert.deepEqual(findLlamaCppTool('llama-quantize'), { found: true, path: tool, from: 'LLAMA_CPP_BIN_DIR' });
    assert.equal(findLlamaCppTool('llama-imatrix').found, false, 'each tool is looked up by its own name');

    delete process.env.LLAMA_CPP_BIN_DIR;
    const fallback = findLlamaCppTool('llama-perplexity');
    if (!fallback.found) assert.match(fallback.reason, /scripts\/build-llama-cpp\.sh/);
    else assert.equal(fallback.from, '.cache/llama.cpp/bin');
  } finally {
    if (saved === undefined) delete process.env.LLAMA_CPP_BIN_DIR;
    else process.env.LLAMA_CPP_BIN_DIR = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
