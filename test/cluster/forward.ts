// Relays connections between a Unix socket and a TCP address, so the harness on
// the host reaches addresses that exist only inside a network namespace (the API
// server of a real-node cluster, its registries). One side runs inside the
// namespace (`relayUnixToTcp`, started through nsenter as this file's main); the
// other in the harness (`relayTcpToUnix`). The socket file lives on the shared
// filesystem, which is what crosses the namespace boundary.
import { connect, createServer, type Server, type Socket } from "node:net";

function splice(a: Socket, b: Socket): void {
  a.pipe(b);
  b.pipe(a);
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
  a.on("close", () => b.destroy());
  b.on("close", () => a.destroy());
}

export function relayUnixToTcp(socketPath: string, host: string, port: number): Server {
  return createServer((c) => splice(c, connect(port, host))).listen(socketPath);
}

export interface HostRelay {
  port: number;
  close(): Promise<void>;
}

/** Listens on a free 127.0.0.1 port and relays each connection to `socketPath`. */
export function relayTcpToUnix(socketPath: string): Promise<HostRelay> {
  const open = new Set<Socket>();
  const server = createServer((c) => {
    const u = connect({ path: socketPath });
    open.add(c);
    c.on("close", () => open.delete(c));
    splice(c, u);
  });
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const addr = server.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      resolve({
        port,
        close: () =>
          new Promise<void>((res) => {
            for (const c of open) c.destroy();
            server.close(() => res());
          }),
      });
    });
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [socketPath, host, port] = process.argv.slice(2);
  if (!socketPath || !host || !port) {
    console.error("usage: forward.ts SOCKET HOST PORT");
    process.exit(2);
  }
  relayUnixToTcp(socketPath, host, Number(port));
  process.on("SIGTERM", () => process.exit(0));
}
