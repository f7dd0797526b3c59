// The weight-type table (weights/gguf/types.ts WEIGHT_TYPES) and what compute/kernels derives from it:
// every row has its kernels in the module, its activation format's blocks match its own, and the one
// activationRowBytes refuses a row that is not whole blocks.
import { describe, expect, it } from "vitest";
import { activationConverter, activationFormat, kernelSuffix, weightKernels } from "../../compute/kernels/dispatch";
import { createSharedMemory, instantiateKernels, PROBED } from "../../compute/kernels/module";
import {
  activationRowBytes, GGMLType, typeInfo, WEIGHT_TYPE_INFOS, wholeActivationBlocks,
} from "../../weights/gguf/types";
import { QUANT_TRAITS } from "../../weights/quant/index";

describe("the weight-type table", () => {
  it("has the kernels of every row, and activation blocks as long as the weight blocks", async () => {
    const k = await instantiateKernels(createSharedMemory(1));
    expect(WEIGHT_TYPE_INFOS.length).toBe(14);
    for (const t of WEIGHT_TYPE_INFOS) {
      for (const reference of [false, true]) {
        const w = weightKernels(k, t.id, reference);
        expect(typeof w.matmul, t.name).toBe("function");
        expect(typeof w.dequantize, t.name).toBe("function");
        expect([w.blockSize, w.typeSize, w.format]).toEqual([t.blockSize, t.typeSize, t.activation]);
      }
      expect(activationFormat(t.id)).toBe(t.activation);
      expect(typeInfo(GGMLType[t.activation.toUpperCase() as "Q8_K"])!.blockSize, t.name).toBe(t.blockSize);
      if (t.activation !== "f32") expect(typeof k[activationConverter(t.activation)], t.name).toBe("function");
      for (const f of t.f16Fields) expect(f + 2, t.name).toBeLessThanOrEqual(t.typeSize);
      // the scalar columns are the same row's
      expect(QUANT_TRAITS.get(t.id)?.vecDotFormat, t.name).toBe(t.activation);
    }
    expect(() => activationFormat(GGMLType.IQ4_XS)).toThrow(/no kernels for weights of type 23 \(IQ4_XS\)/);
  });

  it("probes every quantized type", () => {
    const quantized = WEIGHT_TYPE_INFOS.filter((t) => t.blockSize > 1);
    expect(quantized.length).toBe(11);
    expect(PROBED.map((p) => p[0]).sort()).toEqual(quantized.map((t) => kernelSuffix(t.name)).sort());
  });

  it("activationRowBytes: whole blocks only; buffers round up with wholeActivationBlocks", () => {
    expect(activationRowBytes("q8_0", 64)).toBe(68);
    expect(activationRowBytes("q8_1", 32)).toBe(36);
    expect(activationRowBytes("q8_K", 512)).toBe(584);
    expect(activationRowBytes("f16", 3)).toBe(6);
    expect(activationRowBytes("f32", 3)).toBe(12);
    expect(() => activationRowBytes("q8_0", 33)).toThrow(/multiple of 32 elements, got 33/);
    expect(() => activationRowBytes("q8_K", 896)).toThrow(/multiple of 256/);
    expect(wholeActivationBlocks("q8_K", 896)).toBe(1024);
    expect(wholeActivationBlocks("q8_0", 64)).toBe(64);
    expect(wholeActivationBlocks("bf16", 7)).toBe(7);
  });
});
