// The kernel module's exports, typed: scripts/build.mjs generates the KernelExports interface from
// asc's declarations of assembly/index.ts (build/kernels-exports.gen.ts), so a call with a wrong name
// or argument count fails tsc. Names built from a type (`matmul_${suffix}`) go through the accessors
// of dispatch.ts, whose template-literal types tsc checks against this interface too.
import type { KernelExports } from "../../build/kernels-exports.gen";

export type { KernelExports };

/** The kernel exports: every function takes and returns numbers (byte offsets, sizes, scalars). */
export type Kernels = KernelExports;

/** Every export's name. */
export type KernelName = keyof KernelExports;
