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
