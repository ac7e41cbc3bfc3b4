/**
 * A quantize worker thread (see quantPool.ts): runs one WebAssembly instance per lane, each over a shared
 * memory the main thread created and fills; a task quantizes in place and replies when the bytes are there.
 * Messages in: { kind: 'lane', lane, memory } then { kind: 'task', id, lane, type, input, output, blocks,
 * check?, bf16?, rows?, cols?, weights? } (byte offsets in the lane's memory; bf16: the input is staged as
 * BF16 and widened here first; rows / cols / weights: the importance-matrix path); out: { id, nonFinite } (-1, or the first NaN / Inf's index when `check`; then the bytes are not
 * to be used) or { id, error }.
 */
import { parentPort } from 'node:worker_threads';
import { GgmlWasmQuantizer, isImatrixQuantType, isWasmQuantType, type QuantMemory } from './wasm/ggmlWasm';

interface Task {
  kind: 'task';
  id: number;
  lane: number;
  type: string;
  input: number;
  output: number;
  blocks: number;
  /** Look for NaN / Inf in the input first (and quantize nothing when there is one). */
  check?: boolean;
  /** The input is staged as BF16 in the upper half of its f32 room: widen it in place first (runFromBf16). */
  bf16?: boolean;
  /** The importance-matrix path (all three or none): rows x cols values, one row's weights at byte `weights`. */
  rows?: number;
  cols?: number;
  weights?: number;
}

function isMemory(m: unknown): m is QuantMemory {
  return typeof m === 'object' && m !== null && typeof (m as { grow?: unknown }).grow === 'function' && (m as { buffer?: unknown }).buffer instanceof SharedArrayBuffer;
}

function isTask(m: unknown): m is Task {
  if (typeof m !== 'object' || m === null) return false;
  const r = m as Record<string, unknown>;
  return (
    r.kind === 'task' &&
    [r.id, r.lane, r.input, r.output, r.blocks].every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0) &&
    typeof r.type === 'string' &&
    (r.check === undefined || typeof r.check === 'boolean') &&
    (r.bf16 === undefined || typeof r.bf16 === 'boolean') &&
    ((r.rows === undefined && r.cols === undefined && r.weights === undefined) || [r.rows, r.cols, r.weights].every((v) => typeof v === 'number' && Number.isInteger(v) && v >= 0))
  );
}

const lanes = new Map<number, GgmlWasmQuantizer>();
const port = parentPort;
if (port !== null) {
  port.on('message', (m: unknown) => {
    const r = typeof m === 'object' && m !== null ? (m as Record<string, unknown>) : {};
    if (r.kind === 'lane' && typeof r.lane === 'number' && isMemory(r.memory)) {
      lanes.set(r.lane, GgmlWasmQuantizer.create(r.memory));
      return;
    }
    if (!isTask(m)) {
      port.postMessage({ id: typeof r.id === 'number' ? r.id : -1, error: 'quantize worker: malformed message' });
      return;
    }
    try {
      const quantizer = lanes.get(m.lane);
      if (quantizer === undefined) throw new Error(`quantize worker: no lane ${m.lane}`);
      if (!isWasmQuantType(m.type)) throw new Error(`quantize worker: type ${m.type} is not a block type`);
      if (m.rows !== undefined && m.cols !== undefined && m.weights !== undefined) {
        if (!isImatrixQuantType(m.type)) throw new Error(`quantize worker: type ${m.type} has no importance-matrix path`);
        port.postMessage({ id: m.id, nonFinite: quantizer.runImatrixFinite(m.type, m.input, m.output, m.rows, m.cols, m.weights, m.bf16 === true) });
        return;
      }
      if (m.bf16 === true) {
        port.postMessage({ id: m.id, nonFinite: quantizer.runFromBf16(m.type, m.input, m.output, m.blocks, m.check === true) });
        return;
      }
      if (m.check === true) {
        port.postMessage({ id: m.id, nonFinite: quantizer.runFinite(m.type, m.input, m.output, m.blocks) });
        return;
      }
      quantizer.run(m.type, m.input, m.output, m.blocks);
      port.postMessage({ id: m.id, nonFinite: -1 });
    } catch (e) {
      port.postMessage({ id: m.id, error: e instanceof Error ? e.message : String(e) });
    }
  });
}
