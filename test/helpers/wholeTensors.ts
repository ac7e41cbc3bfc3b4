/**
 * The GGUF exporter reports what it writes block by block (ExportGgufOptions.onTensorRows, views valid only during the
 * call). Tests that check whole tensors assemble the blocks here, as copies.
 */
import type { GgufTensorRows } from '../../src/core/quant/pipeline';

export interface WholeTensorReport {
  name: string;
  shape: number[];
  sourceType: string;
  type: string;
  /** The tensor's source values in the written row order (Q/K permuted). */
  original: Float32Array;
  /** The bytes written. */
  quantized: Uint8Array;
  bytes: number;
}

/** An onTensorRows callback that calls `onTensor` with each tensor once its last block has come. */
export function wholeTensorReports(onTensor: (report: WholeTensorReport) => void): (rows: GgufTensorRows) => void {
  let current: { report: WholeTensorReport; rowValues: number; rowBytes: number } | null = null;
  return (b) => {
    if (b.rowStart === 0) {
      const rows = b.shape.length <= 1 ? 1 : b.shape[0]!;
      const elements = b.shape.reduce((a, c) => a * c, 1);
      current = {
        report: { name: b.name, shape: b.shape, sourceType: b.sourceType, type: b.type, original: new Float32Array(elements), quantized: new Uint8Array(b.bytes), bytes: b.bytes },
        rowValues: elements / rows,
        rowBytes: b.bytes / rows,
      };
    }
    if (current === null || current.report.name !== b.name) throw new Error(`onTensorRows: a block of ${b.name} at row ${b.rowStart} came before its row 0`);
    current.report.original.set(b.original, b.rowStart * current.rowValues);
    current.report.quantized.set(b.quantized, b.rowStart * current.rowBytes);
    if (b.last) {
      onTensor(current.report);
      current = null;
    }
  };
}
