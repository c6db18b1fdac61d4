import { test } from 'node:test';
import assert from 'node:assert/strict';
import { en } from '../src/i18n/en';
import { he } from '../src/i18n/he';
import { chainEn, chainHe } from '../src/chain/i18n';
import { detectLang, dirOf, placeholders, translate } from '../src/i18n';

function parity(a: Record<string, string>, b: Record<string, string>, what: string) {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  assert.deepEqual(ka.filter((k) => !(k in b)), [], what + ': keys missing in Hebrew');
  assert.deepEqual(kb.filter((k) => !(k in a)), [], what + ': keys only in Hebrew');
  for (const k of ka) {
    assert.ok(b[k].trim() !== '', `${what}: ${k} empty in Hebrew`);
    assert.deepEqual(placeholders(b[k]), placeholders(a[k]), `${what}: ${k} placeholders differ`);
  }
}

test('en and he have the same keys and placeholders', () => parity(en, he, 'shell'));
test('chain dictionaries too', () => parity(chainEn, chainHe, 'chain'));
test('shell and chain keys do not collide', () => {
  for (const k of Object.keys(chainEn)) assert.ok(!(k in en), k);
});

test('translate fills placeholders and leaves unknown ones', () => {
  assert.equal(translate('en', 'cart.title', { number: 7 }), 'Cart 7');
  assert.equal(translate('he', 'cart.title', { number: 7 }), 'עגלה 7');
  assert.equal(translate('en', 'cart.title'), 'Cart {number}');
});

test('language detection and direction', () => {
  assert.equal(detectLang('he', ['en-US']), 'he');
  assert.equal(detectLang('en', ['he-IL']), 'en');
  assert.equal(detectLang(null, ['he-IL', 'en']), 'he');
  assert.equal(detectLang(null, ['iw']), 'he');
  assert.equal(detectLang('xx', ['fr-FR', 'en-GB']), 'en');
  assert.equal(detectLang(null, []), 'en');
  assert.equal(dirOf('he'), 'rtl');
  assert.equal(dirOf('en'), 'ltr');
});
