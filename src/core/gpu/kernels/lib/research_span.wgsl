// Included by the research quantizers (intn, fp8, nf4): a weight viewed as [rows, cols] and cut into
// SPANS, the runs of values that share one scale: groups of `group` columns within a row (the last
// group of a row may be shorter), a whole row (group = cols), or the whole tensor (rows = 1). Spans
// are contiguous in the flattened tensor, so a chunk of it touches spans first_span ..
// first_span + span_count - 1 (the first and last possibly in part).
// One kernel per phase: researchQuant.ts prepends `const PHASE = ...;` to the text.
//   PHASE 0 range:   one thread per short span, or workgroups of SEGMENT values of a long span that
//                    meet through atomicMin/atomicMax: lo = min(min, 0), hi = max(max, 0) as order
//                    keys, absmax bits (exact in any order).
//   PHASE 1 params:  one thread per span: keys back to f32 bits (left in ranges for the host), then
//                    the kernel's span_params(lo, hi, absmax) -> 2 words.
//   PHASE 2 encode:  one thread per VALUES_PER_THREAD values: CODES_PER_WORD codes per u32 at code_shift(j).
//   PHASE 3 decode:  one thread per VALUES_PER_THREAD values: decode_value(code, span) -> f32 bits.
// Every phase that reads weights records the chunk-local index of the first NaN/Inf in first_bad.
// The including kernel declares CODES_PER_WORD, CODE_MASK, code_shift, span_params, encode_value,
// decode_value.
// #include "exact_f32.wgsl"

struct Params {
  count: u32,          // values in this chunk
  chunk_start: u32,    // flat index of the chunk's first value
  cols: u32,
  group: u32,
  groups_per_row: u32,
  first_span: u32,
  span_count: u32,
  bits: u32,           // intn: bits per level
  symmetric: u32,      // intn: 1 = absmax (symmetric)
  min_zero: u32,       // intn asymmetric: smallest zero point
  signed_levels: u32,  // intn symmetric: 1 = store q as int8 (two's complement) instead of q + 2^(bits-1)
  segments_per_span: u32, // phase 0: 0 = one thread per span, else workgroups per span (SEGMENT values each)
}

@group(0) @binding(0) var<storage, read> src: array<u32>;
@group(0) @binding(1) var<storage, read_write> ranges: array<atomic<u32>>;
@group(0) @binding(2) var<storage, read_write> span_words: array<u32>;
@group(0) @binding(3) var<storage, read_write> codes: array<u32>;
@group(0) @binding(4) var<storage, read_write> first_bad: array<atomic<u32>>;
@group(0) @binding(5) var<storage, read_write> decoded: array<u32>;
@group(0) @binding(6) var<uniform> u: Params;

const WG = 64u;
const SEGMENT = 4096u;
var<workgroup> wg_min: array<u32, 64>;
var<workgroup> wg_max: array<u32, 64>;
var<workgroup> wg_abs: array<u32, 64>;

// Bits of value i of the chunk; a NaN/Inf is recorded (the host then refuses the tensor, naming it).
fn load_value(i: u32) -> u32 {
  let b = src[i];
  if ((b & 0x7f800000u) == 0x7f800000u) { atomicMin(&first_bad[0], i); }
  return b;
}

// Chunk-local [first, last) of chunk-local span k (clipped to the chunk).
fn span_bounds(k: u32) -> vec2<u32> {
  let span = u.first_span + k;
  let row = span / u.groups_per_row;
  let g = span - row * u.groups_per_row;
  let start = row * u.cols + g * u.group;
  let end = start + min(u.group, u.cols - g * u.group);
  return vec2<u32>(max(start, u.chunk_start) - u.chunk_start, min(end, u.chunk_start + u.count) - u.chunk_start);
}

// Order keys of [min, max] and the absmax bits over values first + offset, first + offset + stride, ... < last.
// Both bounds start at +0: the CPU's lo/hi start at 0 and absmax at 0. -0 counts as +0 (the CPU's
// `w < lo` never takes it).
fn scan_range(bounds: vec2<u32>, offset: u32, stride: u32) -> vec3<u32> {
  var kmin = 0x80000000u;
  var kmax = 0x80000000u;
  var amax = 0u;
  for (var i = bounds.x + offset; i < bounds.y; i = i + stride) {
    var b = load_value(i);
    if (b == 0x80000000u) { b = 0u; }
    let key = order_key(b);
    kmin = min(kmin, key);
    kmax = max(kmax, key);
    amax = max(amax, b & 0x7fffffffu);
  }
  return vec3<u32>(kmin, kmax, amax);
}

// One thread per span: the keys as they are (params converts them).
fn range_thread(k: u32) {
  let r = scan_range(span_bounds(k), 0u, 1u);
  atomicStore(&ranges[3u * k], r.x);
  atomicStore(&ranges[3u * k + 1u], r.y);
  atomicStore(&ranges[3u * k + 2u], r.z);
}

// Workgroup g: segment g % segments_per_span of span g / segments_per_span, folded into the span's
// keys (initialised by the host to +0, +0, 0) with atomics.
fn range_segment(g: u32, lid: u32) {
  let k = g / u.segments_per_span;
  let b = span_bounds(k);
  let seg_first = min(b.x + (g - k * u.segments_per_span) * SEGMENT, b.y);
  let r = scan_range(vec2<u32>(seg_first, min(seg_first + SEGMENT, b.y)), lid, WG);
  let kmin = r.x;
  let kmax = r.y;
  let amax = r.z;
  wg_min[lid] = kmin;
  wg_max[lid] = kmax;
  wg_abs[lid] = amax;
  workgroupBarrier();
  for (var stride = WG / 2u; stride > 0u; stride = stride / 2u) {
    if (lid < stride) {
      wg_min[lid] = min(wg_min[lid], wg_min[lid + stride]);
      wg_max[lid] = max(wg_max[lid], wg_max[lid + stride]);
      wg_abs[lid] = max(wg_abs[lid], wg_abs[lid + stride]);
    }
    workgroupBarrier();
  }
  if (lid == 0u) {
    atomicMin(&ranges[3u * k], wg_min[0]);
    atomicMax(&ranges[3u * k + 1u], wg_max[0]);
    atomicMax(&ranges[3u * k + 2u], wg_abs[0]);
  }
}

fn params_phase(k: u32) {
  if (k >= u.span_count) { return; }
  let lo = key_to_bits(atomicLoad(&ranges[3u * k]));
  let hi = key_to_bits(atomicLoad(&ranges[3u * k + 1u]));
  atomicStore(&ranges[3u * k], lo);
  atomicStore(&ranges[3u * k + 1u], hi);
  let p = span_params(lo, hi, atomicLoad(&ranges[3u * k + 2u]));
  span_words[2u * k] = p.x;
  span_words[2u * k + 1u] = p.y;
}

// Values per thread in the encode and decode phases (a multiple of CODES_PER_WORD): the span of the
// first value takes divisions, the rest is followed by counting.
const VALUES_PER_THREAD = 32u;

// Walks values first..last of the chunk with their chunk-local span index.
struct SpanCursor { col: u32, in_group: u32, k: u32 }

fn cursor_at(i: u32) -> SpanCursor {
  let col0 = u.chunk_start % u.cols;
  let c = col0 + i;
  let row_offset = c / u.cols;
  let col = c - row_offset * u.cols;
  return SpanCursor(col, col % u.group, row_offset * u.groups_per_row + col / u.group - col0 / u.group);
}

fn advance(cursor: ptr<function, SpanCursor>) {
  (*cursor).col = (*cursor).col + 1u;
  (*cursor).in_group = (*cursor).in_group + 1u;
  if ((*cursor).col == u.cols) {
    (*cursor).col = 0u;
    (*cursor).in_group = 0u;
    (*cursor).k = (*cursor).k + 1u;
  } else if ((*cursor).in_group == u.group) {
    (*cursor).in_group = 0u;
    (*cursor).k = (*cursor).k + 1u;
  }
}

fn encode_phase(t: u32) {
  let first = t * VALUES_PER_THREAD;
  if (first >= u.count) { return; }
  let last = min(first + VALUES_PER_THREAD, u.count);
  var cursor = cursor_at(first);
  var k = cursor.k;
  var p = vec2<u32>(span_words[2u * k], span_words[2u * k + 1u]);
  var word = 0u;
  for (var i = first; i < last; i = i + 1u) {
    if (cursor.k != k) {
      k = cursor.k;
      p = vec2<u32>(span_words[2u * k], span_words[2u * k + 1u]);
    }
    let code = encode_value(load_value(i), p);
    word = word | ((code & CODE_MASK) << code_shift(i % CODES_PER_WORD));
    if ((i + 1u) % CODES_PER_WORD == 0u) {
      codes[i / CODES_PER_WORD] = word;
      word = 0u;
    }
    advance(&cursor);
  }
  if (last % CODES_PER_WORD != 0u) { codes[last / CODES_PER_WORD] = word; }
}

fn decode_phase(t: u32) {
  let first = t * VALUES_PER_THREAD;
  if (first >= u.count) { return; }
  let last = min(first + VALUES_PER_THREAD, u.count);
  var cursor = cursor_at(first);
  var word = 0u;
  for (var i = first; i < last; i = i + 1u) {
    if (i % CODES_PER_WORD == 0u || i == first) { word = codes[i / CODES_PER_WORD]; }
    decoded[i] = decode_value((word >> code_shift(i % CODES_PER_WORD)) & CODE_MASK, cursor.k);
    advance(&cursor);
  }
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let group_index = wid.x + wid.y * nwg.x;
  let t = group_index * WG + lid;
  if (PHASE == 0u) {
    if (u.segments_per_span == 0u) {
      if (t < u.span_count) { range_thread(t); }
    } else if (group_index < u.span_count * u.segments_per_span) {
      range_segment(group_index, lid);
    }
    return;
  }
  if (PHASE == 1u) { params_phase(t); }
  if (PHASE == 2u) { encode_phase(t); }
  if (PHASE == 3u) { decode_phase(t); }
}
