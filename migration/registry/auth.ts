import { inspect } from "node:util";
import { normaliseRegistryHost } from "./reference.ts";

/**
 * Registry credentials. The password is a private field: it does not show in
 * JSON.stringify, util.inspect, pino or an error's message.
 */
export class RegistryCredentials {
  readonly username: string;
  readonly #password: string;

  constructor(username: string, password: string) {
    this.username = username;
    this.#password = password;
  }

  /** The value of an `Authorization: Basic` header. */
  basicAuthorization(): string {
    return `Basic ${Buffer.from(`${this.username}:${this.#password}`).toString("base64")}`;
  }

  toJSON() {
    return { username: this.username, password: "[REDACTED]" };
  }

  [inspect.custom]() {
    return `RegistryCredentials { username: ${JSON.stringify(this.username)}, password: [REDACTED] }`;
  }
}

interface DockerConfigAuth {
  auth?: unknown;
  username?: unknown;
  password?: unknown;
}

/**
 * Credentials for `registry` (host[:port]) from the `.dockerconfigjson` value
 * of a kubernetes.io/dockerconfigjson Secret; undefined when it has none.
 * Throws on malformed JSON without echoing any of it.
 */
export function credentialsFromDockerConfigJson(
  json: string | Buffer,
  registry: string,
): RegistryCredentials | undefined {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json.toString());
  } catch {
    throw new Error("The .dockerconfigjson value is not valid JSON");
  }
  const auths =
    parsed && typeof parsed === "object" && "auths" in parsed
      ? (parsed as { auths: unknown }).auths
      : undefined;
  if (!auths || typeof auths !== "object") {
    throw new Error("The .dockerconfigjson value has no auths object");
  }
  const want = normaliseRegistryHost(registry);
  for (const [key, value] of Object.entries(auths as Record<string, unknown>)) {
    if (normaliseRegistryHost(key) !== want || !value || typeof value !== "object") continue;
    const entry = value as DockerConfigAuth;
    if (typeof entry.username === "string" && typeof entry.password === "string") {
      return new RegistryCredentials(entry.username, entry.password);
    }
    if (typeof entry.auth === "string" && entry.auth !== "") {
      const decoded = Buffer.from(entry.auth, "base64").toString("utf8");
      const colon = decoded.indexOf(":");
      if (colon <= 0) throw new Error(`The auth entry for ${want} is not base64 of user:password`);
      return new RegistryCredentials(decoded.slice(0, colon), decoded.slice(colon + 1));
    }
  }
  return undefined;
}

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header: `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`. */
export function parseWwwAuthenticate(header: string): Challenge | undefined {
  const m = header.match(/^\s*([A-Za-z][A-Za-z0-9_-]*)\s*(.*)$/s);
  if (!m?.[1]) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  for (const p of (m[2] ?? "").matchAll(re)) {
    const key = p[1]?.toLowerCase();
    if (key) params[key] = p[2] !== undefined ? p[2].replace(/\\(.)/g, "$1") : (p[3] ?? "");
  }
  return { scheme: m[1].toLowerCase(), params };
}
