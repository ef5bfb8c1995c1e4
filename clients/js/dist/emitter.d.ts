/** A minimal typed event emitter (no dependency, same in browsers, React Native and Node). */
export declare class Emitter<Events extends {
    [K in keyof Events]: (...args: never[]) => void;
}> {
    private handlers;
    /** Subscribes; returns the function that unsubscribes. */
    on<K extends keyof Events>(name: K, fn: Events[K]): () => void;
    protected emit<K extends keyof Events>(name: K, ...args: Parameters<Events[K]>): void;
}
