/**
 * DNS-SD discovery of hubs from Node (`@poshub/client/node`): a multicast DNS query for
 * `_poshub._tcp.local` (RFC 6762/6763), answered by the hub's advertisement with its instance
 * (PTR), WebSocket port (SRV), `httpPort`/`storeId`/`tenantId`/`version` (TXT) and address (A).
 * Records missing from an answer are asked for again until the timeout. Browsers cannot send
 * multicast; they use `discoverHub` instead. Kept out of the main entry so that browser
 * bundles never see `node:dgram`.
 */
import { createSocket, type Socket } from "node:dgram";

export const SERVICE = "_poshub._tcp.local";
const MDNS_ADDR = "224.0.0.251";
const MDNS_PORT = 5353;
const T = { A: 1, PTR: 12, TXT: 16, SRV: 33 } as const;

export interface DnsSdHub {
  instance: string;
  host: string;
  addresses: string[];
  /** The WebSocket port (SRV). */
  port: number;
  txt: Record<string, string>;
  /** `ws://address:port/` of the first address. */
  wsUrl: string;
}

function encodeName(name: string): Buffer {
  const parts = name.split(".").filter(Boolean).map((l) => {
    const b = Buffer.from(l, "utf8");
    return Buffer.concat([Buffer.from([b.length]), b]);
  });
  return Buffer.concat([...parts, Buffer.from([0])]);
}

/** A query packet for `questions` (name, type), QM (multicast answers). */
export function buildQuery(questions: [string, number][]): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(questions.length, 4);
  return Buffer.concat([head, ...questions.map(([n, t]) => {
    const tail = Buffer.alloc(4);
    tail.writeUInt16BE(t, 0);
    tail.writeUInt16BE(1, 2);
    return Buffer.concat([encodeName(n), tail]);
  })]);
}

function readName(buf: Buffer, at: number): [string, number] {
  const labels: string[] = [];
  let pos = at;
  let end = -1;
  for (let hops = 0; hops < 64; hops++) {
    if (pos >= buf.length) throw new Error("truncated name");
    const len = buf[pos];
    if (len === 0) { pos += 1; break; }
    if ((len & 0xc0) === 0xc0) {
      if (end < 0) end = pos + 2;
      pos = ((len & 0x3f) << 8) | buf[pos + 1];
      continue;
    }
    labels.push(buf.toString("utf8", pos + 1, pos + 1 + len));
    pos += 1 + len;
  }
  return [labels.join("."), end >= 0 ? end : pos];
}

export interface DnsRecord { name: string; type: number; data: string | string[] | { port: number; target: string } }

/** Answer, authority and additional records of a response; throws on a malformed packet. */
export function parseResponse(buf: Buffer): DnsRecord[] {
  if (buf.length < 12 || !(buf.readUInt16BE(2) & 0x8000)) return [];
  const qd = buf.readUInt16BE(4);
  const rr = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
  let pos = 12;
  for (let i = 0; i < qd; i++) pos = readName(buf, pos)[1] + 4;
  const out: DnsRecord[] = [];
  for (let i = 0; i < rr; i++) {
    const [name, p] = readName(buf, pos);
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 8);
    const rd = p + 10;
    if (rd + len > buf.length) throw new Error("truncated record");
    if (type === T.PTR) out.push({ name, type, data: readName(buf, rd)[0] });
    else if (type === T.SRV) out.push({ name, type, data: { port: buf.readUInt16BE(rd + 4), target: readName(buf, rd + 6)[0] } });
    else if (type === T.A && len === 4) out.push({ name, type, data: [...buf.subarray(rd, rd + 4)].join(".") });
    else if (type === T.TXT) {
      const strings: string[] = [];
      for (let q = rd; q < rd + len; q += 1 + buf[q]) strings.push(buf.toString("utf8", q + 1, q + 1 + buf[q]));
      out.push({ name, type, data: strings });
    }
    pos = rd + len;
  }
  return out;
}

const lc = (s: string) => s.toLowerCase();

/** Browses `_poshub._tcp` for `timeoutMs` (default 3 000) and returns every hub fully resolved. */
export async function browseHubs(o: { timeoutMs?: number; interfaceAddress?: string } = {}): Promise<DnsSdHub[]> {
  const sock: Socket = createSocket({ type: "udp4", reuseAddr: true });
  const instances = new Set<string>();
  const srv = new Map<string, { port: number; target: string }>();
  const txt = new Map<string, Record<string, string>>();
  const addrs = new Map<string, Set<string>>();
  sock.on("message", (msg) => {
    let recs: DnsRecord[];
    try { recs = parseResponse(msg); } catch { return; } // someone else's garbage: ignore
    for (const r of recs) {
      if (r.type === T.PTR && lc(r.name) === lc(SERVICE)) instances.add(r.data as string);
      else if (r.type === T.SRV) srv.set(lc(r.name), r.data as { port: number; target: string });
      else if (r.type === T.TXT) txt.set(lc(r.name), Object.fromEntries((r.data as string[]).filter(Boolean).map((s) => { const i = s.indexOf("="); return i < 0 ? [s, ""] : [s.slice(0, i), s.slice(i + 1)]; })));
      else if (r.type === T.A) (addrs.get(lc(r.name)) ?? addrs.set(lc(r.name), new Set()).get(lc(r.name))!).add(r.data as string);
    }
  });
  await new Promise<void>((ok, fail) => { sock.once("error", fail); sock.bind(MDNS_PORT, () => ok()); });
  try {
    sock.addMembership(MDNS_ADDR, o.interfaceAddress);
    const resolved = () => [...instances].flatMap((i) => {
      const s = srv.get(lc(i));
      const a = s && addrs.get(lc(s.target));
      if (!s || !a || !a.size) return [];
      const addresses = [...a];
      return [{ instance: i, host: s.target, addresses, port: s.port, txt: txt.get(lc(i)) ?? {}, wsUrl: `ws://${addresses[0]}:${s.port}/` }];
    });
    const ask = () => {
      const q: [string, number][] = [[SERVICE, T.PTR]];
      for (const i of instances) {
        const s = srv.get(lc(i));
        if (!s) q.push([i, T.SRV], [i, T.TXT]);
        else if (!addrs.get(lc(s.target))?.size) q.push([s.target, T.A]);
      }
      sock.send(buildQuery(q), MDNS_PORT, MDNS_ADDR);
    };
    const end = Date.now() + (o.timeoutMs ?? 3000);
    while (Date.now() < end) {
      ask();
      await new Promise((r) => setTimeout(r, 250));
      const found = resolved();
      if (found.length && found.length === instances.size) return found;
    }
    return resolved();
  } finally {
    sock.close();
  }
}
