/**
 * The result of `quantlens analyze` (and of the analysis job): summaries of one calibration pass,
 * the LLM.int8() outlier analysis and the weight-side view. This is what the outlier explorer draws.
 * Summaries only: per site x channel statistics and binned histograms, never raw tensors.
 * Plain JSON (numbers, strings, arrays): it crosses the worker / webview boundary as is.
 */

export const ANALYSIS_REPORT_VERSION = 1;

/**
 * Where activations were captured. Each site is the input of one or more linear layers (q/k/v share
 * their input, as do gate/up) or the residual stream after a block.
 * - `attn_in`: output of the attention RMSNorm = input of q_proj, k_proj, v_proj (width = hidden)
 * - `attn_out`: attention context = input of o_proj (width = heads * head_dim)
 * - `mlp_in`: output of the FFN RMSNorm = input of gate_proj, up_proj (width = hidden)
 * - `mlp_act`: silu(gate) * up = input of down_proj (width = intermediate)
 * - `residual`: residual stream after the block (width = hidden)
 * - `final_norm`: output of the final RMSNorm = input of lm_head (width = hidden; layer = n_layers)
 */
export type ActivationSiteKind = 'attn_in' | 'attn_out' | 'mlp_in' | 'mlp_act' | 'residual' | 'final_norm';

/**
 * A histogram of |x| over every value of a site, with log2-spaced edges: bin i covers
 * [edges[i], edges[i+1]). `belowFirst` counts |x| < edges[0] (zeros included), `aboveLast` counts
 * |x| >= edges[edges.length - 1]. Counts span orders of magnitude: draw them on a log axis.
 */
export interface MagnitudeHistogram {
  edges: number[];
  counts: number[];
  belowFirst: number;
  aboveLast: number;
}

export interface ActivationSiteStats {
  /** Stable id, e.g. `layers.3.attn_in`, `final_norm`. */
  id: string;
  kind: ActivationSiteKind;
  /** Block index; `final_norm` uses the number of layers. */
  layer: number;
  /** Checkpoint names (HF style) of the linear layers that read this site; empty for `residual`. */
  consumers: string[];
  channels: number;
  /** Token rows seen (positions x windows). */
  tokens: number;
  /** Per channel, length `channels`. */
  absmax: number[];
  meanAbs: number[];
  /** Per channel: token rows with |x| >= threshold. */
  countAtLeastThreshold: number[];
  /** Channels with at least one |x| >= threshold, ascending. */
  outlierDims: number[];
  /** Channels whose absmax is >= criteria.standoutFactor x the site's median channel absmax, ascending. */
  standoutDims: number[];
  /** Median over channels of absmax. */
  medianAbsmax: number;
  histogram: MagnitudeHistogram;
}

/**
 * A dimension that reaches the threshold systematically (LLM.int8()'s emergent feature): within one
 * site family, in at least `criteria.minLayerShare` of the layers and, on average over those layers,
 * in at least `criteria.minTokenShare` of the token rows.
 */
export interface SystematicOutlierDim {
  kind: ActivationSiteKind;
  dim: number;
  /** layers.length / layers in the family. */
  layerShare: number;
  /** Layers where it counts: (token rows with |x| >= threshold) / token rows >= minTokenShare there. */
  layers: number[];
  /** Mean over `layers` of (token rows with |x| >= threshold) / token rows. */
  tokenShare: number;
  /** Largest |x| seen in this dim over the family. */
  maxAbs: number;
}

/**
 * The scale-free view of the same phenomenon: a dimension that stands out (absmax >= standoutFactor x
 * the median channel absmax) at the same site kind in at least `criteria.minStandoutLayerShare` of
 * the layers. LLM.int8()'s absolute 6.0 was calibrated on multi-billion-parameter models; in a small
 * model the emergent channels are there but smaller, and this criterion finds them without a
 * model-specific threshold.
 */
export interface RecurringStandoutDim {
  kind: ActivationSiteKind;
  dim: number;
  layers: number[];
  layerShare: number;
  /** Mean over `layers` of absmax / median channel absmax. */
  meanRatio: number;
  maxAbs: number;
}

/** Weight-side view of one linear layer: what each input channel looks like from the weight. */
export interface LinearWeightView {
  /** Checkpoint name of the linear layer (HF style, e.g. `model.layers.0.self_attn.q_proj`). */
  linear: string;
  site: string;
  inputChannels: number;
  /** max_i |W[i, j]| per input channel j. */
  weightAbsmax: number[];
  /**
   * Input channels AWQ would keep in higher precision at 1% (at least one): the top channels by
   * mean |x| of the activation feeding this layer (AWQ's criterion: the rounding error a channel adds
   * to every output scales with |x_j|), descending.
   */
  awqProtected: number[];
}

export interface AnalysisReport {
  version: typeof ANALYSIS_REPORT_VERSION;
  model: string;
  calibrationFile: string;
  tokens: number;
  windows: number;
  windowTokens: number;
  threshold: number;
  layers: number;
  hidden: number;
  criteria: { minLayerShare: number; minTokenShare: number; awqProtectFraction: number; standoutFactor: number; minStandoutLayerShare: number };
  sites: ActivationSiteStats[];
  systematic: SystematicOutlierDim[];
  recurringStandouts: RecurringStandoutDim[];
  weights: LinearWeightView[];
}
