// Reads GGUF v2/v3 files. The header (metadata and tensor table) is parsed from a prefix of the file
// with every field checked against the bytes that exist, so a hostile file can only produce a
// GGUFError; then the tensor data is copied, in file order, into destinations the caller allocates.
//
// Layout (little-endian): "GGUF" u32 version, u64 tensor_count, u64 kv_count;
// kv_count × (string key, u32 value_type, value); tensor_count × (string name, u32 n_dims,
// u64 dims[n_dims] (ne0 first), u32 ggml_type, u64 offset); padding to general.alignment; data.
// A string is a u64 byte length and UTF-8 bytes; an array is u32 item_type, u64 count, items.
import { GGUFError, QwasmError } from "../../platform/errors";
import {
  GGUFMetadata, GGUFValueType, isValueType, int64Value, valueTypeName,
  type GGUFArray, type GGUFArrayItems, type GGUFValue, type GGUFValueTypeId,
} from "./metadata";
import { bytesSource, openSource, sourceName, type ByteSource, type GGUFPartSource, type GGUFSource, type StreamSource } from "./source";
import { checkSplitParts, parseSplitName, splitKeysOf, splitSiblingNames, SplitGGUFError } from "./split";
import { tensorBytes, typeInfo, typeName } from "./types";

export interface GGUFTensorInfo {
  name: string;
  /** [ne0, ne1, ...]; ne0 is the row length. */
  dims: number[];
  /** ggml type id (see types.ts). */
  type: number;
  /** Offset of the data from the start of the data section; a multiple of the alignment. */
  offset: number;
  /** Bytes of data, from the type table. */
  nbytes: number;
}

export interface GGUFHeader {
  version: number;
  metadata: GGUFMetadata;
  /** In the order of the file's tensor table. */
  tensors: GGUFTensorInfo[];
  alignment: number;
  /** File offset of the data section: the end of the tensor table, aligned up. */
  dataOffset: number;
  /** Total bytes, when known: always for bytes and files, for streams when the server says. */
  fileSize?: number;
}

export interface GGUFReadProgress {
  /** Tensor bytes copied (or skipped) so far, of `totalBytes`. */
  loadedBytes: number;
  totalBytes: number;
  /** Tensors copied (or skipped) completely so far, of `tensorCount`. */
  tensorsDone: number;
  tensorCount: number;
  /** The tensor being copied. */
  tensor: GGUFTensorInfo;
}

/** Where a tensor's bytes go: exactly `tensor.nbytes` long, or null to skip the tensor. */
export type TensorDestination =
  (tensor: GGUFTensorInfo) => Uint8Array | null | undefined | Promise<Uint8Array | null | undefined>;

export interface OpenGGUFOptions {
  /** The largest header (metadata and tensor table) to accept; default 256 MiB. */
  maxHeaderBytes?: number;
  /** Bytes to read before the first attempt to parse the header (doubling until it fits); default 2 MiB. */
  firstReadBytes?: number;
  /** Cancels a fetch. */
  signal?: AbortSignal;
}

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const DEFAULT_ALIGNMENT = 32;
const DEFAULT_MAX_HEADER_BYTES = 256 * 1024 * 1024;
const FIRST_READ_BYTES = 2 * 1024 * 1024;
const MAX_DIMS = 4;
const MAX_ARRAY_DEPTH = 8;
const COPY_CHUNK_BYTES = 16 * 1024 * 1024;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

// Smallest encodings, to check a count against the bytes left before looping over it.
const MIN_KV_BYTES = 8 + 1 + 4 + 1;                 // key length, 1-byte key, value type, u8 value
const MIN_TENSOR_INFO_BYTES = 8 + 1 + 4 + 8 + 4 + 8; // name length, 1-byte name, n_dims, one dim, type, offset
const ITEM_BYTES: Record<GGUFValueTypeId, number> = {
  [GGUFValueType.UINT8]: 1, [GGUFValueType.INT8]: 1, [GGUFValueType.UINT16]: 2, [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4, [GGUFValueType.INT32]: 4, [GGUFValueType.FLOAT32]: 4, [GGUFValueType.BOOL]: 1,
  [GGUFValueType.STRING]: 8, [GGUFValueType.ARRAY]: 4 + 8,
  [GGUFValueType.UINT64]: 8, [GGUFValueType.INT64]: 8, [GGUFValueType.FLOAT64]: 8,
};

/** Thrown inside the parser when the prefix ends before the header does and more bytes may come. */
class NeedMoreBytes {
  constructor(readonly end: number) {}
}

const utf8 = new TextDecoder("utf-8", { fatal: true });
const SHORT_STRING_BYTES = 64;
const shortUnits = new Uint16Array(SHORT_STRING_BYTES); // never more UTF-16 units than UTF-8 bytes

/**
 * UTF-8 → string for short strings (keys, tokens, merges: hundreds of thousands of them), where
 * TextDecoder's per-call cost dominates (2-3x faster on a Qwen2 vocabulary). Undefined when the
 * bytes are not valid UTF-8.
 */
function decodeShortUtf8(bytes: Uint8Array, start: number, end: number): string | undefined {
  let n = 0;
  for (let i = start; i < end;) {
    const lead = bytes[i++];
    if (lead < 0x80) { shortUnits[n++] = lead; continue; }
    let extra: number, min: number, cp: number;
    if ((lead & 0xe0) === 0xc0) { extra = 1; min = 0x80; cp = lead & 0x1f; }
    else if ((lead & 0xf0) === 0xe0) { extra = 2; min = 0x800; cp = lead & 0x0f; }
    else if ((lead & 0xf8) === 0xf0) { extra = 3; min = 0x10000; cp = lead & 0x07; }
    else return undefined;
    if (i + extra > end) return undefined;
    for (let k = 0; k < extra; k++) {
      const next = bytes[i++];
      if ((next & 0xc0) !== 0x80) return undefined;
      cp = (cp << 6) | (next & 0x3f);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return undefined;
    if (cp < 0x10000) {
      shortUnits[n++] = cp;
    } else {
      shortUnits[n++] = 0xd800 + ((cp - 0x10000) >> 10);
      shortUnits[n++] = 0xdc00 + ((cp - 0x10000) & 0x3ff);
    }
  }
  return String.fromCharCode.apply(null, shortUnits.subarray(0, n) as unknown as number[]);
}

/**
 * Reads fields from a prefix of the file. Every read first checks that its bytes exist: within the
 * prefix it goes on; past the end of the file (or the header limit) it throws a GGUFError; otherwise
 * it throws NeedMoreBytes and the caller retries with a longer prefix.
 */
class Cursor {
  pos = 0;
  private readonly view: DataView;

  constructor(
    private readonly bytes: Uint8Array,
    /** How far the header may extend: the file size or maxHeaderBytes, whichever is smaller. */
    private readonly limit: number,
    private readonly fileSize: number | undefined,
  ) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number { return this.limit - this.pos; }

  private limitText(): string {
    return this.limit === this.fileSize
      ? `the end of the file (${this.fileSize} bytes; truncated?)`
      : `the ${this.limit}-byte header limit (maxHeaderBytes)`;
  }

  need(field: string, n: number): void {
    const end = this.pos + n;
    if (end <= this.bytes.length) return;
    if (end > this.limit) throw new GGUFError(field, this.pos, `needs ${n} bytes, which run past ${this.limitText()}`);
    throw new NeedMoreBytes(end);
  }

  u8(field: string): number { this.need(field, 1); return this.view.getUint8(this.pos++); }
  u32(field: string): number { this.need(field, 4); const v = this.view.getUint32(this.pos, true); this.pos += 4; return v; }
  u64(field: string): bigint { this.need(field, 8); const v = this.view.getBigUint64(this.pos, true); this.pos += 8; return v; }

  /** A u64 that must be a safe integer (a size or an offset). */
  safeU64(field: string): number {
    const at = this.pos;
    const v = this.u64(field);
    if (v > MAX_SAFE) throw new GGUFError(field, at, `value ${v} is too large`);
    return Number(v);
  }

  /** A u64 count of entries of at least `minBytes` each, checked against the bytes left. */
  count(field: string, minBytes: number): number {
    const at = this.pos;
    const n = this.u64(field);
    if (n * BigInt(minBytes) > BigInt(this.remaining)) {
      throw new GGUFError(field, at, `count ${n} is impossible: that many entries of at least ${minBytes} bytes ` +
        `each would run past ${this.limitText()}`);
    }
    return Number(n);
  }

  string(field: string): string {
    const at = this.pos;
    const length = this.u64(field);
    if (length > BigInt(this.remaining)) {
      throw new GGUFError(field, at, `string length ${length} runs past ${this.limitText()}`);
    }
    const n = Number(length);
    this.need(field, n);
    const start = this.pos;
    this.pos += n;
    const short = n <= SHORT_STRING_BYTES ? decodeShortUtf8(this.bytes, start, start + n) : undefined;
    if (short !== undefined) return short;
    try {
      return utf8.decode(this.bytes.subarray(start, start + n));
    } catch {
      throw new GGUFError(field, start, "string is not valid UTF-8");
    }
  }

  /** One value of a fixed-size type (UINT8..FLOAT64 except STRING and ARRAY). */
  scalar(field: string, type: GGUFValueTypeId): number | bigint | boolean {
    const at = this.pos;
    this.need(field, ITEM_BYTES[type]);
    this.pos += ITEM_BYTES[type];
    const v = this.view;
    switch (type) {
      case GGUFValueType.UINT8: return v.getUint8(at);
      case GGUFValueType.INT8: return v.getInt8(at);
      case GGUFValueType.UINT16: return v.getUint16(at, true);
      case GGUFValueType.INT16: return v.getInt16(at, true);
      case GGUFValueType.UINT32: return v.getUint32(at, true);
      case GGUFValueType.INT32: return v.getInt32(at, true);
      case GGUFValueType.FLOAT32: return v.getFloat32(at, true);
      case GGUFValueType.FLOAT64: return v.getFloat64(at, true);
      case GGUFValueType.UINT64: return int64Value(v.getBigUint64(at, true));
      case GGUFValueType.INT64: return int64Value(v.getBigInt64(at, true));
      case GGUFValueType.BOOL: {
        const b = v.getUint8(at);
        if (b > 1) throw new GGUFError(field, at, `a BOOL must be 0 or 1, got ${b}`);
        return b === 1;
      }
      default: throw new Error(`unreachable: scalar of ${valueTypeName(type)}`);
    }
  }

  /** n numeric items into a typed array; DataView reads keep this right on big-endian hosts too. */
  numbers(field: string, type: GGUFValueTypeId, n: number): GGUFArrayItems {
    const size = ITEM_BYTES[type];
    this.need(field, n * size);
    const at = this.pos;
    this.pos += n * size;
    const v = this.view;
    const fill = <T extends { [i: number]: number | bigint }>(out: T, get: (o: number) => number | bigint): T => {
      for (let i = 0; i < n; i++) out[i] = get(at + i * size);
      return out;
    };
    switch (type) {
      case GGUFValueType.UINT8: return this.bytes.slice(at, at + n);
      case GGUFValueType.INT8: return new Int8Array(this.bytes.slice(at, at + n).buffer);
      case GGUFValueType.UINT16: return fill(new Uint16Array(n), (o) => v.getUint16(o, true));
      case GGUFValueType.INT16: return fill(new Int16Array(n), (o) => v.getInt16(o, true));
      case GGUFValueType.UINT32: return fill(new Uint32Array(n), (o) => v.getUint32(o, true));
      case GGUFValueType.INT32: return fill(new Int32Array(n), (o) => v.getInt32(o, true));
      case GGUFValueType.FLOAT32: return fill(new Float32Array(n), (o) => v.getFloat32(o, true));
      case GGUFValueType.FLOAT64: return fill(new Float64Array(n), (o) => v.getFloat64(o, true));
      case GGUFValueType.UINT64: return fill(new BigUint64Array(n), (o) => v.getBigUint64(o, true));
      case GGUFValueType.INT64: return fill(new BigInt64Array(n), (o) => v.getBigInt64(o, true));
      default: throw new Error(`unreachable: numbers of ${valueTypeName(type)}`);
    }
  }
}

function readValue(c: Cursor, field: string, type: GGUFValueTypeId, depth: number): GGUFValue {
  if (type === GGUFValueType.STRING) return c.string(field);
  if (type === GGUFValueType.ARRAY) return readArray(c, field, depth);
  return c.scalar(field, type);
}

function readArray(c: Cursor, field: string, depth: number): GGUFArray {
  const at = c.pos;
  if (depth >= MAX_ARRAY_DEPTH) throw new GGUFError(field, at, `arrays nested more than ${MAX_ARRAY_DEPTH} deep`);
  const itemType = c.u32(`${field} (array item type)`);
  if (!isValueType(itemType)) throw new GGUFError(field, at, `unknown array item type ${itemType}`);
  const n = c.count(`${field} (array length)`, ITEM_BYTES[itemType]);
  switch (itemType) {
    case GGUFValueType.STRING: {
      const items: string[] = [];
      for (let i = 0; i < n; i++) items.push(c.string(field));
      return { itemType, items };
    }
    case GGUFValueType.ARRAY: {
      const items: GGUFArray[] = [];
      for (let i = 0; i < n; i++) items.push(readArray(c, `${field}[${i}]`, depth + 1));
      return { itemType, items };
    }
    case GGUFValueType.BOOL: {
      const items: boolean[] = [];
      for (let i = 0; i < n; i++) items.push(c.scalar(field, itemType) as boolean);
      return { itemType, items };
    }
    default:
      return { itemType, items: c.numbers(field, itemType, n) };
  }
}

function readMetadata(c: Cursor, kvCount: number): GGUFMetadata {
  const metadata = new GGUFMetadata();
  for (let i = 0; i < kvCount; i++) {
    const at = c.pos;
    const key = c.string(`key of metadata entry ${i}`);
    if (key === "") throw new GGUFError(`key of metadata entry ${i}`, at, "empty key");
    if (metadata.has(key)) throw new GGUFError(key, at, "duplicate metadata key");
    const typeAt = c.pos;
    const type = c.u32(`${key} (value type)`);
    if (!isValueType(type)) throw new GGUFError(key, typeAt, `unknown value type ${type}`);
    metadata.set(key, { type, value: readValue(c, key, type, 0) }, at);
  }
  return metadata;
}

function alignmentOf(metadata: GGUFMetadata): number {
  const entry = metadata.entry("general.alignment");
  if (!entry) return DEFAULT_ALIGNMENT;
  const at = metadata.offsetOf("general.alignment")!;
  if (entry.type !== GGUFValueType.UINT32) {
    throw new GGUFError("general.alignment", at, `must be a UINT32, got ${valueTypeName(entry.type)}`);
  }
  const alignment = entry.value as number;
  // A power of two has one bit set (x & (x - 1) clears the lowest; >>> 0 keeps 2^31 unsigned).
  if (alignment === 0 || ((alignment & (alignment - 1)) >>> 0) !== 0) {
    throw new GGUFError("general.alignment", at, `must be a nonzero power of two, got ${alignment}`);
  }
  return alignment;
}

function readTensorInfo(c: Cursor, index: number, alignment: number, names: Set<string>): GGUFTensorInfo {
  const at = c.pos;
  const name = c.string(`name of tensor ${index}`);
  if (name === "") throw new GGUFError(`name of tensor ${index}`, at, "empty tensor name");
  if (names.has(name)) throw new GGUFError(`tensor ${name}`, at, "duplicate tensor name");
  names.add(name);

  const nDimsAt = c.pos;
  const nDims = c.u32(`dimension count of ${name}`);
  if (nDims < 1 || nDims > MAX_DIMS) {
    throw new GGUFError(`dimension count of ${name}`, nDimsAt, `must be 1..${MAX_DIMS}, got ${nDims}`);
  }
  const dims: number[] = [];
  let elements = 1n;
  for (let d = 0; d < nDims; d++) {
    const dimAt = c.pos;
    const ne = c.u64(`dims of ${name}`);
    elements *= ne;
    if (ne === 0n) throw new GGUFError(`dims of ${name}`, dimAt, `dimension ${d} is 0`);
    if (elements > MAX_SAFE) throw new GGUFError(`dims of ${name}`, dimAt, "more than 2^53 elements");
    dims.push(Number(ne));
  }

  const typeAt = c.pos;
  const type = c.u32(`type of ${name}`);
  const info = typeInfo(type);
  if (!info) {
    throw new GGUFError(`type of ${name}`, typeAt,
      `tensor ${name} has ${typeName(type)}, which ggml does not define (a newer or corrupt file?)`, "GGUF_UNSUPPORTED");
  }
  if (dims[0] % info.blockSize !== 0) {
    throw new GGUFError(`dims of ${name}`, nDimsAt + 4,
      `row length ${dims[0]} is not a multiple of the ${info.name} block size ${info.blockSize}`);
  }
  const nbytes = tensorBytes(type, dims);
  if (!Number.isSafeInteger(nbytes)) throw new GGUFError(`dims of ${name}`, nDimsAt + 4, `${nbytes} bytes is too large`);

  const offsetAt = c.pos;
  const offset = c.safeU64(`offset of ${name}`);
  if (offset % alignment !== 0) {
    throw new GGUFError(`offset of ${name}`, offsetAt, `${offset} is not a multiple of the alignment ${alignment}`);
  }
  return { name, dims, type, offset, nbytes };
}

/** Tensors must lie inside the file (when its size is known) and must not overlap. */
function checkTensorRanges(tensors: GGUFTensorInfo[], infoOffsets: number[], dataOffset: number, fileSize?: number): void {
  const order = tensors.map((_, i) => i).sort((a, b) => tensors[a].offset - tensors[b].offset);
  let previous: GGUFTensorInfo | undefined;
  for (const i of order) {
    const t = tensors[i];
    const start = dataOffset + t.offset;
    const end = start + t.nbytes;
    const field = `data of ${t.name}`;
    if (!Number.isSafeInteger(end)) throw new GGUFError(field, infoOffsets[i], `ends beyond 2^53 bytes`);
    if (fileSize !== undefined && end > fileSize) {
      throw new GGUFError(field, infoOffsets[i],
        `bytes ${start}..${end} lie past the end of the file (${fileSize} bytes; truncated?)`);
    }
    if (previous && previous.offset + previous.nbytes > t.offset) {
      throw new GGUFError(field, infoOffsets[i], `overlaps the data of ${previous.name}`);
    }
    previous = t;
  }
}

/**
 * Parses the header from `prefix`, the first bytes of a file of `fileSize` bytes (when known).
 * Throws NeedMoreBytes when the prefix is too short and the header may still fit in `maxHeaderBytes`.
 */
function parseHeader(prefix: Uint8Array, fileSize: number | undefined, maxHeaderBytes: number): GGUFHeader {
  const c = new Cursor(prefix, Math.min(fileSize ?? Infinity, maxHeaderBytes), fileSize);

  const magic = c.u32("magic");
  if (magic !== GGUF_MAGIC) {
    const text = Array.from(prefix.subarray(0, 4), (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    throw new GGUFError("magic", 0, `not a GGUF file: expected "GGUF", found "${text}" (0x${magic.toString(16).padStart(8, "0")})`);
  }
  const version = c.u32("version");
  if (version === 1) {
    throw new GGUFError("version", 4, "GGUF version 1 is not supported (only 2 and 3); convert the model with a current llama.cpp", "GGUF_UNSUPPORTED");
  }
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 | (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
    if (swapped === 2 || swapped === 3) {
      throw new GGUFError("version", 4, `this is a big-endian GGUF (version ${swapped}); qwasm reads little-endian files only`, "GGUF_UNSUPPORTED");
    }
    throw new GGUFError("version", 4, `GGUF version ${version} is not supported (only 2 and 3)`, "GGUF_UNSUPPORTED");
  }

  const tensorCount = c.count("tensor_count", MIN_TENSOR_INFO_BYTES);
  const kvCount = c.count("metadata_kv_count", MIN_KV_BYTES);
  const metadata = readMetadata(c, kvCount);
  const alignment = alignmentOf(metadata);

  const tensors: GGUFTensorInfo[] = [];
  const infoOffsets: number[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    infoOffsets.push(c.pos);
    tensors.push(readTensorInfo(c, i, alignment, names));
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  checkTensorRanges(tensors, infoOffsets, dataOffset, fileSize);
  return { version, metadata, tensors, alignment, dataOffset, fileSize };
}

/** One file of a model: the whole model, or one part of a split model. */
export interface GGUFPart extends GGUFHeader {
  /** The path, URL or File name it was opened from; `part N` (or `bytes`) when it has none. */
  name: string;
  /** split.no (0-based); 0 for a whole file. */
  no: number;
  /** Bytes of its tensors' data. */
  tensorDataBytes: number;
}

interface OpenedPart {
  header: GGUFHeader;
  source: ByteSource;
  name: string;
}

/**
 * A parsed GGUF model: the header, plus access to the tensor data of its source. A split model
 * (several files) reads as one: the first part's metadata, one tensor list over all parts (each
 * tensor's `offset` is within its own part's data section), and each tensor's bytes come from its
 * own part. `parts` lists the files.
 */
export class GGUFFile implements GGUFHeader {
  readonly version: number;
  readonly metadata: GGUFMetadata;
  readonly tensors: GGUFTensorInfo[];
  readonly alignment: number;
  readonly dataOffset: number;
  /** Bytes of all parts together, when known. */
  readonly fileSize?: number;
  /** The files, in split.no order: one for a whole file. */
  readonly parts: readonly GGUFPart[];
  private readonly sources: ByteSource[];
  /** Index into `parts` of each tensor's part, by name. */
  private readonly partIndex = new Map<string, number>();
  private byName?: Map<string, GGUFTensorInfo>;
  private streamConsumed = false;

  constructor(header: GGUFHeader, source: ByteSource, name = "bytes") {
    this.version = header.version;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.alignment = header.alignment;
    this.dataOffset = header.dataOffset;
    this.fileSize = header.fileSize;
    this.sources = [source];
    this.parts = [partOf(header, name, 0)];
  }

  /** A split model from its parts, in split.no order (checked by checkSplitParts). */
  static fromParts(parts: readonly OpenedPart[], numbers: readonly number[]): GGUFFile {
    const file = new GGUFFile(parts[0].header, parts[0].source, parts[0].name);
    const all = parts.map((p, i) => partOf(p.header, p.name, numbers[i]));
    const sizes = all.map((p) => p.fileSize);
    Object.assign(file, {
      tensors: all.flatMap((p) => p.tensors),
      fileSize: sizes.every((s) => s !== undefined) ? sizes.reduce((a, b) => a! + b!, 0) : undefined,
      parts: all,
      sources: parts.map((p) => p.source),
    });
    all.forEach((p, i) => { for (const t of p.tensors) file.partIndex.set(t.name, i); });
    return file;
  }

  /** The tensor named `name`, or undefined. */
  tensor(name: string): GGUFTensorInfo | undefined {
    this.byName ??= new Map(this.tensors.map((t) => [t.name, t]));
    return this.byName.get(name);
  }

  /** The file that holds a tensor's data. */
  partOf(tensorOrName: GGUFTensorInfo | string): GGUFPart {
    const name = typeof tensorOrName === "string" ? tensorOrName : tensorOrName.name;
    return this.parts[this.partIndex.get(name) ?? 0];
  }

  /** Bytes of all tensor data together. */
  get tensorDataBytes(): number {
    return this.tensors.reduce((sum, t) => sum + t.nbytes, 0);
  }

  /**
   * Copies every tensor's bytes into the destination `destinationFor(tensor)` returns (exactly
   * tensor.nbytes long; null skips it). Tensors are visited part by part, in file order within a
   * part, so a stream is read once from start to end, without holding more than a chunk of it. A
   * stream can be read only once.
   */
  async readTensorData(destinationFor: TensorDestination, onProgress?: (p: GGUFReadProgress) => void): Promise<void> {
    if (this.sources.some((s) => s.kind === "stream")) {
      if (this.streamConsumed) throw new QwasmError("INVALID_ARGUMENT", "the tensor data of a stream can be read only once");
      this.streamConsumed = true;
    }
    const progress = { loadedBytes: 0, totalBytes: this.tensorDataBytes, tensorsDone: 0, tensorCount: this.tensors.length };
    for (let p = 0; p < this.parts.length; p++) {
      const part = this.parts[p];
      const source = this.sources[p];
      const order = [...part.tensors].sort((a, b) => a.offset - b.offset);
      for (const tensor of order) {
        let tensorLoaded = 0;
        const report = (bytes: number) => {
          progress.loadedBytes += bytes;
          tensorLoaded += bytes;
          if (tensorLoaded === tensor.nbytes) progress.tensorsDone++;
          onProgress?.({ ...progress, tensor });
        };
        const dest = (await destinationFor(tensor)) ?? null;
        if (dest !== null && dest.length !== tensor.nbytes) {
          throw new QwasmError("INVALID_ARGUMENT",
            `the destination for tensor ${tensor.name} has ${dest.length} bytes, expected ${tensor.nbytes}`);
        }
        const start = part.dataOffset + tensor.offset;
        if (source.kind === "stream") {
          await skipTo(source, start, tensor.name);
          await copyFromStream(source, tensor, dest, report);
        } else if (dest !== null) {
          for (let done = 0; done < tensor.nbytes;) {
            const length = Math.min(COPY_CHUNK_BYTES, tensor.nbytes - done);
            const into = dest.subarray(done, done + length);
            const bytes = await source.read(`data of ${tensor.name}`, start + done, length, into);
            if (bytes.buffer !== into.buffer || bytes.byteOffset !== into.byteOffset) into.set(bytes); // else read in place
            done += length;
            report(length);
          }
        } else {
          report(tensor.nbytes);
        }
      }
    }
  }

  /**
   * One tensor's bytes (files, Blobs and bytes only; a stream is read with readTensorData). For a
   * bytes source this is a view into those bytes, not a copy.
   */
  async readTensor(tensorOrName: GGUFTensorInfo | string): Promise<Uint8Array> {
    const tensor = typeof tensorOrName === "string" ? this.tensor(tensorOrName) : tensorOrName;
    if (!tensor) throw new QwasmError("INVALID_ARGUMENT", `no tensor named ${String(tensorOrName)}`);
    const index = this.partIndex.get(tensor.name) ?? 0;
    const source = this.sources[index];
    if (source.kind === "stream") {
      throw new QwasmError("INVALID_ARGUMENT", "a stream is read once, in file order: use readTensorData");
    }
    return source.read(`data of ${tensor.name}`, this.parts[index].dataOffset + tensor.offset, tensor.nbytes);
  }

  /** Releases the files or cancels the streams. */
  async close(): Promise<void> {
    await closeAll(this.sources);
  }
}

function partOf(header: GGUFHeader, name: string, no: number): GGUFPart {
  return {
    version: header.version, metadata: header.metadata, tensors: header.tensors, alignment: header.alignment,
    dataOffset: header.dataOffset, fileSize: header.fileSize,
    name, no, tensorDataBytes: header.tensors.reduce((sum, t) => sum + t.nbytes, 0),
  };
}

async function closeAll(sources: readonly ByteSource[]): Promise<void> {
  const results = await Promise.allSettled(sources.map((s) => s.close()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;
}

async function skipTo(source: StreamSource, offset: number, name: string): Promise<void> {
  while (source.position < offset) {
    const chunk = await source.next(offset - source.position);
    if (chunk === null) {
      throw new GGUFError(`data of ${name}`, source.position, `the stream ended before the tensor's data at ${offset} (truncated file?)`);
    }
  }
}

async function copyFromStream(source: StreamSource, tensor: GGUFTensorInfo, dest: Uint8Array | null,
  report: (bytes: number) => void): Promise<void> {
  for (let done = 0; done < tensor.nbytes;) {
    const chunk = await source.next(tensor.nbytes - done);
    if (chunk === null) {
      throw new GGUFError(`data of ${tensor.name}`, source.position,
        `the stream ended ${tensor.nbytes - done} bytes before the end of the tensor (truncated file?)`);
    }
    dest?.set(chunk, done);
    done += chunk.length;
    report(chunk.length);
  }
}

/** Parses GGUF bytes that are all in memory. Tensor data is read from those bytes without a copy. */
export function parseGGUFBytes(bytes: Uint8Array | ArrayBuffer): GGUFFile {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  return new GGUFFile(parseHeader(u8, u8.length, Infinity), bytesSource(u8), "bytes");
}

/**
 * Opens a GGUF file from bytes, a path, a URL, a stream, a Response, a Blob or a RandomAccessFile, and
 * parses its header, reading only as much of the source as the header needs. A split model (llama.cpp's
 * gguf-split: `<prefix>-00001-of-00003.gguf`, ...) opens from the path or URL of one part (the
 * others are found by name) or from a list of all its parts in any order (paths, URLs, Blobs/Files,
 * bytes, streams), and reads as one file; the parts are checked to belong together.
 *
 * @example
 * const file = await openGGUF("model.gguf");
 * console.log(file.metadata.getString("general.architecture"), file.tensors.length);
 * await file.close();
 */
export async function openGGUF(source: GGUFSource, options: OpenGGUFOptions = {}): Promise<GGUFFile> {
  if (isPartList(source)) return openParts(source, options);
  const name = sourceName(source);
  const first = await openPart(source, options, name ?? "bytes");
  let keys;
  try {
    keys = splitKeysOf(first.header.metadata, first.name);
  } catch (e) {
    await first.source.close();
    throw e;
  }
  if (!keys) return new GGUFFile(first.header, first.source, first.name);

  // One part of a split model: the others are found by its name.
  const href = source instanceof URL ? source.href : typeof source === "string" ? source : undefined;
  const siblings = href === undefined ? undefined : splitSiblingNames(href, keys.count);
  if (!siblings) {
    await first.source.close();
    throw new SplitGGUFError(first.name, `${first.name} is part ${keys.no + 1} of ${keys.count} of a split model` +
      (href === undefined
        ? ": pass all its parts as a list (paths, URLs or Files/Blobs, in any order)"
        : `, but its name does not end in -${String(keys.no + 1).padStart(5, "0")}-of-${String(keys.count).padStart(5, "0")}.gguf, ` +
          "so the other parts cannot be found: rename it, or pass all the parts as a list"));
  }
  const named = parseSplitName(href!)!;
  if (named.no !== keys.no || named.count !== keys.count) {
    await first.source.close();
    throw new SplitGGUFError(first.name, `${first.name} is named part ${named.no + 1} of ${named.count}, but its metadata ` +
      `says part ${keys.no + 1} of ${keys.count} (split.no ${keys.no}, split.count ${keys.count})`);
  }
  const thisNo = named.no;
  const opened = await openAll(siblings.map((sibling, no) => no === thisNo
    ? async () => first
    : async () => {
      try {
        return await openPart(source instanceof URL ? new URL(sibling) : sibling, options, sourceName(sibling)!, true);
      } catch (e) {
        const code = (e as QwasmError).code;
        if (code === "FILE_NOT_FOUND" || (code === "HTTP_STATUS" && /HTTP 404/.test((e as Error).message))) {
          throw new SplitGGUFError(sibling, `${first.name} is part ${keys.no + 1} of ${keys.count} of a split model, ` +
            `but part ${no + 1} is missing: ${(e as Error).message}`, { cause: e });
        }
        throw e;
      }
    }));
  return assemble(opened);
}

function isPartList(source: GGUFSource): source is readonly GGUFPartSource[] {
  return Array.isArray(source);
}

async function openParts(sources: readonly GGUFPartSource[], options: OpenGGUFOptions): Promise<GGUFFile> {
  if (sources.length === 0) throw new QwasmError("INVALID_ARGUMENT", "openGGUF: the list of parts is empty; give at least one GGUF file");
  const opened = await openAll(sources.map((source, i) => () =>
    openPart(source, options, sourceName(source) ?? `part ${i + 1} of the list`, sources.length > 1)));
  return assemble(opened);
}

/** Checks that the parts make one model and puts them in split.no order; closes them all on a refusal. */
async function assemble(opened: OpenedPart[]): Promise<GGUFFile> {
  try {
    const order = checkSplitParts(opened.map((p) => ({ name: p.name, metadata: p.header.metadata, tensorNames: p.header.tensors.map((t) => t.name) })));
    if (opened.length === 1) return new GGUFFile(opened[0].header, opened[0].source, opened[0].name);
    return GGUFFile.fromParts(order.map((i) => opened[i]), order.map((_, no) => no));
  } catch (e) {
    await closeAll(opened.map((p) => p.source)).catch(() => undefined);
    throw e;
  }
}

/** Runs every opener; when one fails, closes what the others opened and throws the first failure. */
async function openAll(openers: (() => Promise<OpenedPart>)[]): Promise<OpenedPart[]> {
  const results = await Promise.allSettled(openers.map((open) => open()));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (!failed) return results.map((r) => (r as PromiseFulfilledResult<OpenedPart>).value);
  const opened = results.filter((r): r is PromiseFulfilledResult<OpenedPart> => r.status === "fulfilled");
  await closeAll(opened.map((r) => r.value.source)).catch(() => undefined);
  throw failed.reason;
}

/**
 * Opens one file and parses its header. With `named`, a failure's message starts with the file's
 * name (one part of several: the reader must know which).
 */
async function openPart(source: GGUFPartSource, options: OpenGGUFOptions, name: string, named = false): Promise<OpenedPart> {
  try {
    const { header, src } = await openHeader(source, options);
    return { header, source: src, name };
  } catch (e) {
    if (!named || !(e instanceof QwasmError) || e.message.includes(name)) throw e;
    throw new QwasmError(e.code, `${name}: ${e.message}`, { cause: e });
  }
}

async function openHeader(source: GGUFPartSource, options: OpenGGUFOptions): Promise<{ header: GGUFHeader; src: ByteSource }> {
  const maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
  const src = await openSource(source, options);
  try {
    let want = Math.min(options.firstReadBytes ?? FIRST_READ_BYTES, maxHeaderBytes);
    let previousLength = -1;
    for (;;) {
      const prefix = await src.prefix(want);
      try {
        const header = parseHeader(prefix, src.size, maxHeaderBytes);
        if (src.kind === "stream") src.beginData(Math.min(header.dataOffset, prefix.length));
        return { header, src };
      } catch (e) {
        if (!(e instanceof NeedMoreBytes)) throw e;
        if (prefix.length <= previousLength) {
          throw new GGUFError("header", prefix.length, "the source ended in the middle of the header");
        }
        previousLength = prefix.length;
        // e.end never exceeds maxHeaderBytes (the parser refuses to need more than that).
        want = Math.min(Math.max(e.end, 2 * prefix.length), maxHeaderBytes);
      }
    }
  } catch (e) {
    await src.close();
    throw e;
  }
}
