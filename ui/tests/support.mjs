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
