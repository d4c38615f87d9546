// The kubelet's HTTPS checkpoint endpoint for tests (no machine here runs a
// kubelet with CRI-O): the kubelet's path, `timeout` query parameter, JSON
// shape and status codes; bearer tokens checked by a real TokenReview and calls
// authorised by a real SubjectAccessReview for create nodes/checkpoint. The
// checkpoint itself is delegated: generated archives in the stand-in
// (standin.ts), real CRIU dumps in the node simulator (test/sim/node.ts).
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { AuthenticationV1Api, AuthorizationV1Api, KubeConfig } from "@kubernetes/client-node";
import { makeServingCertificate } from "./cert.ts";

/** What the checkpoint handler answers when it cannot: the kubelet's status and message. */
export class KubeletError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

export interface CheckpointCall {
  namespace: string;
  pod: string;
  container: string;
  /** Seconds from ?timeout=, undefined when absent (the kubelet then uses 2 min). */
  timeoutSeconds?: number;
  user: string;
}

export interface KubeletServerOptions {
  /** An admin kubeconfig: TokenReview and SubjectAccessReview. */
  kubeconfig: string;
  nodeName: string;
  /** Returns the archive path; throws KubeletError for a 404/500. */
  checkpoint(call: CheckpointCall): Promise<string>;
}

export interface KubeletServer {
  host: string;
  port: number;
  caPem: string;
  close(): Promise<void>;
}

function reply(
  res: ServerResponse,
  status: number,
  body: string,
  type = "text/plain; charset=utf-8",
) {
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(body) });
  res.end(body);
}

export async function startKubeletServer(opts: KubeletServerOptions): Promise<KubeletServer> {
  const kc = new KubeConfig();
  kc.loadFromFile(opts.kubeconfig);
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const cert = await makeServingCertificate(`kubelet-${opts.nodeName}`);

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const header = req.headers.authorization ?? "";
    const token = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
    if (!token) return reply(res, 401, "Unauthorized");
    const review = await authn.createTokenReview({ body: { spec: { token } } });
    const user = review.status?.user;
    if (!review.status?.authenticated || !user?.username) return reply(res, 401, "Unauthorized");

    const url = new URL(req.url ?? "/", "https://kubelet");
    const parts = url.pathname.split("/").slice(1).map(decodeURIComponent);
    const isCheckpoint = parts[0] === "checkpoint";
    const subresource = isCheckpoint ? "checkpoint" : "proxy";
    const sar = await authz.createSubjectAccessReview({
      body: {
        spec: {
          user: user.username,
          uid: user.uid,
          groups: user.groups,
          extra: user.extra,
          resourceAttributes: {
            verb: req.method === "GET" ? "get" : "create",
            resource: "nodes",
            subresource,
            name: opts.nodeName,
          },
        },
      },
    });
    if (!sar.status?.allowed) {
      return reply(
        res,
        403,
        `Forbidden (user=${user.username}, verb=create, resource=nodes, subresource(s)=[${subresource}])\n`,
      );
    }
    if (!isCheckpoint || parts.length !== 4) return reply(res, 404, "404 page not found\n");
    if (req.method !== "POST") return reply(res, 405, "405: Method Not Allowed");
    const [, namespace = "", pod = "", container = ""] = parts;
    let timeoutSeconds: number | undefined;
    const timeouts = url.searchParams.getAll("timeout");
    if (timeouts.length > 0) {
      const last = timeouts[timeouts.length - 1] ?? "";
      if (!/^[+-]?\d{1,19}$/.test(last) || !Number.isSafeInteger(Number(last))) {
        return reply(res, 404, `cannot parse value of timeout parameter to checkpoint: ${last}`);
      }
      timeoutSeconds = Number(last);
    }
    try {
      const path = await opts.checkpoint({
        namespace,
        pod,
        container,
        timeoutSeconds,
        user: user.username,
      });
      return reply(res, 200, JSON.stringify({ items: [path] }), "application/json");
    } catch (err) {
      if (err instanceof KubeletError) return reply(res, err.status, err.message);
      return reply(
        res,
        500,
        `checkpointing of ${namespace}/${pod}/${container} failed (${(err as Error).message})`,
      );
    }
  }

  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) reply(res, 500, `internal error: ${(err as Error).message}`);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    host: "127.0.0.1",
    port,
    caPem: cert.caPem,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
