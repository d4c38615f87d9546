// The kubectl-edgeshift package's bin (bundled by build.ts): checks the Node.js
// version before plugin/main.ts and its libraries load, because too old a Node
// fails inside @kubernetes/client-node's HTTP client with a TypeError that names
// no version. The minimum is the package's engines.node, set here by build.ts.
declare const EDGESHIFT_MIN_NODE: string;

const have = process.versions.node.split(".").map(Number);
const need = EDGESHIFT_MIN_NODE.split(".").map(Number);
const i = need.findIndex((n, k) => n !== (have[k] ?? 0));
if (i >= 0 && (have[i] ?? 0) < (need[i] ?? 0)) {
  process.stderr.write(
    `kubectl-edgeshift needs Node.js ${EDGESHIFT_MIN_NODE} or newer; this is ${process.version} (${process.execPath})\n`,
  );
  process.exit(1);
}
void import("../main.ts");
