// Checks the field lists of src/messages.ts (CLIENT_FIELDS, HUB_FIELDS; the compiler ties them
// to the message interfaces) against the hub's Rust sources, so a message or field renamed on
// either side fails `npm run build`:
//  - every client message type must be dispatched by hub/src/protocol `parse`, and
//    every field we send must be a (camelCased) field of a struct that arm deserialises;
//  - every hub message type we read must be built somewhere in hub/src (outside tests and the
//    bench), and every field we read must be present in *each* place that builds it.
// Run: node scripts/check-protocol.mjs [hub/src dir]   (after `tsc`, it imports dist/).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { CLIENT_FIELDS, HUB_FIELDS } from "../dist/messages.js";

const SRC = resolve(process.argv[2] || join(fileURLToPath(new URL(".", import.meta.url)), "../../../hub/src"));
const camel = (s) => s.replace(/_([a-z])/g, (_, c) => c.toUpperCase());

function rustFiles(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return n === "bin" ? [] : rustFiles(p);
    return p.endsWith(".rs") ? [p] : [];
  });
}
// Source without its test module (test frames are not what the hub builds).
const code = (p) => readFileSync(p, "utf8").split("#[cfg(test)]")[0];

/** The text of the balanced (...) / {...} group opening at `i`. */
function group(text, i) {
  const open = text[i], close = open === "(" ? ")" : "}";
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    if (text[j] === open) depth++;
    else if (text[j] === close && --depth === 0) return text.slice(i, j + 1);
  }
  return text.slice(i);
}
/** The enclosing function's text around position `i`. */
function enclosingFn(text, i) {
  const start = text.lastIndexOf("fn ", i);
  const brace = text.indexOf("{", start);
  return group(text, brace);
}
const keysIn = (s) => new Set([...s.matchAll(/"(\w+)"\s*:/g), ...s.matchAll(/\["(\w+)"\]\s*=/g)].map((m) => m[1]));

function structFields(all, name, from = 0) {
  const re = new RegExp(`struct ${name}(?:<[^>]*>)?\\s*\\{`, "g");
  re.lastIndex = from;
  const m = re.exec(all);
  if (!m) return new Set();
  const body = group(all, m.index + m[0].length - 1);
  const rename = /rename_all\s*=\s*"camelCase"/.test(all.slice(Math.max(0, m.index - 200), m.index));
  return new Set([...body.matchAll(/(?:pub(?:\([^)]*\))?\s+)?(\w+)\s*:/g)].map((f) => (rename ? camel(f[1]) : f[1])));
}

const problems = [];
const files = rustFiles(SRC);
const all = files.map(code).join("\n");

// ---- hub → terminal: where each message type is built --------------------------------------
const built = new Map(); // type -> [Set of keys per place]
for (const f of files) {
  const text = code(f);
  for (const m of text.matchAll(/"type"\s*:\s*"([A-Z_]+)"/g)) {
    const jsonAt = text.lastIndexOf("json!(", m.index);
    let keys;
    if (jsonAt >= 0 && jsonAt + group(text, jsonAt + 5).length > m.index) {
      keys = keysIn(group(text, jsonAt + 5));
      for (const k of keysIn(enclosingFn(text, m.index))) if (/\[/.test(k) === false && text.includes(`["${k}"]`)) keys.add(k);
    } else {
      keys = keysIn(enclosingFn(text, m.index));
    }
    (built.get(m[1]) || built.set(m[1], []).get(m[1])).push(keys);
  }
  // Typed structs: `Name { ty: "TYPE", ... }`.
  for (const m of text.matchAll(/(\w+)\s*\{\s*ty:\s*"([A-Z_]+)"/g)) {
    const keys = structFields(all, m[1]);
    keys.delete("ty");
    (built.get(m[2]) || built.set(m[2], []).get(m[2])).push(keys);
  }
}
for (const [type, fields] of Object.entries(HUB_FIELDS)) {
  const places = built.get(type);
  if (!places) { problems.push(`hub message ${type}: not built anywhere in ${SRC}`); continue; }
  for (const field of fields) {
    const missing = places.filter((k) => !k.has(field)).length;
    if (missing) problems.push(`hub message ${type}: field \`${field}\` missing in ${missing} of ${places.length} places that build it`);
  }
}

// ---- terminal → hub: what the parser dispatches and deserialises --------------------------
const inbound = code(join(SRC, "protocol/inbound.rs"));
// `parse` sits at the top of protocol/ (mod.rs); older trees had it in inbound.rs.
const parseSrc = [code(join(SRC, "protocol/mod.rs")), inbound].find((t) => t.includes("pub fn parse("));
if (!parseSrc) throw new Error(`no \`pub fn parse(\` in ${SRC}/protocol/mod.rs or inbound.rs`);
const parseFn = enclosingFn(parseSrc, parseSrc.indexOf("pub fn parse(") + 8);
const protoSrc = rustFiles(join(SRC, "protocol")).map(code).join("\n");
const fnBody = (name) => {
  const at = protoSrc.search(new RegExp(`fn ${name}\\b`));
  return at < 0 ? "" : group(protoSrc, protoSrc.indexOf("{", at));
};
// Per dispatch arm: the structs it deserialises (directly, through the helper it calls, or as
// the payload of its `Inbound` variant), and their wire (camelCase) field names.
const arms = new Map();
const armRe = /"([A-Z_]+)"\s*=>/g;
const starts = [...parseFn.matchAll(armRe)];
starts.forEach((m, i) => {
  const text = parseFn.slice(m.index, i + 1 < starts.length ? starts[i + 1].index : parseFn.indexOf("other =>"));
  const structs = new Set([...text.matchAll(/fields::<(\w+)>/g)].map((x) => x[1]));
  for (const v of text.matchAll(/Inbound::(\w+)/g)) {
    const payload = inbound.match(new RegExp(`\\b${v[1]}\\((?:[\\w:]*::)?(\\w+)\\)`));
    if (payload) structs.add(payload[1]);
  }
  for (const f of text.matchAll(/(?:super::kitchen::)?(\w+)\((?:ty, )?text\)/g)) {
    const body = fnBody(f[1]);
    for (const x of body.matchAll(/let m: (\w+)|fields::<(\w+)>/g)) structs.add(x[1] || x[2]);
  }
  const fields = new Set();
  for (const st of structs) {
    for (const at of protoSrc.matchAll(new RegExp(`struct ${st}\\b`, "g"))) for (const k of structFields(protoSrc, st, at.index)) fields.add(k);
  }
  arms.set(m[1], fields);
});
for (const [type, fields] of Object.entries(CLIENT_FIELDS)) {
  const accepted = arms.get(type);
  if (!accepted) { problems.push(`client message ${type}: the hub's parser does not dispatch it`); continue; }
  for (const field of fields) if (!accepted.has(field)) problems.push(`client message ${type}: field \`${field}\` is not read by the hub's parser for ${type}`);
}

if (problems.length) {
  console.error(`protocol check FAILED (${problems.length}):\n  ` + problems.join("\n  "));
  process.exit(1);
}
console.log(`protocol check ok: ${Object.keys(CLIENT_FIELDS).length} client and ${Object.keys(HUB_FIELDS).length} hub message types match ${SRC}`);
