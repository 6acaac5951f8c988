/** Test helper: the whole body of an HTTP/1.1 response, read as latin1 text. */
import type { H1Response } from '../../../src/waypoint/h1-client.js';

export function collect(r: H1Response): Promise<string> {
  return new Promise((resolve, reject) => {
    let s = '';
    r.body.on('data', (c: Buffer) => { s += c.toString('latin1'); });
    r.body.on('end', () => resolve(s));
    r.body.on('error', reject);
  });
}
