// How many of a pool's workers take part in a step. All of them, unless the machine is busy: when
// other processes hold cores, a worker that the OS deschedules in the middle of a work item holds
// the whole step up until it runs again, and the others sleep waiting for it. Two workers then only
// progress when the OS runs both at once, and decode fell to a fraction of one thread's speed. The
// workers report how long they slept waiting for each other (BLOCKED_US); when that is a large part
// of the steps, fewer workers take part, and a few steps with one more are tried now and then to
// find out whether the cores came back. Which workers take part never changes the results: the
// items of an op do not depend on it.

/** Steps in a row with contention before a worker is dropped. */
const CONTENDED_STEPS = 3;
/** Sleep, as a share of the other workers' time in the step, that counts as contention. */
const CONTENDED_SHARE = 0.25;
/** Steps between two tries of one more worker (doubling after each try that loses, up to MAX). */
const PROBE_INTERVAL = 64;
const MAX_PROBE_INTERVAL = 4096;
/**
 * Steps a try lasts at most; it wins when its time per token beats the current one's by PROBE_GAIN,
 * and ends after its first step when that step was no faster (a try on a busy machine is slow: one
 * step is enough to tell).
 */
const PROBE_STEPS = 2;
const PROBE_GAIN = 0.9;

export class ActiveWorkers {
  private active: number;
  private contended = 0;
  private sinceProbe = 0;
  private interval = PROBE_INTERVAL;
  private probing = 0;          // steps left in a try of active + 1
  private probeMs = 0;          // time per token during the try
  private probeSteps = 0;
  private msPerToken = 0;       // moving average at `active`, steps of the same kind only

  constructor(readonly workers: number) {
    this.active = workers;
  }

  /** Workers that take part in the next step. */
  next(): number {
    return this.probing > 0 ? this.active + 1 : this.active;
  }

  /** What the step that ran with `active` workers cost: wall time, and the workers' sleep. */
  record(active: number, tokens: number, wallMs: number, blockedMs: number): void {
    const perToken = wallMs / Math.max(1, tokens);
    if (this.probing > 0) {
      this.probeMs += perToken;
      this.probeSteps++;
      if (perToken >= this.msPerToken) this.probing = 1; // no faster: stop here
      if (--this.probing === 0) {
        const tried = this.probeMs / this.probeSteps;
        if (this.msPerToken > 0 && tried < PROBE_GAIN * this.msPerToken) {
          this.active++;
          this.msPerToken = tried;
          this.interval = PROBE_INTERVAL;
        } else {
          this.interval = Math.min(MAX_PROBE_INTERVAL, 2 * this.interval);
        }
        this.sinceProbe = 0;
        this.contended = 0;
      }
      return;
    }
    this.msPerToken = this.msPerToken === 0 ? perToken : 0.8 * this.msPerToken + 0.2 * perToken;
    if (active > 1 && blockedMs > CONTENDED_SHARE * wallMs * (active - 1)) {
      if (++this.contended >= CONTENDED_STEPS) {
        this.active--;
        this.contended = 0;
        this.msPerToken = 0;
        this.sinceProbe = 0;
      }
    } else {
      this.contended = 0;
    }
    if (this.active < this.workers && ++this.sinceProbe >= this.interval && this.msPerToken > 0) {
      this.probing = PROBE_STEPS;
      this.probeMs = 0;
      this.probeSteps = 0;
    }
  }
}
