// The worker protocol: the control block in the shared memory through which steps are started,
// their work items claimed and counted, and steps finished. No message is posted per step or per op: the engine writes the step into the
// memory and bumps STEP_SEQ.
/** i32 word indices of the control block. */
export const Control = {
  /** Incremented by the engine to start a step (workers wait on it). */
  STEP_SEQ: 0,
  /** 0 = run the step, 1 = exit. */
  COMMAND: 1,
  /**
   * The next work item of the step, tagged: (step tag << ITEM_BITS) | item. Workers claim items
   * with compareExchange, so a worker still in an older step (a different tag) can never take one.
   */
  CLAIM: 2,
  /** Items of the step finished, tagged the same way; ops wait on it. */
  DONE: 3,
  /** The STEP_SEQ of the last finished step (the engine waits on it). */
  DONE_SEQ: 5,
  /** Nonzero when a worker failed during the step: everyone unwinds and the step fails. */
  FAILED: 6,
  /** Workers that take part in the step: those with index < ACTIVE (compute/workers/active.ts). */
  ACTIVE: 7,
  /** Microseconds the workers slept during the step, waiting for an item another worker holds. */
  BLOCKED_US: 8,
  /** First of MAX_WORKERS words: the STEP_SEQ each worker last started (bounds how far one lags). */
  WORKER_SEQ: 16,
} as const;

/** Most compute workers a pool may have. */
export const MAX_WORKERS = 64;
export const CONTROL_WORDS = Control.WORKER_SEQ + MAX_WORKERS;
export const COMMAND_RUN = 0;
export const COMMAND_EXIT = 1;

/** Items of one step are numbered below 2^ITEM_BITS; the step tag takes the bits above. */
export const ITEM_BITS = 20;
export const MAX_STEP_ITEMS = 1 << ITEM_BITS;
/** Step tags wrap after this many steps; the engine never lets a worker fall half as far behind. */
export const TAG_PERIOD = 1 << (31 - ITEM_BITS);

export function stepTag(seq: number): number {
  return (seq & (TAG_PERIOD - 1)) << ITEM_BITS;
}
