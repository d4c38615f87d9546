import { createConnection, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP relay in front of the API server that a test can black-hole: after
 * `blackHole()` it forwards nothing in either direction but keeps every socket
 * open, and accepts new connections without ever answering them. That is what
 * a dead route or a hung load balancer looks like to a client: no reset, no
 * error, just a request that never gets a response. (TcpProxy's `break()`
 * closes sockets, which every client notices at once.)
 */
export class BlackHoleRelay {
  private server: Server | undefined;
  private readonly clients = new Set<Socket>();
  private readonly upstreams = new Set<Socket>();
  private holing = false;
  /** Every client connection accepted, forwarded or held. */
  accepted = 0;
  port = 0;
  private readonly target: { host: string; port: number };

  constructor(target: { host: string; port: number }) {
    this.target = target;
  }

  async start(): Promise<number> {
    this.server = createServer((client) => {
      this.accepted++;
      this.clients.add(client);
      client.on("error", () => {});
      client.on("close", () => this.clients.delete(client));
      // A new connection during the black hole is accepted and never answered.
      if (this.holing) return;
      const upstream = createConnection(this.target);
      this.upstreams.add(upstream);
      upstream.on("error", () => {});
      upstream.on("close", () => {
        this.upstreams.delete(upstream);
        // The client must not learn anything from the far side while holed.
        if (!this.holing) client.destroy();
      });
      client.on("close", () => {
        if (!this.holing) upstream.destroy();
      });
      client.on("data", (d) => {
        if (!this.holing) upstream.write(d);
      });
      upstream.on("data", (d) => {
        if (!this.holing) client.write(d);
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", () => r()));
    const addr = this.server.address();
    this.port = typeof addr === "object" && addr ? addr.port : 0;
    return this.port;
  }

  /** Stops forwarding both ways; every socket stays open. */
  blackHole(): void {
    this.holing = true;
  }

  async stop(): Promise<void> {
    this.holing = false;
    for (const s of [...this.clients, ...this.upstreams]) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}
