// An OCI distribution API client: blobs (HEAD, monolithic and single streaming
// uploads), manifests, and the auth the registries in front of clusters use:
// anonymous, basic, and the bearer token flow. Bodies stream with backpressure;
// a compressed layer goes up as ONE chunked PATCH (many small chunked PATCHes
// are 10-100x slower) whose digest is only known at the end, for the final PUT.
import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
} from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { rootCertificates } from "node:tls";
import { type Logger, pino } from "pino";
import type { LayerSink } from "../oci/layer.ts";
import { type Challenge, parseWwwAuthenticate, type RegistryCredentials } from "./auth.ts";

const silent = pino({ level: "silent" });
const MAX_JSON_BODY = 8 * 1024 * 1024;

export class RegistryError extends Error {
  override name = "RegistryError";
  /** HTTP status, when the registry answered. */
  readonly status: number | undefined;
  /** The distribution error code (BLOB_UNKNOWN, DENIED, UNAUTHORIZED, ...), when given. */
  readonly code: string | undefined;

  constructor(message: string, opts: { status?: number; code?: string; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.status = opts.status;
    this.code = opts.code;
  }
}

export interface RegistryClientOptions {
  /** host[:port] where the registry API answers. */
  registry: string;
  /** Plain HTTP. Only when the registry is explicitly marked insecure. */
  insecure?: boolean;
  /** PEM CA bundle to trust for this registry (and its token realm). */
  ca?: string | Buffer;
  /** Absent means anonymous. */
  credentials?: RegistryCredentials;
  logger?: Logger;
  /** Socket idle timeout per request. Default 60 s. */
  timeoutMs?: number;
  userAgent?: string;
}

interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface SendOptions {
  scope: string;
  headers?: Record<string, string>;
  body?: Buffer;
  signal?: AbortSignal;
}

/**
 * A transport failure (refused, reset, timed out, a body cut short) as a
 * RegistryError without a status, the cause kept: whoever calls the registry
 * can tell "the registry did not answer" from any other error by its type.
 */
function unreachable(what: string, err: unknown): RegistryError {
  if (err instanceof RegistryError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new RegistryError(`${what} failed: ${message}`, { cause: err });
}

function errorFromBody(what: string, res: Response): RegistryError {
  let code: string | undefined;
  let detail = "";
  try {
    const parsed = JSON.parse(res.body.toString("utf8")) as {
      errors?: { code?: string; message?: string }[];
    };
    code = parsed.errors?.[0]?.code;
    detail = parsed.errors?.[0]?.message ?? "";
  } catch {
    detail = res.body.toString("utf8", 0, Math.min(res.body.length, 200)).trim();
  }
  return new RegistryError(
    `${what}: registry answered ${res.status}${code ? ` ${code}` : ""}${detail ? ` (${detail})` : ""}`,
    { status: res.status, code },
  );
}

export class RegistryClient {
  readonly baseUrl: string;
  /** Request body bytes sent to the registry by this client (blobs and manifests). */
  bytesSent = 0;
  readonly #creds: RegistryCredentials | undefined;
  readonly #insecure: boolean;
  readonly #ca: string | Buffer | undefined;
  readonly #agent: HttpAgent | HttpsAgent;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #userAgent: string;
  readonly #tokens = new Map<string, { value: string; expiresAt: number }>();
  #basic = false;

  constructor(opts: RegistryClientOptions) {
    this.#insecure = opts.insecure ?? false;
    this.baseUrl = `${this.#insecure ? "http" : "https"}://${opts.registry}`;
    this.#creds = opts.credentials;
    this.#ca = opts.ca;
    this.#agent = this.#insecure
      ? new HttpAgent({ keepAlive: true, maxSockets: 4 })
      : new HttpsAgent({ keepAlive: true, maxSockets: 4, ca: opts.ca });
    this.#log = (opts.logger ?? silent).child({ registry: opts.registry });
    this.#timeoutMs = opts.timeoutMs ?? 60_000;
    this.#userAgent = opts.userAgent ?? "edgeshift";
  }

  close(): void {
    this.#agent.destroy();
  }

  static scope(repo: string, actions = "pull,push"): string {
    return `repository:${repo}:${actions}`;
  }

  /** GET /v2/: reachability and credentials. */
  async ping(repo: string): Promise<void> {
    const res = await this.#send("GET", "/v2/", { scope: RegistryClient.scope(repo) });
    if (res.status !== 200) throw errorFromBody("Registry check failed", res);
  }

  /** The blob's size when the repository has it, else undefined. */
  async blobSize(repo: string, digest: string, signal?: AbortSignal): Promise<number | undefined> {
    const res = await this.#send("HEAD", `/v2/${repo}/blobs/${digest}`, {
      scope: RegistryClient.scope(repo),
      signal,
    });
    if (res.status === 200) return Number(res.headers["content-length"] ?? 0);
    if (res.status === 404) return undefined;
    throw errorFromBody(`HEAD blob ${digest}`, res);
  }

  /** Uploads a small blob in one request unless the registry already has it. Returns bytes sent. */
  async putBlob(
    repo: string,
    bytes: Buffer,
    digest: string,
    signal?: AbortSignal,
  ): Promise<number> {
    if ((await this.blobSize(repo, digest, signal)) !== undefined) return 0;
    const location = await this.#startUpload(repo, signal);
    const url = new URL(location);
    url.searchParams.set("digest", digest);
    const res = await this.#send("PUT", url, {
      scope: RegistryClient.scope(repo),
      headers: { "content-type": "application/octet-stream" },
      body: bytes,
      signal,
    });
    if (res.status !== 201) {
      await this.cancelUpload(repo, location);
      throw errorFromBody(`Upload of blob ${digest}`, res);
    }
    return bytes.length;
  }

  /**
   * One upload whose body `produce` writes chunk by chunk into a single
   * streaming PATCH; the digest is known only when it is done (`digestOf`).
   * Cancels the upload session on failure.
   */
  async putBlobStream<T>(
    repo: string,
    produce: (sink: LayerSink) => Promise<T>,
    digestOf: (produced: T) => string,
    signal?: AbortSignal,
  ): Promise<{ produced: T; digest: string; bytesSent: number }> {
    const scope = RegistryClient.scope(repo);
    // Opening the session settles authentication, so the streamed PATCH, which
    // cannot be replayed, goes out with a valid token.
    const location = await this.#startUpload(repo, signal);
    try {
      const { produced, response, bytes } = await this.#stream(
        new URL(location),
        scope,
        produce,
        signal,
      );
      if (response.status !== 202) throw errorFromBody("Streaming blob upload", response);
      this.#log.debug({ bytes }, "Streamed blob upload");
      const url = new URL(response.headers.location ?? location, this.baseUrl);
      const digest = digestOf(produced);
      url.searchParams.set("digest", digest);
      const res = await this.#send("PUT", url, { scope, signal });
      if (res.status !== 201) throw errorFromBody(`Completing blob upload ${digest}`, res);
      this.#log.debug({ digest, bytes }, "Uploaded blob");
      return { produced, digest, bytesSent: bytes };
    } catch (err) {
      await this.cancelUpload(repo, location);
      throw err;
    }
  }

  /** DELETE on an upload session; best effort (not every registry supports it). */
  async cancelUpload(repo: string, location: string): Promise<void> {
    try {
      const res = await this.#send("DELETE", new URL(location, this.baseUrl), {
        scope: RegistryClient.scope(repo),
      });
      this.#log.debug({ status: res.status }, "Cancelled blob upload");
    } catch (err) {
      this.#log.debug({ err }, "Failed to cancel blob upload");
    }
  }

  /** PUT a manifest or index by tag or digest; returns the registry's digest for it. */
  async putManifest(
    repo: string,
    reference: string,
    bytes: Buffer,
    mediaType: string,
    signal?: AbortSignal,
  ): Promise<string> {
    const res = await this.#send("PUT", `/v2/${repo}/manifests/${reference}`, {
      scope: RegistryClient.scope(repo),
      headers: { "content-type": mediaType },
      body: bytes,
      signal,
    });
    if (res.status !== 201) throw errorFromBody(`PUT manifest ${reference}`, res);
    return String(res.headers["docker-content-digest"] ?? "");
  }

  /** A manifest or index by tag or digest, or undefined when there is none. */
  async getManifest(
    repo: string,
    reference: string,
    accept: string[],
    signal?: AbortSignal,
  ): Promise<{ mediaType: string; digest: string; bytes: Buffer } | undefined> {
    const res = await this.#send("GET", `/v2/${repo}/manifests/${reference}`, {
      scope: RegistryClient.scope(repo, "pull"),
      headers: { accept: accept.join(", ") },
      signal,
    });
    if (res.status === 404) return undefined;
    if (res.status !== 200) throw errorFromBody(`GET manifest ${reference}`, res);
    return {
      mediaType: String(res.headers["content-type"] ?? "").split(";")[0] ?? "",
      digest: String(res.headers["docker-content-digest"] ?? ""),
      bytes: res.body,
    };
  }

  async deleteManifest(repo: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.#send("DELETE", `/v2/${repo}/manifests/${digest}`, {
      scope: RegistryClient.scope(repo, "pull,push,delete"),
      signal,
    });
    if (res.status === 202 || res.status === 200) return true;
    if (res.status === 404) return false;
    throw errorFromBody(`DELETE manifest ${digest}`, res);
  }

  /** Streams a blob's bytes (follows the registry's redirect to storage, without our credentials). */
  async getBlob(repo: string, digest: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const scope = RegistryClient.scope(repo, "pull");
    let url = new URL(`/v2/${repo}/blobs/${digest}`, this.baseUrl);
    let authorise = true;
    for (let hop = 0; hop < 4; hop++) {
      const auth = authorise ? await this.#authorization(scope, undefined) : undefined;
      const res = await this.#raw(
        "GET",
        url,
        auth ? { authorization: auth } : {},
        undefined,
        signal,
      );
      if (res.statusCode === 401 && authorise && hop === 0) {
        const body = await collect(res, `GET blob ${digest}`);
        await this.#handleChallenge(scope, { status: 401, headers: res.headers, body });
        continue;
      }
      if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && res.headers.location) {
        res.resume();
        const next = new URL(res.headers.location, url);
        authorise = next.host === url.host;
        url = next;
        continue;
      }
      if (res.statusCode !== 200) {
        const body = await collect(res, `GET blob ${digest}`);
        throw errorFromBody(`GET blob ${digest}`, {
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
        });
      }
      return res;
    }
    throw new RegistryError(`GET blob ${digest}: too many redirects`);
  }

  async #startUpload(repo: string, signal?: AbortSignal): Promise<string> {
    const res = await this.#send("POST", `/v2/${repo}/blobs/uploads/`, {
      scope: RegistryClient.scope(repo),
      signal,
    });
    const location = res.headers.location;
    if (res.status !== 202 || !location) throw errorFromBody("Starting blob upload", res);
    return new URL(location, this.baseUrl).toString();
  }

  // --- transport and auth ------------------------------------------------------

  async #authorization(
    scope: string,
    challenge: Challenge | undefined,
  ): Promise<string | undefined> {
    const token = this.#tokens.get(scope);
    if (token && token.expiresAt > Date.now()) return `Bearer ${token.value}`;
    if (challenge?.scheme === "bearer") return undefined;
    if (this.#basic && this.#creds) return this.#creds.basicAuthorization();
    return undefined;
  }

  /** Reacts to a 401: fetch a bearer token, or switch to basic auth. Throws when nothing can help. */
  async #handleChallenge(scope: string, res: Response): Promise<void> {
    const header = res.headers["www-authenticate"];
    const challenge = parseWwwAuthenticate(
      Array.isArray(header) ? (header[0] ?? "") : (header ?? ""),
    );
    if (challenge?.scheme === "bearer" && challenge.params.realm) {
      await this.#fetchToken(scope, challenge);
      return;
    }
    if (challenge?.scheme === "basic" && this.#creds && !this.#basic) {
      this.#basic = true;
      return;
    }
    throw new RegistryError(
      this.#creds
        ? "Registry refused the credentials (401)"
        : "Registry requires credentials and none were given (401)",
      { status: 401, code: "UNAUTHORIZED" },
    );
  }

  async #fetchToken(scope: string, challenge: Challenge): Promise<void> {
    const realm = new URL(challenge.params.realm ?? "");
    if (realm.protocol === "http:" && !this.#insecure) {
      throw new RegistryError(
        `Refusing a plain-HTTP token realm (${realm.origin}) for a TLS registry`,
      );
    }
    if (challenge.params.service) realm.searchParams.set("service", challenge.params.service);
    realm.searchParams.set("scope", scope);
    const headers: Record<string, string> = {};
    if (this.#creds) headers.authorization = this.#creds.basicAuthorization();
    const msg = await this.#raw("GET", realm, headers, undefined, undefined);
    const body = await collect(msg, `Token request to ${realm.origin}${realm.pathname}`);
    if (msg.statusCode !== 200) {
      throw new RegistryError(
        `Token service ${realm.origin}${realm.pathname} answered ${msg.statusCode}`,
        { status: msg.statusCode === 401 ? 401 : msg.statusCode, code: "UNAUTHORIZED" },
      );
    }
    let parsed: { token?: string; access_token?: string; expires_in?: number };
    try {
      parsed = JSON.parse(body.toString("utf8")) as typeof parsed;
    } catch {
      throw new RegistryError(`Token service ${realm.origin} returned no JSON`, { status: 200 });
    }
    const value = parsed.token ?? parsed.access_token;
    if (!value)
      throw new RegistryError(`Token service ${realm.origin} returned no token`, { status: 200 });
    // Renew a little early; the spec's default lifetime is 60 s.
    const ttl = Math.max(10, (parsed.expires_in ?? 60) - 5);
    this.#tokens.set(scope, { value, expiresAt: Date.now() + ttl * 1000 });
    this.#log.debug({ scope }, "Obtained registry token");
  }

  async #send(method: string, path: string | URL, opts: SendOptions): Promise<Response> {
    const url = typeof path === "string" ? new URL(path, this.baseUrl) : path;
    let challenge: Challenge | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const headers: Record<string, string> = { ...opts.headers };
      const auth = await this.#authorization(opts.scope, challenge);
      if (auth) headers.authorization = auth;
      if (opts.body) headers["content-length"] = String(opts.body.length);
      else if (method === "PUT" || method === "POST" || method === "PATCH")
        headers["content-length"] = "0";
      const msg = await this.#raw(method, url, headers, opts.body, opts.signal);
      const body = await collect(msg, `${method} ${url.host}${url.pathname}`);
      if (opts.body) this.bytesSent += opts.body.length;
      const res = { status: msg.statusCode ?? 0, headers: msg.headers, body };
      if (res.status !== 401) return res;
      const header = res.headers["www-authenticate"];
      challenge = parseWwwAuthenticate(Array.isArray(header) ? (header[0] ?? "") : (header ?? ""));
      if (attempt === 2) break;
      await this.#handleChallenge(opts.scope, res);
    }
    throw new RegistryError("Registry refused the credentials (401)", {
      status: 401,
      code: "UNAUTHORIZED",
    });
  }

  /** A PATCH whose chunked body `produce` writes; it cannot be replayed. */
  async #stream<T>(
    url: URL,
    scope: string,
    produce: (sink: LayerSink) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<{ produced: T; response: Response; bytes: number }> {
    const headers: Record<string, string> = {
      "content-type": "application/octet-stream",
      "transfer-encoding": "chunked",
    };
    const auth = await this.#authorization(scope, undefined);
    if (auth) headers.authorization = auth;
    const req = this.#request("PATCH", url, headers, signal);
    let fail: (err: Error) => void = () => {};
    const failed = new Promise<never>((_, reject) => {
      fail = reject;
    });
    failed.catch(() => {});
    const what = `PATCH ${url.host}${url.pathname}`;
    const response = new Promise<Response>((resolve) => {
      req.once("response", (msg) => {
        collect(msg, what).then(
          (body) => {
            const res = { status: msg.statusCode ?? 0, headers: msg.headers, body };
            // A registry may refuse (and stop reading) before the body is done.
            if (res.status >= 300) fail(errorFromBody("Streaming blob upload", res));
            resolve(res);
          },
          (err: Error) => fail(err),
        );
      });
    });
    req.once("error", (err) => fail(unreachable(what, err)));
    let bytes = 0;
    const sink: LayerSink = {
      write: (chunk) => {
        bytes += chunk.length;
        this.bytesSent += chunk.length;
        return Promise.race([
          new Promise<void>((resolve, reject) => {
            // The socket going away shows here first (EPIPE, ECONNRESET): still the registry's.
            req.write(chunk, (err) => (err ? reject(unreachable(what, err)) : resolve()));
          }),
          failed,
        ]);
      },
    };
    try {
      const produced = await Promise.race([produce(sink), failed]);
      req.end();
      const res = await Promise.race([response, failed]);
      return { produced, response: res, bytes };
    } catch (err) {
      req.destroy();
      throw err;
    }
  }

  #request(method: string, url: URL, headers: Record<string, string>, signal?: AbortSignal) {
    if (url.protocol === "http:" && !this.#insecure) {
      throw new RegistryError(
        `Refusing plain HTTP to ${url.host}: the registry is not marked insecure`,
      );
    }
    const request = url.protocol === "http:" ? httpRequest : httpsRequest;
    const sameOrigin = url.origin === this.baseUrl;
    const req = request(url, {
      method,
      headers: { "user-agent": this.#userAgent, ...headers },
      agent: sameOrigin ? this.#agent : undefined,
      // A token realm elsewhere may be public: trust the system roots as well as our CA.
      ca: sameOrigin || !this.#ca ? undefined : [...rootCertificates, this.#ca.toString()],
      signal,
      timeout: this.#timeoutMs,
    });
    req.once("timeout", () =>
      req.destroy(
        new RegistryError(
          `${method} ${url.host}${url.pathname}: no progress for ${this.#timeoutMs} ms`,
        ),
      ),
    );
    return req;
  }

  #raw(
    method: string,
    url: URL,
    headers: Record<string, string>,
    body: Buffer | undefined,
    signal: AbortSignal | undefined,
  ): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      let req: ReturnType<typeof httpRequest>;
      try {
        req = this.#request(method, url, headers, signal);
      } catch (err) {
        reject(err);
        return;
      }
      req.once("response", resolve);
      req.once("error", (err) => reject(unreachable(`${method} ${url.host}${url.pathname}`, err)));
      req.end(body);
    });
  }
}

/** A response's body; a connection that breaks before its end is a RegistryError without a status. */
async function collect(msg: IncomingMessage, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of msg) {
      size += (chunk as Buffer).length;
      if (size > MAX_JSON_BODY) {
        msg.destroy();
        throw new RegistryError(`${what}: registry response too large`, {
          status: msg.statusCode,
        });
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    throw unreachable(`${what}: reading the answer`, err);
  }
  return Buffer.concat(chunks);
}
