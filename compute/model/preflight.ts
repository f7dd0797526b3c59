// The memory preflight: before a shard is allocated or a weight downloaded, the model's memories
// (bytes per shard, from the exact plan) are held against what the host has. A refusal is one line
// with the numbers and the way out, never a RangeError from `new WebAssembly.Memory` or an OOM kill.
import { QwasmError } from "../../platform/errors";
import type { HostMemory } from "../../platform/memory";

/** Address space V8 reserves for one wasm32 memory (4 GiB plus guard regions, about 10 GiB). */
export const WASM_RESERVATION = 10 * 2 ** 30;
/** Address space a JavaScript process needs besides its wasm memories (the runtime, heap, code). */
const PROCESS_ADDRESS_SPACE = 4 * 2 ** 30;

export interface PreflightNeeds {
  /** Bytes of each shard (WebAssembly memory). */
  shards: readonly number[];
  weightBytes: number;
  kvBytes: number;
  /** What a refusal suggests (smaller quantization, fewer KV pages, ...). */
  wayOut: string;
}

const gib = (n: number) => `${(n / 2 ** 30).toFixed(2)} GiB`;

/** Throws INSUFFICIENT_MEMORY when the shards cannot be had on `host`. */
export function checkHostMemory(needs: PreflightNeeds, host: HostMemory): void {
  const total = needs.shards.reduce((a, b) => a + b, 0);
  const n = needs.shards.length;
  const what = `the model needs ${gib(total)} in ${n} WebAssembly memor${n === 1 ? "y" : "ies"}` +
    (n > 1 ? ` (${needs.shards.map(gib).join(" + ")})` : "") +
    ` (weights ${gib(needs.weightBytes)}, KV cache ${gib(needs.kvBytes)})`;
  const refuse = (have: string) => {
    throw new QwasmError("INSUFFICIENT_MEMORY", `${what}, but ${have}; ${needs.wayOut}`);
  };
  if (host.perPage !== undefined && total > host.perPage) {
    refuse(`a page may use about ${gib(host.perPage)} (${host.source})`);
  }
  if (host.available !== undefined && total > host.available) {
    refuse(`this host has ${gib(host.available)} free` + (host.total !== undefined ? ` of ${gib(host.total)}` : "") + ` (${host.source})`);
  } else if (host.total !== undefined && total > host.total) {
    refuse(`this host has ${gib(host.total)} in all (${host.source})`);
  }
  if (host.addressSpace !== undefined && n * WASM_RESERVATION + PROCESS_ADDRESS_SPACE > host.addressSpace) {
    throw new QwasmError("INSUFFICIENT_MEMORY", `${what}; each WebAssembly memory reserves about ${gib(WASM_RESERVATION)} of ` +
      `address space, ${gib(n * WASM_RESERVATION)} for ${n}, but the address space is limited to ${gib(host.addressSpace)} ` +
      "(ulimit -v): raise it (ulimit -v unlimited), or fit the model in fewer memories (a smaller quantization, fewer KV pages, " +
      "a larger maxShardBytes / --max-shard-mb up to 4096)");
  }
}
