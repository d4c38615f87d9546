// A throw-away CA and serving certificate for test peers that speak TLS
// (a kubelet peer for the checkpoint client, a registry peer), made with the openssl CLI.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

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
