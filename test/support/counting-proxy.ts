import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy that counts the bytes clients send upstream, and can cut every
 * connection once a number of bytes has gone through: what a test needs to
 * check "uploaded nothing" on the wire, or to break a push midway.
 */
export class CountingProxy {
  bytesUp = 0;
  /** Destroy all connections once this many bytes went upstream (Infinity: never). */
  cutAfterBytes = Number.POSITIVE_INFINITY;
  port = 0;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<Socket>();
  #server: Server | undefined;

  constructor(target: { host: string; port: number }) {
    this.#target = target;
  }

  async start(): Promise<number> {
    this.#server = createServer((client) => {
      const upstream = createConnection(this.#target);
      this.#sockets.add(client).add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
      client.on("data", (chunk: Buffer) => {
        this.bytesUp += chunk.length;
        if (this.bytesUp > this.cutAfterBytes) {
          for (const s of this.#sockets) s.destroy();
          return;
        }
        if (!upstream.write(chunk)) {
          client.pause();
          upstream.once("drain", () => client.resume());
        }
      });
      client.on("end", () => upstream.end());
      upstream.pipe(client);
    });
    await new Promise<void>((r) => this.#server?.listen(0, "127.0.0.1", () => r()));
    const addr = this.#server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
    return this.port;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
  }
}
