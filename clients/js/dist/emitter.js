/** A minimal typed event emitter (no dependency, same in browsers, React Native and Node). */
export class Emitter {
    constructor() {
        this.handlers = new Map();
    }
    /** Subscribes; returns the function that unsubscribes. */
    on(name, fn) {
        let set = this.handlers.get(name);
        if (!set)
            this.handlers.set(name, (set = new Set()));
        set.add(fn);
        return () => set.delete(fn);
    }
    emit(name, ...args) {
        for (const fn of this.handlers.get(name) ?? []) {
            try {
                fn(...args);
            }
            catch (e) {
                // A throwing listener must not break the connection; report it where it can be seen.
                console.error(`poshub client: a "${String(name)}" listener threw`, e);
            }
        }
    }
}
