/**
 * `quantlens analyze`: one calibration pass, then the LLM.int8() outlier analysis and the
 * weight-side view, as the AnalysisReport the outlier explorer draws. The weight view is computed
 * from each layer's weights while the pass holds them (no second read of the model).
 */
import { ANALYSIS_REPORT_VERSION, type AnalysisReport, type LinearWeightView } from '../../protocol/analysis';
import {
  AWQ_PROTECT_FRACTION,
  LLM_INT8_MIN_LAYER_SHARE,
  LLM_INT8_MIN_TOKEN_SHARE,
  MIN_STANDOUT_LAYER_SHARE,
  STANDOUT_FACTOR,
  findRecurringStandouts,
  findSystematicOutliers,
  linearWeightView,
  weightInputChannelAbsmax,
} from '../analysis/emergentFeatures';
import { DEFAULT_OUTLIER_THRESHOLD, runCalibration } from './calibration';
import { LINEAR_ROLES, SITE_OF_ROLE, layerSites, linearModuleName, type ForwardHooks, type LlamaModel } from './forward';
import type { BpeTokenizer } from './tokenizer';

export interface AnalyzeOptions {
  tokens: number;
  ctx?: number;
  threshold?: number;
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
  /** Names for the report. */
  modelName: string;
  calibrationFile: string;
}

export const DEFAULT_ANALYZE_TOKENS = 4096;
export const DEFAULT_ANALYZE_CTX = 256;

export async function analyzeModel(model: LlamaModel, tokenizer: BpeTokenizer, text: string, options: AnalyzeOptions): Promise<AnalysisReport> {
  const c = model.config;
  // Weight absmax per input channel, taken while each layer's weights are in memory.
  const weightAbsmax = new Map<string, { absmax: Float32Array; site: string }>();
  const weightHook: ForwardHooks = {
    onLayerWeights(layer, weights) {
      const sites = layerSites(layer);
      for (const role of LINEAR_ROLES) {
        const w = weights.linear[role];
        const cols = role === 'o' ? c.numHeads * c.headDim : role === 'down' ? c.intermediateSize : c.hiddenSize;
        weightAbsmax.set(linearModuleName(layer, role), { absmax: weightInputChannelAbsmax(w, w.length / cols, cols), site: sites[SITE_OF_ROLE[role]].id });
      }
    },
  };
  const threshold = options.threshold ?? DEFAULT_OUTLIER_THRESHOLD;
  const calibration = await runCalibration(model, tokenizer, text, {
    tokens: options.tokens,
    ctx: Math.min(options.ctx ?? DEFAULT_ANALYZE_CTX, c.maxPositionEmbeddings),
    threshold,
    signal: options.signal,
    onProgress: options.onProgress,
    hooks: weightHook,
  });
  const sitesById = new Map(calibration.sites.map((s) => [s.id, s]));
  const weights: LinearWeightView[] = [];
  for (const [linear, entry] of weightAbsmax) {
    const site = sitesById.get(entry.site);
    if (site === undefined) continue;
    weights.push(linearWeightView(linear, site, entry.absmax));
  }
  return {
    version: ANALYSIS_REPORT_VERSION,
    model: options.modelName,
    calibrationFile: options.calibrationFile,
    tokens: calibration.tokens,
    windows: calibration.windows,
    windowTokens: calibration.windowTokens,
    threshold,
    layers: c.numLayers,
    hidden: c.hiddenSize,
    criteria: { minLayerShare: LLM_INT8_MIN_LAYER_SHARE, minTokenShare: LLM_INT8_MIN_TOKEN_SHARE, awqProtectFraction: AWQ_PROTECT_FRACTION, standoutFactor: STANDOUT_FACTOR, minStandoutLayerShare: MIN_STANDOUT_LAYER_SHARE },
    sites: calibration.sites,
    systematic: findSystematicOutliers(calibration.sites),
    recurringStandouts: findRecurringStandouts(calibration.sites),
    weights,
  };
}
