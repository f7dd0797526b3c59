// The test build's entry (build/kernels-test.wasm, read only by tests): every library kernel, plus
// the references that only tests call. Only re-exports (STYLE.md).
export * from "../index";
export * from "./attention";
export * from "./ops";
