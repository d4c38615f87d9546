import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/** `/metrics`, `/healthz` and `/readyz` for a process; the checks are read per request. */
export function serveProbes(opts: {
  registry: Registry;
  healthy: () => boolean;
  ready: () => boolean;
  host?: string;
  port: number;
  onListening?: (port: number) => void;
}): Server {
  const server = createServer(async (req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/metrics") {
      res.writeHead(200, { "content-type": opts.registry.contentType });
      res.end(await opts.registry.metrics());
    } else if (path === "/healthz") {
      const ok = opts.healthy();
      res.writeHead(ok ? 200 : 500).end(ok ? "ok" : "unhealthy");
    } else if (path === "/readyz") {
      const ok = opts.ready();
      res.writeHead(ok ? 200 : 503).end(ok ? "ok" : "not ready");
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(opts.port, opts.host, () => {
    const addr = server.address();
    opts.onListening?.(typeof addr === "object" && addr ? addr.port : opts.port);
  });
  return server;
}
