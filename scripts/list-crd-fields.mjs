// Prints the spec field paths of the CustomResourceDefinitions in a YAML file, one per line as
// `<group>/<Kind> <path>` (`networking.istio.io/VirtualService spec.http[].route[].weight`), from
// the CRD's first served version that is v1 (else its first version). Used to refresh
// test/fixtures/model/istio-field-paths.txt from Istio's and Gateway API's released CRDs:
//   node scripts/list-crd-fields.mjs crd-all.gen.yaml gateway-api-crds.yaml > test/fixtures/model/istio-field-paths.txt
import { readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

// The kinds ambit models from these API groups.
const kinds = new Set([
  'networking.istio.io/VirtualService', 'networking.istio.io/DestinationRule', 'security.istio.io/PeerAuthentication',
  'security.istio.io/AuthorizationPolicy', 'security.istio.io/RequestAuthentication', 'gateway.networking.k8s.io/HTTPRoute',
  'gateway.networking.k8s.io/Gateway',
]);
const out = [];
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, 'utf8'))) {
    const crd = doc.toJS();
    if (crd?.kind !== 'CustomResourceDefinition') continue;
    const key = `${crd.spec.group}/${crd.spec.names.kind}`;
    if (!kinds.has(key)) continue;
    const version = crd.spec.versions.find((v) => v.name === 'v1') ?? crd.spec.versions[0];
    const walk = (schema, path) => {
      for (const [name, child] of Object.entries(schema?.properties ?? {})) {
        out.push(`${key} ${path}.${name}`);
        walk(child, `${path}.${name}`);
      }
      if (schema?.items !== undefined) walk(schema.items, `${path}[]`);
    };
    walk(version.schema.openAPIV3Schema.properties.spec, 'spec');
  }
}
process.stdout.write([...new Set(out)].sort().join('\n') + '\n');
