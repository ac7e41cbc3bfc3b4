import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expandIncludes, renderKernelIndex } from '../../src/core/gpu/kernels/generate';
import { InvalidArgumentError } from '../../src/core/errors';

function kernelDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'wgsl-include-'));
  mkdirSync(join(dir, 'lib'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

test('include lines are replaced by the lib file, nested includes too; lib files get no entry', () => {
  const dir = kernelDir({
    'k.wgsl': 'const A = 1u;\n// #include "outer.wgsl"\nfn main() {}\n',
    'lib/outer.wgsl': 'fn outer() {}\n// #include "inner.wgsl"\n',
    'lib/inner.wgsl': 'fn inner() {}\n',
  });
  try {
    assert.equal(expandIncludes(dir, 'k.wgsl'), 'const A = 1u;\nfn outer() {}\nfn inner() {}\nfn main() {}\n');
    const index = renderKernelIndex(dir);
    assert.match(index, /"k": "const A = 1u;\\nfn outer\(\) \{\}\\nfn inner\(\) \{\}\\nfn main\(\) \{\}\\n"/);
    assert.doesNotMatch(index, /"outer"|"inner"/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an include that is not alone on its line stays a comment; a cycle is refused', () => {
  const dir = kernelDir({
    'k.wgsl': '  // #include "a.wgsl"\n',
    'c.wgsl': '// #include "a.wgsl"\n',
    'lib/a.wgsl': '// #include "b.wgsl"\n',
    'lib/b.wgsl': '// #include "a.wgsl"\n',
  });
  try {
    assert.equal(expandIncludes(dir, 'k.wgsl'), '  // #include "a.wgsl"\n');
    assert.throws(() => expandIncludes(dir, 'c.wgsl'), (e: unknown) => e instanceof InvalidArgumentError && /cycle/.test(e.message));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
