/**
 * The slice of the WebAssembly JS API the kernels use (the project's TypeScript libs do not declare it): one
 * declaration for every module that instantiates WebAssembly, and growing a memory within a limit.
 */

/** A memory: its buffer is a SharedArrayBuffer when it was declared shared (postable to worker threads). */
export interface WasmMemory<B extends ArrayBufferLike = ArrayBuffer> {
  readonly buffer: B;
  grow(pages: number): number;
}

export interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  Memory: {
    new (descriptor: { initial: number; maximum: number; shared: true }): WasmMemory<SharedArrayBuffer>;
    new (descriptor: { initial: number; maximum?: number; shared?: false }): WasmMemory;
  };
}

export const WASM_PAGE_BYTES = 65536;

/** The engine's WebAssembly object, or undefined where it has none. */
export function wasmApi(): WasmApi | undefined {
  return (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
}

/** Grows `memory` so that [0, end) is addressable; false past `maxBytes` or when the engine refuses. */
export function growMemory(memory: WasmMemory<ArrayBufferLike>, end: number, maxBytes: number): boolean {
  if (end > maxBytes) return false;
  const have = memory.buffer.byteLength;
  if (end <= have) return true;
  try {
    memory.grow(Math.ceil((end - have) / WASM_PAGE_BYTES));
    return true;
  } catch {
    return false;
  }
}
