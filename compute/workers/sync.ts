// Synchronisation over the control block. Within a step, work is claimed, not assigned: each op's
// items go to whichever worker asks next, and an op is over when all its items are done, not when
// every worker has arrived. A worker that the OS has descheduled (another process took its core)
// then holds nobody up unless it is in the middle of an item: the others take the rest of its
// share. Waits spin briefly and then sleep in Atomics.wait.
import type { WorkerSlice } from "../model/forward";
import { Control, MAX_STEP_ITEMS, stepTag } from "./protocol";

/** Spin iterations before sleeping (about 0.1 ms): longer than the imbalance at the end of an op
 *  on a quiet machine, short against a scheduler's time slice when threads outnumber free cores. */
const SPIN = 100000;
const ITEM_MASK = MAX_STEP_ITEMS - 1;
/** Past every item of a step. */
const BEYOND = MAX_STEP_ITEMS;

/** Thrown inside a worker when another worker failed during the step: unwinds the step. */
export class StepFailed extends Error {}

/**
 * One worker's part in the steps: claims the items of each op from the shared counter, runs them,
 * counts them done, and waits for the op's last item. `begin(seq)` starts a step.
 */
export class ClaimingSlice implements WorkerSlice {
  private tag = 0;
  private base = 0;        // first item of the current op
  private pending = -1;    // an item claimed and not run yet (it belongs to a later op), or BEYOND
  private over = false;    // the step ended without this worker (it lagged): skip the rest

  constructor(private readonly ctrl: Int32Array, readonly index: number, readonly count: number) {}

  begin(seq: number): void {
    this.tag = stepTag(seq);
    this.base = 0;
    this.pending = -1;
    this.over = false;
  }

  /** Whether the step ended while this worker was behind (the engine has moved on). */
  get lagged(): boolean { return this.over; }

  parallel(n: number, item: (i: number) => void): void {
    if (this.over) return;
    const ctrl = this.ctrl;
    const end = this.base + n;
    if (end >= MAX_STEP_ITEMS) throw new Error(`a step has more than ${MAX_STEP_ITEMS} work items`);
    for (;;) {
      if (this.pending < 0) this.pending = this.claim();
      if (this.pending >= end) break;
      item(this.pending - this.base);
      this.pending = -1;
      if ((Atomics.add(ctrl, Control.DONE, 1) & ITEM_MASK) + 1 === end) Atomics.notify(ctrl, Control.DONE);
    }
    this.waitDone(end);
    this.base = end;
  }

  /** The next item of this step, or BEYOND when the step has moved on. */
  private claim(): number {
    const ctrl = this.ctrl;
    for (;;) {
      const v = Atomics.load(ctrl, Control.CLAIM);
      if ((v & ~ITEM_MASK) !== this.tag) return BEYOND;
      if (Atomics.compareExchange(ctrl, Control.CLAIM, v, v + 1) === v) return v & ITEM_MASK;
    }
  }

  /** Waits until `end` items of this step are done (or the step is over, or failed). */
  private waitDone(end: number): void {
    const ctrl = this.ctrl;
    let spins = 0;
    for (;;) {
      const d = Atomics.load(ctrl, Control.DONE);
      if ((d & ~ITEM_MASK) !== this.tag) { this.over = true; return; }
      if ((d & ITEM_MASK) >= end) return;
      if (Atomics.load(ctrl, Control.FAILED) !== 0) throw new StepFailed("another worker failed");
      if (spins < SPIN) {
        spins++;
      } else {
        const t = performance.now();
        Atomics.wait(ctrl, Control.DONE, d, 50);
        Atomics.add(ctrl, Control.BLOCKED_US, Math.round(1000 * (performance.now() - t)));
      }
    }
  }
}

/**
 * Worker side: waits for a step after `lastSeq`, records in WORKER_SEQ that this worker is in it,
 * and returns its sequence number (the newest one: a worker that lagged skips the steps it missed).
 */
export function waitForStep(ctrl: Int32Array, lastSeq: number, index: number, spin = true): number {
  for (let i = 0; spin && i < SPIN && Atomics.load(ctrl, Control.STEP_SEQ) === lastSeq; i++);
  while (Atomics.load(ctrl, Control.STEP_SEQ) === lastSeq) Atomics.wait(ctrl, Control.STEP_SEQ, lastSeq);
  // Published before the step is joined, and checked against STEP_SEQ again, so that the engine's
  // lag check (WorkerPool.run) sees every worker that could still take an item of this step.
  for (;;) {
    const seq = Atomics.load(ctrl, Control.STEP_SEQ);
    Atomics.store(ctrl, Control.WORKER_SEQ + index, seq);
    if (Atomics.load(ctrl, Control.STEP_SEQ) === seq) return seq;
  }
}

/**
 * Worker side: publishes step `seq` as finished. Every worker that saw its last op end does; only
 * the first moves DONE_SEQ on (from seq - 1), so a late one can never move it back.
 */
export function finishStep(ctrl: Int32Array, seq: number): void {
  if (Atomics.compareExchange(ctrl, Control.DONE_SEQ, seq - 1, seq) === seq - 1) Atomics.notify(ctrl, Control.DONE_SEQ);
}

/** Marks the step failed and wakes every sleeper so that they unwind. */
export function failStep(ctrl: Int32Array): void {
  Atomics.store(ctrl, Control.FAILED, 1);
  Atomics.notify(ctrl, Control.DONE);
  Atomics.notify(ctrl, Control.DONE_SEQ);
}

/** Engine side: arms the counters of step `seq` (before bumping STEP_SEQ). */
export function armStep(ctrl: Int32Array, seq: number, active: number): void {
  const tag = stepTag(seq);
  Atomics.store(ctrl, Control.ACTIVE, active);
  Atomics.store(ctrl, Control.BLOCKED_US, 0);
  Atomics.store(ctrl, Control.DONE, tag);
  Atomics.store(ctrl, Control.CLAIM, tag);
}

