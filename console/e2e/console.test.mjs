// The web console end to end: a real `imds serve` on loopback, driven in headless Chromium
// (Debian's package, through playwright-core; no browser is downloaded). Guest requests are
// made from 127.0.0.2, the address of the instance the test registers. Screenshots of the main
// pages are written to docs/console/.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync, mkdirSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";
import { chromium } from "playwright-core";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const binary = process.env.IMDS_BIN || join(repo, "target", "debug", "imds");
const screenshots = join(repo, "docs", "console");
const INSTANCE_ADDRESS = "127.0.0.2";
const ROLE = "console-e2e-role";

let work;
let server;
let guest;
let control;
let token;
let browser;
let page;
let instanceId;

function serve() {
  return new Promise((resolve, reject) => {
    let log = "";
    server = spawn(
      binary,
      [
        "serve",
        "--state-dir", join(work, "state"),
        "--listen", "127.0.0.1:0",
        "--admin-listen", "127.0.0.1:0",
        "--admin-token-file", join(work, "admin-token"),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const timer = setTimeout(() => reject(new Error("imds serve did not start:\n" + log)), 30000);
    server.stderr.on("data", (chunk) => {
      log += chunk;
      const listening = log.match(/Listening\. address=([0-9.:]+)/);
      const ready = log.match(/Control API ready\. address=([0-9.:]+)/);
      if (listening && ready && /Serving\./.test(log)) {
        clearTimeout(timer);
        resolve({ guest: listening[1], control: ready[1] });
      }
    });
    server.on("exit", (code) => reject(new Error("imds serve exited " + code + ":\n" + log)));
  });
}

/// One request to the guest listener from the registered instance's address.
function guestRequest(method, path, headers = {}) {
  const [host, port] = guest.split(":");
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host, port: Number(port), method, path, headers, localAddress: INSTANCE_ADDRESS },
      (response) => {
        let body = "";
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode, body }));
      },
    );
    request.on("error", reject);
    request.setTimeout(10000, () => request.destroy(new Error("guest request timed out")));
    request.end();
  });
}

async function imdsToken() {
  const answer = await guestRequest("PUT", "/latest/api/token", {
    "X-aws-ec2-metadata-token-ttl-seconds": "300",
  });
  assert.equal(answer.status, 200, answer.body);
  return answer.body;
}

async function shot(name) {
  await page.screenshot({ path: join(screenshots, name + ".png"), fullPage: true });
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), "imds-console-e2e-"));
  token = randomBytes(32).toString("hex");
  writeFileSync(join(work, "admin-token"), token + "\n", { mode: 0o600 });
  ({ guest, control } = await serve());
  mkdirSync(screenshots, { recursive: true });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
});

after(async () => {
  if (browser) {
    await browser.close();
  }
  if (server) {
    server.removeAllListeners("exit");
    server.kill();
  }
  if (work) {
    rmSync(work, { recursive: true, force: true });
  }
});

test("a wrong token cannot log in", async () => {
  await page.goto(`http://${control}/ui/`);
  assert.match(page.url(), /\/ui\/login$/);
  await page.fill('input[name="token"]', "not-the-token");
  await page.click('button[type="submit"]');
  await page.waitForSelector("p.error");
  assert.match(await page.textContent("p.error"), /not a control-API token/);
  assert.equal((await page.context().cookies()).length, 0);
  await shot("login");
});

test("log in and register an instance", async () => {
  await page.fill('input[name="token"]', token);
  await page.click('button[type="submit"]');
  await page.waitForURL(/\/ui\/instances$/);
  const cookies = await page.context().cookies();
  assert.equal(cookies.length, 1);
  assert.equal(cookies[0].httpOnly, true);
  assert.equal(cookies[0].sameSite, "Strict");
  assert.notEqual(cookies[0].value, token);
  assert.ok(!(await page.content()).includes(token), "the token is in the page");

  await page.fill(
    'textarea[name="description"]',
    JSON.stringify({ addresses: [INSTANCE_ADDRESS], iam: { "role-name": ROLE } }),
  );
  await page.click('form[action="/ui/instances"] button[type="submit"]');
  await page.waitForURL(/\/ui\/instances\/i-[0-9a-f]+$/);
  instanceId = decodeURIComponent(page.url().split("/").pop());
  assert.match(await page.textContent("dl.identity"), new RegExp(INSTANCE_ADDRESS));
  await page.goto(`http://${control}/ui/instances`);
  assert.match(await page.textContent("table#instances"), new RegExp(instanceId));
});

test("HttpTokens required: a tokenless request is refused, and the chart shows it", async () => {
  await page.goto(`http://${control}/ui/instances/${instanceId}`);
  assert.equal((await guestRequest("GET", "/latest/meta-data/instance-id")).status, 200);
  await page.selectOption('select[name="HttpTokens"]', "required");
  await page.click('form[action$="/options"] button[type="submit"]');
  await page.waitForURL(new RegExp(`/ui/instances/${instanceId}$`));
  assert.match(await page.textContent("#options"), /HttpTokens required/);
  // The first message of the live stream is the charts' baseline; later ones show what changed.
  await page.waitForFunction(() => Number(document.body.dataset.updates) >= 1, null, { timeout: 10000 });
  const before401 = Number(await page.textContent('[data-stat="401"]'));
  let refused;
  for (let tries = 0; tries < 50; tries += 1) {
    refused = await guestRequest("GET", "/latest/meta-data/instance-id");
    if (refused.status === 401) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(refused.status, 401);
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-stat="401"]').textContent) > before &&
      Number(document.querySelector('[data-stat="no-token-rejected"]').textContent) >= 1,
    before401,
    { timeout: 10000 },
  );
  // The refusals chart shows it: a bar in the 401 colour above the legend.
  await page.waitForFunction(() => {
    const canvas = document.getElementById("refusals");
    const pixels = canvas.getContext("2d").getImageData(0, 16, canvas.width, canvas.height - 40).data;
    for (let index = 0; index < pixels.length; index += 4) {
      if (pixels[index] === 0xc2 && pixels[index + 1] === 0x30 && pixels[index + 2] === 0x30) {
        return true;
      }
    }
    return false;
  }, null, { timeout: 10000 });
});

test("a Spot interruption is served at spot/instance-action", async () => {
  await page.goto(`http://${control}/ui/instances/${instanceId}`);
  const none = await guestRequest("GET", "/latest/meta-data/spot/instance-action", {
    "X-aws-ec2-metadata-token": await imdsToken(),
  });
  assert.equal(none.status, 404);
  await page.click('form:has(input[value="spot-interruption"]) button[type="submit"]');
  await page.waitForSelector("table#events tbody tr");
  assert.match(await page.textContent("table#events"), /spot-interruption/);
  let action;
  for (let tries = 0; tries < 50; tries += 1) {
    action = await guestRequest("GET", "/latest/meta-data/spot/instance-action", {
      "X-aws-ec2-metadata-token": await imdsToken(),
    });
    if (action.status === 200) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(action.status, 200);
  assert.equal(JSON.parse(action.body).action, "terminate");
  // Some tokenless requests, refused, for the charts to show.
  for (let request = 0; request < 3; request += 1) {
    assert.equal((await guestRequest("GET", "/latest/meta-data/instance-id")).status, 401);
  }
  await page.waitForTimeout(2500);
  await shot("instance");
});

test("a credential hand-out appears in the feed", async () => {
  await page.goto(`http://${control}/ui/credentials`);
  const answer = await guestRequest("GET", `/latest/meta-data/iam/security-credentials/${ROLE}`, {
    "X-aws-ec2-metadata-token": await imdsToken(),
  });
  assert.equal(answer.status, 200, answer.body);
  const keyId = JSON.parse(answer.body).AccessKeyId;
  const secret = JSON.parse(answer.body).SecretAccessKey;
  await page.waitForFunction(
    (key) => document.querySelector("table#feed").textContent.includes(key),
    keyId,
    { timeout: 10000 },
  );
  const row = await page.textContent(`table#feed tr:has-text("${keyId}")`);
  assert.match(row, new RegExp(instanceId));
  assert.match(row, new RegExp(ROLE));
  assert.match(row, /2\.0/);
  assert.ok(!(await page.content()).includes(secret), "a secret key is in the feed");
  await shot("credentials");
  await page.goto(`http://${control}/ui/roles`);
  assert.match(await page.textContent("table#roles"), new RegExp(instanceId));
  await shot("roles");
  await page.goto(`http://${control}/ui/instances`);
  await page.waitForTimeout(1500);
  await shot("instances");
});

/// The count a row of the by-route table shows for `version` (1 or 2); 0 when there is no row.
async function routeCount(route, version) {
  const cells = await page.$$eval(`table#by-route tr[data-route="${route}"] td`, (tds) => tds.map((td) => td.textContent));
  return cells.length ? Number(cells[version]) : 0;
}

async function nextUpdate() {
  const seen = Number(await page.evaluate(() => document.body.dataset.updates || 0));
  await page.waitForFunction((before) => Number(document.body.dataset.updates) > before, seen, { timeout: 10000 });
}

test("an instance's requests by route and version show on its page, live", async () => {
  await page.goto(`http://${control}/ui/instances/${instanceId}`);
  await nextUpdate();
  const leafV2 = await routeCount("meta-data-leaf", 2);
  const tokenV2 = await routeCount("token", 2);
  const refused401 = Number(await page.textContent('[data-stat="401"]'));
  const imds = await imdsToken();
  for (let request = 0; request < 3; request += 1) {
    const answer = await guestRequest("GET", "/latest/meta-data/instance-id", { "X-aws-ec2-metadata-token": imds });
    assert.equal(answer.status, 200);
  }
  // Tokens are required: two tokenless requests are refused (401), counted as IMDSv1.
  for (let request = 0; request < 2; request += 1) {
    assert.equal((await guestRequest("GET", "/latest/meta-data/instance-id")).status, 401);
  }
  await page.waitForFunction(
    ([leaf, token]) => {
      const count = (route) => {
        const row = document.querySelector(`table#by-route tr[data-route="${route}"]`);
        return row ? Number(row.cells[2].textContent) : 0;
      };
      return count("meta-data-leaf") >= leaf + 3 && count("token") >= token + 1;
    },
    [leafV2, tokenV2],
    { timeout: 10000 },
  );
  await page.waitForFunction(
    (before) => Number(document.querySelector('[data-stat="401"]').textContent) >= before + 2,
    refused401,
    { timeout: 10000 },
  );
  assert.equal(await routeCount("meta-data-leaf", 2), leafV2 + 3);
  assert.match(await page.textContent('[data-stat="v1-share"]'), /^\d+ %$/);
  await page.click("details:has(table#by-route) summary");
  await page.waitForTimeout(1500);
  await shot("instance");
});

test("roles: put a generated role, see it listed, delete it", async () => {
  await page.goto(`http://${control}/ui/roles`);
  await page.fill('input[name="RoleName"]', "e2e-generated");
  await page.selectOption('select[name="provider"]', "generated");
  await page.fill('input[name="lifetime-seconds"]', "900");
  await page.click('form[action="/ui/roles"] button[type="submit"]');
  await page.waitForURL(/\/ui\/roles$/);
  const row = await page.textContent('table#roles tr[data-role="e2e-generated"]');
  assert.match(row, /generated/);
  assert.match(row, /"lifetime-seconds":900/);
  await page.click('form[action="/ui/roles/e2e-generated/delete"] button[type="submit"]');
  await page.waitForURL(/\/ui\/roles$/);
  assert.equal(await page.$('table#roles tr[data-role="e2e-generated"]'), null);
});

test("roles: a static role's keys come from an uploaded file, and the secret is never shown", async () => {
  const keyId = "ASIAE2ECONSOLE000001";
  const secret = "e2eSecret/" + randomBytes(12).toString("hex");
  const sessionToken = "e2eToken" + randomBytes(12).toString("hex");
  const file = join(work, "keys.json");
  writeFileSync(file, JSON.stringify({ Credentials: { AccessKeyId: keyId, SecretAccessKey: secret, SessionToken: sessionToken } }));
  await page.goto(`http://${control}/ui/roles`);
  await page.fill('input[name="RoleName"]', ROLE);
  await page.selectOption('select[name="provider"]', "static");
  await page.setInputFiles('input[name="credentials-file"]', file);
  await page.click('form[action="/ui/roles"] button[type="submit"]');
  await page.waitForURL(/\/ui\/roles$/);
  const row = await page.textContent(`table#roles tr[data-role="${ROLE}"]`);
  assert.match(row, /static/);
  assert.match(row, new RegExp(keyId));
  const html = await page.content();
  assert.ok(!html.includes(secret), "the secret key is in the page");
  assert.ok(!html.includes(sessionToken), "the session token is in the page");
  // The instance is served the uploaded keys.
  const answer = await guestRequest("GET", `/latest/meta-data/iam/security-credentials/${ROLE}`, {
    "X-aws-ec2-metadata-token": await imdsToken(),
  });
  assert.equal(answer.status, 200, answer.body);
  assert.equal(JSON.parse(answer.body).AccessKeyId, keyId);
  await shot("roles");
  await page.click(`form[action="/ui/roles/${ROLE}/delete"] button[type="submit"]`);
  await page.waitForURL(/\/ui\/roles$/);
  assert.doesNotMatch(await page.textContent(`table#roles tr[data-role="${ROLE}"]`), /static/);
});

test("scenarios: start one, see its steps progress, stop it", async () => {
  await page.goto(`http://${control}/ui/instances`);
  await page.click('header nav a[href="/ui/scenarios"]');
  await page.waitForURL(/\/ui\/scenarios$/);
  const scenario = {
    name: "e2e rebalance, then a long wait",
    "instance-id": instanceId,
    steps: [
      { at: "0s", until: "2s", "inject-fault": { Kind: "status", Status: 500, Path: "meta-data/placement/**" } },
      { at: "1s", "post-event": { Type: "rebalance-recommendation" } },
      { at: "1s", "cancel-event": "instance-event-0123456789abcdef0" },
      { at: "1h", "post-event": { Type: "spot-interruption", Action: "stop" } },
    ],
  };
  await page.fill('textarea[name="scenario"]', JSON.stringify(scenario, null, 2));
  await page.click('form[action="/ui/scenarios"] button[type="submit"]');
  await page.waitForURL(/\/ui\/scenarios$/);
  const section = 'section.scenario:has-text("e2e rebalance")';
  await page.waitForSelector(section);
  // Live: the first steps run (the cancel of an event that does not exist fails), the last waits.
  await page.waitForFunction(
    (selector) => {
      const rows = [...document.querySelectorAll("section.scenario")]
        .find((element) => element.textContent.includes("e2e rebalance"))
        .querySelectorAll("tr[data-step]");
      return rows[0].dataset.state === "done" && rows[1].dataset.state === "done" && rows[2].dataset.state === "failed";
    },
    section,
    { timeout: 15000 },
  );
  assert.equal(await page.getAttribute(`${section} tr[data-step="3"]`, "data-state"), "pending");
  assert.match(await page.textContent(`${section} tr[data-step="2"]`), /InvalidEventID\.NotFound/);
  let rebalance;
  for (let tries = 0; tries < 50; tries += 1) {
    rebalance = await guestRequest("GET", "/latest/meta-data/events/recommendations/rebalance", {
      "X-aws-ec2-metadata-token": await imdsToken(),
    });
    if (rebalance.status === 200) {
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(rebalance.status, 200, rebalance.body);
  await shot("scenarios");
  await page.click(`${section} form[action$="/stop"] button[type="submit"]`);
  await page.waitForURL(/\/ui\/scenarios$/);
  assert.match(await page.textContent(`${section} [data-field="state"]`), /stopped/);
  assert.equal(await page.getAttribute(`${section} tr[data-step="3"]`, "data-state"), "skipped");
  assert.equal(await page.$(`${section} form[action$="/stop"]`), null);
});

test("a POST without the CSRF token is refused", async () => {
  const refused = await page.request.post(`http://${control}/ui/instances/${instanceId}/deregister`, {
    form: { nothing: "here" },
    maxRedirects: 0,
  });
  assert.equal(refused.status(), 403);
  const csrf = await page.getAttribute('input[name="csrf"]', "value");
  const wrongOrigin = await page.request.post(`http://${control}/ui/instances/${instanceId}/deregister`, {
    form: { csrf },
    headers: { Origin: "http://elsewhere.example" },
    maxRedirects: 0,
  });
  assert.equal(wrongOrigin.status(), 403);
  await page.goto(`http://${control}/ui/instances`);
  assert.match(await page.textContent("table#instances"), new RegExp(instanceId));
});

test("deregister and log out", async () => {
  await page.goto(`http://${control}/ui/instances/${instanceId}`);
  await page.click('form[action$="/deregister"] button[type="submit"]');
  await page.waitForURL(/\/ui\/instances$/);
  assert.doesNotMatch(await page.textContent("table#instances"), new RegExp(instanceId));
  await page.click('header form button[type="submit"]');
  await page.waitForURL(/\/ui\/login$/);
  await page.goto(`http://${control}/ui/instances`);
  assert.match(page.url(), /\/ui\/login$/);
});
