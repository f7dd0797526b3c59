// The CLI's shared options: --kv-type reaches the engine's KV cache, and a wrong value is a typed
// error that lists what is supported.
import { describe, expect, it } from "vitest";
import { kvTypeOption, parseArgs } from "../../cli/args";
import { QwasmError } from "../../platform/errors";

describe("--kv-type", () => {
  it("takes f32, f16 and q8_0, and is absent by default", () => {
    for (const t of ["f32", "f16", "q8_0"]) expect(kvTypeOption(parseArgs(["--kv-type", t]))).toBe(t);
    expect(kvTypeOption(parseArgs(["--kv-type=f16"]))).toBe("f16");
    expect(kvTypeOption(parseArgs([]))).toBeUndefined();
  });

  it("refuses anything else with INVALID_ARGUMENT naming the choices", () => {
    for (const bad of [["--kv-type", "f8"], ["--kv-type", "F16"], ["--kv-type"]]) {
      let error: unknown;
      try {
        kvTypeOption(parseArgs(bad));
      } catch (e) {
        error = e;
      }
      expect(error, bad.join(" ")).toBeInstanceOf(QwasmError);
      expect((error as QwasmError).code).toBe("INVALID_ARGUMENT");
      if (bad.length === 2) expect((error as QwasmError).message).toContain("f32, f16, q8_0");
    }
  });
});
