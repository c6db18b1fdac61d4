import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MAINT_NOTE_MAX_BYTES, maintNoteTooLong, utf8Bytes } from '../src/text';
import { dictionaries } from '../src/i18n';

test('UTF-8 bytes, not characters', () => {
  assert.equal(utf8Bytes('abc'), 3);
  assert.equal(utf8Bytes('שלום'), 8);
  assert.equal(utf8Bytes('🛒'), 4);
});

test('maintenance note: the server limit is 200 bytes of UTF-8 (a Hebrew letter is two)', () => {
  assert.equal(MAINT_NOTE_MAX_BYTES, 200);
  assert.equal(maintNoteTooLong('a'.repeat(200)), false);
  assert.equal(maintNoteTooLong('a'.repeat(201)), true);
  assert.equal(maintNoteTooLong('א'.repeat(100)), false);
  assert.equal(maintNoteTooLong('א'.repeat(101)), true, '101 Hebrew letters are 202 bytes');
  assert.equal(maintNoteTooLong('  ' + 'a'.repeat(200) + '  '), false, 'what is sent is trimmed');
  assert.ok(dictionaries.en['cart.maint_note_long'].includes('{max}'));
  assert.ok(dictionaries.he['cart.maint_note_long'].includes('{max}'));
});
