// Validates Strimzi custom resources against the schemas of Strimzi's CRDs (compiled into
// @kubernetes-models/strimzi-kafka-operator). Reads a JSON array of resources on stdin; prints
// one line per resource; exits 1 if any is invalid or of a kind it has no schema for.
import { readFileSync } from "node:fs";

const resources = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const resource of resources) {
  const [group, version] = resource.apiVersion.split("/");
  const where = `${resource.kind}/${resource.metadata?.name}`;
  let model;
  try {
    const module = await import(
      `@kubernetes-models/strimzi-kafka-operator/${group}/${version}/${resource.kind}`
    );
    model = new module[resource.kind](resource);
  } catch (error) {
    console.log(`${where}: no schema for ${resource.apiVersion} ${resource.kind}`);
    failed += 1;
    continue;
  }
  try {
    model.validate();
    console.log(`${where}: valid`);
  } catch (error) {
    console.log(`${where}: ${error.message}`);
    failed += 1;
  }
}
process.exit(failed ? 1 : 0);
