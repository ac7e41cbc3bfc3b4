import * as vscode from 'vscode';

export type DevicePreference = 'auto' | 'gpu' | 'cpu';

/** The `quantlens.*` settings, validated: a hand-edited settings.json may hold anything. */
export interface QuantLensSettings {
  defaultTarget: string;
  groupSize: number;
  outlierThreshold: number;
  device: DevicePreference;
  maxWorkerMemoryMB: number;
  calibrationFile: string;
  /** Tokens of the calibration file the Outlier Explorer's activation pass reads. */
  calibrationTokens: number;
  outputFolderPattern: string;
}

export const SETTING_DEFAULTS: QuantLensSettings = {
  defaultTarget: 'gguf:Q8_0',
  groupSize: 64,
  outlierThreshold: 6.0,
  device: 'auto',
  maxWorkerMemoryMB: 4096,
  calibrationFile: '',
  calibrationTokens: 4096,
  outputFolderPattern: '${inputDir}',
};

const GROUP_SIZES = [32, 64, 128, 256];

function stringOr(value: unknown, fallback: string): string {
  return typeof value === 'string' ? value : fallback;
}

function positiveNumberOr(value: unknown, fallback: number): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : fallback;
}

export function readSettings(scope?: vscode.Uri): QuantLensSettings {
  const config = vscode.workspace.getConfiguration('quantlens', scope);
  const device = config.get<unknown>('device');
  const groupSize = config.get<unknown>('groupSize');
  return {
    defaultTarget: stringOr(config.get<unknown>('defaultTarget'), SETTING_DEFAULTS.defaultTarget),
    groupSize: typeof groupSize === 'number' && GROUP_SIZES.includes(groupSize) ? groupSize : SETTING_DEFAULTS.groupSize,
    outlierThreshold: positiveNumberOr(config.get<unknown>('outlierThreshold'), SETTING_DEFAULTS.outlierThreshold),
    device: device === 'gpu' || device === 'cpu' || device === 'auto' ? device : SETTING_DEFAULTS.device,
    maxWorkerMemoryMB: positiveNumberOr(config.get<unknown>('maxWorkerMemoryMB'), SETTING_DEFAULTS.maxWorkerMemoryMB),
    calibrationFile: stringOr(config.get<unknown>('calibrationFile'), SETTING_DEFAULTS.calibrationFile),
    calibrationTokens: Math.floor(positiveNumberOr(config.get<unknown>('calibrationTokens'), SETTING_DEFAULTS.calibrationTokens)),
    outputFolderPattern: stringOr(config.get<unknown>('outputFolderPattern'), SETTING_DEFAULTS.outputFolderPattern),
  };
}
