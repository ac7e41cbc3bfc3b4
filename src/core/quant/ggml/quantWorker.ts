/**
 * A quantize worker thread (see quantPool.ts): receives one slice of rows, runs the same quantizeGgml as
 * the main thread would, and transfers both buffers back so the pool can reuse them.
 * Messages in: { id, type, values: Float32Array, out: Uint8Array }; out: { id, values, out } or { id, error }.
 */
import { parentPort } from 'node:worker_threads';
import { isGgmlCodecType, quantizeGgml } from './index';

function isTask(m: unknown): m is { id: number; type: string; values: Float32Array; out: Uint8Array } {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Record<string, unknown>;
  return typeof r.id === 'number' && typeof r.type === 'string' && r.values instanceof Float32Array && r.out instanceof Uint8Array;
}

const port = parentPort;
if (port !== null) {
  port.on('message', (m: unknown) => {
    if (!isTask(m)) {
      port.postMessage({ id: -1, error: 'quantize worker: malformed task' });
      return;
    }
    try {
      if (!isGgmlCodecType(m.type)) throw new Error(`quantize worker: type ${m.type} has no codec`);
      quantizeGgml(m.type, m.values, m.out);
      port.postMessage({ id: m.id, values: m.values, out: m.out }, [m.values.buffer as ArrayBuffer, m.out.buffer as ArrayBuffer]);
    } catch (e) {
      port.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
    }
  });
}
