import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy in front of the API server that a test can cut: `break()` drops
 * every open connection and refuses new ones until `restore()`. It is how a
 * test makes an informer's watch fail without stopping the shared API server.
 */
export class TcpProxy {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private broken = false;
  port = 0;
  private readonly target: { host: string; port: number };

  constructor(target: { host: string; port: number }) {
    this.target = target;
  }

  async start(): Promise<number> {
    this.server = createServer((client) => {
      if (this.broken) {
        client.destroy();
        return;
      }
      const upstream = createConnection(this.target);
      this.sockets.add(client);
      this.sockets.add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      client.on("error", close).on("close", close);
      upstream.on("error", close).on("close", close);
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", () => r()));
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
    return this.port;
  }

  break(): void {
    this.broken = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.broken = false;
  }

  async stop(): Promise<void> {
    this.break();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
