import { describe, expect, it } from "vitest";
import { QwasmError } from "../../platform/errors";
import {
  GGMLType, SUPPORTED_WEIGHT_TYPES, checkSupportedWeightType, rowBytes, tensorBytes, typeInfo, typeName,
} from "../../weights/gguf/types";

describe("ggml type table", () => {
  it("has ggml's block and type sizes", () => {
    // [id, blockSize, typeSize] from ggml.c type_traits
    const expected: Record<string, [number, number, number]> = {
      F32: [0, 1, 4], F16: [1, 1, 2], Q4_0: [2, 32, 18], Q4_1: [3, 32, 20], Q5_0: [6, 32, 22], Q5_1: [7, 32, 24],
      Q8_0: [8, 32, 34], Q8_1: [9, 32, 36], Q2_K: [10, 256, 84], Q3_K: [11, 256, 110], Q4_K: [12, 256, 144],
      Q5_K: [13, 256, 176], Q6_K: [14, 256, 210], Q8_K: [15, 256, 292], IQ2_XXS: [16, 256, 66], IQ2_XS: [17, 256, 74],
      IQ3_XXS: [18, 256, 98], IQ1_S: [19, 256, 50], IQ4_NL: [20, 32, 18], IQ3_S: [21, 256, 110], IQ2_S: [22, 256, 82],
      IQ4_XS: [23, 256, 136], I8: [24, 1, 1], I16: [25, 1, 2], I32: [26, 1, 4], I64: [27, 1, 8], F64: [28, 1, 8],
      IQ1_M: [29, 256, 56], BF16: [30, 1, 2], TQ1_0: [34, 256, 54], TQ2_0: [35, 256, 66], MXFP4: [39, 32, 17],
      NVFP4: [40, 64, 36], Q1_0: [41, 128, 18],
    };
    expect(Object.keys(GGMLType).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, [id, blockSize, typeSize]] of Object.entries(expected)) {
      expect(GGMLType[name as keyof typeof GGMLType]).toBe(id);
      expect(typeInfo(id)).toEqual({ id, name, blockSize, typeSize });
    }
  });

  it("names types, removed ids and unknown ids", () => {
    expect(typeName(23)).toBe("type 23 (IQ4_XS)");
    expect(typeName(0)).toBe("type 0 (F32)");
    for (const id of [4, 5, 31, 32, 33, 36, 37, 38]) {
      expect(typeInfo(id)).toBeUndefined();
      expect(typeName(id)).toMatch(new RegExp(`^type ${id} \\(\\w+, removed from ggml\\)$`));
    }
    expect(typeName(4)).toBe("type 4 (Q4_2, removed from ggml)");
    expect(typeName(99)).toBe("type 99 (unknown)");
    expect(typeInfo(-1)).toBeUndefined();
  });

  it("computes row and tensor sizes, refusing partial blocks", () => {
    expect(rowBytes(GGMLType.Q4_0, 64)).toBe(36);
    expect(rowBytes(GGMLType.Q6_K, 256)).toBe(210);
    expect(rowBytes(GGMLType.F16, 3)).toBe(6);
    expect(tensorBytes(GGMLType.Q4_K, [256, 4099])).toBe(144 * 4099);
    expect(() => rowBytes(GGMLType.Q4_0, 48)).toThrow(QwasmError);
    expect(() => rowBytes(GGMLType.Q4_0, 48)).toThrow(/multiple of 32/);
    expect(() => rowBytes(4, 32)).toThrow(QwasmError);
  });

  it("lists the supported weight types and explains the others", () => {
    expect(SUPPORTED_WEIGHT_TYPES.map((id) => typeInfo(id)!.name)).toEqual(
      ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "IQ4_NL"]);
    expect(() => checkSupportedWeightType("blk.0.attn_q.weight", GGMLType.Q4_K)).not.toThrow();
    expect(() => checkSupportedWeightType("blk.3.attn_q.weight", GGMLType.IQ3_S)).toThrow(
      "tensor blk.3.attn_q.weight has type 21 (IQ3_S), which qwasm does not support; supported: F32 F16 BF16");
  });
});
