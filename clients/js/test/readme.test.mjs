// Runs the README's first hour as a POS developer would: the ```sh install block in a fresh
// project directory (`npm install` of this package by path, and `ws`; `poshub token issue`
// against the test's hub), then every ```js snippet, in order, as one module of that project
// against the real hub, which is killed with kill -9 before the "Go offline and back" snippet
// and restarted a moment later. The `// expected` comments on console.log lines are checked
// against what was printed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync } from "node:fs";
import { execSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Hub, until, sleep, ROOT, BIN } from "./hub.mjs";

const README = join(fileURLToPath(new URL(".", import.meta.url)), "../README.md");

test("every README snippet runs against a real hub and prints what its comments say", async (t) => {
  const blocks = [...readFileSync(README, "utf8").matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]);
  assert.equal(blocks.length, 4, "connect, write, conflict, offline");
  const hub = new Hub();
  await hub.start();
  t.after(() => hub.stop());
  // The install block, run line by line in a new project.
  const project = mkdtempSync(join(tmpdir(), "poshub-readme-"));
  writeFileSync(join(project, "package.json"), JSON.stringify({ name: "my-pos", private: true, type: "module" }));
  const sh = readFileSync(README, "utf8").match(/```sh\n([\s\S]*?)```/)[1].split("\n")
    .map((l) => l.replace(/\s+#.*$/, "").trim()).filter(Boolean);
  assert.equal(sh.length, 2);
  execSync(sh[0].replace("/path/to/poshub", ROOT) + " --no-audit --no-fund --prefer-offline --loglevel=error", { cwd: project, stdio: "inherit" });
  process.env.HUB_URL = hub.url;
  process.env.HUB_TOKEN = execSync(sh[1].replace(/^poshub /, `${JSON.stringify(BIN)} `), { env: hub.env() }).toString().trim();

  const printed = [];
  const log = console.log;
  console.log = (...a) => { printed.push(a.map(String).join(" ")); log(...a); };
  t.after(() => { console.log = log; });
  globalThis.__readmeHook = async (i) => {
    if (i !== 3) return;
    await hub.kill9();
    const client = globalThis.__readmeClient;
    await until("the client notices", () => client.status !== "online");
    setTimeout(() => void hub.start(), 1500);
  };
  // Imports are hoisted into the module; the hook runs between snippets.
  const src = blocks.map((b, i) => `${i === 3 ? "globalThis.__readmeClient = client;\n" : ""}await globalThis.__readmeHook(${i});\n${b}`).join("\n");
  const file = join(project, "first-hour.mjs");
  writeFileSync(file, src);
  await import(pathToFileURL(file).href);

  // Every `console.log(...); // expected` line printed its expected text.
  const expected = blocks.join("\n").split("\n").filter((l) => /console\.log\(.*\);\s*\/\/ /.test(l))
    .map((l) => l.split(/\);\s*\/\/ /)[1].trim());
  const printedValues = printed.filter((p) => !p.startsWith("hub:"));
  assert.equal(printedValues.length, expected.length, `printed: ${JSON.stringify(printedValues)}`);
  expected.forEach((e, i) => {
    const alternatives = e.replace(/ \(.*\)$/, "").split(" (or ")[0];
    assert.ok(printedValues[i].startsWith(alternatives) || (e.includes("(or connecting") && printedValues[i] === "connecting"),
      `snippet line ${i}: printed ${JSON.stringify(printedValues[i])}, README says ${JSON.stringify(e)}`);
  });
  const stored = await hub.get(`/orders/${encodeURIComponent("Order 00012-001-0001")}`);
  assert.equal(stored.version, 2);
  assert.equal(stored.snapshot.state, "paid");
  await sleep(10);
});
