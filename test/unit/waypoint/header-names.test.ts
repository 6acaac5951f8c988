import test from 'ava';
import { badHeaderValue } from '../../../src/waypoint/header-names.js';

// The rule the codecs applied as a regex before: CTLs but HTAB, DEL, and anything beyond latin1.
const BAD = /[^\t\x20-\x7e\x80-\xff]/;

test('badHeaderValue refuses exactly what the regex refused, for every UTF-16 code unit at any position', (t) => {
  const wrong: number[] = [];
  for (let c = 0; c <= 0xffff; c++) {
    const ch = String.fromCharCode(c);
    for (const v of [ch, `a${ch}`, `ab${ch}cd`]) if (badHeaderValue(v) !== BAD.test(v)) wrong.push(c);
  }
  t.deepEqual(wrong, []);
});

test('badHeaderValue: typical values pass, CR LF NUL DEL and U+010A do not', (t) => {
  for (const ok of ['', 'text/plain; charset=utf-8', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'a\tb', '\xe9t\xe9', '\xff']) t.false(badHeaderValue(ok), JSON.stringify(ok));
  for (const bad of ['a\rb', 'a\nb', 'a\x00', 'x\x7f', 'x\u010a', '\ud83d\ude00']) t.true(badHeaderValue(bad), JSON.stringify(bad));
});
