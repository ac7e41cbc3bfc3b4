/**
 * `npm run bench [-- <name>...]`: speed and memory figures, side by side with a peer or the machine's own
 * limit, each printed with the machine it ran on. Names: formats, quantize, gpu, forward, methods, webview.
 * With no name, all run in that order. Never part of `npm test`.
 */
import { cpus, loadavg, totalmem } from 'node:os';
import { benchFormats } from './formats';
import { benchQuantize } from './quantize';
import { benchGpu } from './gpu';
import { benchForward } from './forward';
import { benchMethods } from './methods';
import { benchWebview } from './webview';
import { enableRelaxedSimdOnNode20 } from '../src/cli/engineFlags';

const BENCHES: Record<string, () => Promise<void>> = {
  formats: benchFormats,
  quantize: benchQuantize,
  gpu: benchGpu,
  forward: benchForward,
  methods: benchMethods,
  webview: benchWebview,
};

async function main(): Promise<void> {
  enableRelaxedSimdOnNode20();
  const asked = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = asked.filter((a) => !(a in BENCHES));
  if (unknown.length > 0) {
    console.error(`unknown bench ${unknown.join(', ')}; choose from ${Object.keys(BENCHES).join(', ')}`);
    process.exitCode = 2;
    return;
  }
  const names = asked.length > 0 ? asked : Object.keys(BENCHES);
  const cpu = cpus();
  console.log(`machine: ${cpu[0]?.model.trim() ?? 'unknown CPU'} x${cpu.length}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, load ${loadavg().map((l) => l.toFixed(1)).join(' ')}, node ${process.version}`);
  for (const name of names) {
    const bench = BENCHES[name];
    if (bench === undefined) continue;
    console.log(`\n##### bench ${name}`);
    await bench();
  }
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
