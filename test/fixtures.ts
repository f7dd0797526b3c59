// Where the llama.cpp conformance fixtures live (../shared/fixtures, see its README), and the rule
// every test that reads them follows:
//   - the fixtures directory absent: each such test is skipped by the runner, with the reason;
//   - the directory present (as in CI): every fixture a test names is required; a missing, unreadable
//     or wrongly sized file fails the test, it never skips it.
// QWASM_FIXTURES=<dir> points the tests at another directory (QWASM_FIXTURES=/nonexistent shows the
// skips).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeEach, describe, type TestContext } from "vitest";

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const FIXTURES_DIR = resolve(process.env.QWASM_FIXTURES || join(projectRoot, "../shared/fixtures"));
export const fixturesAvailable = existsSync(FIXTURES_DIR);
/** The note of every skip for want of fixtures. */
export const FIXTURES_ABSENT = `no llama.cpp fixtures: ${FIXTURES_DIR} is absent (../shared/fixtures, or set QWASM_FIXTURES)`;

/** Skips the running test, with the reason, when the fixtures directory is absent. */
export function skipWithoutFixtures(ctx: TestContext): void {
  if (!fixturesAvailable) ctx.skip(FIXTURES_ABSENT);
}

/** describe() for tests that read fixtures: without the fixtures directory, each of its tests is
 *  skipped by the runner with the reason. The body must not read fixtures while collecting. */
export function describeFixtures(name: string, body: () => void): void {
  describe(name, () => {
    beforeEach(skipWithoutFixtures);
    body();
  });
}

/** The path of a fixture (parts under FIXTURES_DIR); throws when it is missing. */
export function fixturePath(...parts: string[]): string {
  const path = join(FIXTURES_DIR, ...parts);
  if (!existsSync(path)) {
    throw new Error(`fixture ${join(...parts)} is missing from ${FIXTURES_DIR}: with the fixtures directory present, ` +
      `every fixture a test names is required`);
  }
  return path;
}

/** A fixture's bytes; throws, saying which, when it is missing or unreadable. */
export function readFixture(...parts: string[]): Buffer {
  const path = fixturePath(...parts);
  try {
    return readFileSync(path);
  } catch (e) {
    throw new Error(`fixture ${path} is unreadable: ${(e as Error).message}`);
  }
}

/** A JSON fixture, parsed; throws, saying which, when it is missing or not JSON. */
export function readFixtureJSON<T>(...parts: string[]): T {
  const text = readFixture(...parts).toString("utf8");
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new Error(`fixture ${join(FIXTURES_DIR, ...parts)} is not JSON: ${(e as Error).message}`);
  }
}

/** A raw little-endian float32 fixture of exactly `count` values. */
export function readFixtureF32(count: number, ...parts: string[]): Float32Array {
  const b = readFixture(...parts);
  if (b.byteLength !== 4 * count) {
    throw new Error(`fixture ${join(FIXTURES_DIR, ...parts)} has ${b.byteLength} bytes, expected ${4 * count} (${count} float32)`);
  }
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error("float32 fixtures are little-endian: this host is not");
  const out = new Float32Array(count);
  new Uint8Array(out.buffer).set(b);
  return out;
}
