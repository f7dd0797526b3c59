// A seeded mutation fuzzer for the GGUF reader. Each case takes a valid seed file, breaks it the ways
// hostile or damaged files are broken (bit flips, boundary bytes, truncation, huge counts and lengths,
// offsets past the end, overlapping tensors, wrong type ids, nested arrays, duplicated and removed
// regions) and reads the result three ways: from bytes, from a stream of random chunk sizes and from a
// random-access source read in small prefixes. Then, when it parses, it reads the tensor data, maps
// the Qwen2 config and tensors and builds the tokenizer. Every case must end in success or a
// QwasmError, within a time bound, and the three reads must agree; anything else is a finding.
// Case k depends only on (campaign seed, k, seed files), so one case can be replayed alone.
import { QwasmError } from "../platform/errors";
import { tokenizerFromMetadata } from "../engine/tokenizer/from-model";
import { mapQwen2Tensors, parseQwen2Config } from "../weights/qwen2";
import { QWEN2_PRESETS, SYNTH_TYPES, synthQwen2, type Qwen2Vocabulary } from "./synth";
import { GGUFValueType } from "../weights/gguf/metadata";
import { openGGUF, parseGGUFBytes, type GGUFFile } from "../weights/gguf/reader";
import { GGMLType } from "../weights/gguf/types";
import { writeGGUFBytes } from "../weights/gguf/writer";

export interface FuzzSeed {
  name: string;
  /** A valid GGUF file. */
  bytes: Uint8Array;
}

export type FindingKind =
  | "crash"     // an exception that is not a QwasmError
  | "hang"      // the case did not finish within caseTimeoutMs
  | "slow"      // it finished, but took longer than caseTimeoutMs
  | "mismatch"  // bytes, stream and prefix reads disagree (one accepts what another refuses, or data differs)
  | "oversize"; // a parsed file asked for more destination bytes than the file holds

export interface FuzzFinding {
  kind: FindingKind;
  /** "case 17 (seed synth-Q4_0): u64 tensor_count@8 = 2^64-1" */
  label: string;
  caseIndex: number;
  message: string;
}

export interface FuzzOptions {
  /** Most cases to run; default 1000. */
  cases?: number;
  /** Stop starting cases after this many seconds; default: no limit. */
  seconds?: number;
  /** Campaign seed; default 1. */
  seed?: number;
  /** Run only case `first` .. first + cases - 1 (replay); default 0. */
  first?: number;
  /** A case over this is a finding ("slow", or "hang" when it never ends); default 2000. */
  caseTimeoutMs?: number;
  /** Heap bytes in use (e.g. heapUsed + arrayBuffers), sampled to report growth. */
  memory?: () => number;
  /** Told about every finding as it happens. */
  onFinding?: (finding: FuzzFinding) => void;
  /** Told about every case: its label, its outcome ("ok", an error code or a finding kind) and its time. */
  onCase?: (label: string, outcome: string, ms: number) => void;
  /** Findings kept in the tally (all are counted); default 20. */
  keepFindings?: number;
}

export interface FuzzTally {
  cases: number;
  /** Cases whose file parsed, read and mapped to a Qwen2 model. */
  ok: number;
  /** Cases refused with a QwasmError, by code (the first stage that refused). */
  errors: Record<string, number>;
  findingCounts: Record<FindingKind, number>;
  findings: FuzzFinding[];
  /** Cases by mutation kind. */
  mutations: Record<string, number>;
  slowest: { ms: number; label: string };
  /** Stream reads whose header asked for more tensor bytes than the stream held (refused by skipping). */
  oversizeStreamRequests: number;
  elapsedMs: number;
  /** When `memory` was given: its value before, and its peak during the campaign. */
  memoryBefore?: number;
  memoryPeak?: number;
}

// ---------------------------------------------------------------------------------------------
// Random numbers

/** mulberry32: small, fast, deterministic. */
export class Random {
  private state: number;
  constructor(seed: number) { this.state = seed >>> 0; }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  int(n: number): number { return Math.floor(this.next() * n); }
  range(lo: number, hi: number): number { return lo + this.int(hi - lo + 1); }
  chance(p: number): boolean { return this.next() < p; }
  pick<T>(items: readonly T[]): T { return items[this.int(items.length)]; }
}

/** The seed of case k of a campaign: a hash of both, so neighbouring cases are unrelated. */
function caseSeed(campaign: number, k: number): number {
  let h = Math.imul(campaign ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(k + 1, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
  return (h ^ (h >>> 15)) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Where the fields of a (valid) seed are

type U64Kind = "tensor_count" | "kv_count" | "string length" | "array length" | "dim" | "offset";
type U32Kind = "version" | "value type" | "item type" | "n_dims" | "tensor type";

interface Region { start: number; end: number }
interface KVLayout extends Region { key: string; type: number; valueAt: number }
interface TensorLayout extends Region { offsetAt: number; typeAt: number; offset: number; nbytes: number }

interface SeedLayout {
  u64s: { at: number; kind: U64Kind }[];
  u32s: { at: number; kind: U32Kind }[];
  kvs: KVLayout[];
  tensors: TensorLayout[];
  /** End of the tensor table. */
  headerEnd: number;
  dataOffset: number;
  alignment: number;
}

interface PreparedSeed extends FuzzSeed { layout: SeedLayout }

const SCALAR_BYTES: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Walks the header of a file the reader accepts, recording where every field is. */
function layoutOf(bytes: Uint8Array): SeedLayout {
  const file = parseGGUFBytes(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const layout: SeedLayout = {
    u64s: [{ at: 8, kind: "tensor_count" }, { at: 16, kind: "kv_count" }], u32s: [{ at: 4, kind: "version" }],
    kvs: [], tensors: [], headerEnd: 0, dataOffset: file.dataOffset, alignment: file.alignment,
  };
  let pos = 24;
  const u64 = (kind: U64Kind) => { layout.u64s.push({ at: pos, kind }); pos += 8; return Number(view.getBigUint64(pos - 8, true)); };
  const u32 = (kind: U32Kind) => { layout.u32s.push({ at: pos, kind }); pos += 4; return view.getUint32(pos - 4, true); };
  const string = () => { const n = u64("string length"); const s = new TextDecoder().decode(bytes.subarray(pos, pos + n)); pos += n; return s; };
  const value = (type: number): void => {
    if (type === GGUFValueType.STRING) { string(); return; }
    if (type !== GGUFValueType.ARRAY) { pos += SCALAR_BYTES[type]; return; }
    const itemType = u32("item type");
    const n = u64("array length");
    const recorded = layout.u64s.length;
    for (let i = 0; i < n; i++) {
      if (itemType === GGUFValueType.STRING || itemType === GGUFValueType.ARRAY) value(itemType);
      else pos += SCALAR_BYTES[itemType];
    }
    // Long arrays of strings (a vocabulary) would bury the other fields: keep the first 8 lengths.
    if (itemType === GGUFValueType.STRING && n > 8) layout.u64s.length = recorded + 8;
  };
  for (let i = 0; i < file.metadata.size; i++) {
    const start = pos;
    const key = string();
    const type = u32("value type");
    const valueAt = pos;
    value(type);
    layout.kvs.push({ start, end: pos, key, type, valueAt });
  }
  for (const t of file.tensors) {
    const start = pos;
    string();
    const nDims = u32("n_dims");
    for (let d = 0; d < nDims; d++) u64("dim");
    const typeAt = pos;
    u32("tensor type");
    const offsetAt = pos;
    u64("offset");
    layout.tensors.push({ start, end: pos, offsetAt, typeAt, offset: t.offset, nbytes: t.nbytes });
  }
  layout.headerEnd = pos;
  return layout;
}

// ---------------------------------------------------------------------------------------------
// Mutations

interface Mutant { bytes: Uint8Array; what: string }
type Mutation = (seed: PreparedSeed, r: Random) => Mutant;

const BOUNDARY_BYTES = [0x00, 0xff, 0x7f, 0x80];
const BOUNDARY_U32 = [0, 1, 2, 3, 4, 8, 9, 12, 13, 0x7f, 0xff, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const UNKNOWN_TYPE_IDS = [4, 5, 31, 32, 33, 36, 37, 38, 42, 99, 1000, 0x7fffffff, 0xffffffff];

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

function setU64(bytes: Uint8Array, at: number, v: bigint): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setBigUint64(at, BigInt.asUintN(64, v), true);
}

function getU64(bytes: Uint8Array, at: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getBigUint64(at, true);
}

function setU32(bytes: Uint8Array, at: number, v: number): void {
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(at, v >>> 0, true);
}

/** A position, mostly inside the header, where the interesting fields are. */
function headerBiased(seed: PreparedSeed, r: Random, length: number): number {
  return r.chance(0.85) ? r.int(Math.min(length, seed.layout.headerEnd)) : r.int(length);
}

/**
 * Replaces header bytes [start, end) with `insert`, keeping the tensor data where the (re-padded)
 * data section starts, so that the rest of the file stays consistent.
 */
function spliceHeader(seed: PreparedSeed, start: number, end: number, insert: Uint8Array): Uint8Array {
  const { headerEnd, dataOffset, alignment } = seed.layout;
  const header = concat(seed.bytes.subarray(0, start), insert, seed.bytes.subarray(end, headerEnd));
  const padding = new Uint8Array((alignment - (header.length % alignment)) % alignment);
  return concat(header, padding, seed.bytes.subarray(dataOffset));
}

/** Adds `delta` to a count field (tensor_count or kv_count) of `bytes`. */
function bumpCount(bytes: Uint8Array, at: number, delta: number): void {
  setU64(bytes, at, getU64(bytes, at) + BigInt(delta));
}

function pow2(n: number): bigint { return 1n << BigInt(n); }

const bitFlips: Mutation = (seed, r) => {
  const bytes = seed.bytes.slice();
  const at: string[] = [];
  for (let n = r.range(1, 4); n > 0; n--) {
    const i = headerBiased(seed, r, bytes.length);
    const bit = r.int(8);
    bytes[i] ^= 1 << bit;
    at.push(`${i}.${bit}`);
  }
  return { bytes, what: `flip ${at.join(" ")}` };
};

const boundaryBytes: Mutation = (seed, r) => {
  const bytes = seed.bytes.slice();
  const at: string[] = [];
  for (let n = r.range(1, 4); n > 0; n--) {
    const i = headerBiased(seed, r, bytes.length);
    bytes[i] = r.pick(BOUNDARY_BYTES);
    at.push(`${i}=0x${bytes[i].toString(16)}`);
  }
  return { bytes, what: `bytes ${at.join(" ")}` };
};

const truncate: Mutation = (seed, r) => {
  const { headerEnd, u64s } = seed.layout;
  const length = seed.bytes.length;
  const cut = r.chance(0.4) ? r.int(headerEnd + 1)
    : r.chance(0.5) ? Math.min(length - 1, r.pick(u64s).at + r.int(9))
    : r.range(headerEnd, length - 1);
  return { bytes: seed.bytes.slice(0, cut), what: `truncate to ${cut}` };
};

const u64Field: Mutation = (seed, r) => {
  const field = r.pick(seed.layout.u64s);
  const bytes = seed.bytes.slice();
  const old = getU64(bytes, field.at);
  const big = [pow2(64) - 1n, pow2(63), pow2(63) - 1n, pow2(53), pow2(53) + 1n, pow2(32), pow2(32) - 1n, pow2(31),
    BigInt(bytes.length), BigInt(bytes.length + 1), BigInt(Math.floor(bytes.length / 8) + 1)];
  const near = [0n, 1n, old + 1n, old - 1n, old * 2n, old / 2n, old + 32n, old << 16n];
  const value = r.chance(0.5) ? r.pick(big) : r.pick(near);
  setU64(bytes, field.at, value);
  return { bytes, what: `u64 ${field.kind}@${field.at} = ${BigInt.asUintN(64, value)}` };
};

const u32Field: Mutation = (seed, r) => {
  const field = r.pick(seed.layout.u32s);
  const bytes = seed.bytes.slice();
  const value = field.kind === "tensor type" && r.chance(0.7)
    ? r.pick([...Object.values(GGMLType), ...UNKNOWN_TYPE_IDS] as number[])
    : field.kind.endsWith("type") && r.chance(0.5) ? r.int(15) : r.pick(BOUNDARY_U32);
  setU32(bytes, field.at, value);
  return { bytes, what: `u32 ${field.kind}@${field.at} = ${value >>> 0}` };
};

const offsetPastEnd: Mutation = (seed, r) => {
  const { tensors, dataOffset, alignment } = seed.layout;
  const t = r.pick(tensors);
  const dataBytes = seed.bytes.length - dataOffset;
  const alignUp = (n: number) => BigInt(Math.ceil(n / alignment) * alignment);
  const value = r.pick([alignUp(dataBytes), alignUp(dataBytes) + BigInt(alignment), alignUp(dataBytes - t.nbytes + 1),
    pow2(53) - BigInt(alignment), pow2(62), BigInt(t.offset + 1)]);
  const bytes = seed.bytes.slice();
  setU64(bytes, t.offsetAt, value);
  return { bytes, what: `offset@${t.offsetAt} = ${value} (data ${dataBytes} bytes)` };
};

const overlap: Mutation = (seed, r) => {
  const { tensors, alignment } = seed.layout;
  const a = r.pick(tensors);
  const b = r.pick(tensors);
  const value = r.chance(0.5) || b.nbytes <= alignment ? b.offset : b.offset + alignment;
  const bytes = seed.bytes.slice();
  setU64(bytes, a.offsetAt, BigInt(value));
  return { bytes, what: `offset@${a.offsetAt} = ${value} (overlap with the tensor at ${b.offset})` };
};

/** An array value, `depth` arrays deep, with small counts (or a hostile one). */
function nestedArrayValue(r: Random, depth: number): { bytes: number[]; text: string } {
  const out: number[] = [];
  const u32 = (v: number) => { for (let i = 0; i < 4; i++) out.push((v >>> (8 * i)) & 0xff); };
  const u64 = (v: bigint) => { for (let i = 0n; i < 8n; i++) out.push(Number((BigInt.asUintN(64, v) >> (8n * i)) & 0xffn)); };
  const leafType = r.int(13);
  let hostile = "";
  // At most ~64 arrays in all, so that the file stays small.
  let arrays = 0;
  const items = (level: number): void => {
    arrays++;
    const n = arrays < 64 ? r.int(3) : 0;
    // A hostile count declares more items than follow (the reader must refuse it before looping).
    const count = r.chance(0.05) ? (hostile = "huge count", pow2(r.pick([31, 40, 63]))) : BigInt(n);
    if (level < depth) {
      u32(GGUFValueType.ARRAY);
      u64(count);
      for (let i = 0; i < n; i++) items(level + 1);
      return;
    }
    u32(leafType);
    u64(count);
    for (let i = 0; i < n; i++) {
      if (leafType === GGUFValueType.STRING) {
        const s = r.chance(0.2) ? [0xc3, 0x28] : [0x61, 0x62];
        u64(BigInt(s.length));
        out.push(...s);
      } else if (leafType === GGUFValueType.ARRAY) {
        u32(GGUFValueType.UINT8);
        u64(0n);
      } else {
        for (let b = 0; b < SCALAR_BYTES[leafType]; b++) out.push(leafType === GGUFValueType.BOOL ? r.int(3) : r.int(256));
      }
    }
  };
  items(1);
  return { bytes: out, text: `${depth} deep of type ${leafType}${hostile ? `, ${hostile}` : ""}` };
}

function encodeString(s: string | Uint8Array): Uint8Array {
  const body = typeof s === "string" ? new TextEncoder().encode(s) : s;
  const out = new Uint8Array(8 + body.length);
  setU64(out, 0, BigInt(body.length));
  out.set(body, 8);
  return out;
}

const nestedArrays: Mutation = (seed, r) => {
  const { kvs } = seed.layout;
  const key = r.pick(["fuzz.nested", "general.alignment", "qwen2.context_length", "tokenizer.ggml.tokens", r.pick(kvs).key]);
  const depth = r.range(1, 12);
  const value = nestedArrayValue(r, depth);
  const entry = concat(encodeString(key), Uint8Array.of(GGUFValueType.ARRAY, 0, 0, 0), Uint8Array.from(value.bytes));
  // Either a new entry (kv_count + 1) or in place of an existing one.
  const target = r.pick(kvs);
  const replace = r.chance(0.3);
  const bytes = replace ? spliceHeader(seed, target.start, target.end, entry) : spliceHeader(seed, target.start, target.start, entry);
  if (!replace && r.chance(0.9)) bumpCount(bytes, 16, 1);
  return { bytes, what: `${replace ? "replace" : "insert"} ${key} = array ${value.text}` };
};

const stringValue: Mutation = (seed, r) => {
  const strings = seed.layout.kvs.filter((kv) => kv.type === GGUFValueType.STRING);
  const kv = r.pick(strings.length > 0 && r.chance(0.7) ? strings : seed.layout.kvs);
  const replacement = r.pick<string | Uint8Array>(["", "qwen2moe", "llama", "qwen2", "yarn", "none", "x".repeat(1000),
    Uint8Array.of(0xff, 0xfe), Uint8Array.of(0xed, 0xa0, 0x80), Uint8Array.of(0xf4, 0x90, 0x80, 0x80), Uint8Array.of(0xe2, 0x82)]);
  const text = typeof replacement === "string" ? JSON.stringify(replacement.slice(0, 12)) : `bytes ${[...replacement].join(",")}`;
  if (kv.type === GGUFValueType.STRING && r.chance(0.7)) {
    const bytes = spliceHeader(seed, kv.valueAt, kv.end, encodeString(replacement));
    return { bytes, what: `value of ${kv.key} = ${text}` };
  }
  const keyEnd = kv.valueAt - 4;
  return { bytes: spliceHeader(seed, kv.start, keyEnd, encodeString(replacement)), what: `key ${kv.key} -> ${text}` };
};

const scalarValue: Mutation = (seed, r) => {
  const scalars = seed.layout.kvs.filter((kv) => kv.type in SCALAR_BYTES);
  if (scalars.length === 0) return u32Field(seed, r);
  const kv = r.pick(scalars);
  const bytes = seed.bytes.slice();
  const view = new DataView(bytes.buffer);
  let text: string;
  if (kv.type === GGUFValueType.FLOAT32 || kv.type === GGUFValueType.FLOAT64) {
    const v = r.pick([NaN, Infinity, -Infinity, 0, -0, -1, 1e-45, 3.4e38, 1e300]);
    if (kv.type === GGUFValueType.FLOAT32) view.setFloat32(kv.valueAt, v, true);
    else view.setFloat64(kv.valueAt, v, true);
    text = String(v);
  } else {
    const size = SCALAR_BYTES[kv.type];
    const fill = r.pick([0x00, 0xff, 0x7f, 0x80, 0x01]);
    bytes.fill(fill, kv.valueAt, kv.valueAt + size);
    if (fill === 0x01) bytes.fill(0, kv.valueAt + 1, kv.valueAt + size);
    text = `bytes 0x${fill.toString(16)}`;
  }
  return { bytes, what: `value of ${kv.key} = ${text}` };
};

/** A kv entry, a tensor info, or a random header range: [start, end) and the count it belongs to. */
function pickRegion(seed: PreparedSeed, r: Random): Region & { count?: number; what: string } {
  const { kvs, tensors, headerEnd } = seed.layout;
  const choice = r.int(3);
  if (choice === 0) { const kv = r.pick(kvs); return { ...kv, count: 16, what: `kv ${kv.key}` }; }
  if (choice === 1 && tensors.length > 0) { const t = r.pick(tensors); return { ...t, count: 8, what: `tensor info at ${t.start}` }; }
  const start = r.range(24, headerEnd - 1);
  const end = Math.min(headerEnd, start + r.range(1, 64));
  return { start, end, what: `bytes ${start}..${end}` };
}

const duplicateRegion: Mutation = (seed, r) => {
  const region = pickRegion(seed, r);
  const copy = seed.bytes.slice(region.start, region.end);
  const bytes = spliceHeader(seed, region.end, region.end, copy);
  const bump = region.count !== undefined && r.chance(0.7);
  if (bump) bumpCount(bytes, region.count!, 1);
  return { bytes, what: `duplicate ${region.what}${bump ? " (count + 1)" : ""}` };
};

const removeRegion: Mutation = (seed, r) => {
  const region = pickRegion(seed, r);
  const bytes = spliceHeader(seed, region.start, region.end, new Uint8Array(0));
  const bump = region.count !== undefined && r.chance(0.7);
  if (bump) bumpCount(bytes, region.count!, -1);
  return { bytes, what: `remove ${region.what}${bump ? " (count - 1)" : ""}` };
};

const copyRange: Mutation = (seed, r) => {
  const bytes = seed.bytes.slice();
  const n = r.range(1, 64);
  const from = headerBiased(seed, r, Math.max(1, bytes.length - n));
  const to = headerBiased(seed, r, Math.max(1, bytes.length - n));
  bytes.copyWithin(to, from, from + n);
  return { bytes, what: `copy ${n} bytes ${from} -> ${to}` };
};

const MUTATIONS: [string, Mutation, number][] = [
  ["bit flips", bitFlips, 12],
  ["boundary bytes", boundaryBytes, 12],
  ["truncate", truncate, 8],
  ["u64 field", u64Field, 14],
  ["u32 field", u32Field, 10],
  ["offset past end", offsetPastEnd, 5],
  ["overlap", overlap, 5],
  ["nested arrays", nestedArrays, 6],
  ["string value", stringValue, 6],
  ["scalar value", scalarValue, 8],
  ["duplicate region", duplicateRegion, 6],
  ["remove region", removeRegion, 6],
  ["copy range", copyRange, 4],
];
const MUTATION_WEIGHT = MUTATIONS.reduce((n, [, , w]) => n + w, 0);

/** One mutation from the table, then sometimes flipped bits or a cut on top. */
function mutate(seed: PreparedSeed, r: Random): Mutant & { kind: string } {
  let x = r.next() * MUTATION_WEIGHT;
  let [kind, mutation] = MUTATIONS[0];
  for (const [k, m, w] of MUTATIONS) {
    if ((x -= w) < 0) { kind = k; mutation = m; break; }
  }
  let { bytes, what } = mutation(seed, r);
  if (r.chance(0.2) && bytes.length > 0) {
    const i = headerBiased(seed, r, bytes.length);
    bytes[i] = r.chance(0.5) ? bytes[i] ^ (1 << r.int(8)) : r.pick(BOUNDARY_BYTES);
    what += `; byte ${i} = 0x${bytes[i].toString(16)}`;
  }
  if (r.chance(0.05) && bytes.length > 1) {
    const cut = r.int(bytes.length);
    bytes = bytes.subarray(0, cut);
    what += `; truncate to ${cut}`;
  }
  return { bytes, what, kind };
}

// ---------------------------------------------------------------------------------------------
// Reading a mutant

/** A finding raised inside a case. */
class Finding extends Error {
  constructor(readonly kind: FindingKind, message: string) { super(message); }
}

/** A stream of `bytes` in random chunk sizes: tiny ones at the start, never more than ~512 chunks. */
function chunkedStream(bytes: Uint8Array, r: Random): ReadableStream<Uint8Array> {
  const small = r.pick([1, 3, 7, 64, 512, 4096]);
  const large = Math.max(small, Math.ceil(bytes.length / 256), r.pick([4096, 65536]));
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) { controller.close(); return; }
      const n = 1 + r.int(at < 4096 ? small : large);
      controller.enqueue(bytes.subarray(at, at + n));
      at += n;
    },
  });
}

/**
 * Reads every tensor into slices of one scratch buffer of the file's size, and checks samples of
 * what arrived against the file. A header that asks for more bytes than the file holds is refused:
 * a finding for a random-access read (the reader checked the sizes), a skip for a stream (the reader
 * cannot know a stream's size before it ends).
 */
async function readData(file: GGUFFile, bytes: Uint8Array, scratch: Uint8Array, r: Random, stream: boolean,
  stats: { oversizeStreamRequests: number }): Promise<void> {
  let used = 0;
  const filled: [number, number, Uint8Array][] = [];
  await file.readTensorData((t) => {
    if (t.nbytes > bytes.length - used) {
      if (!stream) throw new Finding("oversize", `tensor ${t.name} asks for ${t.nbytes} bytes; ${bytes.length - used} of the ${bytes.length}-byte file are left`);
      stats.oversizeStreamRequests++;
      return null;
    }
    const dest = scratch.subarray(used, used + t.nbytes);
    used += t.nbytes;
    filled.push([file.dataOffset + t.offset, t.nbytes, dest]);
    return dest;
  });
  for (const [start, n, dest] of filled) {
    for (const i of [0, n - 1, r.int(n)]) {
      if (dest[i] !== bytes[start + i]) {
        throw new Finding("mismatch", `${stream ? "stream" : "bytes"} read: tensor byte ${i} at file offset ${start + i} is ${dest[i]}, the file has ${bytes[start + i]}`);
      }
    }
  }
}

/** A short description of a header, to compare reads. */
function headerSummary(file: GGUFFile): string {
  const tensors = file.tensors.map((t) => `${t.name}:${t.type}:${t.dims.join("x")}@${t.offset}`).join(",");
  return `v${file.version} align ${file.alignment} data@${file.dataOffset} kv ${file.metadata.size} [${tensors}]`;
}

type Outcome = { code: string } | { finding: Finding };

/** Runs `fn`; a QwasmError is the outcome's code, anything else a crash. */
async function attempt(stage: string, fn: () => Promise<void> | void): Promise<QwasmError | undefined> {
  try {
    await fn();
    return undefined;
  } catch (e) {
    if (e instanceof Finding) throw e;
    if (e instanceof QwasmError) return e;
    const text = e instanceof Error ? (e.stack ?? e.message).split("\n").slice(0, 4).join(" | ")
      : `a thrown ${(e as object | null)?.constructor?.name ?? typeof e}: ${String(e)}`;
    throw new Finding("crash", `${stage}: ${text}`);
  }
}

async function readMutant(bytes: Uint8Array, r: Random, scratch: Uint8Array, stats: { oversizeStreamRequests: number }): Promise<Outcome> {
  // 1. All in memory, then the Qwen2 view of it.
  let file: GGUFFile | undefined;
  const bytesError = await attempt("parseGGUFBytes", async () => {
    file = parseGGUFBytes(bytes);
    await readData(file, bytes, scratch, r, false, stats);
    const t = file.tensors.length > 0 ? r.pick(file.tensors) : undefined;
    if (t && (await file.readTensor(t)).length !== t.nbytes) throw new Finding("mismatch", `readTensor(${t.name}) is not ${t.nbytes} bytes`);
  });
  let modelError: QwasmError | undefined;
  if (!bytesError) {
    modelError = await attempt("qwen2", () => {
      const config = parseQwen2Config(file!.metadata, file!.tensors);
      mapQwen2Tensors(config, file!.tensors);
    });
    // What createEngine does next with the same metadata.
    modelError ??= await attempt("tokenizer", () => {
      tokenizerFromMetadata(file!.metadata).encode("Hello <|im_start|>", { special: true });
    });
  }

  // 2. A stream of random chunks (no size until it ends): must accept exactly what bytes accept.
  const streamError = await attempt("openGGUF(stream)", async () => {
    const streamFile = await openGGUF(chunkedStream(bytes, r), {
      firstReadBytes: r.pick([1, 16, 64, 4096, 1 << 21]),
      // Bounds the header buffer a stream may grow (the reader allocates what it is told it needs).
      maxHeaderBytes: Math.max(64, bytes.length),
    });
    try {
      if (!bytesError && headerSummary(streamFile) !== headerSummary(file!)) {
        throw new Finding("mismatch", `stream header ${headerSummary(streamFile)} differs from bytes header ${headerSummary(file!)}`);
      }
      await readData(streamFile, bytes, scratch, r, true, stats);
    } finally {
      await streamFile.close();
    }
  });
  if ((bytesError === undefined) !== (streamError === undefined)) {
    throw new Finding("mismatch", bytesError
      ? `bytes refused (${bytesError.message}) but the stream read it`
      : `bytes accepted but the stream refused: ${streamError!.message}`);
  }

  // 3. Sometimes: random access in small prefixes (the header is parsed again as it grows).
  if (r.chance(0.25)) {
    const prefixError = await attempt("openGGUF(prefix)", async () => {
      const prefixed = await openGGUF(bytes, { firstReadBytes: r.pick([1, 24, 100, 1000]) });
      if (!bytesError && headerSummary(prefixed) !== headerSummary(file!)) {
        throw new Finding("mismatch", `prefix header ${headerSummary(prefixed)} differs from bytes header ${headerSummary(file!)}`);
      }
    });
    // The same bytes with the same known size: the same verdict, to the letter.
    if (prefixError?.message !== bytesError?.message) {
      throw new Finding("mismatch", `prefix read says "${prefixError?.message ?? "ok"}", bytes read says "${bytesError?.message ?? "ok"}"`);
    }
  }

  const error = bytesError ?? modelError;
  return { code: error ? error.code : "ok" };
}

// ---------------------------------------------------------------------------------------------
// Seeds and the campaign

/** Small synthetic Qwen2 models (32 wide, 1-2 layers, 259 tokens), one per weight type synth writes: 16-76 KB. */
export async function synthFuzzSeeds(vocabulary: Qwen2Vocabulary): Promise<FuzzSeed[]> {
  const seeds: FuzzSeed[] = [];
  for (const [i, type] of SYNTH_TYPES.entries()) {
    const shape = {
      ...QWEN2_PRESETS.tiny, hidden: 32, heads: 2, kvHeads: 1, ffn: 64, vocab: 256,
      layers: 1 + (i % 2), tied: i % 3 !== 2, contextLength: 64,
    };
    const bytes = await writeGGUFBytes(synthQwen2({ shape, vocabulary, type, seed: i }));
    seeds.push({ name: `synth-${type}`, bytes });
  }
  return seeds;
}

function prepare(seed: FuzzSeed): PreparedSeed {
  try {
    return { ...seed, layout: layoutOf(seed.bytes) };
  } catch (e) {
    throw new QwasmError("INVALID_ARGUMENT", `fuzz seed ${seed.name} is not a GGUF file the reader accepts: ${(e as Error).message}`, { cause: e });
  }
}

/** Resolves after pending timers and I/O have run, so a case's timeout can fire. */
function macrotask(): Promise<void> {
  const g = globalThis as { setImmediate?: (f: () => void) => void };
  return new Promise((resolve) => (g.setImmediate ? g.setImmediate(resolve) : setTimeout(resolve, 0)));
}

/** Runs a campaign over `seeds` and tallies the outcomes. */
export async function fuzzGGUF(seeds: readonly FuzzSeed[], options: FuzzOptions = {}): Promise<FuzzTally> {
  if (seeds.length === 0) throw new QwasmError("INVALID_ARGUMENT", "fuzz: no seed files");
  const cases = options.cases ?? 1000;
  const first = options.first ?? 0;
  const campaign = options.seed ?? 1;
  const timeoutMs = options.caseTimeoutMs ?? 2000;
  const keep = options.keepFindings ?? 20;
  for (const [name, v] of [["cases", cases], ["first", first], ["seed", campaign]] as const) {
    if (!Number.isSafeInteger(v) || v < 0) throw new QwasmError("INVALID_ARGUMENT", `fuzz: ${name} must be an integer >= 0, got ${v}`);
  }
  const prepared = seeds.map(prepare);
  // Where tensor data is read to: one buffer, as large as the largest mutant so far.
  let scratch = new Uint8Array(Math.max(...seeds.map((s) => s.bytes.length)) + 64 * 1024);
  const deadline = options.seconds === undefined ? Infinity : performance.now() + options.seconds * 1000;

  const tally: FuzzTally = {
    cases: 0, ok: 0, errors: {}, findingCounts: { crash: 0, hang: 0, slow: 0, mismatch: 0, oversize: 0 }, findings: [],
    mutations: {}, slowest: { ms: 0, label: "" }, oversizeStreamRequests: 0, elapsedMs: 0,
  };
  const sampleMemory = () => { if (options.memory) tally.memoryPeak = Math.max(tally.memoryPeak ?? 0, options.memory()); };
  if (options.memory) tally.memoryBefore = tally.memoryPeak = options.memory();
  const report = (kind: FindingKind, label: string, caseIndex: number, message: string) => {
    const finding = { kind, label, caseIndex, message };
    tally.findingCounts[kind]++;
    if (tally.findings.length < keep) tally.findings.push(finding);
    options.onFinding?.(finding);
  };

  const start = performance.now();
  for (let k = first; k < first + cases && performance.now() < deadline; k++) {
    const r = new Random(caseSeed(campaign, k));
    const seed = r.pick(prepared);
    const mutant = mutate(seed, r);
    const label = `case ${k} (seed ${seed.name}): ${mutant.what}`;
    if (scratch.length < mutant.bytes.length) scratch = new Uint8Array(2 * mutant.bytes.length);
    tally.mutations[mutant.kind] = (tally.mutations[mutant.kind] ?? 0) + 1;

    const t0 = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"hang">((resolve) => { timer = setTimeout(() => resolve("hang"), timeoutMs); });
    const outcome = await Promise.race([readMutant(mutant.bytes, r, scratch, tally).catch((e: unknown): Outcome => {
      return { finding: e instanceof Finding ? e : new Finding("crash", `fuzz harness: ${String(e)}`) };
    }), timeout]);
    clearTimeout(timer);
    const ms = performance.now() - t0;

    tally.cases++;
    if (ms > tally.slowest.ms) tally.slowest = { ms, label };
    if (outcome === "hang") report("hang", label, k, `no result after ${timeoutMs} ms`);
    else if ("finding" in outcome) report(outcome.finding.kind, label, k, outcome.finding.message);
    else {
      if (outcome.code === "ok") tally.ok++;
      else tally.errors[outcome.code] = (tally.errors[outcome.code] ?? 0) + 1;
      if (ms > timeoutMs) report("slow", label, k, `took ${ms.toFixed(0)} ms (limit ${timeoutMs} ms)`);
    }
    options.onCase?.(label, outcome === "hang" ? "hang" : "finding" in outcome ? outcome.finding.kind : outcome.code, ms);
    if (tally.cases % 64 === 0) {
      sampleMemory();
      await macrotask();
    }
  }
  sampleMemory();
  tally.elapsedMs = performance.now() - start;
  return tally;
}

/** The tally as lines of text. */
export function formatFuzzTally(tally: FuzzTally): string {
  const findings = Object.values(tally.findingCounts).reduce((a, b) => a + b, 0);
  const lines = [
    `cases:    ${tally.cases} in ${(tally.elapsedMs / 1000).toFixed(1)} s (${(tally.elapsedMs / Math.max(1, tally.cases)).toFixed(2)} ms each)`,
    `ok:       ${tally.ok}`,
    ...Object.entries(tally.errors).sort((a, b) => b[1] - a[1]).map(([code, n]) => `${(code + ":").padEnd(10)}${n}`),
    `crashes:  ${findings} (${Object.entries(tally.findingCounts).map(([k, n]) => `${k} ${n}`).join(", ")})`,
    `slowest:  ${tally.slowest.ms.toFixed(1)} ms, ${tally.slowest.label}`,
  ];
  if (tally.oversizeStreamRequests > 0) {
    lines.push(`streams:  ${tally.oversizeStreamRequests} tensors larger than the rest of the stream were skipped, not allocated`);
  }
  if (tally.memoryBefore !== undefined && tally.memoryPeak !== undefined) {
    lines.push(`memory:   ${mib(tally.memoryBefore)} before, peak ${mib(tally.memoryPeak)} (+${mib(tally.memoryPeak - tally.memoryBefore)})`);
  }
  lines.push(`mutations: ${Object.entries(tally.mutations).map(([k, n]) => `${k} ${n}`).join(", ")}`);
  for (const f of tally.findings) lines.push(`${f.kind.toUpperCase()} ${f.label}\n  ${f.message}`);
  return lines.join("\n");
}

function mib(bytes: number): string {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
