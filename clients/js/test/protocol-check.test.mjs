// The typed messages are tied to the hub: a field renamed in the hub's Rust sources fails
// scripts/check-protocol.mjs, and a field renamed in a TypeScript interface fails tsc (the
// CLIENT_FIELDS / HUB_FIELDS lists must name fields of the interfaces).
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ROOT } from "./hub.mjs";

const HERE = join(fileURLToPath(new URL(".", import.meta.url)), "..");
const check = (src) => spawnSync(process.execPath, [join(HERE, "scripts/check-protocol.mjs"), src], { encoding: "utf8" });

test("the protocol check passes on the hub's sources and fails on a renamed field", () => {
  const ok = check(join(ROOT, "hub/src"));
  assert.equal(ok.status, 0, ok.stderr);
  const dir = mkdtempSync(join(tmpdir(), "poshub-proto-"));
  cpSync(join(ROOT, "hub/src"), dir, { recursive: true });
  const apply = join(dir, "protocol/outbound/orders.rs");
  writeFileSync(apply, readFileSync(apply, "utf8").replace('"currentVersion"', '"current_version"'));
  const kitchen = join(dir, "protocol/kitchen.rs");
  writeFileSync(kitchen, readFileSync(kitchen, "utf8").replace("    ticket_id: String,\n    status: String,", "    ticket: String,\n    status: String,"));
  const bad = check(dir);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /hub message CONFLICT: field `currentVersion` missing/);
  assert.match(bad.stderr, /client message KITCHEN_TICKET_STATUS: field `ticketId` is not read/);
  assert.doesNotMatch(bad.stderr, /client message KITCHEN_TICKET: /);
});

test("a field renamed in a message interface fails the TypeScript build", () => {
  const dir = mkdtempSync(join(tmpdir(), "poshub-ts-"));
  cpSync(join(HERE, "src"), dir, { recursive: true });
  const m = join(dir, "messages.ts");
  writeFileSync(m, readFileSync(m, "utf8").replace('type: "CONFLICT"; posReference: string; currentVersion: number;', 'type: "CONFLICT"; posReference: string; currentVer: number;'));
  const tsc = spawnSync(process.execPath, [join(HERE, "node_modules/typescript/bin/tsc"), "--noEmit", "--strict", "--target", "ES2020",
    "--module", "ESNext", "--moduleResolution", "Bundler", "--lib", "ES2022,DOM", "--skipLibCheck", "--ignoreConfig", m], { encoding: "utf8", cwd: dir });
  assert.notEqual(tsc.status, 0);
  assert.match(tsc.stdout, /currentVersion/);
});
