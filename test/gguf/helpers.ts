// Test helpers: a raw GGUF encoder that writes whatever it is told (for hostile files the writer
// refuses to produce), a small valid file with every value type, a seeded PRNG, and chunked streams.
import { GGUFError } from "../../platform/errors";
import { GGUFValueType, kv } from "../../weights/gguf/metadata";
import { GGMLType } from "../../weights/gguf/types";
import { writeGGUFBytes, type GGUFToWrite } from "../../weights/gguf/writer";

/** Little-endian byte builder. */
export class Raw {
  private parts: number[] = [];
  get length(): number { return this.parts.length; }
  u8(v: number): this { this.parts.push(v & 0xff); return this; }
  u32(v: number): this { for (let i = 0; i < 4; i++) this.parts.push((v >>> (8 * i)) & 0xff); return this; }
  u64(v: number | bigint): this {
    let b = BigInt.asUintN(64, BigInt(v));
    for (let i = 0; i < 8; i++) { this.parts.push(Number(b & 0xffn)); b >>= 8n; }
    return this;
  }
  bytes(b: ArrayLike<number>): this { for (let i = 0; i < b.length; i++) this.parts.push(b[i]); return this; }
  str(s: string): this { const b = new TextEncoder().encode(s); return this.u64(b.length).bytes(b); }
  padTo(alignment: number): this { while (this.parts.length % alignment !== 0) this.parts.push(0); return this; }
  build(): Uint8Array { return Uint8Array.from(this.parts); }
}

export interface RawTensor { name: string; dims: (number | bigint)[]; type: number; offset: number | bigint }

/**
 * A GGUF file from parts: `kvs` are (raw) encoded key/value records; tensors' data is `dataBytes`
 * zero bytes after the aligned header. Counts default to the number of parts given.
 */
export function rawGGUF(o: {
  magic?: number; version?: number; tensorCount?: number | bigint; kvCount?: number | bigint;
  kvs?: ((r: Raw) => void)[]; tensors?: RawTensor[]; dataBytes?: number; alignment?: number;
}): Uint8Array {
  const r = new Raw().u32(o.magic ?? 0x46554747).u32(o.version ?? 3);
  r.u64(o.tensorCount ?? o.tensors?.length ?? 0).u64(o.kvCount ?? o.kvs?.length ?? 0);
  for (const write of o.kvs ?? []) write(r);
  for (const t of o.tensors ?? []) {
    r.str(t.name).u32(t.dims.length);
    for (const d of t.dims) r.u64(d);
    r.u32(t.type).u64(t.offset);
  }
  r.padTo(o.alignment ?? 32);
  r.bytes(new Uint8Array(o.dataBytes ?? 0));
  return r.build();
}

/** A valid little file: every value type, nested arrays, three tensors of different types. */
export function smallModel(): GGUFToWrite {
  const f32 = new Uint8Array(4 * 4).map((_, i) => i + 1);
  const q4_0 = new Uint8Array(2 * 18).map((_, i) => (i * 7) & 0xff);
  const f16 = new Uint8Array(8 * 3 * 2).map((_, i) => (i * 13) & 0xff);
  return {
    metadata: [
      ["general.architecture", kv.string("qwen2")],
      ["general.name", kv.string("tiny ünïcödé ✓")],
      ["test.u8", kv.u8(200)],
      ["test.i8", kv.i8(-100)],
      ["test.u16", kv.u16(60000)],
      ["test.i16", kv.i16(-30000)],
      ["test.u32", kv.u32(4000000000)],
      ["test.i32", kv.i32(-2000000000)],
      ["test.f32", kv.f32(1e-6)],
      ["test.bool", kv.bool(true)],
      ["test.u64", kv.u64(2n ** 63n + 5n)],
      ["test.u64.small", kv.u64(12345)],
      ["test.i64", kv.i64(-(2n ** 60n))],
      ["test.f64", kv.f64(Math.PI)],
      ["test.strings", kv.strings(["a", "", "ĠĠ", "<|im_end|>"])],
      ["test.i32s", kv.numbers(GGUFValueType.INT32, [1, -2, 3])],
      ["test.f32s", kv.numbers(GGUFValueType.FLOAT32, [0.5, -1.25])],
      ["test.bools", kv.array(GGUFValueType.BOOL, [true, false, true])],
      ["test.u64s", kv.array(GGUFValueType.UINT64, BigUint64Array.from([1n, 2n ** 64n - 1n]))],
      ["test.nested", kv.array(GGUFValueType.ARRAY, [
        { itemType: GGUFValueType.STRING, items: ["x", "y"] },
        { itemType: GGUFValueType.ARRAY, items: [{ itemType: GGUFValueType.UINT8, items: Uint8Array.from([1, 2, 3]) }] },
      ])],
      ["test.empty", kv.array(GGUFValueType.FLOAT64, new Float64Array(0))],
    ],
    tensors: [
      { name: "a.f32", dims: [4], type: GGMLType.F32, data: f32 },
      { name: "b.q4_0", dims: [32, 2], type: GGMLType.Q4_0, data: () => [q4_0.subarray(0, 5), q4_0.subarray(5)] },
      { name: "c.f16", dims: [8, 3], type: GGMLType.F16, data: async () => f16 },
    ],
  };
}

export function smallModelBytes(): Promise<Uint8Array> {
  return writeGGUFBytes(smallModel());
}

export { rng } from "../random";

/** A stream of `bytes` in chunks of random sizes 1..maxChunk. */
export function chunkedStream(bytes: Uint8Array, random: () => number, maxChunk: number): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) { controller.close(); return; }
      const n = 1 + Math.floor(random() * maxChunk);
      controller.enqueue(bytes.slice(at, at + n));
      at += n;
    },
  });
}

/** Runs `fn` and returns the GGUFError it throws; fails with the error itself if it is another kind. */
export async function expectGGUFError(fn: () => unknown): Promise<GGUFError> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof GGUFError) return e;
    throw new Error(`expected a GGUFError, got ${String(e)}`, { cause: e });
  }
  throw new Error("expected a GGUFError, but nothing was thrown");
}
