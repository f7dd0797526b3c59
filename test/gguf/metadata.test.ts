// Typed metadata getters and string decoding.
import { describe, expect, it } from "vitest";
import { QwasmError } from "../../platform/errors";
import { GGUFMetadata, GGUFValueType, kv } from "../../weights/gguf/metadata";
import { parseGGUFBytes } from "../../weights/gguf/reader";
import { writeGGUFBytes } from "../../weights/gguf/writer";
import { expectGGUFError, Raw, rawGGUF, rng } from "./helpers";

describe("GGUF metadata getters", () => {
  const metadata = async () => parseGGUFBytes(await writeGGUFBytes({
    metadata: [
      ["name", kv.string("x")],
      ["count", kv.u32(7)],
      ["count64", kv.u64(1234567890123)],
      ["negative", kv.i32(-1)],
      ["eps", kv.f32(1e-6)],
      ["flag", kv.bool(true)],
      ["list", kv.numbers(GGUFValueType.INT32, [1, 2])],
    ],
    tensors: [],
  })).metadata;

  it("return typed values and fallbacks", async () => {
    const m = await metadata();
    expect(m.getString("name")).toBe("x");
    expect(m.getU32("count")).toBe(7);
    expect(m.getF32("eps")).toBe(Math.fround(1e-6));
    expect(m.getBool("flag")).toBe(true);
    expect(m.getArray("list", GGUFValueType.INT32).items).toEqual(Int32Array.from([1, 2]));
    expect(m.getU32("absent", 5)).toBe(5);
    expect(m.getString("absent", "default")).toBe("default");
    expect(m.offsetOf("name")).toBe(24);
  });

  it("name the key that is missing or has the wrong type, and where it is", async () => {
    const m = await metadata();
    const missing = await expectGGUFError(() => m.getU32("qwen2.block_count"));
    expect(missing.field).toBe("qwen2.block_count");
    expect(missing.message).toMatch(/qwen2\.block_count.*missing/);
    const wrong = await expectGGUFError(() => m.getU32("name"));
    expect(wrong.message).toBe("GGUF name at offset 24: has type STRING, expected an integer");
    expect((await expectGGUFError(() => m.getU32("count64"))).message).toMatch(/does not fit in a u32/);
    expect((await expectGGUFError(() => m.getU32("negative"))).message).toMatch(/does not fit in a u32/);
    expect((await expectGGUFError(() => m.getString("count", "fallback only for missing keys"))).message).toMatch(/expected STRING/);
    expect((await expectGGUFError(() => m.getArray("list", GGUFValueType.STRING))).message)
      .toMatch(/is an array of INT32, expected an array of STRING/);
    expect((await expectGGUFError(() => m.getStringArray("flag"))).message).toMatch(/has type BOOL/);
  });

  it("kv constructors check ranges", () => {
    expect(() => kv.u8(256)).toThrow(QwasmError);
    expect(() => kv.i32(2 ** 31)).toThrow(QwasmError);
    expect(() => kv.u64(-1)).toThrow(QwasmError);
    expect(() => kv.u64(1.5)).toThrow(QwasmError);
    expect(() => kv.numbers(GGUFValueType.UINT16, [1, 70000])).toThrow(/item 1 out of range/);
    expect(kv.u64(2n ** 64n - 1n).value).toBe(2n ** 64n - 1n);
    expect(kv.i64(-5n).value).toBe(-5);
    expect(new GGUFMetadata([["a", kv.u8(1)]]).get("a")).toBe(1);
  });
});

describe("GGUF strings", () => {
  const withKey = (keyBytes: number[]) =>
    rawGGUF({ kvs: [(r: Raw) => r.u64(keyBytes.length).bytes(keyBytes).u32(GGUFValueType.UINT8).u8(0)] });

  it("decode like TextDecoder, short and long, in every UTF-8 length", async () => {
    const random = rng(5);
    const alphabet = ["a", "Ġ", "é", "✓", "中", "😀", "\u0000", "\u{10ffff}", "\u07ff", "\u0800", "\uffff"];
    const strings = Array.from({ length: 300 }, () =>
      Array.from({ length: Math.floor(random() * 40) }, () => alphabet[Math.floor(random() * alphabet.length)]).join(""));
    const file = parseGGUFBytes(await writeGGUFBytes({ metadata: [["s", kv.strings(strings)]], tensors: [] }));
    expect(file.metadata.getStringArray("s")).toEqual(strings);
  });

  it("refuse bytes that are not UTF-8", async () => {
    const invalid = [
      [0x80], [0xc3], [0xc3, 0x28], [0xc0, 0xaf], [0xe0, 0x80, 0xaf], [0xed, 0xa0, 0x80],
      [0xf4, 0x90, 0x80, 0x80], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xff], [0x61, 0xe2, 0x82],
      [...Array(100).fill(0x61), 0xc3, 0x28], // long: through TextDecoder
    ];
    for (const bytes of invalid) {
      const e = await expectGGUFError(() => parseGGUFBytes(withKey(bytes)));
      expect(e.message, bytes.join(",")).toMatch(/not valid UTF-8/);
    }
    expect(parseGGUFBytes(withKey([0xf0, 0x9f, 0x98, 0x80])).metadata.has("😀")).toBe(true);
  });
});
