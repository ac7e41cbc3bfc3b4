/**
 * `quantlens`: the command line over core/. Each subcommand lives in commands/<name>.ts and exports
 * `run(args, io)`, returning the exit code. Errors the core raises end as one line and exit code 2
 * (the stack only with --verbose); anything else is a bug and exits 1 with the stack.
 */
import { describeError, isQuantLensError } from '../core/errors';
import type { CliCommand, CliIo } from './cliTypes';
import { TOOL_VERSION } from '../core/version';
import { enableRelaxedSimdOnNode20 } from './engineFlags';

const COMMANDS: Record<string, { summary: string; load: () => Promise<CliCommand> }> = {
  inspect: { summary: 'list tensors, metadata and totals of a checkpoint', load: async () => (await import('./commands/inspect')).command },
  quantize: { summary: 'quantize a checkpoint to a research target or GGUF type, with a quant card', load: async () => (await import('./commands/quantize')).command },
  batch: { summary: 'quantize many checkpoints to many targets, with a summary table', load: async () => (await import('./commands/batch')).command },
  compare: { summary: 'calibrate methods x bits and compare perplexity, size and time', load: async () => (await import('./commands/compare')).command },
  eval: { summary: 'perplexity of a model and of simulated W/A/KV quantization settings', load: async () => (await import('./commands/eval')).command },
  analyze: { summary: 'calibration pass: outlier dims, emergent features, AWQ channels', load: async () => (await import('./commands/analyze')).command },
  stats: { summary: 'per-tensor weight statistics, histograms and outlier channels (job worker, GPU when present)', load: async () => (await import('./commands/stats')).command },
  imatrix: { summary: "compute llama.cpp's importance matrix from a calibration text (for quantize --imatrix)", load: async () => (await import('./commands/imatrix')).command },
};

function usage(): string {
  const lines = ['usage: quantlens <command> [options]', '', 'commands:'];
  for (const [name, c] of Object.entries(COMMANDS)) lines.push(`  ${name.padEnd(10)} ${c.summary}`);
  lines.push('', 'Run `quantlens <command> --help` for its options. --verbose prints stack traces.');
  return lines.join('\n');
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  enableRelaxedSimdOnNode20();
  const verbose = argv.includes('--verbose');
  const args = argv.filter((a) => a !== '--verbose');
  const name = args[0];
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(usage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    io.out(TOOL_VERSION);
    return 0;
  }
  const entry = COMMANDS[name];
  if (entry === undefined) {
    io.err(`quantlens: unknown command '${name}'\n${usage()}`);
    return 2;
  }
  try {
    const command = await entry.load();
    return await command.run(args.slice(1), io);
  } catch (e) {
    if (isQuantLensError(e)) {
      io.err(`quantlens ${name}: ${describeError(e)}`);
      if (verbose && e.stack) io.err(e.stack);
      return 2;
    }
    io.err(`quantlens ${name}: internal error: ${describeError(e)}`);
    if (e instanceof Error && e.stack) io.err(e.stack);
    return 1;
  }
}

if (require.main === module) {
  // `quantlens inspect x | head` closes stdout early: that is not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const io: CliIo = {
    out: (s) => process.stdout.write(s + '\n'),
    err: (s) => process.stderr.write(s + '\n'),
    isTTY: process.stderr.isTTY === true,
  };
  main(process.argv.slice(2), io).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`quantlens: ${describeError(e)}\n`);
      process.exitCode = 1;
    },
  );
}
