/**
 * The typed message protocol shared by host <-> worker and host <-> webview.
 *
 * - A request is declared once as a constant (`defineRequest`) that ties its method name to the
 *   guard of its params and the guard of its result, so sender and handler agree by construction.
 * - Every request is answered with a `Result<T>` reply, also when the handler throws: a caller's
 *   promise always settles (and settles with an error when the endpoint is disposed).
 * - The side that handles requests posts `ready` once it listens; the other side posts nothing
 *   before that handshake.
 * - Everything received is `unknown` until a guard accepts it.
 * This module imports nothing from Node or the editor, so it also bundles into the webview.
 */

/** A function that checks an `unknown` value. */
export type Guard<T> = (value: unknown) => value is T;

export interface RpcErrorInfo {
  code: string;
  message: string;
}

export type Result<T> = { ok: true; value: T } | { ok: false; error: RpcErrorInfo };

export function ok<T>(value: T): Result<T> {
  return { ok: true, value };
}

export function fail<T = never>(code: string, message: string): Result<T> {
  return { ok: false, error: { code, message } };
}

// ---- guards ----

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
export const isString: Guard<string> = (v): v is string => typeof v === 'string';
export const isFiniteNumber: Guard<number> = (v): v is number => typeof v === 'number' && Number.isFinite(v);
export const isNonNegativeInteger: Guard<number> = (v): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
export const isBoolean: Guard<boolean> = (v): v is boolean => typeof v === 'boolean';
export const isUnknown: Guard<unknown> = (_v): _v is unknown => true;
export const isVoid: Guard<null> = (v): v is null => v === null;

export function isOneOf<const T extends readonly string[]>(values: T): Guard<T[number]> {
  return (v): v is T[number] => typeof v === 'string' && (values as readonly string[]).includes(v);
}

export function isArrayOf<T>(item: Guard<T>): Guard<T[]> {
  return (v): v is T[] => Array.isArray(v) && v.every((x) => item(x));
}

export function isOptional<T>(item: Guard<T>): Guard<T | undefined> {
  return (v): v is T | undefined => v === undefined || item(v);
}

/** A guard for an object with exactly-typed named fields (extra fields are tolerated). */
export function isShape<T>(fields: { [K in keyof T]-?: Guard<T[K]> }): Guard<T> {
  return (v): v is T => {
    if (!isRecord(v)) return false;
    for (const key of Object.keys(fields) as (keyof T & string)[]) {
      const guard = fields[key];
      if (!guard(v[key])) return false;
    }
    return true;
  };
}

export function isRpcErrorInfo(v: unknown): v is RpcErrorInfo {
  return isRecord(v) && isString(v.code) && isString(v.message);
}

export function isResultOf<T>(value: Guard<T>): Guard<Result<T>> {
  return (v): v is Result<T> => {
    if (!isRecord(v)) return false;
    if (v.ok === true) return value(v.value);
    return v.ok === false && isRpcErrorInfo(v.error);
  };
}

// ---- request declarations ----

export interface RequestType<P, R> {
  readonly method: string;
  readonly isParams: Guard<P>;
  readonly isResult: Guard<R>;
}

export function defineRequest<P, R>(method: string, isParams: Guard<P>, isResult: Guard<R>): RequestType<P, R> {
  return { method, isParams, isResult };
}

/** A one-way message (no reply), e.g. progress. */
export interface NotificationType<P> {
  readonly method: string;
  readonly isParams: Guard<P>;
}

export function defineNotification<P>(method: string, isParams: Guard<P>): NotificationType<P> {
  return { method, isParams };
}

// ---- wire messages ----

export interface ReadyMessage {
  kind: 'ready';
}
export interface RequestMessage {
  kind: 'request';
  id: number;
  method: string;
  params: unknown;
}
export interface ResponseMessage {
  kind: 'response';
  id: number;
  result: Result<unknown>;
}
export interface NotificationMessage {
  kind: 'notify';
  method: string;
  params: unknown;
}
export type WireMessage = ReadyMessage | RequestMessage | ResponseMessage | NotificationMessage;

export function isWireMessage(v: unknown): v is WireMessage {
  if (!isRecord(v)) return false;
  switch (v.kind) {
    case 'ready':
      return true;
    case 'request':
      return isNonNegativeInteger(v.id) && isString(v.method) && 'params' in v;
    case 'response':
      return isNonNegativeInteger(v.id) && isResultOf(isUnknown)(v.result);
    case 'notify':
      return isString(v.method) && 'params' in v;
    default:
      return false;
  }
}

/** The transport under an endpoint: a worker port, a webview, or an in-memory pair in tests. */
export interface MessageChannelLike {
  post(message: WireMessage): void;
  /** Subscribes to incoming messages; returns the unsubscribe function. */
  listen(handler: (message: unknown) => void): () => void;
}

/** Error raised on the calling side when a request's reply is an error (or never can come). */
export class RpcError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'RpcError';
  }
}

type Handler = (params: unknown) => Promise<unknown> | unknown;

/**
 * One side of a connection. `handle` registers request handlers, `request` sends and awaits the
 * typed reply, `notify`/`onNotification` carry one-way messages. Call `ready()` once all handlers
 * are registered; `whenReady()` resolves when the other side did so.
 */
export class RpcEndpoint {
  private nextId = 1;
  private readonly pending = new Map<number, { settle: (r: Result<unknown>) => void }>();
  private readonly handlers = new Map<string, Handler>();
  private readonly notificationHandlers = new Map<string, (params: unknown) => void>();
  private readonly unlisten: () => void;
  private disposed = false;
  private peerReady = false;
  private readonly readyWaiters: (() => void)[] = [];
  /** Messages that failed validation, kept for diagnostics (the count only). */
  invalidMessages = 0;

  constructor(private readonly channel: MessageChannelLike) {
    this.unlisten = channel.listen((m) => this.receive(m));
  }

  handle<P, R>(type: RequestType<P, R>, handler: (params: P) => Promise<R> | R): void {
    this.handlers.set(type.method, async (params) => {
      if (!type.isParams(params)) throw new RpcError('INVALID_ARGUMENT', `${type.method}: malformed parameters`);
      return handler(params);
    });
  }

  onNotification<P>(type: NotificationType<P>, handler: (params: P) => void): void {
    this.notificationHandlers.set(type.method, (params) => {
      if (type.isParams(params)) handler(params);
      else this.invalidMessages++;
    });
  }

  /** Tells the other side that this side listens. */
  ready(): void {
    this.channel.post({ kind: 'ready' });
  }

  whenReady(): Promise<void> {
    if (this.peerReady) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  notify<P>(type: NotificationType<P>, params: P): void {
    if (!this.disposed) this.channel.post({ kind: 'notify', method: type.method, params });
  }

  /** Sends a request and resolves to a Result that always settles. */
  requestResult<P, R>(type: RequestType<P, R>, params: P): Promise<Result<R>> {
    if (this.disposed) return Promise.resolve(fail('DISPOSED', `${type.method}: the connection is closed`));
    const id = this.nextId++;
    return new Promise<Result<R>>((resolve) => {
      this.pending.set(id, {
        settle: (r) => {
          if (!r.ok) resolve(r);
          else if (type.isResult(r.value)) resolve(ok(r.value));
          else resolve(fail('INVALID_RESPONSE', `${type.method}: malformed reply`));
        },
      });
      this.channel.post({ kind: 'request', id, method: type.method, params });
    });
  }

  /** Like requestResult, but throws RpcError on an error reply. */
  async request<P, R>(type: RequestType<P, R>, params: P): Promise<R> {
    const r = await this.requestResult(type, params);
    if (!r.ok) throw new RpcError(r.error.code, r.error.message);
    return r.value;
  }

  /** Stops listening and fails every request still waiting, so no promise hangs. */
  dispose(reason = 'the connection closed'): void {
    if (this.disposed) return;
    this.disposed = true;
    this.unlisten();
    for (const [, p] of this.pending) p.settle(fail('DISPOSED', reason));
    this.pending.clear();
  }

  private receive(message: unknown): void {
    if (this.disposed) return;
    if (!isWireMessage(message)) {
      this.invalidMessages++;
      return;
    }
    switch (message.kind) {
      case 'ready':
        this.peerReady = true;
        for (const w of this.readyWaiters.splice(0)) w();
        return;
      case 'response': {
        const p = this.pending.get(message.id);
        if (p === undefined) return;
        this.pending.delete(message.id);
        p.settle(message.result);
        return;
      }
      case 'notify':
        this.notificationHandlers.get(message.method)?.(message.params);
        return;
      case 'request':
        void this.answer(message);
        return;
    }
  }

  private async answer(message: RequestMessage): Promise<void> {
    const handler = this.handlers.get(message.method);
    let result: Result<unknown>;
    if (handler === undefined) {
      result = fail('UNKNOWN_METHOD', `no handler for ${message.method}`);
    } else {
      try {
        result = ok(await handler(message.params));
      } catch (e) {
        result = fail(errorCode(e), e instanceof Error ? e.message : String(e));
      }
    }
    if (!this.disposed) this.channel.post({ kind: 'response', id: message.id, result });
  }
}

/** The `code` of an error object when it has a string one (QuantLensError, RpcError), else INTERNAL. */
export function errorCode(e: unknown): string {
  if (isRecord(e) && isString(e.code)) return e.code;
  if (e instanceof Error && 'code' in e && typeof e.code === 'string') return e.code;
  return 'INTERNAL';
}

/** Two connected in-memory channels (tests, and same-thread fallbacks). Delivery is asynchronous like a real port. */
export function createChannelPair(): [MessageChannelLike, MessageChannelLike] {
  const listeners: [Set<(m: unknown) => void>, Set<(m: unknown) => void>] = [new Set(), new Set()];
  const side = (mine: 0 | 1): MessageChannelLike => ({
    post: (message) => {
      const copy: unknown = structuredClone(message);
      queueMicrotask(() => {
        for (const l of listeners[mine === 0 ? 1 : 0]) l(copy);
      });
    },
    listen: (handler) => {
      listeners[mine].add(handler);
      return () => listeners[mine].delete(handler);
    },
  });
  return [side(0), side(1)];
}
