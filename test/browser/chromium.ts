// The Chromium the browser tests drive (scripts/bench-browser.mjs keeps a copy of these flags): Debian's,
// never one a tool downloads, or $CHROMIUM_PATH. No GPU, no network beyond the page's own server, nothing
// fetched in the background. Without it the suites are skipped by the runner (describe.skipIf), the
// reason in their title.
import { existsSync } from "node:fs";
import { describe } from "vitest";

export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const chromiumArgs = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
export const hasChromium = existsSync(chromiumPath);

/** A suite that needs Chromium: skipped by the runner where there is none, with why in its title. */
export function describeInChromium(title: string, body: () => void): void {
  describe.skipIf(!hasChromium)(hasChromium ? title
    : `${title} (skipped: no Chromium at ${chromiumPath}; apt-get install -y chromium, or set CHROMIUM_PATH)`, body);
}
