/** poshub terminal client: connection, cursor, outbox, leases, discovery. */
export * from "./messages.js";
export * from "./storage.js";
export * from "./backoff.js";
export * from "./outbox.js";
export * from "./leases.js";
export * from "./client.js";
export * from "./discovery.js";
