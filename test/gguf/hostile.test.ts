// Malformed and hostile files: every one must be refused with a GGUFError that says what is wrong,
// quickly, without a RangeError from a DataView, a huge allocation or a hang.
import { describe, expect, it } from "vitest";
import { GGUFError } from "../../platform/errors";
import { GGUFValueType } from "../../weights/gguf/metadata";
import { openGGUF, parseGGUFBytes } from "../../weights/gguf/reader";
import { GGMLType } from "../../weights/gguf/types";
import { chunkedStream, expectGGUFError, Raw, rawGGUF, rng, smallModelBytes, type RawTensor } from "./helpers";

const F32 = GGMLType.F32;
const u32kv = (key: string, v: number) => (r: Raw) => r.str(key).u32(GGUFValueType.UINT32).u32(v);

/** parseGGUFBytes must throw a GGUFError whose message matches `pattern`. */
async function refused(bytes: Uint8Array, pattern: RegExp, code = "GGUF_INVALID"): Promise<GGUFError> {
  const e = await expectGGUFError(() => parseGGUFBytes(bytes));
  expect(e.message).toMatch(pattern);
  expect(e.code).toBe(code);
  expect(e.offset).toBeGreaterThanOrEqual(0);
  expect(e.offset).toBeLessThanOrEqual(bytes.length);
  return e;
}

/** Reads everything (header and data) and returns the error, which must be a GGUFError if any. */
async function readAll(open: () => Promise<ReturnType<typeof parseGGUFBytes>> | ReturnType<typeof parseGGUFBytes>): Promise<unknown> {
  try {
    const file = await open();
    await file.readTensorData((t) => new Uint8Array(t.nbytes));
    await file.close();
    return undefined;
  } catch (e) {
    if (!(e instanceof GGUFError)) throw new Error(`not a GGUFError: ${String(e)}`, { cause: e });
    return e;
  }
}

describe("hostile GGUF files", () => {
  it("accepts the raw encoder's well-formed file (the base of the cases below)", () => {
    const file = parseGGUFBytes(rawGGUF({
      kvs: [u32kv("general.alignment", 32)],
      tensors: [{ name: "a", dims: [8], type: F32, offset: 0 }, { name: "b", dims: [32, 2], type: GGMLType.Q8_0, offset: 32 }],
      dataBytes: 32 + 68,
    }));
    expect(file.tensors.map((t) => [t.name, t.nbytes])).toEqual([["a", 32], ["b", 68]]);
  });

  it("refuses a file truncated at any offset, from bytes and from a stream", async () => {
    const bytes = await smallModelBytes();
    const file = parseGGUFBytes(bytes);
    const last = file.tensors.at(-1)!;
    const end = file.dataOffset + last.offset + last.nbytes;
    const random = rng(1);
    for (let cut = 0; cut < end; cut++) {
      const truncated = bytes.subarray(0, cut);
      await expectGGUFError(() => parseGGUFBytes(truncated));
      // A stream has no size up front: the error may come from the header or from the data.
      expect(await readAll(() => openGGUF(chunkedStream(truncated, random, 64), { firstReadBytes: 16 }))).toBeInstanceOf(GGUFError);
    }
  });

  it("names magic and version problems", async () => {
    await refused(new Uint8Array(0), /magic.*truncated/);
    await refused(rawGGUF({ magic: 0x4c4d4747 }), /not a GGUF file: expected "GGUF", found "GGML"/);
    await refused(rawGGUF({ version: 1 }), /version 1 is not supported/, "GGUF_UNSUPPORTED");
    await refused(rawGGUF({ version: 99 }), /version 99 is not supported/, "GGUF_UNSUPPORTED");
    await refused(rawGGUF({ version: 0x03000000 }), /big-endian GGUF \(version 3\)/, "GGUF_UNSUPPORTED");
    expect(parseGGUFBytes(rawGGUF({ version: 2 })).version).toBe(2);
  });

  it("refuses impossible counts and lengths without allocating for them", async () => {
    await refused(rawGGUF({ tensorCount: 2n ** 64n - 1n }), /tensor_count.*impossible/);
    await refused(rawGGUF({ tensorCount: 1e9 }), /tensor_count.*impossible/);
    await refused(rawGGUF({ kvCount: 2n ** 63n }), /metadata_kv_count.*impossible/);
    await refused(rawGGUF({ kvs: [(r) => r.u64(2n ** 60n)], dataBytes: 64 }), /string length .* runs past the end of the file/);
    await refused(rawGGUF({ kvs: [(r) => r.str("k").u32(GGUFValueType.STRING).u64(2n ** 64n - 1n)] }), /string length/);
    for (const itemType of [GGUFValueType.UINT8, GGUFValueType.FLOAT64, GGUFValueType.STRING, GGUFValueType.ARRAY, GGUFValueType.BOOL]) {
      await refused(rawGGUF({ kvs: [(r) => r.str("k").u32(GGUFValueType.ARRAY).u32(itemType).u64(2n ** 40n)] }), /array length.*impossible/);
    }
    // A count that fits the bytes left but whose items are not all there.
    await refused(rawGGUF({ kvs: [(r) => r.str("k").u32(GGUFValueType.ARRAY).u32(GGUFValueType.UINT8).u64(64)] }), /truncated/);
  });

  it("refuses a stream header larger than maxHeaderBytes", async () => {
    const bytes = rawGGUF({ kvs: [(r) => r.str("k").u32(GGUFValueType.STRING).str("x".repeat(5000))] });
    const e = await expectGGUFError(() => openGGUF(chunkedStream(bytes, rng(2), 100), { maxHeaderBytes: 1000, firstReadBytes: 64 }));
    expect(e.message).toMatch(/1000-byte header limit/);
  });

  it("checks metadata values", async () => {
    await refused(rawGGUF({ kvs: [(r) => r.str("k").u32(13).u32(0)] }), /k at offset 33: unknown value type 13/);
    await refused(rawGGUF({ kvs: [(r) => r.str("k").u32(GGUFValueType.ARRAY).u32(77).u64(0)] }), /unknown array item type 77/);
    await refused(rawGGUF({ kvs: [(r) => r.str("k").u32(GGUFValueType.BOOL).u8(2)] }), /BOOL must be 0 or 1/);
    await refused(rawGGUF({ kvs: [u32kv("k", 1), u32kv("k", 2)] }), /duplicate metadata key/);
    await refused(rawGGUF({ kvs: [u32kv("", 1)] }), /empty key/);
    await refused(rawGGUF({ kvs: [(r) => r.u64(2).bytes([0xc3, 0x28]).u32(GGUFValueType.UINT8).u8(0)] }), /not valid UTF-8/);
  });

  it("reads nested arrays, up to a depth", async () => {
    const nested = (depth: number) => (r: Raw) => {
      r.str("nest").u32(GGUFValueType.ARRAY);
      for (let d = 1; d < depth; d++) r.u32(GGUFValueType.ARRAY).u64(1);
      r.u32(GGUFValueType.UINT16).u64(2).bytes([1, 0, 2, 0]);
    };
    let value = parseGGUFBytes(rawGGUF({ kvs: [nested(8)] })).metadata.getArray("nest");
    for (let d = 1; d < 8; d++) value = value.items[0] as typeof value;
    expect(value).toEqual({ itemType: GGUFValueType.UINT16, items: Uint16Array.from([1, 2]) });
    await refused(rawGGUF({ kvs: [nested(9)] }), /nested more than 8 deep/);
    await refused(rawGGUF({ kvs: [nested(100000)] }), /nested more than 8 deep/);
  });

  it("checks general.alignment", async () => {
    const file = (kv: (r: Raw) => void, alignment = 32) =>
      rawGGUF({ kvs: [kv], tensors: [{ name: "a", dims: [8], type: F32, offset: 0 }], dataBytes: 32, alignment });
    expect(parseGGUFBytes(file(u32kv("general.alignment", 64), 64)).dataOffset % 64).toBe(0);
    await refused(file(u32kv("general.alignment", 48)), /general.alignment.*power of two, got 48/);
    await refused(file(u32kv("general.alignment", 0)), /general.alignment.*power of two, got 0/);
    await refused(file((r) => r.str("general.alignment").u32(GGUFValueType.UINT64).u64(32)), /must be a UINT32, got UINT64/);
  });

  it("checks every field of the tensor table", async () => {
    const one = (t: Partial<RawTensor>, dataBytes = 1024) =>
      rawGGUF({ tensors: [{ name: "blk.0.w", dims: [32], type: F32, offset: 0, ...t }], dataBytes });
    await refused(one({ dims: [] }), /dimension count of blk.0.w.*must be 1..4, got 0/);
    await refused(one({ dims: [1, 1, 1, 1, 1] }), /must be 1..4, got 5/);
    await refused(one({ dims: [32, 0] }), /dimension 1 is 0/);
    await refused(one({ dims: [2n ** 32n, 2n ** 32n] }), /more than 2\^53 elements/);
    await refused(one({ dims: [2n ** 64n - 1n] }), /more than 2\^53 elements/);
    await refused(one({ type: 99 }), /tensor blk.0.w has type 99 \(unknown\)/, "GGUF_UNSUPPORTED");
    await refused(one({ type: 4 }), /tensor blk.0.w has type 4 \(Q4_2, removed from ggml\)/, "GGUF_UNSUPPORTED");
    await refused(one({ type: GGMLType.Q4_0, dims: [16, 4] }), /row length 16 is not a multiple of the Q4_0 block size 32/);
    await refused(one({ offset: 8 }), /offset of blk.0.w .*8 is not a multiple of the alignment 32/);
    await refused(one({ offset: 2n ** 60n }), /offset of blk.0.w.*too large/);
    await refused(one({ offset: 1024 }), /data of blk.0.w.*past the end of the file/);
    await refused(one({}, 100), /data of blk.0.w.*past the end of the file/);
    await refused(one({ name: "" }), /empty tensor name/);
    await refused(rawGGUF({
      tensors: [{ name: "a", dims: [64], type: F32, offset: 0 }, { name: "b", dims: [8], type: F32, offset: 128 }, { name: "c", dims: [8], type: F32, offset: 224 }],
      dataBytes: 1024,
    }), /data of b .*overlaps the data of a/);
    await refused(rawGGUF({
      tensors: [{ name: "a", dims: [8], type: F32, offset: 0 }, { name: "a", dims: [8], type: F32, offset: 32 }],
      dataBytes: 64,
    }), /duplicate tensor name/);
  });

  it("survives random bit flips: each file parses or throws a GGUFError", async () => {
    const original = await smallModelBytes();
    const headerEnd = parseGGUFBytes(original).dataOffset;
    const random = rng(12345);
    let parsed = 0;
    for (let i = 0; i < 400; i++) {
      const bytes = original.slice();
      const flips = 1 + Math.floor(random() * 3);
      for (let f = 0; f < flips; f++) {
        const at = Math.floor(random() * (random() < 0.9 ? headerEnd : bytes.length));
        bytes[at] ^= 1 << Math.floor(random() * 8);
      }
      if ((await readAll(() => parseGGUFBytes(bytes))) === undefined) parsed++;
      if (i % 8 === 0) await readAll(() => openGGUF(chunkedStream(bytes, random, 97), { firstReadBytes: 64 }));
    }
    expect(parsed).toBeGreaterThan(0);
    expect(parsed).toBeLessThan(400);
  });
});
