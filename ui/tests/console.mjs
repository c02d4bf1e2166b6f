// The console in a real browser (Debian's chromium, driven by playwright-core),
// against a server the Rust test started: sign in, start a gated campaign and
// watch its first wave reach 100 % without a reload, find no approve button as
// its operator, approve as someone else, watch it complete, and find no write
// button as a viewer. Screenshots of each page go to $OTA_SCREENSHOTS.
//
// Environment: OTA_URL, OTA_CAMPAIGN, OTA_OPERATOR_TOKEN, OTA_APPROVER_TOKEN,
// OTA_VIEWER_TOKEN, OTA_SCREENSHOTS.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const url = env("OTA_URL");
const campaign = env("OTA_CAMPAIGN");
const shots = env("OTA_SCREENSHOTS");
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  // Without these, Chromium reaches for Google's services, which this network refuses.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const failures = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  // A refused request (the wrong token at the end) logs "Failed to load resource"; the
  // steps check what the page shows of it. Any other console error is a failure.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) failures.push(`console: ${m.text()}`);
  });

  const signIn = async (token, role) => {
    await page.goto(`${url}/ui`);
    await page.getByLabel("API key or token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("who").filter({ hasText: role }).waitFor();
  };
  const signOut = () => page.getByRole("button", { name: "Sign out" }).click();

  // The operator: overview, the list, the campaign; start it and watch wave 1 fill.
  await signIn(env("OTA_OPERATOR_TOKEN"), "operator");
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.screenshot({ path: `${shots}/overview.png`, fullPage: true });
  await page.getByRole("link", { name: "Campaigns" }).click();
  await page.getByRole("link", { name: "console demo" }).click();
  await page.getByRole("button", { name: "Start" }).click();
  await page.getByTestId("wave-1-done").filter({ hasText: "100 %" }).waitFor({ timeout: 30000 });
  await page.getByText("waiting for approval of the next wave").waitFor({ timeout: 30000 });
  if (await page.getByRole("button", { name: "Approve next wave" }).count() !== 0) {
    failures.push("the operator, who may not approve, was shown the approve button");
  }
  await page.screenshot({ path: `${shots}/campaign-awaiting-approval.png`, fullPage: true });
  await page.getByRole("link", { name: "Campaigns" }).click();
  await page.getByRole("link", { name: "console demo" }).waitFor();
  await page.screenshot({ path: `${shots}/campaigns.png`, fullPage: true });
  await signOut();

  // Someone else approves; the second wave fills and the campaign completes, live.
  await signIn(env("OTA_APPROVER_TOKEN"), "approver");
  await page.goto(`${url}/ui/campaigns/${campaign}`);
  await page.getByRole("button", { name: "Approve next wave" }).click();
  await page.getByTestId("wave-2-done").filter({ hasText: "100 %" }).waitFor({ timeout: 30000 });
  await page.getByTestId("status").filter({ hasText: "completed" }).waitFor({ timeout: 30000 });
  await page.getByRole("cell", { name: "wave_approved" }).first().waitFor();
  await page.screenshot({ path: `${shots}/campaign-completed.png`, fullPage: true });
  await signOut();

  // A viewer sees the campaign and no button that would answer 403.
  await signIn(env("OTA_VIEWER_TOKEN"), "viewer");
  await page.goto(`${url}/ui/campaigns/${campaign}`);
  await page.getByTestId("status").waitFor();
  const buttons = await page.locator(".actions button").count();
  if (buttons !== 0) failures.push(`a viewer was shown ${buttons} action buttons`);

  // A wrong token is refused with the server's words.
  await signOut();
  await page.getByLabel("API key or token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  await page.screenshot({ path: `${shots}/sign-in-refused.png`, fullPage: true });
} catch (e) {
  failures.push(String(e?.stack ?? e));
} finally {
  await browser.close();
}
if (failures.length) {
  console.error(failures.join("\n"));
  process.exit(1);
}
console.log("console: every step passed");
