// A TCP proxy between a client and the hub (loopback only), for losing answers on the way.
import net from "node:net";

/** A TCP proxy to the hub whose hub→client direction can be muted (acks lost on the way). */
export async function mutingProxy(port) {
  const state = { muted: false, sockets: new Set() };
  const server = net.createServer((c) => {
    const up = net.connect(port, "127.0.0.1");
    state.sockets.add(c).add(up);
    c.on("data", (d) => up.write(d));
    up.on("data", (d) => { if (!state.muted) c.write(d); });
    const end = () => { c.destroy(); up.destroy(); };
    c.on("error", end).on("close", end);
    up.on("error", end).on("close", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  state.url = `ws://127.0.0.1:${server.address().port}/`;
  state.cut = () => { for (const s of state.sockets) s.destroy(); state.sockets.clear(); };
  state.close = () => { state.cut(); server.close(); };
  return state;
}

