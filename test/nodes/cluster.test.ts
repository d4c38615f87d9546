// The cluster of real nodes itself: kubelets and containerd register with their
// real versions, Services and cluster DNS work across nodes, logs and exec work.
import { describe, expect, inject, it } from "vitest";
import { apply, busyboxPod, clients, cluster, kubectl, podReady, waitForPod } from "./support.ts";

describe("cluster of real nodes", () => {
  it("registers every node Ready with the real kubelet and containerd versions", async () => {
    const { core } = clients();
    const nodes = (await core.listNode()).items;
    expect(nodes.map((n) => n.metadata?.name).sort()).toEqual(
      cluster()
        .nodes.map((n) => n.name)
        .sort(),
    );
    for (const n of nodes) {
      expect(n.status?.conditions?.find((c) => c.type === "Ready")?.status).toBe("True");
      expect(n.status?.nodeInfo?.kubeletVersion).toBe(inject("nodeCluster").versions.kubernetes);
      // edge-old runs containerd 1.7 (see global-setup.ts), every other node 2.3.7.
      expect(n.status?.nodeInfo?.containerRuntimeVersion).toMatch(
        n.metadata?.name === "edge-old"
          ? /^containerd:\/\/v?1\.7\.35$/
          : /^containerd:\/\/v?2\.3\.7$/,
      );
      const ip = n.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
      expect(ip).toBe(cluster().nodes.find((x) => x.name === n.metadata?.name)?.ip);
    }
  });

  it("serves a pod behind a Service by its DNS name to a pod on the other node; logs and exec work", async () => {
    const ns = "net-check";
    const [edge, cloud] = cluster().nodes;
    await kubectl(["create", "namespace", ns]);
    try {
      await apply(
        busyboxPod(
          ns,
          "web",
          cloud?.name ?? "",
          "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www",
          { ports: [8080] },
        ),
        {
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "web", namespace: ns },
          spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: 8080 }] },
        },
      );
      await waitForPod(ns, "web", "Ready", podReady);
      // busybox-static's wget cannot resolve names (static glibc has no NSS): Node's fetch does.
      await apply({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: "client", namespace: ns },
        spec: {
          nodeName: edge?.name,
          terminationGracePeriodSeconds: 1,
          containers: [
            {
              name: "main",
              image: "node:24-alpine",
              command: [
                "node",
                "-e",
                `const get = () => fetch("http://web.${ns}.svc.cluster.local/").then((r) => r.text()).then((t) => console.log(t.trim()), () => setTimeout(get, 1000));
get(); setInterval(() => {}, 1 << 30);`,
              ],
            },
          ],
        },
      });
      await waitForPod(ns, "client", "Ready", podReady);
      const { core } = clients();
      const got = await waitForPodLog(ns, "client", /hello-from-web/);
      expect(got).toContain("hello-from-web");
      const client = await core.readNamespacedPod({ namespace: ns, name: "client" });
      expect(client.spec?.nodeName).toBe(edge?.name);
      expect(await kubectl(["-n", ns, "exec", "web", "--", "cat", "/www/index.html"])).toBe(
        "hello-from-web\n",
      );
    } finally {
      await kubectl(["delete", "namespace", ns, "--wait=false"]);
    }
  });
});

async function waitForPodLog(ns: string, pod: string, re: RegExp): Promise<string> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const out = await kubectl(["-n", ns, "logs", pod]).catch(() => "");
    if (re.test(out) || Date.now() > deadline) return out;
    await new Promise((r) => setTimeout(r, 500));
  }
}
