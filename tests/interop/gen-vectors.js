// Generates tests/vectors/ (run: node gen-vectors.js ../vectors). Deterministic:
// fixed seeds and times, so re-running gives the same files. The expected
// verdicts are what docs/protocol.md v2 says; tests/unit/test_vectors.py checks
// p2pci's own decoder and tally against them, client.js checks this client.
import './src/polyfill.js'
import { mkdirSync, writeFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { ed25519, ED25519_TORSION_SUBGROUP } from '@noble/curves/ed25519'
import { sha512 } from '@noble/hashes/sha2'
import { canonical } from './src/codec.js'
import { sha256, hex, unhex, le, leBytes, L, P, peerId } from './src/crypto.js'
import { seal, signingMessage, openEnvelope, resultDigest, mintIdentity, manifestBlob, manifestFields, digestOfManifestBlob, checkManifestBlob } from './src/facts.js'
import { tally } from './src/tally.js'

const out = process.argv[2] || '../vectors'
for (const d of ['envelopes', 'codec', 'jobs', 'manifests', 'index.json']) rmSync(join(out, d), { recursive: true, force: true }) // README.md stays
mkdirSync(join(out, 'envelopes'), { recursive: true }); mkdirSync(join(out, 'codec'), { recursive: true }); mkdirSync(join(out, 'jobs'), { recursive: true }); mkdirSync(join(out, 'manifests'), { recursive: true })
const te = new TextEncoder()
const seedOf = name => sha256(te.encode('p2pci test vector key ' + name))
const pub = name => ed25519.getPublicKey(seedOf(name))
const Point = ed25519.ExtendedPoint
const index = { protocol: 2, about: 'see README.md', envelopes: [], codec: [], manifests: [], jobs: [] }

function add (name, bytes, expect, rule, extra = {}) {
  const file = `envelopes/${name}.bin`
  writeFileSync(join(out, file), bytes)
  const e = { name, file, expect, rule, ...extra }
  if (expect === 'valid') e.fact_id = hex(sha256(bytes))
  // self-check: this client must agree with the stated verdict
  let ok; try { openEnvelope(bytes); ok = true } catch (err) { ok = false; e._why = err.message }
  if (ok !== (expect === 'valid')) throw new Error(`generator: ${name} expected ${expect} but client says ${ok ? 'valid' : e._why}`)
  delete e._why
  index.envelopes.push(e)
}

// §4.4.1 manifest blobs, each checked against the reveal fields naming it (a hostile worker's
// reveal is consistent with its own blob: sha256, files and digest computed from the blob itself)
function manifestVec (name, blob, expect, rule, reveal = null) {
  const file = `manifests/${name}.bin`
  writeFileSync(join(out, file), blob)
  const r = reveal ?? { sha256: sha256(blob), files: (() => { try { const v = decodeLooseCount(blob); return v } catch { return 0 } })(), exitCode: 0, digest: digestOfManifestBlob(0, blob) }
  let ok; let why = ''; try { checkManifestBlob(blob, r); ok = true } catch (err) { ok = false; why = err.message }
  if (ok !== (expect === 'valid')) throw new Error(`generator: manifest ${name} expected ${expect} but client says ${ok ? 'valid' : why}`)
  index.manifests.push({ name, file, expect, rule, reveal: { sha256: hex(r.sha256), files: Number(r.files), exit_code: r.exitCode, digest: hex(r.digest) } })
}
function decodeLooseCount (blob) { // the item count a hostile reveal would state: a list's length (array header), else 0
  const b = blob[0]
  if (b >= 0x90 && b <= 0x9f) return b - 0x90
  if (b === 0xdc) return (blob[1] << 8) | blob[2]
  if (b === 0xdd) return ((blob[1] << 24) | (blob[2] << 16) | (blob[3] << 8) | blob[4]) >>> 0
  return 0
}

const T0 = 1767225600000 // 2026-01-01T00:00:00Z
const DEADLINE = 4102444800000 // 2100-01-01: scenarios never expire
const ref = (s, size) => ({ sha256: sha256(te.encode(s)), size })
const seedFor = j => sha256(te.encode('select seed ' + j))
function offerBody (over = {}) {
  return {
    project: 'vectors', source: ref('source', 1234), image: { id: 'sha256:' + '0'.repeat(63) + 'a', archive: null },
    command: ['sh', '-c', 'echo hi > /out/a'], env: { A: '1' }, source_date_epoch: 1700000000,
    limits: { timeout_s: 60, memory_mb: 256, cpus: 1, pids: 64, out_mb: 16 }, replicas: 2, quorum: 2,
    workers: 'open', require: null, created: T0, deadline: DEADLINE, select_commit: sha256(seedFor('base')),
    identity_bits: 0, claim_window: 1000, inputs: null, provenance: { commit: null, tree: null, recipe: null }, ...over
  }
}
const pubSeed = seedOf('publisher')
const offer = seal('offer', offerBody(), pubSeed)
const J = sha256(offer)
add('offer_valid', offer, 'valid', '§4.1 a valid offer', { kind: 'offer' })
const claimB = (over = {}) => ({ job: J, lease_until: T0 + 30000, identity: new Uint8Array(), ...over })
add('claim_valid', seal('claim', claimB(), seedOf('w1')), 'valid', '§4.2', { kind: 'claim' })
add('claim_lease_max', seal('claim', claimB({ lease_until: (1n << 63n) - 1n }), seedOf('w1')), 'valid', 'Conventions: body ints reach 2^63−1', { kind: 'claim' })
add('claim_lease_2p63', seal('claim', claimB({ lease_until: 1n << 63n }), seedOf('w1')), 'invalid', 'Conventions: body ints are ≤ 2^63−1 (codec carries it, body refuses)')
add('claim_lease_negative', seal('claim', claimB({ lease_until: -1 }), seedOf('w1')), 'invalid', 'Conventions: body ints are ≥ 0')
add('claim_identity_33', seal('claim', claimB({ identity: new Uint8Array(33) }), seedOf('w1')), 'invalid', '§4.2 identity is bin 0–32')
add('claim_identity_str', seal('claim', claimB({ identity: '' }), seedOf('w1')), 'invalid', '§4.2 identity is bin, not str')
add('claim_extra_field', seal('claim', claimB({ x: null }), seedOf('w1')), 'invalid', '§3 exactly the fields of the kind')
{ const b = claimB(); delete b.identity; add('claim_missing_field', seal('claim', b, seedOf('w1')), 'invalid', '§3 no fewer fields') }
add('claim_job_31', seal('claim', claimB({ job: J.slice(0, 31) }), seedOf('w1')), 'invalid', '§4 job is bin32')
// commit + reveal
const manifest = [
  { mode: 0o644, path: 'a', sha256: sha256(te.encode('a')), size: 1 },
  { mode: 0o755, path: 'sub/b', sha256: sha256(te.encode('b')), size: 0 }
]
const salt = new Uint8Array(16).fill(5)
const digest = resultDigest(0, manifest)
const commit = seal('commit', { job: J, hash: sha256(salt, digest, pub('w1')) }, seedOf('w1'))
add('commit_valid', commit, 'valid', '§4.3', { kind: 'commit' })
const revealB = (over = {}) => ({ job: J, digest, salt, exit_code: 0, ...manifestFields(manifest), log: ref('log', 10), seen: [sha256(commit)], ...over })
add('reveal_valid', seal('reveal', revealB(), seedOf('w1')), 'valid', '§4.4, §7 digest = sha256(0x92 ‖ canonical(exit_code) ‖ manifest blob)', { kind: 'reveal', digest: hex(digest) })
add('reveal_digest_not_checked_on_receipt', seal('reveal', revealB({ exit_code: 1 }), seedOf('w1')), 'valid', '§4.4 the digest is checked when the manifest blob is fetched (§4.4.1), not on receipt', { kind: 'reveal', digest: hex(digest) })
add('reveal_files_1000001', seal('reveal', revealB({ files: 1000001, manifest: ref('m', 100 << 20) }), seedOf('w1')), 'invalid', '§4.4 files 0–1 000 000')
add('reveal_files_1000000', seal('reveal', revealB({ files: 1000000, manifest: ref('m', 200 << 20) }), seedOf('w1')), 'valid', '§4.4 files up to 1 000 000', { kind: 'reveal', digest: hex(digest) })
add('reveal_manifest_over_256mib', seal('reveal', revealB({ files: 1000000, manifest: ref('m', 268435457) }), seedOf('w1')), 'invalid', '§4.4 manifest.size ≤ 268 435 456')
add('reveal_manifest_too_small_for_files', seal('reveal', revealB({ files: 2, manifest: ref('m', 1 + 2 * 61 - 1) }), seedOf('w1')), 'invalid', '§4.4 size ≥ h + 61·files')
add('reveal_manifest_smallest_for_files', seal('reveal', revealB({ files: 2, manifest: ref('m', 1 + 2 * 61) }), seedOf('w1')), 'valid', '§4.4 size = h + 61·files is plausible', { kind: 'reveal', digest: hex(digest) })
add('reveal_manifest_too_large_for_files', seal('reveal', revealB({ files: 16, manifest: ref('m', 3 + 16 * 16456 + 1) }), seedOf('w1')), 'invalid', '§4.4 size ≤ h + 16 456·files (h = 3 from 16 entries)')
add('reveal_manifest_largest_for_files', seal('reveal', revealB({ files: 16, manifest: ref('m', 3 + 16 * 16456) }), seedOf('w1')), 'valid', '§4.4 size = h + 16 456·files is plausible', { kind: 'reveal', digest: hex(digest) })
add('reveal_no_files_not_1_byte', seal('reveal', revealB({ files: 0, manifest: ref('m', 2) }), seedOf('w1')), 'invalid', '§4.4 an empty manifest is the 1 byte 0x90')
add('reveal_manifest_inline', seal('reveal', revealB({ manifest }), seedOf('w1')), 'invalid', '§4.4 the manifest is a BlobRef, not a list')
{ const b = revealB(); delete b.files; add('reveal_no_files', seal('reveal', b, seedOf('w1')), 'invalid', '§4.4 files is a field') }
add('reveal_exit_256', seal('reveal', revealB({ exit_code: 256, digest: resultDigest(256, manifest) }), seedOf('w1')), 'invalid', '§4.4 exit_code 0–255')

// §4.4.1 manifest blobs
{
  const blob = manifestBlob(manifest)
  const good = { sha256: sha256(blob), files: manifest.length, exitCode: 0, digest }
  manifestVec('valid', blob, 'valid', '§4.4.1 the blob of reveal_valid', good)
  manifestVec('empty', new Uint8Array([0x90]), 'valid', '§4.4.1 an empty manifest is 0x90')
  manifestVec('wrong_digest', blob, 'invalid', '§4.4.1 3. the digest binds exit code and blob', { ...good, exitCode: 1 })
  manifestVec('wrong_count', blob, 'invalid', '§4.4.1 4. exactly `files` entries', { ...good, files: 3, sha256: sha256(blob) })
  manifestVec('wrong_sha256', blob, 'invalid', '§4.4.1 2. sha256 of the blob', { ...good, sha256: sha256(te.encode('x')) })
  const bad = (name, m, rule) => manifestVec(name, manifestBlob(m), 'invalid', rule)
  bad('unsorted', [manifest[1], manifest[0]], '§4.4.1 sorted by path')
  bad('duplicate_path', [manifest[0], manifest[0]], '§4.4.1 paths distinct')
  bad('dotdot_path', [{ ...manifest[0], path: 'x/../a' }], '§4.4.1 no .. part')
  bad('absolute_path', [{ ...manifest[0], path: '/a' }], '§4.4.1 path relative')
  bad('empty_part', [{ ...manifest[0], path: 'a//b' }], '§4.4.1 no empty part')
  bad('nul_in_path', [{ ...manifest[0], path: 'a\0b' }], '§4.4.1 no NUL')
  bad('mode_setid', [{ ...manifest[0], mode: 0o4755 }], '§4.4.1 mode 0–0o777')
  bad('sha256_31', [{ ...manifest[0], sha256: new Uint8Array(31) }], '§4.4.1 sha256 32 bytes')
  bad('extra_key', [{ ...manifest[0], x: 1 }], '§4.4.1 exactly mode, path, sha256, size')
  bad('not_a_list', { a: 1 }, '§4.4.1 a list')
  manifestVec('not_canonical', new Uint8Array([...blob.slice(0, -1), 0xcc, 0x00]), 'invalid', '§4.4.1 5. canonical (the last size, 0, as uint8 is not the shortest encoding)')
  manifestVec('path_4096', manifestBlob([{ ...manifest[0], path: '\u{1f600}'.repeat(4096) }]), 'valid', '§4.4.1 path up to 4096 chars (code points)')
  manifestVec('path_4097', manifestBlob([{ ...manifest[0], path: 'a'.repeat(4097) }]), 'invalid', '§4.4.1 path ≤ 4096 chars')
  manifestVec('backslash_path', manifestBlob([{ ...manifest[0], path: 'a\\b' }]), 'valid', '§4.4.1 a backslash is an ordinary path byte')
}
add('reveal_salt_15', seal('reveal', revealB({ salt: new Uint8Array(15) }), seedOf('w1')), 'invalid', '§4.4 salt bin 16–32')
add('reveal_seen_duplicate', seal('reveal', revealB({ seen: [sha256(commit), sha256(commit)] }), seedOf('w1')), 'invalid', '§4.4 seen distinct')
add('cancel_valid', seal('cancel', { job: J }, pubSeed), 'valid', '§4.5', { kind: 'cancel' })
const selB = (over = {}) => ({ job: J, round: 0, seed: seedFor('base'), created: T0 + 1000, claims: [], workers: [], ...over })
add('select_valid', seal('select', selB({ claims: [sha256(te.encode('c1')), sha256(te.encode('c2'))].sort(Buffer.compare), workers: [pub('w1')] }), pubSeed), 'valid', '§4.6', { kind: 'select' })
add('select_claims_unsorted', seal('select', selB({ claims: [sha256(te.encode('c1')), sha256(te.encode('c2'))].sort(Buffer.compare).reverse() }), pubSeed), 'invalid', '§4.6 claims sorted')
add('select_round_256', seal('select', selB({ round: 256 }), pubSeed), 'invalid', '§4.6 round 0–255')
add('decline_valid', seal('decline', { job: J, reason: 'image', detail: 'no such image', log: null }, seedOf('w1')), 'valid', '§4.7', { kind: 'decline' })
add('decline_reason_upper', seal('decline', { job: J, reason: 'Image', detail: '', log: null }, seedOf('w1')), 'invalid', '§4.7 reason [a-z][a-z0-9_]*')
add('decline_detail_1025', seal('decline', { job: J, reason: 'other', detail: 'x'.repeat(1025), log: null }, seedOf('w1')), 'invalid', '§4.7 detail ≤ 1024 chars')
// offer limits and fields
const badOffer = (name, over, rule) => add(name, seal('offer', offerBody(over), pubSeed), 'invalid', rule)
const goodOffer = (name, over, rule) => add(name, seal('offer', offerBody(over), pubSeed), 'valid', rule, { kind: 'offer' })
const lim = o => ({ limits: { timeout_s: 60, memory_mb: 256, cpus: 1, pids: 64, out_mb: 16, ...o } })
goodOffer('offer_limits_max', lim({ timeout_s: 604800, memory_mb: 2 ** 24, cpus: 1024, pids: 2 ** 22, out_mb: 2 ** 24 }), '§4.1 limit upper bounds are inclusive')
badOffer('offer_timeout_over', lim({ timeout_s: 604801 }), '§4.1 timeout_s ≤ 604 800')
badOffer('offer_memory_over', lim({ memory_mb: 2 ** 24 + 1 }), '§4.1 memory_mb ≤ 2^24')
badOffer('offer_cpus_over', lim({ cpus: 1025 }), '§4.1 cpus ≤ 1024')
badOffer('offer_pids_over', lim({ pids: 2 ** 22 + 1 }), '§4.1 pids ≤ 2^22')
badOffer('offer_out_over', lim({ out_mb: 2 ** 24 + 1 }), '§4.1 out_mb ≤ 2^24')
badOffer('offer_timeout_zero', lim({ timeout_s: 0 }), '§4.1 timeout_s ≥ 1')
badOffer('offer_quorum_over_replicas', { replicas: 2, quorum: 3 }, '§4.1 quorum ≤ replicas')
badOffer('offer_replicas_65', { replicas: 65, quorum: 1 }, '§4.1 replicas ≤ 64')
badOffer('offer_deadline_eq_created', { deadline: T0 }, '§4.1 deadline > created')
badOffer('offer_identity_bits_41', { identity_bits: 41 }, '§4.1 identity_bits ≤ 40')
goodOffer('offer_identity_bits_40', { identity_bits: 40 }, '§4.1 identity_bits ≤ 40')
badOffer('offer_claim_window_99', { claim_window: 99 }, '§4.1 claim_window ≥ 100')
badOffer('offer_image_upper_hex', { image: { id: 'sha256:' + 'A'.repeat(64), archive: null } }, '§4.1 image id lowercase hex')
badOffer('offer_provenance_commit_39', { provenance: { commit: 'a'.repeat(39), tree: null, recipe: null } }, '§4.1 provenance commit 40 or 64 hex')
goodOffer('offer_provenance_full', { provenance: { commit: 'a'.repeat(40), tree: 'b'.repeat(64), recipe: 'r'.repeat(8192) } }, '§4.1 provenance')
badOffer('offer_require_min_over', { require: { keys: [pub('w1')], min: 2 } }, '§4.1 require.min ≤ len(keys)')
goodOffer('offer_require', { require: { keys: [pub('w1'), pub('w2')], min: 1 } }, '§4.1 require')
badOffer('offer_workers_duplicate', { workers: [pub('w1'), pub('w1')] }, '§4.1 allowlist keys distinct')
badOffer('offer_workers_empty', { workers: [] }, '§4.1 allowlist has 1–256 keys')
badOffer('offer_env_bad_name', { env: { '1A': 'x' } }, '§4.1 env names [A-Za-z_][A-Za-z0-9_]*')
{ const o = offerBody(); delete o.inputs; add('offer_inputs_omitted', seal('offer', o, pubSeed), 'invalid', '§3 optional values present as nil, never omitted') }
badOffer('offer_project_empty', { project: '' }, '§4.1 project 1–200 chars')
goodOffer('offer_project_200_nonascii', { project: 'é'.repeat(200) }, '§4.1 project 1–200 chars (chars = code points: 400 UTF-8 bytes)')
goodOffer('offer_workers_unsorted', { workers: [pub('w1'), pub('w2')].sort(Buffer.compare).reverse() }, '§4.1 the allowlist need not be sorted (only distinct)')
goodOffer('offer_require_unsorted', { require: { keys: [pub('w1'), pub('w2')].sort(Buffer.compare).reverse(), min: 2 } }, '§4.1 require.keys need not be sorted (only distinct)')
badOffer('offer_require_outside_allowlist', { workers: [pub('w1')], require: { keys: [pub('w2')], min: 1 } }, '§4.1 with an allowlist, every require key must be in it (else the job could never finish)')
badOffer('offer_require_partly_outside_allowlist', { workers: [pub('w1'), pub('w2')], require: { keys: [pub('w2'), pub('w3')], min: 1 } }, '§4.1 every require key, not only min of them, must be in the allowlist')
goodOffer('offer_require_inside_allowlist', { workers: [pub('w1'), pub('w2')], require: { keys: [pub('w2')], min: 1 } }, '§4.1 require keys in the allowlist')
goodOffer('offer_source_size_0', { source: ref('empty', 0) }, '§4.1 a BlobRef size may be 0')
goodOffer('offer_empty_strings', { env: { A: '' }, command: [''] }, '§4.1 env values and command items may be empty')
goodOffer('offer_project_200_astral', { project: '\u{1f600}'.repeat(200) }, '§4.1 chars are code points: 200 emoji (400 UTF-16 units, 800 bytes) are 200 chars')
badOffer('offer_project_201_astral', { project: '\u{1f600}'.repeat(201) }, '§4.1 project ≤ 200 chars (code points)')
add('reveal_seen_unsorted', seal('reveal', revealB({ seen: [sha256(commit), sha256(te.encode('x'))].sort(Buffer.compare).reverse() }), seedOf('w1')), 'valid', '§4.4 seen need not be sorted (only distinct)', { kind: 'reveal', digest: hex(digest) })
add('reveal_empty_manifest', seal('reveal', revealB({ ...manifestFields([]), digest: resultDigest(0, []) }), seedOf('w1')), 'valid', '§4.4 an empty manifest is a result', { kind: 'reveal', digest: hex(resultDigest(0, [])) })
add('decline_reason_33', seal('decline', { job: J, reason: 'a'.repeat(33), detail: '', log: null }, seedOf('w1')), 'invalid', '§4.7 reason 1–32 chars')
{ // > 64 KiB
  const env = {}; for (let i = 0; i < 17; i++) env['V' + i] = 'x'.repeat(4096)
  const b = seal('offer', offerBody({ env }), pubSeed)
  if (b.length <= 65536) throw new Error('oversize vector too small')
  add('offer_over_64k', b, 'invalid', '§3 envelope ≤ 65 536 bytes')
}
// envelope level
const cb = claimB()
const w1 = seedOf('w1')
add('envelope_v1', canonical({ body: cb, kind: 'claim', sig: ed25519.sign(new Uint8Array([...te.encode('p2pci/v1/claim'), 0, ...canonical(cb)]), w1), signer: pub('w1'), v: 1 }), 'invalid', '§3 v = 1 refused (version 1 is no longer accepted)')
add('envelope_v3', seal('claim', cb, w1, { v: 3 }), 'invalid', '§3 v is the int 2')
add('envelope_v1_domain', canonical({ body: cb, kind: 'claim', sig: ed25519.sign(new Uint8Array([...te.encode('p2pci/v1/claim'), 0, ...canonical(cb)]), w1), signer: pub('w1'), v: 2 }), 'invalid', '§3 signature domain p2pci/v2/')
add('envelope_unknown_kind', seal('vote', { job: J }, w1), 'invalid', '§3 kind list')
add('envelope_wrong_signer', seal('claim', cb, w1, { signer: pub('w2') }), 'invalid', '§3 signature by signer')
add('envelope_extra_field', canonical({ body: cb, kind: 'claim', sig: ed25519.sign(signingMessage('claim', cb), w1), signer: pub('w1'), v: 2, x: 1 }), 'invalid', '§3 exactly five fields')
// non-canonical encodings of a valid claim
const good = seal('claim', cb, w1)
{ // lease_until T0+30000 needs uint64 (0xcf); re-encode as ... instead find a small int: identity length header not relevant; use v: 2 as uint8 0xcc 0x02
  const i = good.lastIndexOf(0x02); const b = new Uint8Array([...good.slice(0, i), 0xcc, 0x02, ...good.slice(i + 1)])
  add('noncanonical_int_uint8', b, 'invalid', '§1 shortest int encoding (v = 2 as uint8)')
}
{ // "claim" as str8 instead of fixstr
  const k = te.encode('claim'); const at = Buffer.from(good).indexOf(Buffer.from([0xa5, ...k]))
  const b = new Uint8Array([...good.slice(0, at), 0xd9, 5, ...k, ...good.slice(at + 6)])
  add('noncanonical_str8', b, 'invalid', '§1 shortest str encoding')
}
{ // map keys out of order: swap "sig" and "signer" entries — build by hand
  const sig = ed25519.sign(signingMessage('claim', cb), w1)
  const parts = [['body', canonical(cb)], ['kind', canonical('claim')], ['signer', canonical(pub('w1'))], ['sig', canonical(sig)], ['v', canonical(2)]]
  const b = new Uint8Array([0x85, ...parts.flatMap(([k, v]) => [...canonical(k), ...v])])
  add('noncanonical_key_order', b, 'invalid', '§1 map keys sorted by UTF-8 bytes')
  const d = new Uint8Array([0x86, ...canonical('body'), ...canonical(cb), ...canonical('body'), ...canonical(cb), ...parts.slice(1).flatMap(([k, v]) => [...canonical(k), ...v])])
  add('noncanonical_duplicate_key', d, 'invalid', '§1 no duplicate keys')
}
add('trailing_byte', new Uint8Array([...good, 0xc0]), 'invalid', '§1 one value, nothing after it')
{ // float in place of lease_until
  const b2 = canonical({ ...cb, lease_until: 0 }); void b2
  const body = new Uint8Array([0x83, ...canonical('identity'), ...canonical(cb.identity), ...canonical('job'), ...canonical(J), ...canonical('lease_until'), 0xcb, ...new Uint8Array(8)])
  const b = new Uint8Array([0x85, ...canonical('body'), ...body, ...canonical('kind'), ...canonical('claim'), ...canonical('sig'), ...canonical(new Uint8Array(64)), ...canonical('signer'), ...canonical(pub('w1')), ...canonical('v'), 2])
  add('float_in_body', b, 'invalid', '§1 no floats')
}
// Ed25519 rules (§3, rules 1–4)
const ext = ed25519.utils.getExtendedPublicKey(w1)
const a = ext.scalar
const msgOf = body => signingMessage('claim', body)
const kOf = (R, A, m) => le(sha512(new Uint8Array([...R, ...A, ...m]))) % L
const rawSig = (R, S) => new Uint8Array([...R, ...leBytes(S)])
{
  const sig = ed25519.sign(msgOf(cb), w1)
  const S = le(sig.slice(32)) + L
  add('sig_s_not_canonical', seal('claim', cb, w1, { sigOverride: rawSig(sig.slice(0, 32), S) }), 'invalid', '§3 rule 1: S < L (S+L refused; the equation would hold)')
}
{
  const R = new Uint8Array(32); R[0] = 1 // identity
  const S = (kOf(R, pub('w1'), msgOf(cb)) * a) % L
  add('sig_r_identity', seal('claim', cb, w1, { sigOverride: rawSig(R, S) }), 'invalid', '§3 rule 2: R of small order (identity) refused although [S]B − [k]A = R holds')
  const Rn = leBytes(P + 1n) // non-canonical encoding of the identity
  const Sn = (kOf(Rn, pub('w1'), msgOf(cb)) * a) % L
  add('sig_r_noncanonical', seal('claim', cb, w1, { sigOverride: rawSig(Rn, Sn) }), 'invalid', '§3 rules 2 and 4: non-canonical R (p+1, the identity) never verifies (ZIP-215 accepts it)')
}
{
  const A = new Uint8Array(32); A[0] = 1 // identity as public key
  const r = 12345678901234567890n
  const R = Point.BASE.multiply(r).toRawBytes()
  add('sig_a_identity', seal('claim', cb, w1, { signer: A, sigOverride: rawSig(R, r) }), 'invalid', '§3 rule 3: public key of small order refused although the equation holds')
}
const T8 = ED25519_TORSION_SUBGROUP.map(h => Point.fromHex(h)).find(t => !t.multiply(1n).equals(Point.ZERO) && !t.double().double().equals(Point.ZERO))
{ // mixed-order public key A' = aB + T (T of order 8): valid iff k ≡ 0 mod 8
  const A2 = ext.point.add(T8).toRawBytes()
  const r = 987654321987654321n; const R = Point.BASE.multiply(r).toRawBytes()
  for (const want of [0n, 1n]) {
    let lease = T0 + 30000
    for (;;) {
      const body = claimB({ lease_until: lease })
      const k = kOf(R, A2, msgOf(body))
      if ((want === 0n) === (k % 8n === 0n)) {
        const S = (r + k * a) % L
        const bytes = seal('claim', body, w1, { signer: A2, sigOverride: rawSig(R, S) })
        if (want === 0n) add('sig_a_mixed_order_k0mod8', bytes, 'valid', '§3 rule 4: a mixed-order key (aB + T8) is not of small order; cofactorless check passes when k ≡ 0 mod 8', { kind: 'claim' })
        else add('sig_a_mixed_order', bytes, 'invalid', '§3 rule 4: cofactorless: mixed-order key with k ≢ 0 mod 8 fails (cofactored/ZIP-215 accept it)')
        break
      }
      lease++
    }
  }
}
{ // mixed-order R = rB + T8: cofactorless refuses, cofactored accepts
  const r = 55555n; const R = Point.BASE.multiply(r).add(T8).toRawBytes()
  const S = (r + kOf(R, pub('w1'), msgOf(cb)) * a) % L
  add('sig_r_mixed_order', seal('claim', cb, w1, { sigOverride: rawSig(R, S) }), 'invalid', '§3 rule 4: R = rB + T8 with S = r + ka: cofactorless refuses (cofactored/ZIP-215 accept)')
}
add('sig_bitflip', (() => { const s = ed25519.sign(msgOf(cb), w1); s[5] ^= 1; return seal('claim', cb, w1, { sigOverride: s }) })(), 'invalid', '§3 signature')

// codec vectors: raw values, canonical or not (§1)
function codec (name, bytes, expect, rule) { writeFileSync(join(out, `codec/${name}.bin`), bytes); index.codec.push({ name, file: `codec/${name}.bin`, expect, rule }) }
const nest = n => { let v = []; for (let i = 0; i < n; i++) v = [v]; return v } // n+1 arrays: innermost at depth n
codec('depth_16', canonical(nest(16)), 'canonical', '§1 an array at depth 16 is allowed')
codec('depth_17', new Uint8Array([...new Array(18).fill(0x91).slice(0, 17), 0x90]), 'invalid', '§1 a value at depth 17 is refused')
codec('uint64_max', new Uint8Array([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), 'canonical', '§1 ints up to 2^64−1')
codec('int64_min', new Uint8Array([0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]), 'canonical', '§1 ints down to −2^63')
codec('int8_for_positive', new Uint8Array([0xd0, 0x05]), 'invalid', '§1 positive ints in the uint family')
codec('int16_for_minus_100', new Uint8Array([0xd1, 0xff, 0x9c]), 'invalid', '§1 shortest negative encoding (int8)')
codec('uint16_for_255', new Uint8Array([0xcd, 0x00, 0xff]), 'invalid', '§1 shortest: uint8')
codec('bin8_empty', new Uint8Array([0xc4, 0x00]), 'canonical', '§1 bin family')
codec('str8_31', new Uint8Array([0xd9, 31, ...new Array(31).fill(0x61)]), 'invalid', '§1 fixstr up to 31 bytes')
codec('str8_32', new Uint8Array([0xd9, 32, ...new Array(32).fill(0x61)]), 'canonical', '§1 str8 from 32 bytes')
codec('array16_small', new Uint8Array([0xdc, 0x00, 0x01, 0xc0]), 'invalid', '§1 fixarray up to 15')
codec('map_int_key', new Uint8Array([0x81, 0x01, 0xc0]), 'invalid', '§1 map keys are str')
codec('bad_utf8', new Uint8Array([0xa2, 0xc3, 0x28]), 'invalid', '§1 str is UTF-8')
codec('float32', new Uint8Array([0xca, 0, 0, 0, 0]), 'invalid', '§1 no floats')
codec('ext', new Uint8Array([0xd4, 0x01, 0x00]), 'invalid', '§1 no ext types')
codec('key_order_bytes', canonical({ b: 1, a: 2, é: 3, z: 4 }), 'canonical', '§1 keys sorted by UTF-8 bytes (é after z)')
codec('key_order_utf16_not_bytes', new Uint8Array([0x82, 0xa1, 0xef, 0xbd, 0xa1 - 0xa1 + 0xa1, 0x00].slice(0, 0)).length === 0
  ? (() => { // U+FF61 (ef bd a1) vs U+1F600 (f0 9f 98 80): UTF-16 order puts the emoji (d83d) first, byte order puts U+FF61 first
    const k1 = te.encode('\uff61'); const k2 = te.encode('\u{1f600}')
    return new Uint8Array([0x82, 0xa0 | k2.length, ...k2, 0xc0, 0xa0 | k1.length, ...k1, 0xc0])
  })() : null, 'invalid', '§1 keys sorted by UTF-8 bytes, not UTF-16 code units')

// ---- job scenarios: fact sets with the expected verdict object (§5, §6)
let scen = 0
function scenario (name, { replicas = 3, quorum = 2, workers = ['w1', 'w2', 'w3'], results, extra = () => [], rule, offer = {}, now = T0 + 5000, round0 = true, identityBits = {} }) {
  const seed = seedFor(name)
  const ob = offerBody({ project: name, replicas, quorum, select_commit: sha256(seed), ...offer })
  const off = seal('offer', ob, pubSeed); const job = sha256(off)
  const facts = [off]
  const claims = workers.map(w => seal('claim', { job, lease_until: T0 + 30000, identity: identityBits[w] !== undefined ? mintIdentity(pub(w), identityBits[w]) : new Uint8Array() }, seedOf(w)))
  facts.push(...claims)
  const claimIds = claims.map(c => sha256(c)).sort(Buffer.compare)
  const reqKeys = new Set((ob.require?.keys ?? []).map(hex))
  const allow = ob.workers === 'open' ? null : new Set(ob.workers.map(hex))
  const eligible = workers.filter(w => (allow === null || allow.has(hex(pub(w)))) && (identityBits[w] ?? 0) >= ob.identity_bits)
  const R = eligible.map(pub).filter(k => reqKeys.has(hex(k)))
  const ranked = [...R, ...eligible.map(pub).filter(k => !reqKeys.has(hex(k))).sort((x, y) => Buffer.compare(sha256(seed, job, x), sha256(seed, job, y))).slice(0, replicas)].sort(Buffer.compare)
  if (round0) facts.push(seal('select', { job, round: 0, seed, created: T0 + 1000, claims: claimIds, workers: ranked }, pubSeed))
  const commits = {}
  const votes = {}
  for (const [w, res] of Object.entries(results)) {
    const man = [{ mode: 0o644, path: 'out.txt', sha256: sha256(te.encode(res.content)), size: res.content.length }]
    const d = resultDigest(res.exit ?? 0, man)
    const s = sha256(te.encode('salt ' + w)).slice(0, 16)
    const c = seal('commit', { job, hash: sha256(s, d, pub(w)) }, seedOf(w))
    commits[w] = sha256(c); votes[w] = { man, d, s, exit: res.exit ?? 0 }
    facts.push(c)
  }
  // seen: all commits held before the first reveal of one's own digest (all commits here)
  const all = Object.values(commits).sort(Buffer.compare)
  for (const [w, v] of Object.entries(votes)) {
    if (results[w].noReveal) continue
    facts.push(seal('reveal', { job, digest: v.d, salt: v.s, exit_code: v.exit, ...manifestFields(v.man), log: ref('log ' + w, 3), seen: results[w].seen ? results[w].seen(commits) : all }, seedOf(w)))
  }
  facts.push(...extra({ job, seed, commits, votes, claimIds, ranked }))
  const dir = `jobs/${String(++scen).padStart(2, '0')}_${name}`
  mkdirSync(join(out, dir), { recursive: true })
  const files = facts.map((f, i) => { const p = `${dir}/${String(i).padStart(2, '0')}.bin`; writeFileSync(join(out, p), f); return p })
  const opened = facts.map(openEnvelope)
  const verdict = tally(job, opened, now)
  const bundleFacts = [off, ...facts.slice(1).map(f => [f, openEnvelope(f)]).sort((x, y) => (x[1].kind < y[1].kind ? -1 : x[1].kind > y[1].kind ? 1 : Buffer.compare(x[1].id, y[1].id))).map(x => x[0])]
  const bundle = `${dir}.bundle`
  writeFileSync(join(out, bundle), canonical({ v: 2, job, facts: bundleFacts }))
  index.jobs.push({ name, rule, job: hex(job), now, facts: files, bundle, expect: verdict })
  return verdict
}
const same = { content: 'same\n' }
const v1 = scenario('reproduced', { results: { w1: same, w2: same, w3: same }, rule: '§6 three agreeing counted votes, N = 2' })
if (v1.verdict !== 'REPRODUCED') throw new Error('scenario reproduced')
const v2 = scenario('disputed', { results: { w1: { content: 'a' }, w2: { content: 'b' }, w3: { content: 'c' } }, rule: '§6 all builds in, no group reaches N: DISPUTED' })
if (v2.verdict !== 'DISPUTED') throw new Error('scenario disputed')
const v2b = scenario('disputed_two_decisive', { replicas: 4, quorum: 2, workers: ['w1', 'w2', 'w3', 'w4'], results: { w1: { content: 'a' }, w2: { content: 'a' }, w3: { content: 'b' }, w4: { content: 'b' } }, rule: '§6 two decisive groups' })
if (v2b.verdict !== 'DISPUTED') throw new Error('scenario disputed 2')
const v3 = scenario('equivocation', {
  results: { w1: same, w2: same, w3: same },
  extra: ({ job, votes }) => [seal('commit', { job, hash: sha256(new Uint8Array(16).fill(9), votes.w3.d, pub('w3')) }, seedOf('w3'))],
  rule: '§6 2.2 a selected key with two commits is an equivocator; its vote is dropped'
})
if (v3.equivocators.length !== 1) throw new Error('scenario equivocation')
const v4 = scenario('equivocator_without_reveal', {
  results: { w1: same, w2: same, w3: { ...same, noReveal: true } },
  extra: ({ job, votes }) => [seal('commit', { job, hash: sha256(new Uint8Array(16).fill(9), votes.w3.d, pub('w3')) }, seedOf('w3'))],
  rule: '§6 2.2 equivocators include selected keys with two commits and no reveal'
})
if (v4.equivocators.length !== 1) throw new Error('scenario equivocator without reveal')
scenario('failed', { results: { w1: { content: 'x', exit: 3 }, w2: { content: 'x', exit: 3 }, w3: { content: 'x', exit: 3 } }, rule: '§6 decisive group with exit ≠ 0: FAILED' })
scenario('unwitnessed_copy', {
  results: { w1: { ...same, seen: c => [c.w2].sort(Buffer.compare) }, w2: { ...same, seen: c => [c.w1].sort(Buffer.compare) }, w3: { ...same, seen: c => [c.w1, c.w2].sort(Buffer.compare) } },
  rule: '§6 3 witness rule: w3 commit is in nobody else\'s seen: ignored as a possible copy'
})
scenario('unselected_reveal', {
  replicas: 2, results: { w1: same, w2: same, w3: same }, rule: '§6 2.1 reveals of keys no valid round names are ignored'
})
scenario('bad_select_round1', {
  results: { w1: same, w2: same, w3: same },
  extra: ({ job, seed }) => [seal('select', { job, round: 1, seed, created: T0 + 2000, claims: [], workers: [] }, pubSeed)],
  rule: '§5 a round that does not list every claim of the previous round is ignored and reported'
})
scenario('pending_missing', { results: { w1: same, w2: { ...same, noReveal: true } }, rule: '§6 missing: selected keys that owe a reveal' })
scenario('cancelled', { results: { w1: same, w2: same }, extra: ({ job }) => [seal('cancel', { job }, pubSeed)], rule: '§6 cancel by the publisher' })

scenario('copies_unwitnessed', {
  results: { w1: { ...same, seen: () => [] }, w2: { ...same, seen: () => [] }, w3: { content: 'other' } },
  rule: '§6 3 two same-digest votes that do not list each other are both removed (exempt only when no other candidate has the digest)'
})
scenario('expired_with_round', { offer: { deadline: T0 + 4000 }, results: { w1: same }, rule: '§6 EXPIRED after the deadline with a valid round' })
scenario('expired_no_round', { offer: { deadline: T0 + 4000 }, round0: false, results: {}, rule: '§6 EXPIRED, never selected: the exact reason string' })
scenario('foreign_select', {
  results: { w1: same, w2: same, w3: same },
  extra: ({ job, seed, claimIds }) => [seal('select', { job, round: 0, seed, created: T0 + 1500, claims: claimIds, workers: [pub('w3')] }, seedOf('w1'))],
  rule: "§5 a select not signed by the offer's publisher is ignored and reported; the publisher's round 0 stands"
})
scenario('require_keys', {
  offer: { require: { keys: [pub('w3')], min: 1 } }, replicas: 2, quorum: 2,
  results: { w1: same, w3: same },
  rule: '§5 require keys are always selected (R ∪ the replicas lowest-ranked); §6 they are exempt from the witness rule'
})
scenario('allowlist', {
  offer: { workers: [pub('w1'), pub('w2')] }, replicas: 2, quorum: 2, workers: ['w1', 'w2', 'w3'],
  results: { w1: same, w2: { ...same, seen: () => [] }, w3: same },
  rule: '§5 only allowlisted claimants are eligible; §6 allowlisted votes are exempt from the witness rule; w3 is not selected'
})
scenario('identity_too_weak', {
  offer: { identity_bits: 4 }, identityBits: { w1: 4, w2: 4, w3: 0 },
  results: { w1: same, w2: same },
  rule: '§2, §5 a claim whose identity is weaker than identity_bits is not eligible'
})
const vd = scenario('decline_round1', {
  replicas: 2, workers: ['w1', 'w2', 'w3'],
  results: { w1: same, w2: same, w3: same },
  extra: ({ job, seed, claimIds, ranked }) => {
    // the first ranked worker declines; round 1 drops it and takes the next-ranked key
    const order = ['w1', 'w2', 'w3'].map(pub).sort((x, y) => Buffer.compare(sha256(seed, job, x), sha256(seed, job, y)))
    const dropped = order[0]; const next = order[2]
    const w = ranked.filter(k => Buffer.compare(k, dropped) !== 0).concat([next]).sort(Buffer.compare)
    const who = ['w1', 'w2', 'w3'].find(n => Buffer.compare(pub(n), dropped) === 0)
    return [seal('decline', { job, reason: 'image', detail: 'no such image', log: null }, seedOf(who)),
      seal('select', { job, round: 1, seed, created: T0 + 2000, claims: claimIds, workers: w }, pubSeed)]
  },
  rule: '§5 a declining ranked worker is replaced in round 1; §6 declines of selected workers are listed; §6 2.3 the dropped worker stays selected (a valid round named it), but its decline voids its vote: its reveal is ignored, "declined its place"'
})
if (vd.verdict !== 'REPRODUCED' || vd.ignored.length !== 1 || vd.ignored[0].reason !== 'declined its place' || vd.groups[0].workers.length !== 2) throw new Error('scenario decline_round1')
scenario('select_twice', {
  results: { w1: same, w2: same, w3: same },
  extra: ({ job, seed, claimIds, ranked }) => [seal('select', { job, round: 0, seed, created: T0 + 1001, claims: claimIds, workers: ranked }, pubSeed)],
  rule: '§5 the publisher signed two different round-0 selects: both ignored, nobody is selected'
})

// selection rounds with exactly one problem each (§5); no reveals, so only rounds/ignored_selects matter
function selectCase (name, selFn, rule, offer = {}) {
  scenario(name, {
    replicas: 2, round0: false, results: {}, rule, offer,
    extra: ({ job, seed, claimIds }) => {
      const order = ['w1', 'w2', 'w3'].map(pub).sort((x, y) => Buffer.compare(sha256(seed, job, x), sha256(seed, job, y)))
      return selFn({ job, seed, ids: claimIds, order, srt: a => [...a].sort(Buffer.compare) }).map(b => seal('select', b, pubSeed))
    }
  })
}
selectCase('select_valid_round0', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }], '§5 round 0 = the replicas lowest-ranked eligible listed claimants')
selectCase('select_empty_round0', ({ job, seed }) => [{ job, round: 0, seed, created: T0 + 1, claims: [], workers: [] }], '§5 a round 0 listing no claim is valid and selects nobody (the job then EXPIREs with "not enough agreeing votes")')
selectCase('select_bad_seed', ({ job, ids, order, srt }) => [{ job, round: 0, seed: new Uint8Array(32), created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }], "§5 seed does not match the offer's select_commit")
selectCase('select_unknown_claim', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: srt([...ids, sha256(te.encode('not held'))]), workers: srt(order.slice(0, 2)) }], '§5 lists a claim this node does not hold (yet)')
selectCase('select_not_lowest', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt([order[0], order[2]]) }], '§5 workers are not the lowest-ranked eligible listed claimants')
selectCase('select_stranger', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt([order[0], pub('stranger')]) }], '§5 selects a key that is not an eligible listed claimant')
selectCase('select_created_at_deadline', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: DEADLINE, claims: ids, workers: srt(order.slice(0, 2)) }], '§5 created at or after the deadline')
selectCase('select_round_gap', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }, { job, round: 2, seed, created: T0 + 2, claims: ids, workers: srt(order.slice(0, 2)) }], '§5 round 2 without round 1: an earlier round is missing')
selectCase('select_round1_drops_prev_claims', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }, { job, round: 1, seed, created: T0 + 2, claims: [], workers: [] }], '§5 round 1 does not list every claim of round 0')
selectCase('select_round1_replaces', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }, { job, round: 1, seed, created: T0 + 2, claims: ids, workers: srt([order[1], order[2]]) }], '§5 round 1 drops the first-ranked key and takes the next one')
selectCase('select_round1_reselects_dropped', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }, { job, round: 1, seed, created: T0 + 2, claims: ids, workers: srt([order[1], order[2]]) }, { job, round: 2, seed, created: T0 + 3, claims: ids, workers: srt([order[0], order[2]]) }], '§5 a dropped key is never selected again')
selectCase('select_round1_created_earlier', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 5, claims: ids, workers: srt(order.slice(0, 2)) }, { job, round: 1, seed, created: T0 + 4, claims: ids, workers: srt([order[1], order[2]]) }], "§5 created before the previous round's")

// several faults at once: the first check in the order of §5 names the reason
const farClaim = sha256(te.encode('not held'))
selectCase('select_faults_seed_first', ({ job, ids, order, srt }) => [{ job, round: 0, seed: new Uint8Array(32), created: DEADLINE, claims: srt([...ids, farClaim]), workers: srt([order[0], pub('stranger')]) }], '§5 check order: a bad seed, a created at the deadline, an unknown claim and a stranger: the seed is reported')
selectCase('select_faults_created_before_claims', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: DEADLINE, claims: srt([...ids, farClaim]), workers: srt([order[0], pub('stranger')]) }], '§5 check order: created at the deadline, an unknown claim and a stranger: created is reported')
selectCase('select_faults_claim_before_stranger', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: srt([...ids, farClaim]), workers: srt([order[0], pub('stranger')]) }], '§5 check order: an unknown claim and a stranger: the unknown claim is reported')
selectCase('select_faults_prev_claims_before_stranger', ({ job, seed, ids, order, srt }) => [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt(order.slice(0, 2)) }, { job, round: 1, seed, created: T0 + 2, claims: [], workers: [pub('stranger')] }], '§5 check order: round 1 drops round 0\'s claims and selects a stranger: the dropped claims are reported')
selectCase('select_faults_require_before_rank', ({ job, seed, ids, order, srt }) => {
  const others = order.filter(k => Buffer.compare(k, pub('w3')) !== 0)
  return [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt([others[1]]) }]
}, '§5 check order: leaves out the eligible require key and is not the lowest-ranked: the require key is reported', { require: { keys: [pub('w3')], min: 1 } })
selectCase('select_faults_stranger_before_require', ({ job, seed, ids, order, srt }) => {
  const others = order.filter(k => Buffer.compare(k, pub('w3')) !== 0)
  return [{ job, round: 0, seed, created: T0 + 1, claims: ids, workers: srt([...others, pub('stranger')]) }]
}, '§5 check order: selects a stranger and leaves out the require key: the stranger is reported', { require: { keys: [pub('w3')], min: 1 } })

// §5: a key with several listed claims is eligible when any one of them shows enough identity work.
// w1's weak claim has the lower fact id, w2's weak claim the higher one: both keys must be eligible.
{
  const name = 'several_claims_any_identity'
  const seed = seedFor(name)
  const ob = offerBody({ project: name, replicas: 3, quorum: 2, identity_bits: 4, select_commit: sha256(seed) })
  const off = seal('offer', ob, pubSeed); const job = sha256(off)
  const strong = w => seal('claim', { job, lease_until: T0 + 30000, identity: mintIdentity(pub(w), 4) }, seedOf(w))
  const weakWith = (w, lower) => {
    const s = strong(w)
    for (let i = 0; ; i++) {
      const c = seal('claim', { job, lease_until: T0 + 20000 + i, identity: new Uint8Array() }, seedOf(w))
      if ((Buffer.compare(sha256(c), sha256(s)) < 0) === lower) return [s, c]
    }
  }
  const claims = [...weakWith('w1', true), ...weakWith('w2', false), strong('w3')]
  const ids = claims.map(c => sha256(c)).sort(Buffer.compare)
  const sel = seal('select', { job, round: 0, seed, created: T0 + 1000, claims: ids, workers: ['w1', 'w2', 'w3'].map(pub).sort(Buffer.compare) }, pubSeed)
  const facts = [off, ...claims, sel]
  const dir = `jobs/${String(++scen).padStart(2, '0')}_${name}`
  mkdirSync(join(out, dir), { recursive: true })
  const files = facts.map((f, i) => { const p = `${dir}/${String(i).padStart(2, '0')}.bin`; writeFileSync(join(out, p), f); return p })
  const opened = facts.map(openEnvelope)
  const verdict = tally(job, opened, T0 + 5000)
  if (verdict.rounds.length !== 1 || verdict.ignored_selects.length !== 0) throw new Error('scenario ' + name)
  const bundleFacts = [off, ...facts.slice(1).map(f => [f, openEnvelope(f)]).sort((x, y) => (x[1].kind < y[1].kind ? -1 : x[1].kind > y[1].kind ? 1 : Buffer.compare(x[1].id, y[1].id))).map(x => x[0])]
  writeFileSync(join(out, `${dir}.bundle`), canonical({ v: 2, job, facts: bundleFacts }))
  index.jobs.push({ name, rule: '§5 a key with several listed claims is eligible when any one of them carries enough identity work (w1: weak claim first by fact id, w2: weak claim last)', job: hex(job), now: T0 + 5000, facts: files, bundle: `${dir}.bundle`, expect: verdict })
}

// §6 2.3: a worker of the latest round that revealed and declined (in any order: facts are a set)
// loses its vote; nobody replaced it yet, so the job waits for a second vote
const vl = scenario('decline_after_reveal', {
  replicas: 2, quorum: 2, workers: ['w1', 'w2'],
  results: { w1: same, w2: same },
  extra: ({ job }) => [seal('decline', { job, reason: 'timeout', detail: 'timed out after 60s; log tail:\n', log: null }, seedOf('w2'))],
  rule: '§6 2.3 a selected key with a decline held has its votes ignored ("declined its place"), even one of the latest round that revealed: one counted vote, PENDING'
})
if (vl.verdict !== 'PENDING' || vl.ignored.length !== 1 || vl.groups[0].workers.length !== 1) throw new Error('scenario decline_after_reveal')

writeFileSync(join(out, 'index.json'), JSON.stringify(index, null, 1) + '\n')
console.log(`${index.envelopes.length} envelopes, ${index.codec.length} codec values, ${index.manifests.length} manifest blobs, ${index.jobs.length} jobs written to ${out}`)
