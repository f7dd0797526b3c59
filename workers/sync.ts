// Synchronisation over the control block: a barrier that spins briefly and then sleeps in
// Atomics.wait (spinning threads that outnumber free cores collapse to milliseconds per barrier),
// and the step start/finish handshake.
import { Control } from "./protocol";

/** Spin iterations (about 0.1 ms) before sleeping: long enough to cover the imbalance of an op (a
 *  sleep costs a futex wake-up, 50-100 us), short enough to yield when threads outnumber cores.
 *  qwasm bench, 0.5b Q4_0, 2 threads, decode best of 3: 20000 spins 45.9 tokens/s, 200000 48.9. */
const SPIN = 100000;

/** Thrown inside a worker when another worker failed during the step: unwinds the step. */
export class StepFailed extends Error {}

/** Waits until ctrl[index] != value: spins first, then sleeps. Throws StepFailed when a worker failed. */
function waitWhileEqual(ctrl: Int32Array, index: number, value: number): void {
  for (let i = 0; i < SPIN; i++) {
    if (Atomics.load(ctrl, index) !== value) return;
  }
  while (Atomics.load(ctrl, index) === value) {
    Atomics.wait(ctrl, index, value, 50);
    if (Atomics.load(ctrl, Control.FAILED) !== 0) throw new StepFailed("another worker failed");
  }
}

/** A sense-reversing barrier for `count` workers. */
export function barrier(ctrl: Int32Array, count: number): void {
  if (count === 1) return;
  const generation = Atomics.load(ctrl, Control.BARRIER_GEN);
  if (Atomics.add(ctrl, Control.BARRIER_COUNT, 1) === count - 1) {
    Atomics.store(ctrl, Control.BARRIER_COUNT, 0);
    Atomics.add(ctrl, Control.BARRIER_GEN, 1);
    Atomics.notify(ctrl, Control.BARRIER_GEN);
    return;
  }
  waitWhileEqual(ctrl, Control.BARRIER_GEN, generation);
  if (Atomics.load(ctrl, Control.FAILED) !== 0) throw new StepFailed("another worker failed");
}

/** Worker side: waits for the step after `lastSeq` and returns its sequence number. */
export function waitForStep(ctrl: Int32Array, lastSeq: number): number {
  for (let i = 0; i < SPIN; i++) {
    const seq = Atomics.load(ctrl, Control.STEP_SEQ);
    if (seq !== lastSeq) return seq;
  }
  while (Atomics.load(ctrl, Control.STEP_SEQ) === lastSeq) Atomics.wait(ctrl, Control.STEP_SEQ, lastSeq);
  return Atomics.load(ctrl, Control.STEP_SEQ);
}

/** Worker side: counts this worker done; the last one publishes the step as finished. */
export function finishStep(ctrl: Int32Array, count: number, seq: number): void {
  if (Atomics.add(ctrl, Control.DONE_COUNT, 1) === count - 1) {
    Atomics.store(ctrl, Control.DONE_COUNT, 0);
    Atomics.store(ctrl, Control.BARRIER_COUNT, 0);
    Atomics.store(ctrl, Control.DONE_SEQ, seq);
    Atomics.notify(ctrl, Control.DONE_SEQ);
  }
}

/** Marks the step failed and wakes every sleeper so that they unwind. */
export function failStep(ctrl: Int32Array): void {
  Atomics.store(ctrl, Control.FAILED, 1);
  Atomics.add(ctrl, Control.BARRIER_GEN, 1);
  Atomics.notify(ctrl, Control.BARRIER_GEN);
}
