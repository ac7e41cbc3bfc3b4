/**
 * LLM.int8()'s emergent-feature analysis over calibration statistics, and the weight-side view.
 *
 * A dimension is an outlier at a site when some token has |x| >= threshold (6.0) there. It is
 * systematic (emergent) within a family of sites (e.g. every layer's attention input) when, in at
 * least 25% of the layers, at least 6% of the token rows reach the threshold in that dimension
 * (Dettmers et al. 2022, section 4: ">= 25% of layers and >= 6% of sequence positions").
 * The numbers are the model's: nothing here knows which dimensions to expect.
 */
import type { ActivationSiteKind, ActivationSiteStats, LinearWeightView, RecurringStandoutDim, SystematicOutlierDim } from '../../protocol/analysis';

export const LLM_INT8_MIN_LAYER_SHARE = 0.25;
export const LLM_INT8_MIN_TOKEN_SHARE = 0.06;
/** AWQ protects 1% of the input channels. */
export const AWQ_PROTECT_FRACTION = 0.01;

/** A channel stands out when its absmax is at least this many times the site's median channel absmax. */
export const STANDOUT_FACTOR = 2;
/** ... at the same site kind in at least this share of the layers. */
export const MIN_STANDOUT_LAYER_SHARE = 0.5;

export function median(values: ArrayLike<number>): number {
  if (values.length === 0) return 0;
  const sorted = Float64Array.from(values).sort();
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Channels with absmax >= factor x median(absmax), ascending. */
export function standoutChannels(absmax: ArrayLike<number>, factor = STANDOUT_FACTOR): number[] {
  const limit = factor * median(absmax);
  const out: number[] = [];
  for (let j = 0; j < absmax.length; j++) if (absmax[j]! >= limit && limit > 0) out.push(j);
  return out;
}

/** Site families analysed per layer (final_norm has a single layer and is reported per site only). */
const PER_LAYER_KINDS: readonly ActivationSiteKind[] = ['attn_in', 'attn_out', 'mlp_in', 'mlp_act', 'residual'];

export function findSystematicOutliers(
  sites: readonly ActivationSiteStats[],
  minLayerShare = LLM_INT8_MIN_LAYER_SHARE,
  minTokenShare = LLM_INT8_MIN_TOKEN_SHARE,
): SystematicOutlierDim[] {
  const found: SystematicOutlierDim[] = [];
  for (const kind of PER_LAYER_KINDS) {
    const family = sites.filter((s) => s.kind === kind).sort((a, b) => a.layer - b.layer);
    if (family.length === 0) continue;
    const channels = family[0]!.channels;
    for (let dim = 0; dim < channels; dim++) {
      const layers: number[] = [];
      let shareSum = 0;
      let maxAbs = 0;
      for (const site of family) {
        const share = site.tokens > 0 ? (site.countAtLeastThreshold[dim] ?? 0) / site.tokens : 0;
        maxAbs = Math.max(maxAbs, site.absmax[dim] ?? 0);
        if (share >= minTokenShare) {
          layers.push(site.layer);
          shareSum += share;
        }
      }
      const layerShare = layers.length / family.length;
      if (layers.length > 0 && layerShare >= minLayerShare) {
        found.push({ kind, dim, layerShare, layers, tokenShare: shareSum / layers.length, maxAbs });
      }
    }
  }
  return found.sort((a, b) => (a.kind === b.kind ? b.layerShare - a.layerShare || b.tokenShare - a.tokenShare : PER_LAYER_KINDS.indexOf(a.kind) - PER_LAYER_KINDS.indexOf(b.kind)));
}

/**
 * Dimensions that stand out (absmax >= factor x median) at one site kind in at least
 * `minLayerShare` of the layers: the scale-free counterpart of findSystematicOutliers.
 */
export function findRecurringStandouts(sites: readonly ActivationSiteStats[], factor = STANDOUT_FACTOR, minLayerShare = MIN_STANDOUT_LAYER_SHARE): RecurringStandoutDim[] {
  const found: RecurringStandoutDim[] = [];
  for (const kind of PER_LAYER_KINDS) {
    const family = sites.filter((s) => s.kind === kind).sort((a, b) => a.layer - b.layer);
    if (family.length === 0) continue;
    const perDim = new Map<number, { layers: number[]; ratioSum: number; maxAbs: number }>();
    for (const site of family) {
      const med = median(site.absmax);
      for (const dim of standoutChannels(site.absmax, factor)) {
        const entry = perDim.get(dim) ?? { layers: [], ratioSum: 0, maxAbs: 0 };
        entry.layers.push(site.layer);
        entry.ratioSum += site.absmax[dim]! / med;
        entry.maxAbs = Math.max(entry.maxAbs, site.absmax[dim]!);
        perDim.set(dim, entry);
      }
    }
    const ofKind: RecurringStandoutDim[] = [];
    for (const [dim, e] of perDim) {
      const layerShare = e.layers.length / family.length;
      if (layerShare >= minLayerShare) ofKind.push({ kind, dim, layers: e.layers, layerShare, meanRatio: e.ratioSum / e.layers.length, maxAbs: e.maxAbs });
    }
    found.push(...ofKind.sort((a, b) => b.layerShare - a.layerShare || b.meanRatio - a.meanRatio));
  }
  return found;
}

/** max_i |W[i, j]| for every input column j of a row-major weight [rows, cols]. */
export function weightInputChannelAbsmax(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    for (let j = 0; j < cols; j++) {
      const a = Math.abs(w[base + j]!);
      if (a > out[j]!) out[j] = a;
    }
  }
  return out;
}

/**
 * The input channels AWQ would keep at higher precision: the top `fraction` (at least one) by mean
 * |x| of the activation feeding the layer. AWQ ranks by activation magnitude, not by weight
 * magnitude, because the output error a channel's weight rounding causes is proportional to |x_j|.
 * Descending by mean |x|; ties by channel index.
 */
export function awqProtectedChannels(meanAbs: readonly number[], fraction = AWQ_PROTECT_FRACTION): number[] {
  const count = Math.max(1, Math.ceil(meanAbs.length * fraction));
  return Array.from(meanAbs.keys())
    .sort((a, b) => meanAbs[b]! - meanAbs[a]! || a - b)
    .slice(0, count);
}

/** The weight view of one linear layer from its per-input-channel weight absmax and its input site. */
export function linearWeightView(linear: string, site: ActivationSiteStats, weightAbsmax: Float32Array): LinearWeightView {
  return {
    linear,
    site: site.id,
    inputChannels: weightAbsmax.length,
    weightAbsmax: Array.from(weightAbsmax),
    awqProtected: awqProtectedChannels(site.meanAbs),
  };
}

/** Channels of one site ordered by absmax, largest first (for tables and tests). */
export function topChannelsByAbsmax(site: ActivationSiteStats, count: number): Array<{ dim: number; absmax: number }> {
  return Array.from(site.absmax.keys())
    .sort((a, b) => site.absmax[b]! - site.absmax[a]! || a - b)
    .slice(0, count)
    .map((dim) => ({ dim, absmax: site.absmax[dim]! }));
}
