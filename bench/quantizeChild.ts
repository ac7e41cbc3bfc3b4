/**
 * The process the quantize bench times: open a checkpoint, exportGguf to one target, print one JSON line
 * (quantize seconds, CPU seconds, peak RSS from this process's own resource usage). Bundled by
 * bench/quantize.ts with esbuild, as the CLI is, so the timed code is the shipped code.
 * Usage: node quantizeChild.js <input> <output.gguf> <target> [threads]   (threads: exportGguf's default when absent)
 */
import { exportGguf } from '../src/core/convert/exportGguf';
import { openCheckpoint } from '../src/core/formats/openCheckpoint';

async function main(): Promise<void> {
  const [input, output, target, threadsArg] = process.argv.slice(2);
  const threads = threadsArg === undefined ? undefined : Number(threadsArg);
  if (input === undefined || output === undefined || target === undefined) throw new Error('usage: quantizeChild <input> <output.gguf> <target>');
  const started = performance.now();
  const checkpoint = await openCheckpoint(input);
  try {
    await exportGguf(checkpoint, { target, outputPath: output, threads });
  } finally {
    await checkpoint.close();
  }
  const seconds = (performance.now() - started) / 1000;
  const usage = process.resourceUsage();
  console.log(JSON.stringify({ seconds, cpuSeconds: (usage.userCPUTime + usage.systemCPUTime) / 1e6, maxRssBytes: usage.maxRSS * 1024 }));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
