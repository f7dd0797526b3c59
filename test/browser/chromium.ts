// The Chromium the browser tests drive (scripts/bench-browser.mjs keeps a copy of these flags): Debian's,
// never one a tool downloads, or $CHROMIUM_PATH. No GPU, no network beyond the page's own server, nothing
// fetched in the background. Without it the tests are skipped by the runner, with `skipReason`.
import { existsSync } from "node:fs";

export const chromiumPath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const chromiumArgs = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
export const hasChromium = existsSync(chromiumPath);

/** The describe title: `title` where Chromium is there, else `title` with why it is skipped. */
export function browserSuite(title: string): string {
  return hasChromium ? title : `${title} (skipped: no Chromium at ${chromiumPath}; apt-get install -y chromium, or set CHROMIUM_PATH)`;
}
