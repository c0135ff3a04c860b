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

test('opening an envelope given as a Buffer leaves its bytes alone (gossipsub hands validators Buffers)', async () => {
  const { readFileSync } = await import('node:fs')
  const { openEnvelope } = await import('../src/facts.js')
  const dir = fileURLToPath(new URL('../../vectors/', import.meta.url))
  const index = JSON.parse(readFileSync(dir + 'index.json', 'utf8'))
  let valid = 0
  for (const v of index.envelopes) {
    const buf = readFileSync(dir + v.file)
    const before = Buffer.from(buf)
    try { openEnvelope(buf); valid++ } catch {}
    assert.ok(before.equals(buf), v.name)
  }
  assert.equal(valid, index.envelopes.filter(v => v.expect === 'valid').length)
})
