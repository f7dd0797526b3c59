// Writes GGUF v3: header (metadata in insertion order, tensor table), padding, tensor data. The
// header is built in memory; tensor data can be produced lazily, chunk by chunk, and is passed on to
// a sink as it comes, so a file of many GB is written without being held in memory.
import { QwasmError } from "../../platform/errors";
import { createFile } from "../../platform/index";
import {
  GGUFValueType, integerRange, isValueType, kv, valueTypeName,
  type GGUFArray, type GGUFEntry, type GGUFMetadata, type GGUFValue, type GGUFValueTypeId,
} from "./metadata";
import type { GGUFTensorInfo } from "./reader";
import { SPLIT_COUNT, SPLIT_KEYS, SPLIT_NO, SPLIT_TENSORS_COUNT, splitPartName } from "./split";
import { tensorBytes, typeInfo, typeName } from "./types";

/** Tensor bytes: all at once, or a callback called when the tensor is written, returning the bytes in one or more chunks. */
export type TensorData =
  | Uint8Array
  | (() => TensorChunks | Promise<TensorChunks>);
export type TensorChunks = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

export interface GGUFTensorToWrite {
  name: string;
  /** [ne0, ne1, ...]; ne0 is the row length. */
  dims: readonly number[];
  /** ggml type id (see types.ts). */
  type: number;
  data: TensorData;
}

export interface GGUFToWrite {
  /** Written in iteration order. `general.alignment` (UINT32), when present, sets the alignment. */
  metadata: GGUFMetadata | Iterable<[string, GGUFEntry]>;
  /** Written in this order, each at the next aligned offset. */
  tensors: readonly GGUFTensorToWrite[];
}

/**
 * Receives the file in order. It must have consumed (written or copied) each chunk by the time its
 * promise resolves: the writer reuses its buffers after that.
 */
export type GGUFSink = (chunk: Uint8Array) => void | Promise<void>;

/** What the file will look like, known before any tensor data is produced. */
export interface GGUFLayout {
  /** Magic through the end of the tensor table (without the padding after it). */
  header: Uint8Array;
  alignment: number;
  dataOffset: number;
  tensors: GGUFTensorInfo[];
  fileSize: number;
}

const GGUF_VERSION = 3;
const DEFAULT_ALIGNMENT = 32;
const STAGING_BYTES = 4 * 1024 * 1024;
const MAX_DIMS = 4;

function invalid(message: string): QwasmError {
  return new QwasmError("INVALID_ARGUMENT", `writing GGUF: ${message}`);
}

/** A growable little-endian byte buffer for the header. */
class ByteWriter {
  private bytes = new Uint8Array(64 * 1024);
  private view = new DataView(this.bytes.buffer);
  length = 0;
  private static readonly utf8 = new TextEncoder();

  /** Makes room for n bytes and returns where they go (call before touching `view`: it may change). */
  private reserve(n: number): number {
    const at = this.length;
    if (at + n > this.bytes.length) {
      const grown = new Uint8Array(Math.max(at + n, 2 * this.bytes.length));
      grown.set(this.bytes.subarray(0, at));
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    this.length += n;
    return at;
  }

  u8(v: number): void { const at = this.reserve(1); this.view.setUint8(at, v); }
  i8(v: number): void { const at = this.reserve(1); this.view.setInt8(at, v); }
  u16(v: number): void { const at = this.reserve(2); this.view.setUint16(at, v, true); }
  i16(v: number): void { const at = this.reserve(2); this.view.setInt16(at, v, true); }
  u32(v: number): void { const at = this.reserve(4); this.view.setUint32(at, v, true); }
  i32(v: number): void { const at = this.reserve(4); this.view.setInt32(at, v, true); }
  f32(v: number): void { const at = this.reserve(4); this.view.setFloat32(at, v, true); }
  f64(v: number): void { const at = this.reserve(8); this.view.setFloat64(at, v, true); }
  u64(v: number | bigint): void { const at = this.reserve(8); this.view.setBigUint64(at, BigInt(v), true); }
  i64(v: number | bigint): void { const at = this.reserve(8); this.view.setBigInt64(at, BigInt(v), true); }

  string(s: string): void {
    const lengthAt = this.reserve(8);
    const at = this.reserve(3 * s.length); // UTF-8 needs at most 3 bytes per UTF-16 unit
    const { written } = ByteWriter.utf8.encodeInto(s, this.bytes.subarray(at));
    this.length = at + written;
    this.view.setBigUint64(lengthAt, BigInt(written), true);
  }

  finish(): Uint8Array { return this.bytes.slice(0, this.length); }
}

function mismatch(key: string, type: GGUFValueTypeId, value: unknown): QwasmError {
  return invalid(`${key}: ${typeof value} value ${String(value).slice(0, 40)} does not fit ${valueTypeName(type)}`);
}

/** One value; array items carry their array's key in errors. */
function writeValue(w: ByteWriter, key: string, type: GGUFValueTypeId, value: GGUFValue, depth: number): void {
  const wrong = () => mismatch(key, type, value);
  const range = integerRange(type);
  if (range) {
    if (typeof value !== "number" || !Number.isInteger(value) || value < range[0] || value > range[1]) throw wrong();
  }
  switch (type) {
    case GGUFValueType.UINT8: return w.u8(value as number);
    case GGUFValueType.INT8: return w.i8(value as number);
    case GGUFValueType.UINT16: return w.u16(value as number);
    case GGUFValueType.INT16: return w.i16(value as number);
    case GGUFValueType.UINT32: return w.u32(value as number);
    case GGUFValueType.INT32: return w.i32(value as number);
    case GGUFValueType.FLOAT32:
      if (typeof value !== "number") throw wrong();
      return w.f32(value);
    case GGUFValueType.FLOAT64:
      if (typeof value !== "number") throw wrong();
      return w.f64(value);
    case GGUFValueType.UINT64:
    case GGUFValueType.INT64: {
      if (typeof value !== "bigint" && !(typeof value === "number" && Number.isInteger(value))) throw wrong();
      const big = BigInt(value);
      const ok = type === GGUFValueType.UINT64
        ? big >= 0n && big < 1n << 64n
        : big >= -(1n << 63n) && big < 1n << 63n;
      if (!ok) throw wrong();
      return type === GGUFValueType.UINT64 ? w.u64(big) : w.i64(big);
    }
    case GGUFValueType.BOOL:
      if (typeof value !== "boolean") throw wrong();
      return w.u8(value ? 1 : 0);
    case GGUFValueType.STRING:
      if (typeof value !== "string") throw wrong();
      return w.string(value);
    case GGUFValueType.ARRAY: {
      const array = value as GGUFArray;
      if (typeof array !== "object" || array === null || !isValueType(array.itemType) || !array.items) throw wrong();
      if (depth >= 8) throw invalid(`${key}: arrays nested more than 8 deep`);
      w.u32(array.itemType);
      w.u64(array.items.length);
      for (let i = 0; i < array.items.length; i++) {
        writeValue(w, key, array.itemType, array.items[i] as GGUFValue, depth + 1);
      }
      return;
    }
  }
}

function alignmentOf(metadata: Iterable<[string, GGUFEntry]>): number {
  for (const [key, entry] of metadata) {
    if (key !== "general.alignment") continue;
    const a = entry.value;
    if (entry.type !== GGUFValueType.UINT32 || typeof a !== "number" || a === 0 || ((a & (a - 1)) >>> 0) !== 0) {
      throw invalid(`general.alignment must be a UINT32 power of two, got ${valueTypeName(entry.type)} ${String(a)}`);
    }
    return a;
  }
  return DEFAULT_ALIGNMENT;
}

function checkTensor(t: GGUFTensorToWrite, names: Set<string>): number {
  if (!t.name) throw invalid("a tensor has an empty name");
  if (names.has(t.name)) throw invalid(`duplicate tensor name ${t.name}`);
  names.add(t.name);
  if (t.dims.length < 1 || t.dims.length > MAX_DIMS) throw invalid(`tensor ${t.name}: 1..${MAX_DIMS} dims, got ${t.dims.length}`);
  if (!t.dims.every((d) => Number.isSafeInteger(d) && d > 0)) throw invalid(`tensor ${t.name}: bad dims [${t.dims.join(", ")}]`);
  const info = typeInfo(t.type);
  if (!info) throw invalid(`tensor ${t.name} has ${typeName(t.type)}, which has no block layout`);
  if (t.dims[0] % info.blockSize !== 0) {
    throw invalid(`tensor ${t.name}: row length ${t.dims[0]} is not a multiple of the ${info.name} block size ${info.blockSize}`);
  }
  return tensorBytes(t.type, t.dims);
}

/** Checks the input and encodes the header; says where every tensor will go. */
export function layoutGGUF(input: GGUFToWrite): GGUFLayout {
  const entries = [...input.metadata];
  const alignment = alignmentOf(entries);
  const w = new ByteWriter();
  w.u32(0x46554747); // "GGUF"
  w.u32(GGUF_VERSION);
  w.u64(input.tensors.length);
  w.u64(entries.length);

  const keys = new Set<string>();
  for (const [key, entry] of entries) {
    if (!key) throw invalid("empty metadata key");
    if (keys.has(key)) throw invalid(`duplicate metadata key ${key}`);
    keys.add(key);
    if (!isValueType(entry.type)) throw invalid(`${key}: unknown value type ${entry.type}`);
    w.string(key);
    w.u32(entry.type);
    writeValue(w, key, entry.type, entry.value, 0);
  }

  const tensors: GGUFTensorInfo[] = [];
  const names = new Set<string>();
  let offset = 0;
  for (const t of input.tensors) {
    const nbytes = checkTensor(t, names);
    tensors.push({ name: t.name, dims: [...t.dims], type: t.type, offset, nbytes });
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(offset);
    offset = alignUp(offset + nbytes, alignment);
  }

  const header = w.finish();
  const dataOffset = alignUp(header.length, alignment);
  return { header, alignment, dataOffset, tensors, fileSize: dataOffset + offset };
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

/** Gathers small pieces into one buffer so that the sink sees few, large chunks. */
class StagedSink {
  private staging = new Uint8Array(STAGING_BYTES);
  private filled = 0;
  written = 0;

  constructor(private readonly sink: GGUFSink, private readonly onProgress?: (written: number) => void) {}

  async write(bytes: Uint8Array): Promise<void> {
    if (bytes.length >= STAGING_BYTES / 2) {
      await this.flush();
      await this.sink(bytes);
    } else {
      if (this.filled + bytes.length > STAGING_BYTES) await this.flush();
      this.staging.set(bytes, this.filled);
      this.filled += bytes.length;
    }
    this.written += bytes.length;
    this.onProgress?.(this.written);
  }

  async zeros(n: number): Promise<void> {
    if (n > 0) await this.write(new Uint8Array(n));
  }

  async flush(): Promise<void> {
    if (this.filled === 0) return;
    await this.sink(this.staging.subarray(0, this.filled));
    this.filled = 0;
  }
}

async function* chunksOf(data: TensorData): AsyncIterable<Uint8Array> {
  const produced = typeof data === "function" ? await data() : data;
  if (produced instanceof Uint8Array) yield produced;
  else yield* produced;
}

async function writeTensorData(out: StagedSink, t: GGUFTensorToWrite, info: GGUFTensorInfo): Promise<void> {
  let written = 0;
  for await (const chunk of chunksOf(t.data)) {
    if (!(chunk instanceof Uint8Array)) throw invalid(`tensor ${t.name}: data chunks must be Uint8Arrays`);
    written += chunk.length;
    if (written > info.nbytes) throw invalid(`tensor ${t.name}: data has more than the ${info.nbytes} bytes its dims and type need`);
    await out.write(chunk);
  }
  if (written !== info.nbytes) throw invalid(`tensor ${t.name}: data has ${written} bytes, its dims and type need ${info.nbytes}`);
}

async function writeLayout(layout: GGUFLayout, input: GGUFToWrite, sink: GGUFSink,
  onProgress?: (written: number, total: number) => void): Promise<void> {
  const out = new StagedSink(sink, onProgress && ((written) => onProgress(written, layout.fileSize)));
  await out.write(layout.header);
  await out.zeros(layout.dataOffset - layout.header.length);
  for (let i = 0; i < input.tensors.length; i++) {
    const info = layout.tensors[i];
    await writeTensorData(out, input.tensors[i], info);
    const end = info.offset + info.nbytes;
    await out.zeros(alignUp(end, layout.alignment) - end);
  }
  await out.flush();
}

/** Writes the file to `sink` chunk by chunk; returns its layout. */
export async function writeGGUF(input: GGUFToWrite, sink: GGUFSink,
  onProgress?: (written: number, total: number) => void): Promise<GGUFLayout> {
  const layout = layoutGGUF(input);
  await writeLayout(layout, input, sink, onProgress);
  return layout;
}

/** The whole file as bytes. */
export async function writeGGUFBytes(input: GGUFToWrite): Promise<Uint8Array> {
  const layout = layoutGGUF(input);
  const bytes = new Uint8Array(layout.fileSize);
  let at = 0;
  await writeLayout(layout, input, (chunk) => {
    bytes.set(chunk, at);
    at += chunk.length;
  });
  return bytes;
}

/** Writes the file to a local path (Node, Bun, Deno). */
export async function writeGGUFFile(path: string | URL, input: GGUFToWrite,
  onProgress?: (written: number, total: number) => void): Promise<GGUFLayout> {
  const layout = layoutGGUF(input);
  const file = await createFile(path);
  try {
    await writeLayout(layout, input, (chunk) => file.write(chunk), onProgress);
  } finally {
    await file.close();
  }
  return layout;
}

// ---------------------------------------------------------------------------------------------
// Split files (llama.cpp's gguf-split; split.ts has the format)

export interface SplitOptions {
  /** At most this many bytes of tensor data (each tensor padded to 32) per part, like gguf-split --split-max-size; a bigger tensor gets a part of its own. */
  maxBytes?: number;
  /** At most this many tensors per part, like gguf-split --split-max-tensors. */
  maxTensors?: number;
  /** Exactly this many parts, cut where the tensor bytes are closest to equal shares. */
  parts?: number;
}

/** Where each part starts (tensor indices): `sizes` are the tensors' padded bytes. */
function splitPoints(sizes: number[], options: SplitOptions): number[] {
  const n = sizes.length;
  const given = (["maxBytes", "maxTensors", "parts"] as const).filter((k) => options[k] !== undefined);
  if (given.length !== 1) throw invalid(`split: give one of maxBytes, maxTensors or parts, got ${given.length === 0 ? "none" : given.join(" and ")}`);
  const [key] = given;
  const value = options[key]!;
  if (!Number.isSafeInteger(value) || value < 1) throw invalid(`split: ${key} must be a positive integer, got ${value}`);
  if (n === 0) throw invalid("split: a model without tensors cannot be split");
  const starts = [0];
  if (key === "maxTensors") {
    for (let i = value; i < n; i += value) starts.push(i);
  } else if (key === "maxBytes") {
    let bytes = 0;
    for (let i = 0; i < n; i++) {
      if (i > starts.at(-1)! && bytes + sizes[i] > value) {
        starts.push(i);
        bytes = 0;
      }
      bytes += sizes[i];
    }
  } else {
    if (value > n) throw invalid(`split: ${value} parts need at least ${value} tensors, the model has ${n}`);
    const total = sizes.reduce((a, b) => a + b, 0);
    let i = 0;
    let before = 0;
    for (let k = 1; k < value; k++) {
      // The first tensor whose preceding bytes reach k/parts of the total, keeping every part non-empty.
      while (i < n - (value - k) && (i <= starts.at(-1)! || before < (k * total) / value)) before += sizes[i++];
      starts.push(i);
    }
  }
  if (starts.length > 0xffff) throw invalid(`split: ${starts.length} parts, but split.count is a UINT16`);
  return starts;
}

/**
 * The parts of `input` split as gguf-split does: tensors in order, cut by `options`; the first part
 * has all the metadata, every part ends its metadata with split.no (UINT16, 0-based), split.count
 * (UINT16) and split.tensors.count (INT32). Tensor data is passed through (still produced lazily).
 */
export function splitGGUF(input: GGUFToWrite, options: SplitOptions): GGUFToWrite[] {
  const entries = [...input.metadata].filter(([key]) => !SPLIT_KEYS.includes(key));
  const alignment = alignmentOf(entries);
  const names = new Set<string>();
  const sizes = input.tensors.map((t) => alignUp(checkTensor(t, names), 32));
  const starts = splitPoints(sizes, options);
  const count = starts.length;
  if (input.tensors.length > 0x7fffffff) throw invalid("split: split.tensors.count is an INT32");
  return starts.map((start, no) => {
    const splitKeys: [string, GGUFEntry][] = [
      [SPLIT_NO, kv.u16(no)], [SPLIT_COUNT, kv.u16(count)], [SPLIT_TENSORS_COUNT, kv.i32(input.tensors.length)],
    ];
    const rest: [string, GGUFEntry][] = alignment === DEFAULT_ALIGNMENT ? [] : [["general.alignment", kv.u32(alignment)]];
    return {
      metadata: no === 0 ? [...entries, ...splitKeys] : [...rest, ...splitKeys],
      tensors: input.tensors.slice(start, starts[no + 1] ?? input.tensors.length),
    };
  });
}

/** The parts as bytes, in split.no order. */
export async function writeGGUFSplitBytes(input: GGUFToWrite, options: SplitOptions): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for (const part of splitGGUF(input, options)) out.push(await writeGGUFBytes(part));
  return out;
}

/**
 * Writes the parts to `<prefix>-00001-of-0000N.gguf`, ... (Node, Bun, Deno), tensor by tensor; the
 * progress counts the bytes of all parts. Returns each part's path and layout.
 */
export async function writeGGUFSplitFiles(prefix: string, input: GGUFToWrite, options: SplitOptions,
  onProgress?: (written: number, total: number, path: string) => void): Promise<{ path: string; layout: GGUFLayout }[]> {
  const parts = splitGGUF(input, options);
  const layouts = parts.map(layoutGGUF);
  const total = layouts.reduce((sum, l) => sum + l.fileSize, 0);
  const out: { path: string; layout: GGUFLayout }[] = [];
  let before = 0;
  for (let no = 0; no < parts.length; no++) {
    const path = splitPartName(prefix, no, parts.length);
    const file = await createFile(path);
    try {
      await writeLayout(layouts[no], parts[no], (chunk) => file.write(chunk),
        onProgress && ((written) => onProgress(before + written, total, path)));
    } finally {
      await file.close();
    }
    before += layouts[no].fileSize;
    out.push({ path, layout: layouts[no] });
  }
  return out;
}
