// The kernel module's exports: only re-exports (STYLE.md). Every export takes and returns numbers.
// Kernels that only tests call are in assembly/test/ (build/kernels-test.wasm).
export { f16_to_f32_export as f16_to_f32, f32_to_f16_export as f32_to_f16 } from "./quants/conv";
export * from "./quants/activations";
export * from "./quants/f32";
export * from "./quants/f16";
export * from "./quants/bf16";
export * from "./quants/q4_0";
export * from "./quants/q4_1";
export * from "./quants/q5_0";
export * from "./quants/q5_1";
export * from "./quants/q8_0";
export * from "./quants/q8_0p";
export { interleave_x4 } from "./quants/b32x4";
export * from "./quants/iq4_nl";
export * from "./quants/q8_k";
export * from "./quants/q2_k";
export * from "./quants/q3_k";
export * from "./quants/q4_k";
export * from "./quants/q5_k";
export * from "./quants/q6_k";
export * from "./ops/norm";
export * from "./ops/rope";
export * from "./ops/elementwise";
export { attention_paged_f32, attention_paged_f16, attention_paged_q8_0, kv_store_paged } from "./ops/attention";
export * from "./ops/flash";
export * from "./ops/peak";
