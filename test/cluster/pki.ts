import { execFile } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface Pki {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  saKey: string;
  saPub: string;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  await run("openssl", args, { cwd });
}

/**
 * A throw-away CA, an API server serving certificate for loopback (and
 * `extraSans`, e.g. "IP:10.99.0.100"), and the service-account signing key
 * pair, all made with the openssl CLI.
 */
export async function makePki(dir: string, extraSans: string[] = []): Promise<Pki> {
  const p = (f: string) => join(dir, f);
  await openssl(["genrsa", "-out", "ca.key", "2048"], dir);
  await openssl(
    ["req", "-x509", "-new", "-nodes", "-key", "ca.key", "-sha256", "-days", "2"].concat([
      "-subj",
      "/CN=edgeshift-test-ca",
      "-out",
      "ca.crt",
    ]),
    dir,
  );
  await openssl(["genrsa", "-out", "apiserver.key", "2048"], dir);
  await openssl(
    [
      "req",
      "-new",
      "-key",
      "apiserver.key",
      "-subj",
      "/CN=kube-apiserver",
      "-out",
      "apiserver.csr",
    ],
    dir,
  );
  await writeFile(
    p("apiserver.ext"),
    [
      "basicConstraints=CA:FALSE",
      "keyUsage=digitalSignature,keyEncipherment",
      "extendedKeyUsage=serverAuth",
      `subjectAltName=${["IP:127.0.0.1", "IP:10.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local", ...extraSans].join(",")}`,
      "",
    ].join("\n"),
  );
  await openssl(
    ["x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]
      .concat(["-CAcreateserial", "-out", "apiserver.crt", "-days", "2", "-sha256"])
      .concat(["-extfile", "apiserver.ext"]),
    dir,
  );
  await openssl(["genrsa", "-out", "sa.key", "2048"], dir);
  await openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], dir);
  return {
    caCert: p("ca.crt"),
    caKey: p("ca.key"),
    serverCert: p("apiserver.crt"),
    serverKey: p("apiserver.key"),
    saKey: p("sa.key"),
    saPub: p("sa.pub"),
  };
}

export interface SignedCert {
  cert: string;
  key: string;
}

/**
 * A key and a certificate signed by the PKI's CA: `subject` like
 * "/O=system:masters/CN=kube-apiserver-kubelet-client", `usage` serverAuth or
 * clientAuth, `sans` like ["IP:10.99.0.1", "DNS:edge-1"] for serving certificates.
 */
export async function signCert(
  pki: Pki,
  dir: string,
  name: string,
  subject: string,
  usage: "serverAuth" | "clientAuth",
  sans: string[] = [],
): Promise<SignedCert> {
  const p = (f: string) => join(dir, f);
  await openssl(["genrsa", "-out", `${name}.key`, "2048"], dir);
  await openssl(
    ["req", "-new", "-key", `${name}.key`, "-subj", subject, "-out", `${name}.csr`],
    dir,
  );
  const ext = [
    "basicConstraints=CA:FALSE",
    "keyUsage=digitalSignature,keyEncipherment",
    `extendedKeyUsage=${usage}`,
  ];
  if (sans.length) ext.push(`subjectAltName=${sans.join(",")}`);
  await writeFile(p(`${name}.ext`), `${ext.join("\n")}\n`);
  await openssl(
    ["x509", "-req", "-in", `${name}.csr`, "-CA", pki.caCert, "-CAkey", pki.caKey]
      .concat(["-CAcreateserial", "-out", `${name}.crt`, "-days", "2", "-sha256"])
      .concat(["-extfile", `${name}.ext`]),
    dir,
  );
  return { cert: p(`${name}.crt`), key: p(`${name}.key`) };
}
