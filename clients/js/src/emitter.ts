/** A minimal typed event emitter (no dependency, same in browsers, React Native and Node). */

export class Emitter<Events extends { [K in keyof Events]: (...args: never[]) => void }> {
  private handlers = new Map<keyof Events, Set<Events[keyof Events]>>();

  /** Subscribes; returns the function that unsubscribes. */
  on<K extends keyof Events>(name: K, fn: Events[K]): () => void {
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(fn);
    return () => set.delete(fn);
  }

  protected emit<K extends keyof Events>(name: K, ...args: Parameters<Events[K]>): void {
    for (const fn of this.handlers.get(name) ?? []) {
      try {
        (fn as (...a: Parameters<Events[K]>) => void)(...args);
      } catch (e) {
        // A throwing listener must not break the connection; report it where it can be seen.
        console.error(`poshub client: a "${String(name)}" listener threw`, e);
      }
    }
  }
}
