/**
 * Renders deploy/waypoint/waypoint.yaml from src/control/waypoint-deployer.ts (what the control
 * plane creates for Gateway default/waypoint). The deploy test compares the file with this
 * output; after changing the deployer, rewrite the file with
 *   node --import=tsx test/unit/deploy/render-waypoint.ts > deploy/waypoint/waypoint.yaml
 */
import { stringify } from 'yaml';
import { fileURLToPath } from 'node:url';
import { renderWaypoint } from '../../../src/control/waypoint-deployer.js';

const HEADER = `# What the control plane creates for a waypoint Gateway (here: Gateway default/waypoint, of class
# ambit-waypoint): rendered by src/control/waypoint-deployer.ts, which applies these objects for
# every such Gateway and deletes them when the Gateway goes. test/unit/deploy/ checks this file
# equals the renderer's output (regenerate: node --import=tsx test/unit/deploy/render-waypoint.ts).
# You do not apply it yourself: declare the Gateway (gateway.yaml) and label the namespace or a
# Service with ambit.dev/use-waypoint: waypoint.
`;

export function renderWaypointTemplate(): string {
  const objs = renderWaypoint({ namespace: 'default', name: 'waypoint' });
  return HEADER + objs.map((o) => stringify(o, { lineWidth: 0 })).join('---\n');
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.stdout.write(renderWaypointTemplate());
