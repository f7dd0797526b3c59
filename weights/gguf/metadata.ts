// GGUF metadata: the value types, how values look in JavaScript, and a map with typed getters whose
// errors name the key (and where it is in the file).
import { GGUFError, QwasmError } from "../../platform/errors";

/** The value type ids of GGUF metadata. */
export const GGUFValueType = {
  UINT8: 0,
  INT8: 1,
  UINT16: 2,
  INT16: 3,
  UINT32: 4,
  INT32: 5,
  FLOAT32: 6,
  BOOL: 7,
  STRING: 8,
  ARRAY: 9,
  UINT64: 10,
  INT64: 11,
  FLOAT64: 12,
} as const;

export type GGUFValueTypeName = keyof typeof GGUFValueType;
export type GGUFValueTypeId = (typeof GGUFValueType)[GGUFValueTypeName];

const VALUE_TYPE_NAMES = Object.keys(GGUFValueType) as GGUFValueTypeName[];

export function valueTypeName(type: number): string {
  return VALUE_TYPE_NAMES[type] ?? `value type ${type} (unknown)`;
}

export function isValueType(type: number): type is GGUFValueTypeId {
  return Number.isInteger(type) && type >= 0 && type < VALUE_TYPE_NAMES.length;
}

/**
 * Array items by item type: 8/16/32-bit integers and floats as the matching typed array, 64-bit
 * integers as BigInt64Array/BigUint64Array, BOOL as boolean[], STRING as string[], ARRAY as GGUFArray[].
 */
export type GGUFArrayItems =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array
  | boolean[] | string[] | GGUFArray[];

export interface GGUFArray {
  itemType: GGUFValueTypeId;
  items: GGUFArrayItems;
}

/**
 * A metadata value: numbers for 8..32-bit integers and floats, UINT64/INT64 as a number when it is a
 * safe integer and a bigint otherwise, booleans, strings, and arrays.
 */
export type GGUFValue = number | bigint | boolean | string | GGUFArray;

/** A value with its declared type (kept so that a file can be written back exactly). */
export interface GGUFEntry {
  type: GGUFValueTypeId;
  value: GGUFValue;
}

const INTEGER_RANGES: Partial<Record<GGUFValueTypeId, [number, number]>> = {
  [GGUFValueType.UINT8]: [0, 0xff],
  [GGUFValueType.INT8]: [-0x80, 0x7f],
  [GGUFValueType.UINT16]: [0, 0xffff],
  [GGUFValueType.INT16]: [-0x8000, 0x7fff],
  [GGUFValueType.UINT32]: [0, 0xffffffff],
  [GGUFValueType.INT32]: [-0x80000000, 0x7fffffff],
};

/** [min, max] of an 8..32-bit integer type, else undefined. */
export function integerRange(type: number): [number, number] | undefined {
  return INTEGER_RANGES[type as GGUFValueTypeId];
}

function integerEntry(type: GGUFValueTypeId, value: number): GGUFEntry {
  const [min, max] = INTEGER_RANGES[type]!;
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new QwasmError("INVALID_ARGUMENT", `${valueTypeName(type)} value out of range: ${value}`);
  }
  return { type, value };
}

function int64Entry(type: GGUFValueTypeId, value: number | bigint): GGUFEntry {
  const big = typeof value === "bigint" || Number.isInteger(value) ? BigInt(value) : undefined;
  const ok = big !== undefined && (type === GGUFValueType.UINT64
    ? big >= 0n && big <= 0xffffffffffffffffn
    : big >= -0x8000000000000000n && big <= 0x7fffffffffffffffn);
  if (!ok) throw new QwasmError("INVALID_ARGUMENT", `${valueTypeName(type)} value out of range: ${value}`);
  return { type, value: int64Value(big) };
}

/** A 64-bit integer as a number when it is safe, else as a bigint. */
export function int64Value(big: bigint): number | bigint {
  const safe = big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER);
  return safe ? Number(big) : big;
}

const TYPED_ARRAY_OF: Partial<Record<GGUFValueTypeId, (items: ArrayLike<number>) => GGUFArrayItems>> = {
  [GGUFValueType.UINT8]: (a) => Uint8Array.from(a),
  [GGUFValueType.INT8]: (a) => Int8Array.from(a),
  [GGUFValueType.UINT16]: (a) => Uint16Array.from(a),
  [GGUFValueType.INT16]: (a) => Int16Array.from(a),
  [GGUFValueType.UINT32]: (a) => Uint32Array.from(a),
  [GGUFValueType.INT32]: (a) => Int32Array.from(a),
  [GGUFValueType.FLOAT32]: (a) => Float32Array.from(a),
  [GGUFValueType.FLOAT64]: (a) => Float64Array.from(a),
};

/** Builds metadata entries for the writer: `kv.u32(24)`, `kv.string("qwen2")`, `kv.strings(tokens)`. */
export const kv = {
  u8: (v: number) => integerEntry(GGUFValueType.UINT8, v),
  i8: (v: number) => integerEntry(GGUFValueType.INT8, v),
  u16: (v: number) => integerEntry(GGUFValueType.UINT16, v),
  i16: (v: number) => integerEntry(GGUFValueType.INT16, v),
  u32: (v: number) => integerEntry(GGUFValueType.UINT32, v),
  i32: (v: number) => integerEntry(GGUFValueType.INT32, v),
  u64: (v: number | bigint) => int64Entry(GGUFValueType.UINT64, v),
  i64: (v: number | bigint) => int64Entry(GGUFValueType.INT64, v),
  f32: (v: number): GGUFEntry => ({ type: GGUFValueType.FLOAT32, value: Math.fround(v) }),
  f64: (v: number): GGUFEntry => ({ type: GGUFValueType.FLOAT64, value: v }),
  bool: (v: boolean): GGUFEntry => ({ type: GGUFValueType.BOOL, value: v }),
  string: (v: string): GGUFEntry => ({ type: GGUFValueType.STRING, value: v }),
  /** An array of numbers of one numeric item type (UINT8..INT32, FLOAT32, FLOAT64). */
  numbers(itemType: GGUFValueTypeId, items: ArrayLike<number>): GGUFEntry {
    const make = TYPED_ARRAY_OF[itemType];
    if (!make) throw new QwasmError("INVALID_ARGUMENT", `kv.numbers: ${valueTypeName(itemType)} is not a 8..32-bit or float item type`);
    const range = INTEGER_RANGES[itemType];
    if (range) {
      for (let i = 0; i < items.length; i++) {
        const v = items[i];
        if (!Number.isInteger(v) || v < range[0] || v > range[1]) {
          throw new QwasmError("INVALID_ARGUMENT", `${valueTypeName(itemType)} array item ${i} out of range: ${v}`);
        }
      }
    }
    return kv.array(itemType, make(items));
  },
  strings: (items: readonly string[]) => kv.array(GGUFValueType.STRING, [...items]),
  array: (itemType: GGUFValueTypeId, items: GGUFArrayItems): GGUFEntry =>
    ({ type: GGUFValueType.ARRAY, value: { itemType, items } }),
};

/** Where the metadata section starts in a GGUF v2/v3 file (magic, version, two u64 counts). */
const METADATA_START = 24;

/**
 * The key/value metadata of a GGUF file, in file order. The typed getters throw a GGUFError that
 * names the key when it is missing or has another type; with a `fallback` a missing key returns it.
 */
export class GGUFMetadata implements Iterable<[string, GGUFEntry]> {
  private readonly entries = new Map<string, GGUFEntry>();
  /** Byte offset of each key's record in the file it was read from. */
  private readonly offsets = new Map<string, number>();

  constructor(entries: Iterable<[string, GGUFEntry]> = []) {
    for (const [key, entry] of entries) this.set(key, entry);
  }

  /** Adds or replaces a key; `offset` is where the record was read from, for error messages. */
  set(key: string, entry: GGUFEntry, offset?: number): this {
    this.entries.set(key, entry);
    if (offset !== undefined) this.offsets.set(key, offset);
    return this;
  }

  get size(): number { return this.entries.size; }
  has(key: string): boolean { return this.entries.has(key); }
  keys(): IterableIterator<string> { return this.entries.keys(); }
  [Symbol.iterator](): IterableIterator<[string, GGUFEntry]> { return this.entries.entries(); }

  /** The entry (type and value), or undefined. */
  entry(key: string): GGUFEntry | undefined { return this.entries.get(key); }
  /** The value, or undefined. */
  get(key: string): GGUFValue | undefined { return this.entries.get(key)?.value; }
  /** Byte offset of the key's record in the file, when it was read from one. */
  offsetOf(key: string): number | undefined { return this.offsets.get(key); }

  getString(key: string, fallback?: string): string {
    return this.read(key, fallback, "STRING", (e) => (e.type === GGUFValueType.STRING ? e.value as string : undefined));
  }

  getBool(key: string, fallback?: boolean): boolean {
    return this.read(key, fallback, "BOOL", (e) => (e.type === GGUFValueType.BOOL ? e.value as boolean : undefined));
  }

  /** Any integer type whose value fits in 0..2^32-1 (converters differ in which one they write). */
  getU32(key: string, fallback?: number): number {
    return this.read(key, fallback, "an integer", (e) => {
      const isInteger = integerRange(e.type) !== undefined || e.type === GGUFValueType.UINT64 || e.type === GGUFValueType.INT64;
      if (!isInteger) return undefined;
      const v = e.value;
      if (typeof v !== "number" || v < 0 || v > 0xffffffff) throw this.error(key, `value ${v} does not fit in a u32`);
      return v;
    });
  }

  /** FLOAT32 or FLOAT64 (an integer is accepted too), as a JavaScript number. */
  getF32(key: string, fallback?: number): number {
    return this.read(key, fallback, "a number", (e) => (typeof e.value === "number" ? e.value : undefined));
  }

  /** An array; with `itemType`, its items must have that type. */
  getArray(key: string, itemType?: GGUFValueTypeId): GGUFArray {
    const expected = itemType === undefined ? "ARRAY" : `an array of ${valueTypeName(itemType)}`;
    return this.read(key, undefined, expected, (e) => {
      const array = e.value as GGUFArray;
      if (e.type !== GGUFValueType.ARRAY) return undefined;
      if (itemType !== undefined && array.itemType !== itemType) {
        throw this.error(key, `is an array of ${valueTypeName(array.itemType)}, expected ${expected}`);
      }
      return array;
    });
  }

  getStringArray(key: string): string[] {
    return this.getArray(key, GGUFValueType.STRING).items as string[];
  }

  /** The key's value as `accept` converts it (undefined: the wrong type); a missing key gives `fallback`. */
  private read<T>(key: string, fallback: T | undefined, expected: string, accept: (e: GGUFEntry) => T | undefined): T {
    const e = this.entries.get(key);
    if (e === undefined) {
      if (fallback !== undefined) return fallback;
      throw new GGUFError(key, METADATA_START, "metadata key is missing");
    }
    const value = accept(e);
    if (value === undefined) throw this.error(key, `has type ${valueTypeName(e.type)}, expected ${expected}`);
    return value;
  }

  private error(key: string, message: string): GGUFError {
    return new GGUFError(key, this.offsets.get(key) ?? METADATA_START, message);
  }
}
