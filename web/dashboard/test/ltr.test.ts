import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Ltr } from '../src/components/common';

test('a left-to-right token is isolated with dir="ltr" (a masked phone keeps its order in Hebrew)', () => {
  const e = Ltr({ className: 'phone', children: '+972***567' });
  assert.equal(e.type, 'bdi');
  assert.deepEqual(e.props, { dir: 'ltr', className: 'phone', 'data-testid': undefined, children: '+972***567' });
  assert.equal(Ltr({ testId: 'user-name', children: 'a@b.example' }).props['data-testid'], 'user-name');
});
