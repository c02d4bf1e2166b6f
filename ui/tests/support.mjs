// What the browser tests share: their settings from the environment.

import { mkdirSync } from "node:fs";

/** A setting the Rust test that runs the browser test passes in. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

/** Where screenshots go ($OTA_SCREENSHOTS), made if missing. */
export function screenshots() {
  const dir = env("OTA_SCREENSHOTS");
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Runs the steps, closes the browser whatever happens, and exits 1 naming every
 * failure (a thrown step, or one the steps recorded in `failures`). */
export async function run(name, browser, failures, steps) {
  try {
    await steps();
  } catch (e) {
    failures.push(String(e?.stack ?? e));
  } finally {
    await browser.close();
  }
  if (failures.length) {
    console.error(failures.join("\n"));
    process.exit(1);
  }
  console.log(`${name}: every step passed`);
}
