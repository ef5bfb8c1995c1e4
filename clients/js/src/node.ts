/** The Node entry point: everything of the main entry plus DNS-SD discovery (`browseHubs`). */
export * from "./index.js";
export * from "./dnssd.js";
