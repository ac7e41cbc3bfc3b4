/**
 * One error hierarchy for everything the core can refuse. Each error has a stable `code`
 * (for tests, the CLI exit path and the protocol) and a message meant for the user:
 * it names the file and the defect. Catch only at a command or job boundary.
 */
export type QuantLensErrorCode =
  | 'FORMAT'
  | 'UNSUPPORTED'
  | 'IO'
  | 'GPU_UNAVAILABLE'
  | 'CANCELLED'
  | 'INVALID_ARGUMENT'
  | 'NUMERIC'
  | 'INTERNAL';

export class QuantLensError extends Error {
  readonly code: QuantLensErrorCode;
  constructor(code: QuantLensErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** A file is not what its format promises. `file` and `where` (offset, tensor, key) are part of the message. */
export class FormatError extends QuantLensError {
  readonly file: string;
  readonly where: string | undefined;
  constructor(file: string, defect: string, where?: string) {
    super('FORMAT', `${file}: ${where !== undefined ? `${where}: ` : ''}${defect}`);
    this.file = file;
    this.where = where;
  }
}

/** Well-formed input that this version cannot handle (a dtype, a ggml type, an architecture). */
export class UnsupportedError extends QuantLensError {
  constructor(message: string) {
    super('UNSUPPORTED', message);
  }
}

export class IoError extends QuantLensError {
  constructor(message: string, cause?: unknown) {
    super('IO', message, { cause });
  }
}

export class GpuUnavailableError extends QuantLensError {
  constructor(message: string, cause?: unknown) {
    super('GPU_UNAVAILABLE', message, { cause });
  }
}

export class CancelledError extends QuantLensError {
  constructor(message = 'cancelled') {
    super('CANCELLED', message);
  }
}

export class InvalidArgumentError extends QuantLensError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/** NaN / Inf or another value that cannot be represented faithfully. */
export class NumericError extends QuantLensError {
  constructor(message: string) {
    super('NUMERIC', message);
  }
}

export function isQuantLensError(e: unknown): e is QuantLensError {
  return e instanceof QuantLensError;
}

/** Turns anything thrown into a message fit for one line of output. */
export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
