// Which kernel build a test process must be running, so that the "relaxed-simd" vitest project never
// silently tests the SIMD128 build (vitest.config.ts sets QWASM_TEST_KERNELS=relaxed-simd there).
import { kernelChoice, relaxedSimdValidates, type KernelBuild, type KernelChoice } from "../compute/kernels/module";

/** True in the vitest project that exists to test the relaxed-SIMD build. */
export const RELAXED_PROJECT = process.env.QWASM_TEST_KERNELS === "relaxed-simd";

/**
 * The build this process runs, after checking it is the one it must be: the relaxed build wherever
 * the runtime validates relaxed SIMD (the probe must accept it), and in the relaxed-simd project the
 * runtime must validate it. Throws, saying why, otherwise. The arguments are for testing the check.
 */
export async function checkedKernelBuild(
  choice: KernelChoice | Promise<KernelChoice> = kernelChoice(), validates = relaxedSimdValidates(), relaxedProject = RELAXED_PROJECT,
): Promise<KernelBuild> {
  choice = await choice;
  if (relaxedProject && !validates) {
    throw new Error(`the relaxed-simd vitest project runs where relaxed SIMD does not validate (Node ${process.version}, ` +
      `execArgv ${JSON.stringify(process.execArgv)}): it would test the SIMD128 build (kernels ${choice.build})`);
  }
  const expected = validates ? "relaxed-simd" : "simd128";
  if (choice.build !== expected) {
    throw new Error(`relaxed SIMD ${validates ? "validates" : "does not validate"} here, so the kernels should be ${expected}, ` +
      `but they are ${choice.build}${choice.reason ? ` (${choice.reason})` : ""}`);
  }
  return choice.build;
}

/** Where relaxed SIMD does not validate: a runner skip, with the reason, outside the relaxed-simd
 *  project, and a failure inside it. Call first in a test that needs the relaxed build. */
export function requireRelaxedSimd(ctx: { skip: (note: string) => never }): void {
  if (relaxedSimdValidates()) return;
  if (RELAXED_PROJECT) {
    throw new Error(`the relaxed-simd vitest project runs where relaxed SIMD does not validate (Node ${process.version}, ` +
      `execArgv ${JSON.stringify(process.execArgv)})`);
  }
  ctx.skip("this runtime does not validate relaxed SIMD (Node 20 needs --experimental-wasm-relaxed-simd; " +
    "the relaxed-simd vitest project has it)");
}
