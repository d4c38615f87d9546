import { inspect } from "node:util";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import {
  credentialsFromDockerConfigJson,
  parseWwwAuthenticate,
  RegistryCredentials,
} from "./auth.ts";
import { parseRepository } from "./reference.ts";

const b64 = (s: string) => Buffer.from(s).toString("base64");

describe("credentialsFromDockerConfigJson", () => {
  const secret = JSON.stringify({
    auths: {
      "registry.example:5000": { auth: b64("robot:pa:ss") },
      "https://index.docker.io/v1/": { username: "hubuser", password: "hubpass" },
      "http://plain.example/v2/": { auth: b64("p:q") },
    },
  });

  it("finds the entry for a registry host, decoding auth as user:password", () => {
    const c = credentialsFromDockerConfigJson(secret, "registry.example:5000");
    expect(c?.username).toBe("robot");
    expect(c?.basicAuthorization()).toBe(`Basic ${b64("robot:pa:ss")}`);
  });

  it("matches keys written as URLs, and Docker Hub's legacy key", () => {
    expect(credentialsFromDockerConfigJson(secret, "plain.example")?.username).toBe("p");
    expect(credentialsFromDockerConfigJson(secret, "docker.io")?.username).toBe("hubuser");
  });

  it("returns undefined for a registry it has nothing for", () => {
    expect(credentialsFromDockerConfigJson(secret, "other.example")).toBeUndefined();
  });

  it("refuses malformed secrets without echoing their content", () => {
    const leaky = '{"auths": {"x": {"auth": "c2VjcmV0LXBhc3N3b3Jk"}'; // truncated JSON
    expect(() => credentialsFromDockerConfigJson(leaky, "x")).toThrow("not valid JSON");
    try {
      credentialsFromDockerConfigJson(leaky, "x");
    } catch (err) {
      expect(String(err)).not.toContain("c2VjcmV0");
    }
    expect(() => credentialsFromDockerConfigJson("{}", "x")).toThrow(/auths/);
    expect(() =>
      credentialsFromDockerConfigJson(
        JSON.stringify({ auths: { x: { auth: b64("nocolon") } } }),
        "x",
      ),
    ).toThrow(/user:password/);
  });
});

describe("RegistryCredentials", () => {
  it("keeps the password out of JSON, inspect and pino", () => {
    const c = new RegistryCredentials("robot", "hunter2-very-secret");
    expect(JSON.stringify({ c })).not.toContain("hunter2");
    expect(inspect(c)).not.toContain("hunter2");
    expect(String(c)).not.toContain("hunter2");
    const lines: string[] = [];
    const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
    log.info({ credentials: c }, "Pushed");
    expect(lines.join("")).toContain("robot");
    expect(lines.join("")).not.toContain("hunter2");
  });
});

describe("parseWwwAuthenticate", () => {
  it("parses a bearer challenge", () => {
    expect(
      parseWwwAuthenticate(
        'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"',
      ),
    ).toEqual({
      scheme: "bearer",
      params: {
        realm: "https://auth.example/token",
        service: "registry.example",
        scope: "repository:a/b:pull,push",
      },
    });
  });

  it("parses basic challenges, unquoted values and escapes", () => {
    expect(parseWwwAuthenticate('Basic realm="Registry Realm"')).toEqual({
      scheme: "basic",
      params: { realm: "Registry Realm" },
    });
    expect(parseWwwAuthenticate('Bearer realm=x, error="a\\"b"')?.params).toEqual({
      realm: "x",
      error: 'a"b',
    });
    expect(parseWwwAuthenticate("")).toBeUndefined();
  });
});

describe("parseRepository", () => {
  it("splits host and path", () => {
    expect(parseRepository("127.0.0.1:5000/edgeshift/checkpoints")).toEqual({
      registry: "127.0.0.1:5000",
      apiHost: "127.0.0.1:5000",
      name: "edgeshift/checkpoints",
    });
    expect(parseRepository("localhost/x").registry).toBe("localhost");
  });

  it("defaults to Docker Hub, whose API answers elsewhere", () => {
    expect(parseRepository("nginx")).toEqual({
      registry: "docker.io",
      apiHost: "registry-1.docker.io",
      name: "library/nginx",
    });
    expect(parseRepository("docker.io/org/app").name).toBe("org/app");
  });

  it("refuses tags, digests and invalid names", () => {
    for (const bad of [
      "r.example/app:latest",
      "r.example/app@sha256:abc",
      "r.example/App",
      "r.example/a//b",
      "r.example/",
    ]) {
      expect(() => parseRepository(bad)).toThrow();
    }
  });
});
