// The console in Firefox: Debian's firefox-esr, driven over WebDriver BiDi by
// puppeteer-core (playwright-core drives only its own patched Firefox builds).
// An operator signs in, starts a campaign from its page and sees the first
// wave reach 100 % without a reload.
//
// Environment: OTA_URL, OTA_CAMPAIGN, OTA_OPERATOR_TOKEN, OTA_SCREENSHOTS.

import puppeteer from "puppeteer-core";
import { env, run, screenshots } from "./support.mjs";

const url = env("OTA_URL");
const shots = screenshots();

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: process.env.FIREFOX ?? "/usr/bin/firefox-esr",
  headless: true,
  // Firefox reaches for Mozilla's services at start; this network refuses them.
  extraPrefsFirefox: {
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
    "browser.safebrowsing.malware.enabled": false,
    "browser.safebrowsing.phishing.enabled": false,
    "app.normandy.enabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
  },
});
const failures = [];
await run("firefox", browser, failures, async () => {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  const until = (what, check) => page.waitForFunction(check, { timeout: 30000 }).catch(() => { throw new Error(`waited for ${what}`); });

  await page.goto(`${url}/ui`);
  await page.waitForSelector("#token");
  await page.type("#token", env("OTA_OPERATOR_TOKEN"));
  await page.click("form button[type=submit]");
  await until("the signed-in role", () => document.querySelector('[data-testid="who"]')?.textContent?.includes("operator"));
  await page.goto(`${url}/ui/campaigns/${env("OTA_CAMPAIGN")}`);
  await until("the Start button", () => [...document.querySelectorAll(".actions button")].some((b) => b.textContent === "Start"));
  await page.evaluate(() => [...document.querySelectorAll(".actions button")].find((b) => b.textContent === "Start")?.click());
  await until("wave 1 at 100 %", () => document.querySelector('[data-testid="wave-1-done"]')?.textContent === "100 %");
  await until("the campaign completed", () => document.querySelector('[data-testid="status"]')?.textContent === "completed");
  await page.screenshot({ path: `${shots}/firefox-campaign.png`, fullPage: true });
});
