// The worker protocol, in one file: the one message that starts a compute worker, and the control
// block in the shared memory through which steps are started, synchronised and finished. No message
// is posted per step or per op: the engine writes the step into the memory and bumps STEP_SEQ.
import type { ForwardLayout } from "../ts/model/forward";

/** Posted once to each compute worker. */
export interface ComputeInit {
  kind: "init";
  memory: WebAssembly.Memory;
  /** The compiled kernels; posting a compiled module avoids compiling it again in every worker. */
  module: WebAssembly.Module;
  layout: ForwardLayout;
  index: number;
  count: number;
  /** Byte address of the control block (CONTROL_WORDS i32 words). */
  control: number;
}

/** What a compute worker posts back: once when ready, and if it fails outside a step. */
export type ComputeReply =
  | { kind: "ready"; index: number }
  | { kind: "error"; index: number; message: string };

/** i32 word indices of the control block. */
export const Control = {
  /** Incremented by the engine to start a step (workers wait on it). */
  STEP_SEQ: 0,
  /** 0 = run the step, 1 = exit. */
  COMMAND: 1,
  /** Workers that reached the current barrier. */
  BARRIER_COUNT: 2,
  /** Incremented each time a barrier opens (workers wait on it). */
  BARRIER_GEN: 3,
  /** Workers that finished the current step. */
  DONE_COUNT: 4,
  /** The STEP_SEQ of the last finished step (the engine waits on it). */
  DONE_SEQ: 5,
  /** Nonzero when a worker failed during the step: everyone unwinds and the step fails. */
  FAILED: 6,
} as const;

export const CONTROL_WORDS = 16;
export const COMMAND_RUN = 0;
export const COMMAND_EXIT = 1;
