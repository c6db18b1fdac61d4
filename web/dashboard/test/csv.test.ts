import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildCsv, csvCell, csvFileName } from '../src/csv';

test('quotes, commas and line breaks are quoted', () => {
  assert.equal(csvCell('plain'), 'plain');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('a\nb'), '"a\nb"');
  assert.equal(csvCell(null), '');
  assert.equal(csvCell(12), '12');
  assert.equal(csvCell('עגלה 3'), 'עגלה 3');
});

test('formula-looking cells are neutralised', () => {
  assert.equal(csvCell('=1+1'), "'=1+1");
  assert.equal(csvCell('+972501234567'), "'+972501234567");
  assert.equal(csvCell('-5'), "'-5");
  assert.equal(csvCell('@SUM(A1)'), "'@SUM(A1)");
  assert.equal(csvCell('\tx'), "'\tx");
  assert.equal(csvCell('=HYPERLINK("http://x","y")'), '"\'=HYPERLINK(""http://x"",""y"")"');
  assert.equal(csvCell('a=b'), 'a=b');
});

test('a whole file: BOM, CRLF, header first', () => {
  assert.equal(buildCsv(['a', 'b'], [[1, 'x,y'], ['=z', null]]), '\uFEFFa,b\r\n1,"x,y"\r\n\'=z,\r\n');
});

test('file name', () => {
  assert.equal(csvFileName('TLV-01', '2026-11-01', '2026-11-28'), 'rentals-TLV-01-2026-11-01-2026-11-28.csv');
  assert.equal(csvFileName('a/b c', '2026-11-01', '2026-11-28'), 'rentals-a_b_c-2026-11-01-2026-11-28.csv');
});
