// Builds (or finds in the cache) everything a cluster of real nodes needs
// before it starts: the node binaries and every image the nodes pull. CI runs
// this before the tests, so no test builds anything lazily.
import { ensureImages } from "./images.ts";
import { ensureNodeBinaries } from "./node-binaries.ts";

const log = (m: string) => console.log(m);
const started = Date.now();
const bins = await ensureNodeBinaries(log);
const images = await ensureImages({ pause: bins.pause, coredns: bins.coredns, log });
for (const i of images) console.log(`${i.name} -> ${i.layout}`);
console.log(
  `Node binaries and ${images.length} images ready in ${((Date.now() - started) / 1000).toFixed(1)} s`,
);
