// Check every vector of tests/vectors/ with this client.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { decodeCanonical } from './codec.js'
import { openEnvelope, checkManifestBlob } from './facts.js'
import { tally, informative } from './tally.js'
import { hex, unhex } from './crypto.js'
import { isDeepStrictEqual } from 'node:util'

export function checkVectors (dir) {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'))
  const failures = []
  let n = 0
  for (const v of index.envelopes) {
    n++
    const raw = new Uint8Array(readFileSync(join(dir, v.file)))
    let got; let why = ''
    try { const f = openEnvelope(raw); got = 'valid'; if (hex(f.id) !== v.fact_id || f.kind !== v.kind) { got = 'valid-but-different'; why = hex(f.id) } } catch (e) { got = 'invalid'; why = e.message }
    if (got !== v.expect) failures.push(`envelope ${v.name}: expected ${v.expect}, got ${got} ${why}`)
  }
  for (const v of index.codec) {
    n++
    let got; try { decodeCanonical(new Uint8Array(readFileSync(join(dir, v.file)))); got = 'canonical' } catch { got = 'invalid' }
    if (got !== v.expect) failures.push(`codec ${v.name}: expected ${v.expect}, got ${got}`)
  }
  for (const v of index.manifests ?? []) {
    n++
    const blob = new Uint8Array(readFileSync(join(dir, v.file)))
    const r = v.reveal
    let got; let why = ''
    try { checkManifestBlob(blob, { sha256: unhex(r.sha256), files: r.files, exitCode: r.exit_code, digest: unhex(r.digest) }); got = 'valid' } catch (e) { got = 'invalid'; why = e.message }
    if (got !== v.expect) failures.push(`manifest ${v.name}: expected ${v.expect}, got ${got} ${why}`)
  }
  for (const j of index.jobs) {
    n++
    const facts = j.facts.map(f => openEnvelope(new Uint8Array(readFileSync(join(dir, f)))))
    const got = tally(unhex(j.job), facts, j.now)
    if (typeof j.expect.reason === 'string' && j.expect.reason.endsWith(' (…)') && typeof got.reason === 'string' && got.reason.startsWith(j.expect.reason.slice(0, -4) + ' (')) got.reason = j.expect.reason
    if (!isDeepStrictEqual(got, j.expect)) failures.push(`job ${j.name}: expected ${JSON.stringify(j.expect)}\n got ${JSON.stringify(got)}`)
  }
  return { checked: n, failures }
}

/** The informative keys (cause, workers, created, deadlines) of every job vector, by name. */
export function informativeOfVectors (dir) {
  const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'))
  const out = {}
  for (const j of index.jobs) {
    const facts = j.facts.map(f => openEnvelope(new Uint8Array(readFileSync(join(dir, f)))))
    const v = tally(unhex(j.job), facts, j.now)
    out[j.name] = informative(unhex(j.job), facts, v)
  }
  return out
}
