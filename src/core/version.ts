/** The tool version written into outputs (quant cards, GGUF `general.quantized_by`); equals package.json's. */
export const TOOL_VERSION = '0.1.0';
