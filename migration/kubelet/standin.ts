// TEST STAND-IN for the kubelet's checkpoint endpoint (no machine here runs a
// kubelet with CRI-O and CRIU). Same path, `timeout` query parameter, JSON
// shape and status codes as the kubelet; the bearer token is authenticated by
// a real TokenReview and the call authorised by a real SubjectAccessReview
// (create nodes/checkpoint) against the API server, so RBAC is really
// exercised. It writes a CRI-O-format archive with generated CRIU image bytes.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createServer, type Server } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  ApiException,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  KubeConfig,
  type V1Pod,
} from "@kubernetes/client-node";
import { type Logger, pino } from "pino";
import { kubeletArchiveName, writeStandInArchive } from "./standin-archive.ts";

const run = promisify(execFile);

export interface ServingCertificate {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/** A throw-away CA and a serving certificate for `sans` (e.g. ["IP:127.0.0.1", "DNS:localhost"]), made with the openssl CLI. */
export async function makeServingCertificate(
  cn: string,
  sans: string[] = ["IP:127.0.0.1", "DNS:localhost"],
): Promise<ServingCertificate> {
  const dir = await mkdtemp(join(tmpdir(), "edgeshift-cert-"));
  const ssl = (args: string[]) => run("openssl", args, { cwd: dir });
  try {
    await ssl(["genrsa", "-out", "ca.key", "2048"]);
    await ssl(
      ["req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "2"].concat([
        "-subj",
        `/CN=${cn}-ca`,
        "-out",
        "ca.crt",
      ]),
    );
    await ssl(["genrsa", "-out", "tls.key", "2048"]);
    await ssl(["req", "-new", "-key", "tls.key", "-subj", `/CN=${cn}`, "-out", "tls.csr"]);
    await writeFile(
      join(dir, "tls.ext"),
      `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=${sans.join(",")}\n`,
    );
    await ssl(
      ["x509", "-req", "-in", "tls.csr", "-CA", "ca.crt", "-CAkey", "ca.key"].concat([
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-sha256",
        "-extfile",
        "tls.ext",
      ]),
    );
    const [caPem, certPem, keyPem] = await Promise.all(
      ["ca.crt", "tls.crt", "tls.key"].map((f) => readFile(join(dir, f), "utf8")),
    );
    return { caPem: caPem ?? "", certPem: certPem ?? "", keyPem: keyPem ?? "" };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export interface KubeletStandInSettings {
  /** Answer 500 "method CheckpointContainer not implemented", like containerd 1.x. */
  notImplemented: boolean;
  /** false: 404 for every checkpoint call, like a kubelet with the ContainerCheckpoint gate off. */
  checkpointEnabled: boolean;
  /** Bytes of generated memory pages per archive. */
  checkpointDataBytes: number;
  /** Time the "runtime" takes; beyond ?timeout= it fails with DeadlineExceeded as the kubelet would. */
  delayMs: number;
}

export interface KubeletStandInOptions extends Partial<KubeletStandInSettings> {
  /** An admin kubeconfig: TokenReview, SubjectAccessReview, and reading pods. */
  kubeconfig: string;
  nodeName: string;
  checkpointDir: string;
  logger?: Logger;
}

export interface KubeletStandIn {
  host: string;
  port: number;
  /** PEM of the CA that signed the stand-in's serving certificate. */
  caPem: string;
  checkpointDir: string;
  /** Change behaviour between calls. */
  settings: KubeletStandInSettings;
  /** Archives written so far. */
  archives: string[];
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

export async function startKubeletStandIn(opts: KubeletStandInOptions): Promise<KubeletStandIn> {
  const log = (opts.logger ?? pino({ level: "silent" })).child({ component: "kubelet-standin" });
  const kc = new KubeConfig();
  kc.loadFromFile(opts.kubeconfig);
  const authn = kc.makeApiClient(AuthenticationV1Api);
  const authz = kc.makeApiClient(AuthorizationV1Api);
  const core = kc.makeApiClient(CoreV1Api);
  const settings: KubeletStandInSettings = {
    notImplemented: opts.notImplemented ?? false,
    checkpointEnabled: opts.checkpointEnabled ?? true,
    checkpointDataBytes: opts.checkpointDataBytes ?? 4 * 1024 * 1024,
    delayMs: opts.delayMs ?? 0,
  };
  const archives: string[] = [];
  const cert = await makeServingCertificate("kubelet-standin");

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Authentication first, for every path, as the kubelet's auth filter does.
    const header = req.headers.authorization ?? "";
    const token = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
    if (!token) return reply(res, 401, "Unauthorized");
    const review = await authn.createTokenReview({ body: { spec: { token } } });
    const user = review.status?.user;
    if (!review.status?.authenticated || !user?.username) return reply(res, 401, "Unauthorized");

    const url = new URL(req.url ?? "/", "https://kubelet");
    const parts = url.pathname.split("/").slice(1).map(decodeURIComponent);
    const isCheckpoint = parts[0] === "checkpoint";
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
            subresource: isCheckpoint ? "checkpoint" : "proxy",
            name: opts.nodeName,
          },
        },
      },
    });
    if (!sar.status?.allowed) {
      return reply(
        res,
        403,
        `Forbidden (user=${user.username}, verb=create, resource=nodes, subresource(s)=[${isCheckpoint ? "checkpoint" : "proxy"}])\n`,
      );
    }
    if (!isCheckpoint || parts.length !== 4 || !settings.checkpointEnabled) {
      return reply(res, 404, "404 page not found\n");
    }
    if (req.method !== "POST") return reply(res, 405, "405: Method Not Allowed");
    const [, namespace = "", podName = "", container = ""] = parts;

    let timeoutSeconds: number | undefined;
    const timeouts = url.searchParams.getAll("timeout");
    if (timeouts.length > 0) {
      const last = timeouts[timeouts.length - 1] ?? "";
      // Go's strconv.ParseInt(v, 10, 64).
      if (!/^[+-]?\d{1,19}$/.test(last) || !Number.isSafeInteger(Number(last))) {
        return reply(res, 404, `cannot parse value of timeout parameter to checkpoint: ${last}`);
      }
      timeoutSeconds = Number(last);
    }

    let pod: V1Pod;
    try {
      pod = await core.readNamespacedPod({ namespace, name: podName });
    } catch (err) {
      if (err instanceof ApiException && err.code === 404)
        return reply(res, 404, "pod does not exist");
      throw err;
    }
    if (pod.spec?.nodeName !== opts.nodeName) return reply(res, 404, "pod does not exist");
    const spec = pod.spec.containers.find((c) => c.name === container);
    if (!spec) return reply(res, 404, `container ${container} does not exist`);

    // Settings as they were when the call came in: a slow call must not pick up a later test's.
    const dataBytes = settings.checkpointDataBytes;
    const failed = (why: string) =>
      reply(res, 500, `checkpointing of ${namespace}/${podName}/${container} failed (${why})`);
    if (settings.notImplemented) {
      return failed(
        "rpc error: code = Unimplemented desc = method CheckpointContainer not implemented",
      );
    }
    if (settings.delayMs > 0) {
      const limitMs =
        timeoutSeconds !== undefined && timeoutSeconds > 0 ? timeoutSeconds * 1000 : 120_000;
      await new Promise((r) => setTimeout(r, Math.min(settings.delayMs, limitMs)));
      if (settings.delayMs > limitMs) {
        return failed("rpc error: code = DeadlineExceeded desc = context deadline exceeded");
      }
    }
    const at = new Date();
    const path = join(
      opts.checkpointDir,
      kubeletArchiveName({ pod: podName, namespace, container }, at),
    );
    await writeStandInArchive(path, {
      namespace,
      pod: podName,
      podUid: pod.metadata?.uid,
      container,
      image: spec.image ?? "",
      dataBytes,
      checkpointedAt: at,
    });
    archives.push(path);
    log.info(
      { namespace, pod: podName, container, archive: path, user: user.username },
      "Wrote checkpoint archive",
    );
    return reply(res, 200, JSON.stringify({ items: [path] }), "application/json");
  }

  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err }, "Kubelet stand-in failed a request");
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
    checkpointDir: opts.checkpointDir,
    settings,
    archives,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
