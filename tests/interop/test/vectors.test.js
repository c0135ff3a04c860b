import '../src/polyfill.js'
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { checkVectors } from '../src/vectors.js'

test('every vector of tests/vectors agrees with this client', () => {
  const r = checkVectors(fileURLToPath(new URL('../../vectors', import.meta.url)))
  assert.deepEqual(r.failures, [])
  assert.ok(r.checked >= 90)
})
