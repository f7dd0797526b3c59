// The kernels' typed interface (build/kernels-exports.gen.ts, generated from asc's declarations of
// assembly/index.ts): it names exactly the module's functions, and tsc refuses a wrong name or
// argument count (the @ts-expect-error lines fail `npx tsc --noEmit -p .` if the types ever let them pass).
import { describe, expect, it } from "vitest";
import { KERNEL_EXPORTS_NAMES } from "../../build/kernels-exports.gen";
import { pagedAttention, type PagedAttentionType } from "../../compute/kernels/dispatch";
import { kernelModule, type Kernels } from "../../compute/kernels/module";

describe("the kernels' typed interface", () => {
  it("names every function the module exports, and nothing else", async () => {
    const functions = WebAssembly.Module.exports(await kernelModule()).filter((e) => e.kind === "function").map((e) => e.name);
    expect(functions.length).toBeGreaterThan(50);
    expect([...KERNEL_EXPORTS_NAMES].sort()).toEqual(functions.sort());
  });

  it("makes tsc refuse a wrong name or argument count", () => {
    const typeChecks = (k: Kernels) => {
      // @ts-expect-error no such export
      k.matmul_q4_9(0, 0, 0, 0, 0, 0, 0, 0, 0);
      // @ts-expect-error add takes (a, b, out, n)
      k.add(0, 0, 0);
      // @ts-expect-error no paged attention over a q4_0 cache
      pagedAttention(k, "q4_0");
      const kv: PagedAttentionType[] = ["f32", "f16", "q8_0"];
      return kv;
    };
    expect(typeChecks.length).toBe(1);
  });
});
