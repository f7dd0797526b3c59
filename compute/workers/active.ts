// How many of a pool's workers take part in a step. All of them, unless the machine is busy: when
// other processes hold cores, a worker that the OS deschedules in the middle of a work item holds
// the whole step up until it runs again, and the others sleep waiting for it. Two workers then only
// progress when the OS runs both at once, and decode fell to a fraction of one thread's speed.
//
// The workers report how long they slept waiting for each other (BLOCKED_US). When that is a large
// part of a few steps in a row, a step with one worker fewer is tried; when one worker fewer is
// faster per token (steps of the same size compared), it stays so, and a step with one more worker
// is tried now and then to find out whether the cores came back. A try that loses is tried again
// only after twice as many steps. Sleep alone never removes a worker: coarse work items leave a
// worker waiting on a quiet machine too, and there every try with fewer workers loses. Which
// workers take part never changes the results: the items of an op do not depend on it.

/** Steps in a row with much sleep before a try with one worker fewer. */
const CONTENDED_STEPS = 3;
/** Sleep, as a share of the other workers' time in the step, that counts as much. */
const CONTENDED_SHARE = 0.25;
/** Steps between tries (after a try that lost, twice as many, up to MAX). */
const TRY_INTERVAL = 64;
const MAX_TRY_INTERVAL = 4096;
/** A try lasts at most this many steps, and wins when its time per token is below PROBE_GAIN x
 *  the current one's; it ends after its first step when that step was no faster. */
const TRY_STEPS = 2;
const TRY_GAIN = 0.9;

export class ActiveWorkers {
  private active: number;
  private contended = 0;
  private sinceUp = 0;
  private sinceDown = 0;
  private upInterval = TRY_INTERVAL;
  private downInterval = 0;          // no wait before the first try with fewer
  private trying = 0;                // -1 or +1 while a try runs
  private tryLeft = 0;
  private tryMs = 0;
  private trySteps = 0;
  /** Time per token at `active`, a moving average per step size (tokens in the step). */
  private readonly msPerToken = new Map<number, number>();

  constructor(readonly workers: number) {
    this.active = workers;
  }

  /** Workers that take part in the next step. */
  next(): number {
    return this.active + this.trying;
  }

  /** What the step that ran with `active` workers cost: wall time, and the workers' sleep. */
  record(active: number, tokens: number, wallMs: number, blockedMs: number): void {
    const perToken = wallMs / Math.max(1, tokens);
    const usual = this.msPerToken.get(tokens);
    if (this.trying !== 0) {
      if (usual === undefined) return; // nothing to compare this step with: the try goes on
      this.tryMs += perToken;
      this.trySteps++;
      if (perToken >= usual) this.tryLeft = 1; // no faster: stop here
      if (--this.tryLeft === 0) this.endTry(this.tryMs / this.trySteps < TRY_GAIN * usual);
      return;
    }
    this.msPerToken.set(tokens, usual === undefined ? perToken : 0.8 * usual + 0.2 * perToken);
    this.sinceUp++;
    this.sinceDown++;
    const much = active > 1 && blockedMs > CONTENDED_SHARE * wallMs * (active - 1);
    this.contended = much ? this.contended + 1 : 0;
    if (this.contended >= CONTENDED_STEPS && this.sinceDown >= this.downInterval) this.startTry(-1);
    else if (this.active < this.workers && this.sinceUp >= this.upInterval) this.startTry(+1);
  }

  private startTry(direction: -1 | 1): void {
    this.trying = direction;
    this.tryLeft = TRY_STEPS;
    this.tryMs = 0;
    this.trySteps = 0;
    this.contended = 0;
  }

  private endTry(won: boolean): void {
    const direction = this.trying;
    this.trying = 0;
    if (won) {
      this.active += direction;
      this.msPerToken.clear();
    }
    if (direction < 0) {
      this.sinceDown = 0;
      this.downInterval = won ? 0 : Math.min(MAX_TRY_INTERVAL, Math.max(TRY_INTERVAL, 2 * this.downInterval));
      this.sinceUp = 0;
    } else {
      this.sinceUp = 0;
      this.upInterval = won ? TRY_INTERVAL : Math.min(MAX_TRY_INTERVAL, 2 * this.upInterval);
    }
  }
}
