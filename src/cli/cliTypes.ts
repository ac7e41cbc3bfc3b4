export interface CliIo {
  out(line: string): void;
  err(line: string): void;
  /** Whether progress may be drawn in place (a terminal) or must be plain lines. */
  isTTY: boolean;
}

export interface CliCommand {
  /** Runs with the arguments after the command name; resolves to the exit code. */
  run(args: string[], io: CliIo): Promise<number>;
}
