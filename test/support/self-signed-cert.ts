// A self-signed serving certificate like the one a kubeadm kubelet makes for
// itself (no cluster CA), made with the openssl CLI.
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

/** A self-signed certificate and key for `cn` naming `sans` (e.g. ["DNS:edge-1", "IP:127.0.0.1"]). */
export async function makeSelfSignedCertificate(
  cn: string,
  sans: string[],
): Promise<{ certPem: string; keyPem: string }> {
  const dir = await mkdtemp(join(tmpdir(), "edgeshift-selfsigned-"));
  try {
    await run(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.crt",
      ].concat([
        "-days",
        "2",
        "-sha256",
        "-subj",
        `/CN=${cn}`,
        "-addext",
        `subjectAltName=${sans.join(",")}`,
      ]),
      { cwd: dir },
    );
    const [certPem, keyPem] = await Promise.all(
      ["tls.crt", "tls.key"].map((f) => readFile(join(dir, f), "utf8")),
    );
    return { certPem: certPem ?? "", keyPem: keyPem ?? "" };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
