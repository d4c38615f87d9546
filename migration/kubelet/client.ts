// The kubelet checkpoint API (KEP-2008), called directly on the node's kubelet
// with a ServiceAccount token that may `create` `nodes/checkpoint`. Never
// through the API server's nodes/proxy, which would also open exec on every node.
import { createHash, X509Certificate } from "node:crypto";
import { request } from "node:https";
import { checkServerIdentity, connect, type DetailedPeerCertificate } from "node:tls";
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
  /** PEM CA that signed the kubelet's serving certificate (tls ClusterCA or CABundle). */
  ca?: string | Buffer;
  /**
   * How the kubelet's certificate is trusted. ClusterCA (default) and CABundle
   * verify against `ca`; NodeSelfSigned accepts the self-signed certificate of
   * the agent's own node (it must name `nodeName`) and pins it in `pin`.
   */
  tlsMode?: KubeletTLSMode;
  /** The agent's node: named in messages; NodeSelfSigned requires the certificate to name it. */
  nodeName?: string;
  /** NodeSelfSigned: the certificate seen on first connect, kept for the agent's lifetime. */
  pin?: KubeletPin;
  /** TLS server name when the kubelet's certificate does not name `host`. */
  servername?: string;
  /** Passed to the kubelet (and on to the runtime) as ?timeout=. Default 60. */
  timeoutSeconds?: number;
  /** Client-side deadline for the whole call. Default timeoutSeconds + 15 s. */
  requestTimeoutMs?: number;
  logger?: Logger;
  signal?: AbortSignal;
}

export const KubeletTLSMode = {
  ClusterCA: "ClusterCA",
  CABundle: "CABundle",
  NodeSelfSigned: "NodeSelfSigned",
} as const;
export type KubeletTLSMode = (typeof KubeletTLSMode)[keyof typeof KubeletTLSMode];

/** The kubelet certificate pinned on first connect (NodeSelfSigned). */
export interface KubeletPin {
  /** PEM of the self-signed certificate at the root of the chain the kubelet presented. */
  anchorPem?: string;
  /** sha256 of the leaf certificate's public key (SPKI DER), hex. */
  spkiSha256?: string;
  pinnedAt?: Date;
}

/** What the kubelet's certificate says, for messages and pinning. */
export interface PeerCertificateInfo {
  subject: string;
  issuer: string;
  /** The root of the presented chain signs itself (kubeadm's default kubelet certificate). */
  selfSigned: boolean;
  names: string;
  spkiSha256: string;
  anchorPem: string;
  leaf: DetailedPeerCertificate;
}

const cn = (x: Record<string, unknown> | undefined) =>
  x && typeof x.CN === "string" ? `CN=${x.CN}` : JSON.stringify(x ?? {});

function spkiOf(raw: Buffer): string {
  const der = new X509Certificate(raw).publicKey.export({ type: "spki", format: "der" });
  return createHash("sha256").update(der).digest("hex");
}

function describe(leaf: DetailedPeerCertificate): PeerCertificateInfo {
  let anchor = leaf;
  for (let i = 0; i < 10; i++) {
    const up = anchor.issuerCertificate;
    if (!up || up === anchor || up.fingerprint256 === anchor.fingerprint256) break;
    anchor = up;
  }
  const x = new X509Certificate(anchor.raw);
  return {
    subject: cn(leaf.subject as unknown as Record<string, unknown>),
    issuer: cn(leaf.issuer as unknown as Record<string, unknown>),
    selfSigned: x.checkIssued(x) && x.verify(x.publicKey),
    names: leaf.subjectaltname ?? "none",
    spkiSha256: spkiOf(leaf.raw),
    anchorPem: x.toString(),
    leaf,
  };
}

/** Handshake only (no request, no token): what certificate the peer presents. */
export function inspectPeerCertificate(
  host: string,
  port: number,
  servername?: string,
  timeoutMs = 10_000,
): Promise<PeerCertificateInfo> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host, port, servername, rejectUnauthorized: false });
    const timer = setTimeout(() => sock.destroy(new Error("TLS handshake timed out")), timeoutMs);
    sock.once("secureConnect", () => {
      clearTimeout(timer);
      try {
        resolve(describe(sock.getPeerCertificate(true)));
      } catch (err) {
        reject(err);
      } finally {
        sock.destroy();
      }
    });
    sock.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

const FIX =
  "Have the kubelets' serving certificates signed by the cluster CA (kubelet serverTLSBootstrap: true, and approve their CSRs), " +
  "or give the CA that signs them in the EdgeNode's spec.kubeletTLS.caBundle (mode CABundle), " +
  "or opt in to spec.kubeletTLS.mode: NodeSelfSigned to trust the self-signed certificate of the agent's own node (pinned on first connect)";

function certSummary(info: PeerCertificateInfo): string {
  return `${info.selfSigned ? "a self-signed" : "a"} serving certificate (subject ${info.subject}, issuer ${info.issuer}, names ${info.names}, key sha256 ${info.spkiSha256.slice(0, 16)}…)`;
}

/** NodeSelfSigned: pins the kubelet's certificate on first use; refuses one that is not self-signed or does not name the node. */
async function ensurePin(opts: KubeletClientOptions, port: number): Promise<KubeletPin> {
  const pin = opts.pin ?? {};
  if (pin.anchorPem && pin.spkiSha256) return pin;
  const where = `The kubelet at ${opts.host}:${port} (node ${opts.nodeName ?? "?"})`;
  let info: PeerCertificateInfo;
  try {
    info = await inspectPeerCertificate(opts.host, port, opts.servername);
  } catch (err) {
    throw new CheckpointError(
      "CheckpointFailed",
      `Cannot reach the kubelet at ${opts.host}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (!opts.nodeName) {
    throw new CheckpointError("CheckpointFailed", "kubeletTLS NodeSelfSigned needs the node name");
  }
  if (!info.selfSigned) {
    throw new CheckpointError(
      "CheckpointFailed",
      `${where} presented ${certSummary(info)} whose issuer is a CA, not a self-signed certificate: kubeletTLS mode NodeSelfSigned trusts only self-signed kubelet certificates; give that CA with mode ClusterCA or CABundle`,
    );
  }
  if (checkServerIdentity(opts.nodeName, info.leaf) !== undefined) {
    throw new CheckpointError(
      "CheckpointFailed",
      `${where} presented ${certSummary(info)} that does not name node ${opts.nodeName}: kubeletTLS mode NodeSelfSigned trusts only a certificate for the agent's own node`,
    );
  }
  pin.anchorPem = info.anchorPem;
  pin.spkiSha256 = info.spkiSha256;
  pin.pinnedAt = new Date();
  if (opts.pin) Object.assign(opts.pin, pin);
  (opts.logger ?? silent).info(
    { kubelet: opts.host, node: opts.nodeName, spkiSha256: info.spkiSha256, subject: info.subject },
    "Pinned the kubelet's self-signed serving certificate",
  );
  return pin;
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

/** The message for a kubelet certificate the agent cannot verify: what it is, what is wrong, which setting fixes it. */
async function untrusted(
  opts: KubeletClientOptions,
  port: number,
  mode: KubeletTLSMode,
  pin: KubeletPin | undefined,
  err: NodeJS.ErrnoException,
): Promise<CheckpointError> {
  const where = `The kubelet at ${opts.host}:${port} (node ${opts.nodeName ?? "?"})`;
  const info = await inspectPeerCertificate(opts.host, port, opts.servername, 5000).catch(
    () => undefined,
  );
  const what = info ? certSummary(info) : "a serving certificate";
  const tlsError = `${err.code}: ${err.message}`;
  let message: string;
  if (pin) {
    message = `${where} presented ${what}, not the certificate pinned at ${pin.pinnedAt?.toISOString() ?? "first connect"} (key sha256 ${pin.spkiSha256?.slice(0, 16)}…) (${tlsError}). kubeletTLS mode NodeSelfSigned trusts one certificate for the agent's lifetime: if the kubelet's certificate was renewed on purpose, restart the agent pod on this node to pin the new one; otherwise something else answers on the kubelet's address`;
  } else if (err.code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    message = `${where} presented ${what} that does not name ${opts.servername ?? opts.host} (${tlsError})`;
  } else if (err.code === "CERT_HAS_EXPIRED") {
    message = `${where} presented ${what} that has expired (${tlsError})`;
  } else {
    const source =
      mode === "CABundle" ? "the EdgeNode's spec.kubeletTLS.caBundle" : "the cluster CA";
    message = `${where}: its serving certificate is not signed by the CA the agent trusts (${source}); it presented ${what} (${tlsError}). ${FIX}`;
  }
  return new CheckpointError("CheckpointFailed", message, { cause: err });
}

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
  const port = opts.port ?? 10250;
  const mode = opts.tlsMode ?? "ClusterCA";
  const pin = mode === "NodeSelfSigned" ? await ensurePin(opts, port) : undefined;
  const tlsOptions = pin
    ? {
        ca: pin.anchorPem,
        // The pinned root verifies the chain; the leaf must still be the pinned key for this node.
        checkServerIdentity: (_host: string, cert: import("node:tls").PeerCertificate) => {
          const named = checkServerIdentity(opts.nodeName ?? "", cert);
          if (named) return named;
          if (spkiOf(cert.raw) !== pin.spkiSha256) {
            return Object.assign(new Error("the kubelet's key is not the pinned one"), {
              code: "EDGESHIFT_PIN_MISMATCH",
            });
          }
          return undefined;
        },
      }
    : { ca: opts.ca };

  const { status, body } = await new Promise<{ status: number; body: string }>(
    (resolve, reject) => {
      let timedOut = false;
      const req = request({
        host: opts.host,
        port,
        path,
        method: "POST",
        ...tlsOptions,
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
        } else if (
          UNTRUSTED_CERT.has((err as NodeJS.ErrnoException).code ?? "") ||
          (err as NodeJS.ErrnoException).code === "EDGESHIFT_PIN_MISMATCH"
        ) {
          untrusted(opts, port, mode, pin, err as NodeJS.ErrnoException).then(reject, reject);
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
