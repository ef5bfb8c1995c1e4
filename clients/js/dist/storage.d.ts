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
export declare function memoryStorage(seed?: Record<string, string>): KeyValueStorage & {
    data: Map<string, string>;
};
/** Browser `localStorage` under a prefix (synchronous, survives reloads). */
export declare function localStorageStorage(prefix?: string, ls?: Storage): KeyValueStorage;
/** Browser IndexedDB (one object store), for outboxes too large for localStorage. */
export declare function indexedDbStorage(dbName?: string, idb?: IDBFactory): KeyValueStorage;
/** Storage backed by the app's own functions (AsyncStorage in React Native, a file in Node). */
export declare function callbackStorage(fns: KeyValueStorage): KeyValueStorage;
