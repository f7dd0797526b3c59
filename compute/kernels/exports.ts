// The kernel module's exports: every function takes and returns numbers (byte offsets, sizes, scalars).
// Kept apart from module.ts (the loading) so that dispatch.ts and module.ts can both name them.

/** The kernel exports, by name. */
export type Kernels = Record<string, (...args: number[]) => number>;
