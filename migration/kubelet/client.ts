// The kubelet checkpoint API (KEP-2008), called directly on the node's kubelet
// with a ServiceAccount token that may `create` `nodes/checkpoint`. Never
// through the API server's nodes/proxy, which would also open exec on every node.
import { request } from "node:https";
import { type Logger, pino } from "pino";

const silent = pino({ level: "silent" });

export const CheckpointErrorReason = {
  Unauthorized: "Unauthorized",
  Forbidden: "Forbidden",
  /** 404: the ContainerCheckpoint feature gate is off, or the pod/container is unknown. */
  CheckpointNotEnabled: "CheckpointNotEnabled",
  /** The runtime does not implement CheckpointContainer (containerd 1.x). */
  RuntimeUnsupported: "RuntimeUnsupported",
  CheckpointFailed: "CheckpointFailed",
  Timeout: "Timeout",
} as const;
export type CheckpointErrorReason =
  (typeof CheckpointErrorReason)[keyof typeof CheckpointErrorReason];

export class CheckpointError extends Error {
  override name = "CheckpointError";
  readonly reason: CheckpointErrorReason;
  readonly status: number | undefined;

  constructor(
    reason: CheckpointErrorReason,
    message: string,
    opts: { status?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.reason = reason;
    this.status = opts.status;
  }
}

export interface CheckpointTarget {
  namespace: string;
  pod: string;
  container: string;
}

export interface KubeletClientOptions {
  /** The kubelet's address (the node's InternalIP, or 127.0.0.1 for a node-local agent). */
  host: string;
  /** Default 10250. */
  port?: number;
  /** A ServiceAccount token; a function is called per request so rotated projected tokens are picked up. */
  token: string | (() => string | Promise<string>);
  /** PEM CA that signed the kubelet's serving certificate. */
  ca?: string | Buffer;
  /** TLS server name when the kubelet's certificate does not name `host`. */
  servername?: string;
  /** Passed to the kubelet (and on to the runtime) as ?timeout=. Default 60. */
  timeoutSeconds?: number;
  /** Client-side deadline for the whole call. Default timeoutSeconds + 15 s. */
  requestTimeoutMs?: number;
  logger?: Logger;
  signal?: AbortSignal;
}

const seg = (s: string) => encodeURIComponent(s);

export function checkpointPath(t: CheckpointTarget, timeoutSeconds: number): string {
  return `/checkpoint/${seg(t.namespace)}/${seg(t.pod)}/${seg(t.container)}?timeout=${timeoutSeconds}`;
}

/** Maps a non-200 kubelet answer to an error with a reason. Pure. */
export function checkpointFailure(status: number, body: string): CheckpointError {
  const text = body.trim().slice(0, 500);
  const detail = text ? `: ${text}` : "";
  switch (status) {
    case 401:
      return new CheckpointError("Unauthorized", `Kubelet refused the token (401)${detail}`, {
        status,
      });
    case 403:
      return new CheckpointError(
        "Forbidden",
        `Kubelet denied create on nodes/checkpoint (403)${detail}`,
        { status },
      );
    case 404:
      return new CheckpointError(
        "CheckpointNotEnabled",
        `Kubelet has no checkpoint endpoint for this container (404: feature gate ContainerCheckpoint off, or pod/container unknown)${detail}`,
        { status },
      );
    case 500:
      // containerd 1.x: "rpc error: code = Unimplemented desc = method CheckpointContainer not implemented".
      if (/not implemented|code = Unimplemented/i.test(text)) {
        return new CheckpointError(
          "RuntimeUnsupported",
          `The container runtime cannot checkpoint${detail}`,
          { status },
        );
      }
      if (/DeadlineExceeded|deadline exceeded/i.test(text)) {
        return new CheckpointError(
          "Timeout",
          `The runtime did not finish the checkpoint in time${detail}`,
          {
            status,
          },
        );
      }
      return new CheckpointError("CheckpointFailed", `Checkpoint failed (500)${detail}`, {
        status,
      });
    default:
      return new CheckpointError("CheckpointFailed", `Kubelet answered ${status}${detail}`, {
        status,
      });
  }
}

/** The archive path from a 200 body `{"items":["<path>"]}`. Pure. */
export function parseCheckpointResponse(body: string): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new CheckpointError(
      "CheckpointFailed",
      "Kubelet answered 200 with a body that is not JSON",
    );
  }
  const items = (parsed as { items?: unknown } | null)?.items;
  if (
    !Array.isArray(items) ||
    items.length === 0 ||
    typeof items[0] !== "string" ||
    items[0] === ""
  ) {
    throw new CheckpointError(
      "CheckpointFailed",
      "Kubelet answered 200 without an archive path in items",
    );
  }
  return items[0];
}

/**
 * Checkpoints one container through its node's kubelet and returns the archive
 * path the kubelet reports (on the node's filesystem; confine it before use).
 * The container keeps running. Throws CheckpointError; the token never appears
 * in errors or logs.
 */
/** TLS errors that mean the kubelet's certificate is not one the agent can verify. */
const UNTRUSTED_CERT = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_SIGNATURE_FAILURE",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "CERT_HAS_EXPIRED",
]);

export async function checkpoint(
  target: CheckpointTarget,
  opts: KubeletClientOptions,
): Promise<string> {
  const timeoutSeconds = opts.timeoutSeconds ?? 60;
  const deadlineMs = opts.requestTimeoutMs ?? timeoutSeconds * 1000 + 15_000;
  const log = (opts.logger ?? silent).child({ ...target, kubelet: opts.host });
  const token = typeof opts.token === "function" ? await opts.token() : opts.token;
  const path = checkpointPath(target, timeoutSeconds);
  const started = performance.now();

  const { status, body } = await new Promise<{ status: number; body: string }>(
    (resolve, reject) => {
      let timedOut = false;
      const req = request({
        host: opts.host,
        port: opts.port ?? 10250,
        path,
        method: "POST",
        ca: opts.ca,
        servername: opts.servername,
        headers: { authorization: `Bearer ${token}`, "content-length": "0" },
        agent: false,
        signal: opts.signal,
      });
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy();
      }, deadlineMs);
      req.on("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size <= 1 << 20) chunks.push(c);
        });
        res.on("end", () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") });
        });
        res.on("error", (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      req.on("error", (err) => {
        clearTimeout(timer);
        if (opts.signal?.aborted) {
          reject(opts.signal.reason ?? err);
        } else if (timedOut) {
          reject(
            new CheckpointError("Timeout", `Kubelet did not answer within ${deadlineMs} ms`, {
              cause: err,
            }),
          );
        } else if (UNTRUSTED_CERT.has((err as NodeJS.ErrnoException).code ?? "")) {
          reject(
            new CheckpointError(
              "CheckpointFailed",
              `The kubelet at ${opts.host}: its serving certificate is not signed by the CA the agent trusts (${(err as NodeJS.ErrnoException).code}: ${err.message}). Have the kubelets' serving certificates signed by the cluster CA (kubelet serverTLSBootstrap: true, and approve their CSRs); kubeadm's default self-signed ones cannot be verified`,
              { cause: err },
            ),
          );
        } else {
          reject(
            new CheckpointError(
              "CheckpointFailed",
              `Cannot reach the kubelet at ${opts.host}: ${err.message}`,
              {
                cause: err,
              },
            ),
          );
        }
      });
      req.end();
    },
  );

  const durationMs = Math.round(performance.now() - started);
  if (status !== 200) {
    const err = checkpointFailure(status, body);
    log.warn({ status, reason: err.reason, durationMs }, "Failed to checkpoint container");
    throw err;
  }
  const archive = parseCheckpointResponse(body);
  log.info({ archive, durationMs }, "Checkpointed container");
  return archive;
}
