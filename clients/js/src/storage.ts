/**
 * Pluggable key-value storage for the cursor and the outbox. Browsers use `localStorage` or
 * IndexedDB, React Native / Node pass their own (`callbackStorage`), tests use `memoryStorage`.
 * Values are strings (JSON); every method may be sync or async.
 */

export interface KeyValueStorage {
  get(key: string): string | null | undefined | Promise<string | null | undefined>;
  set(key: string, value: string): void | Promise<void>;
  remove(key: string): void | Promise<void>;
}

/** Storage that lives as long as the process (tests, or apps that keep nothing). */
export function memoryStorage(seed?: Record<string, string>): KeyValueStorage & { data: Map<string, string> } {
  const data = new Map(Object.entries(seed ?? {}));
  return {
    data,
    get: (k) => data.get(k) ?? null,
    set: (k, v) => { data.set(k, v); },
    remove: (k) => { data.delete(k); },
  };
}

/** Browser `localStorage` under a prefix (synchronous, survives reloads). */
export function localStorageStorage(prefix = "poshub.", ls?: Storage): KeyValueStorage {
  const s = ls ?? (globalThis as { localStorage?: Storage }).localStorage;
  if (!s) throw new Error("localStorage is not available here; pass another KeyValueStorage");
  return {
    get: (k) => s.getItem(prefix + k),
    set: (k, v) => s.setItem(prefix + k, v),
    remove: (k) => s.removeItem(prefix + k),
  };
}

/** Browser IndexedDB (one object store), for outboxes too large for localStorage. */
export function indexedDbStorage(dbName = "poshub", idb?: IDBFactory): KeyValueStorage {
  const factory = idb ?? (globalThis as { indexedDB?: IDBFactory }).indexedDB;
  if (!factory) throw new Error("IndexedDB is not available here; pass another KeyValueStorage");
  const db = new Promise<IDBDatabase>((ok, fail) => {
    const req = factory.open(dbName, 1);
    req.onupgradeneeded = () => req.result.createObjectStore("kv");
    req.onsuccess = () => ok(req.result);
    req.onerror = () => fail(req.error);
  });
  const run = <T>(mode: IDBTransactionMode, f: (s: IDBObjectStore) => IDBRequest<T>) =>
    db.then((d) => new Promise<T>((ok, fail) => {
      const tx = d.transaction("kv", mode);
      const req = f(tx.objectStore("kv"));
      tx.oncomplete = () => ok(req.result);
      tx.onerror = () => fail(tx.error);
    }));
  return {
    get: (k) => run("readonly", (s) => s.get(k) as IDBRequest<string | undefined>),
    set: (k, v) => run("readwrite", (s) => s.put(v, k)).then(() => undefined),
    remove: (k) => run("readwrite", (s) => s.delete(k)).then(() => undefined),
  };
}

/** Storage backed by the app's own functions (AsyncStorage in React Native, a file in Node). */
export function callbackStorage(fns: KeyValueStorage): KeyValueStorage {
  return fns;
}
