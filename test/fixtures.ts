// Where the llama.cpp conformance fixtures live (../shared/fixtures, see its README), and whether
// they are present: tests that need them skip with a visible message when they are not.
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const FIXTURES_DIR = resolve(projectRoot, "../shared/fixtures");
export const fixturesAvailable = existsSync(FIXTURES_DIR);
