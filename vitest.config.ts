import { defineConfig } from "vitest/config";

// Two projects. "simd128": every test but the runtimes', in Node 20 as it starts (no relaxed SIMD:
// the SIMD128 build). "relaxed-simd": the relaxed build's own tests and the llama.cpp conformance
// again, with the V8 flag that the CLI turns on (cli/main.ts), so that the build the CLI, Deno,
// Bun and Chromium run is checked end to end in Node too; and the Deno and Bun comparison, which
// wants Node on the same build as those runtimes. QWASM_TEST_KERNELS tells the tests of the relaxed
// project that they must run the relaxed build: they fail, rather than test SIMD128 silently, where
// it is not taken (test/kernel-build.ts).
/** Node 20 has relaxed SIMD behind a flag; Node 22 and later ship it, and refuse the flag. */
const relaxedFlag = Number(process.versions.node.split(".")[0]) < 22 ? ["--experimental-wasm-relaxed-simd"] : [];

export default defineConfig({
  test: {
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: "forks",
    projects: [
      { extends: true, test: { name: "simd128", include: ["test/**/*.test.ts"], exclude: ["test/runtimes/**"] } },
      {
        extends: true,
        test: {
          name: "relaxed-simd",
          include: ["test/kernels/relaxed.test.ts", "test/kernels/ceiling.test.ts", "test/model/conformance.test.ts",
            "test/model/moe-conformance.test.ts", "test/model/interleave.test.ts", "test/model/packed.test.ts",
            "test/runtimes/runtimes.test.ts"],
          execArgv: relaxedFlag,
          env: { QWASM_TEST_KERNELS: "relaxed-simd" },
        },
      },
    ],
  },
});
