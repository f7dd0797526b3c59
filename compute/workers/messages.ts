// The messages between the pool and a compute worker: one that starts it, and its replies. Every
// step after that goes through the control block (protocol.ts), never through a message.
import type { ForwardLayout } from "../model/forward";

/** Posted once to each compute worker. */
export interface ComputeInit {
  kind: "init";
  /** The model's shards: the worker instantiates the kernels once over each. */
  memories: WebAssembly.Memory[];
  /** The compiled kernels; posting a compiled module avoids compiling it again in every worker. */
  module: WebAssembly.Module;
  layout: ForwardLayout;
  index: number;
  count: number;
  /** Byte address of the control block (CONTROL_WORDS i32 words) in the first memory. */
  control: number;
}

/** What a compute worker posts back: once when ready, and if it fails outside a step. */
export type ComputeReply =
  | { kind: "ready"; index: number }
  | { kind: "error"; index: number; message: string };
