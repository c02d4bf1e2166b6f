// The console in a real browser (Debian's chromium, driven by playwright-core),
// against a server and a live simulated fleet that tests/e2e/console.rs started.
// As an operator: upload firmware by the form, create a gated campaign from the
// form after previewing it, start it and watch wave 1 reach 100 % without a
// reload, find no approve button; as an approver, approve and watch it complete;
// as the operator, start a campaign over failing devices and see the gate pause
// it with its numbers, and roll a device back; as an auditor, see the first
// campaign as it was before it started; as an admin, issue a viewer API key and
// subscribe a webhook; as that key's viewer, find no write button.
// Screenshots of each page go to $OTA_SCREENSHOTS.
//
// Environment: OTA_URL, OTA_OPERATOR_TOKEN, OTA_APPROVER_TOKEN, OTA_AUDITOR_TOKEN,
// OTA_ADMIN_TOKEN, OTA_SCREENSHOTS.

import { chromium } from "playwright-core";
import { env, run, screenshots } from "./support.mjs";

const url = env("OTA_URL");
const shots = screenshots();

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  // Without these, Chromium reaches for Google's services, which this network refuses.
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const failures = [];
const step = (name) => console.log(`step: ${name}`);
await run("console", browser, failures, async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.setDefaultTimeout(30000);
  page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));
  // A refused request (the wrong token, a forbidden action) logs "Failed to load
  // resource"; the steps check what the page shows of it. Any other error fails.
  page.on("console", (m) => {
    if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) failures.push(`console: ${m.text()}`);
  });
  const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
  const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name }).click();
  const signIn = async (token, role) => {
    await page.goto(`${url}/ui`);
    await page.getByLabel("API key or token").fill(token);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByTestId("who").filter({ hasText: role }).waitFor();
  };
  const signOut = () => page.getByRole("button", { name: "Sign out" }).click();

  step("operator signs in");
  await signIn(env("OTA_OPERATOR_TOKEN"), "operator");
  await page.getByRole("heading", { name: "Overview" }).waitFor();
  await page.getByTestId("health-postgres").filter({ hasText: "ok" }).waitFor();
  await page.getByRole("row", { name: /^1\.0 14 100 %/ }).waitFor();
  await page.getByTestId("activity").getByText("CampaignCreated").first().waitFor();
  await page.getByRole("img", { name: /^Devices by installed firmware: 1\.0 14/ }).waitFor();
  await shot("overview");

  step("upload firmware by the form");
  await nav("Firmware");
  await page.getByLabel("Image file").setInputFiles({ name: "console-os-3.0.swu", mimeType: "application/octet-stream",
    buffer: Buffer.from("console image 3.0".repeat(1000)) });
  await page.getByLabel("Name", { exact: true }).fill("console-os");
  await page.getByLabel("Version", { exact: true }).fill("3.0");
  await page.getByLabel("Device model", { exact: true }).fill("gw");
  await page.getByRole("button", { name: "Upload" }).click();
  await page.getByTestId("uploaded").filter({ hasText: "SHA-256" }).waitFor();
  await page.getByRole("cell", { name: "3.0", exact: true }).waitFor();
  await shot("firmware");
  await page.getByRole("row", { name: /console-os 3\.0/ }).getByRole("link", { name: "console-os" }).click();
  await page.getByRole("row", { name: /^SHA-256/ }).waitFor();
  await page.getByText("FirmwareUploaded").waitFor();
  await shot("firmware-detail");

  step("preview and create a gated campaign from the form");
  await nav("Campaigns");
  await page.getByRole("link", { name: "New campaign" }).click();
  await page.getByLabel("Name", { exact: true }).fill("from the form");
  await page.getByRole("combobox", { name: /^Firmware/ }).selectOption({ label: "console-os 3.0 (gw)" });
  await page.getByLabel("Tags (filter, all of)").fill("steady");
  await page.getByRole("textbox", { name: /^Waves/ }).fill("50%,100%");
  await page.getByLabel("Wait for approval after each wave").check();
  await page.getByTestId("matching").filter({ hasText: "10 devices match" }).waitFor();
  await page.getByRole("button", { name: "Preview" }).click();
  await page.getByTestId("preview").filter({ hasText: "10 devices would be updated" }).waitFor();
  await shot("campaign-new-preview");
  await page.getByRole("button", { name: "Create draft" }).click();
  await page.getByTestId("status").filter({ hasText: "draft" }).waitFor();
  const campaignUrl = page.url();

  step("start it and watch wave 1 fill without a reload");
  await page.getByRole("button", { name: "Start" }).click();
  await page.getByTestId("wave-1-done").filter({ hasText: "100 %" }).waitFor();
  await page.getByText("waiting for approval of the next wave").waitFor();
  if (await page.getByRole("button", { name: "Approve next wave" }).count() !== 0) {
    failures.push("the operator, who may not approve, was shown the approve button");
  }
  await shot("campaign-awaiting-approval");
  await signOut();

  step("an approver approves; the campaign completes live");
  await signIn(env("OTA_APPROVER_TOKEN"), "approver");
  await page.goto(campaignUrl);
  await page.getByRole("button", { name: "Approve next wave" }).click();
  await page.getByTestId("wave-2-done").filter({ hasText: "100 %" }).waitFor();
  await page.getByTestId("status").filter({ hasText: "completed" }).waitFor();
  await page.getByRole("cell", { name: "wave_approved" }).first().waitFor();
  await page.getByTestId("members-total").filter({ hasText: "10 devices" }).waitFor();
  await page.getByLabel("State", { exact: true }).selectOption("failed");
  await page.getByTestId("members-total").filter({ hasText: "0 devices failed" }).waitFor();
  await page.getByLabel("State", { exact: true }).selectOption("");
  await shot("campaign-completed");
  await signOut();

  step("failures pause a campaign and the decision shows the gate's numbers");
  await signIn(env("OTA_OPERATOR_TOKEN"), "operator");
  await nav("Campaigns");
  await page.getByRole("link", { name: "fragile rollout" }).click();
  await page.getByRole("button", { name: "Start" }).click();
  await page.getByTestId("status").filter({ hasText: "paused" }).waitFor();
  await page.getByRole("cell", { name: /failure_threshold: \d+ failed of \d+ finished/ }).first().waitFor();
  await shot("campaign-paused-by-gate");
  await nav("Campaigns");
  await shot("campaigns");

  step("roll a device back");
  await nav("Devices");
  await page.getByRole("link", { name: "ui-00" }).click();
  await page.getByTestId("running").filter({ hasText: "3.0" }).waitFor();
  await page.getByRole("button", { name: "Roll back" }).click();
  await page.getByRole("status").filter({ hasText: "Rollback assigned" }).waitFor();
  await page.getByRole("listitem").filter({ hasText: "rollback 3.0 → 1.0" }).waitFor();
  await shot("device");
  await nav("Rollbacks");
  await page.getByRole("row", { name: /^ui-00 3\.0 1\.0/ }).waitFor();

  step("register a device by the form and update it alone");
  await nav("Devices");
  const register = page.getByRole("form", { name: "Register a device" });
  await register.getByLabel("Device id").fill("ui-new");
  await register.getByLabel("Model", { exact: true }).fill("gw");
  await register.getByLabel("Runs version").fill("1.0");
  await register.getByRole("button", { name: "Register" }).click();
  await page.getByRole("status").filter({ hasText: "its DDI token (shown once)" }).waitFor();
  await page.getByRole("link", { name: "ui-new" }).click();
  await page.getByRole("combobox", { name: /^Firmware/ }).selectOption({ label: "console-os 3.0" });
  await page.getByRole("button", { name: "Update this device" }).click();
  await page.getByRole("listitem").filter({ hasText: "update 1.0 → 3.0" }).waitFor();

  step("delete a draft");
  await nav("Campaigns");
  await page.getByRole("link", { name: "never to be" }).click();
  await page.getByLabel("New name").fill("never, really");
  await page.getByRole("button", { name: "Rename" }).click();
  await page.getByRole("heading", { name: "never, really" }).waitFor();
  await page.getByRole("button", { name: "Delete draft" }).click();
  await page.getByRole("heading", { name: "Campaigns" }).waitFor();
  await page.getByRole("link", { name: "from the form" }).waitFor();
  // The list follows the deletion live; a draft still listed after the wait fails the step.
  await page.getByRole("link", { name: /^never/ }).waitFor({ state: "detached" });
  await signOut();

  step("an auditor sees the campaign as it was before it started");
  await signIn(env("OTA_AUDITOR_TOKEN"), "auditor");
  await nav("Audit");
  await page.getByTestId("chain").filter({ hasText: "verified" }).waitFor();
  await page.getByLabel("Campaign").selectOption({ label: "from the form" });
  await page.getByTestId("status-at").filter({ hasText: "completed" }).waitFor();
  await page.getByLabel(/^Moment/).fill("2");
  await page.getByTestId("status-at").filter({ hasText: "draft" }).waitFor();
  await page.getByLabel("Device (optional)").fill("ui-00");
  await page.getByRole("button", { name: "Look" }).click();
  await page.getByTestId("device-at").filter({ hasText: "ui-00 ran" }).waitFor();
  await page.getByRole("row", { name: /ui-fragile-0 1\.0/ }).waitFor();
  await shot("audit");
  await signOut();

  step("an admin issues a viewer API key and subscribes a webhook");
  await signIn(env("OTA_ADMIN_TOKEN"), "admin");
  await nav("Administration");
  await page.getByLabel("Key name").fill("wall display");
  await page.getByLabel("Role").selectOption("viewer");
  await page.getByRole("button", { name: "Issue key" }).click();
  const key = (await page.getByTestId("issued-key").textContent())?.trim() ?? "";
  await page.getByLabel("Receiver URL").fill("http://127.0.0.1:9/hook");
  await page.getByLabel("firmware.uploaded").check();
  await page.getByRole("button", { name: "Subscribe" }).click();
  await page.getByRole("status").filter({ hasText: "Signing secret" }).waitFor();
  await page.getByRole("button", { name: "Send a test" }).click();
  await page.getByRole("table", { name: "Deliveries" }).getByRole("cell", { name: "failed" }).waitFor();
  await shot("admin");
  await signOut();

  step("the viewer signs in with that API key and finds no write button");
  await signIn(key, "viewer");
  await page.goto(campaignUrl);
  await page.getByTestId("status").waitFor();
  const buttons = await page.locator(".actions button").count();
  if (buttons !== 0) failures.push(`a viewer was shown ${buttons} campaign action buttons`);
  await nav("Firmware");
  await page.getByRole("heading", { name: "Firmware" }).waitFor();
  if (await page.getByRole("button", { name: /Upload|Deprecate/ }).count() !== 0) failures.push("a viewer was offered upload or deprecate");
  await nav("Devices");
  await page.getByRole("heading", { name: "Devices" }).waitFor();
  if (await page.getByRole("button", { name: "Register" }).count() !== 0) failures.push("a viewer was offered to register devices");
  if (await page.getByRole("link", { name: /Audit|Administration/ }).count() !== 0) failures.push("a viewer was offered the audit or admin pages");

  step("a wrong token is refused with the server's words");
  await signOut();
  await page.getByLabel("API key or token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").waitFor();
  await shot("sign-in-refused");
});
