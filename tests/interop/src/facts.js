import { createHash } from 'node:crypto'
// Signed envelopes and fact bodies (docs/protocol.md §3, §4, §7).
import { canonical, decodeCanonical, isInt, ProtocolError, cmpBytes } from './codec.js'
import { sha256, verify, sign, publicKey } from './crypto.js'

export const MAX_ENVELOPE = 65536
export const KINDS = ['offer', 'claim', 'commit', 'reveal', 'cancel', 'select', 'decline']
const I63 = (1n << 63n) - 1n
const te = new TextEncoder()

function fail (msg) { throw new ProtocolError(msg) }
function chars (s) { return [...s].length } // "chars" read as Unicode code points
function intIn (v, lo, hi, what) {
  if (!isInt(v)) fail(`${what}: not an int`)
  const x = BigInt(v)
  if (x < BigInt(lo) || x > BigInt(hi)) fail(`${what}: out of range ${lo} … ${hi}`)
  return Number(x) // callers only keep ints where exactness beyond 2^53 does not matter for comparisons below
}
function bigIn (v, what) { if (!isInt(v)) fail(`${what}: not an int`); const x = BigInt(v); if (x < 0n || x > I63) fail(`${what}: out of range 0 … 2^63−1`); return x }
function bin (v, lo, hi, what) {
  if (!(v instanceof Uint8Array)) fail(`${what}: not bin`)
  if (v.length < lo || v.length > hi) fail(`${what}: length ${v.length} not in ${lo} … ${hi}`)
  return v
}
function str (v, lo, hi, what) {
  if (typeof v !== 'string') fail(`${what}: not str`)
  const n = chars(v)
  if (n < lo || n > hi) fail(`${what}: ${n} chars not in ${lo} … ${hi}`)
  return v
}
function arr (v, lo, hi, what) {
  if (!Array.isArray(v)) fail(`${what}: not an array`)
  if (v.length < lo || v.length > hi) fail(`${what}: ${v.length} items not in ${lo} … ${hi}`)
  return v
}
function fields (m, names, what) {
  if (!(m instanceof Map)) fail(`${what}: not a map`)
  const want = [...names].sort()
  const got = [...m.keys()].sort()
  if (want.length !== got.length || want.some((k, i) => k !== got[i])) fail(`${what}: fields ${got.join(',')} != ${want.join(',')}`)
  return Object.fromEntries(m)
}
function distinctBins (a, what, sorted) {
  for (let i = 1; i < a.length; i++) {
    const c = cmpBytes(a[i - 1], a[i])
    if (sorted ? c >= 0 : false) fail(`${what}: not sorted and distinct`)
  }
  if (!sorted) {
    const s = new Set(a.map(b => Buffer.from(b).toString('hex')))
    if (s.size !== a.length) fail(`${what}: not distinct`)
  }
}
function blobRef (v, what) {
  const o = fields(v, ['sha256', 'size'], what)
  bin(o.sha256, 32, 32, `${what}.sha256`); bigIn(o.size, `${what}.size`)
  return o
}
const HEX64 = /^[0-9a-f]{64}$/
const HEXID = /^([0-9a-f]{40}|[0-9a-f]{64})$/
const ENVNAME = /^[A-Za-z_][A-Za-z0-9_]*$/
const REASON = /^[a-z][a-z0-9_]*$/

function checkOffer (b) {
  const o = fields(b, ['project', 'source', 'image', 'command', 'env', 'source_date_epoch', 'limits', 'replicas', 'quorum',
    'workers', 'require', 'created', 'deadline', 'select_commit', 'identity_bits', 'claim_window', 'inputs', 'provenance'], 'offer')
  str(o.project, 1, 200, 'project')
  blobRef(o.source, 'source')
  const img = fields(o.image, ['id', 'archive'], 'image')
  if (typeof img.id !== 'string' || !img.id.startsWith('sha256:') || !HEX64.test(img.id.slice(7))) fail('image.id: not sha256:<64 lowercase hex>')
  if (img.archive !== null) blobRef(img.archive, 'image.archive')
  for (const a of arr(o.command, 1, 256, 'command')) str(a, 0, 4096, 'command item')
  if (!(o.env instanceof Map)) fail('env: not a map')
  if (o.env.size > 128) fail('env: more than 128 entries')
  for (const [k, v] of o.env) {
    if (!ENVNAME.test(k) || chars(k) > 128) fail('env: bad name')
    str(v, 0, 4096, 'env value')
  }
  if (o.source_date_epoch !== null) bigIn(o.source_date_epoch, 'source_date_epoch')
  const l = fields(o.limits, ['timeout_s', 'memory_mb', 'cpus', 'pids', 'out_mb'], 'limits')
  intIn(l.timeout_s, 1, 604800, 'timeout_s'); intIn(l.memory_mb, 1, 2 ** 24, 'memory_mb'); intIn(l.cpus, 1, 1024, 'cpus')
  intIn(l.pids, 1, 2 ** 22, 'pids'); intIn(l.out_mb, 1, 2 ** 24, 'out_mb')
  const m = intIn(o.replicas, 1, 64, 'replicas')
  intIn(o.quorum, 1, m, 'quorum')
  if (o.workers !== 'open') {
    const ws = arr(o.workers, 1, 256, 'workers')
    for (const w of ws) bin(w, 32, 32, 'workers item')
    distinctBins(ws, 'workers', false)
  }
  if (o.require !== null) {
    const r = fields(o.require, ['keys', 'min'], 'require')
    const ks = arr(r.keys, 1, 64, 'require.keys')
    for (const k of ks) bin(k, 32, 32, 'require.keys item')
    distinctBins(ks, 'require.keys', false)
    intIn(r.min, 1, ks.length, 'require.min')
    // §4.1: with an allowlist, every require key must be in it (else the job could never finish)
    if (o.workers !== 'open') {
      const allow = new Set(o.workers.map(w => Buffer.from(w).toString('hex')))
      if (ks.some(k => !allow.has(Buffer.from(k).toString('hex')))) fail('require.keys: a key is not in the allowlist')
    }
  }
  const created = bigIn(o.created, 'created')
  const deadline = bigIn(o.deadline, 'deadline')
  if (deadline <= created) fail('deadline: not after created')
  bin(o.select_commit, 32, 32, 'select_commit')
  intIn(o.identity_bits, 0, 40, 'identity_bits')
  intIn(o.claim_window, 100, 600000, 'claim_window')
  if (o.inputs !== null) blobRef(o.inputs, 'inputs')
  const p = fields(o.provenance, ['commit', 'tree', 'recipe'], 'provenance')
  for (const k of ['commit', 'tree']) if (p[k] !== null && (typeof p[k] !== 'string' || !HEXID.test(p[k]))) fail(`provenance.${k}: not 40 or 64 lowercase hex`)
  if (p.recipe !== null) str(p.recipe, 0, 8192, 'provenance.recipe')
}

function checkPath (p) {
  str(p, 1, 4096, 'path')
  if (p.startsWith('/')) fail('path: absolute')
  if (p.includes('\0')) fail('path: NUL')
  for (const part of p.split('/')) if (part === '' || part === '.' || part === '..') fail('path: empty, . or .. part')
}

/** §7: sha256(canonical([exit_code, manifest])). */
export function resultDigest (exitCode, manifest) {
  return sha256(canonical([exitCode, manifest]))
}

// §4.4.1 the manifest blob
export const MAX_FILES = 1000000
export const MAX_MANIFEST_BYTES = 268435456
const ENTRY_MIN = 61
const ENTRY_MAX = 16456

/** §4.4: why `size` bytes cannot be a manifest of `files` entries, or null. */
export function manifestSizeError (files, size) {
  const n = BigInt(files); const z = BigInt(size)
  if (n < 0n || n > BigInt(MAX_FILES)) return 'files out of range'
  if (z > BigInt(MAX_MANIFEST_BYTES)) return 'manifest larger than 256 MiB'
  const h = n < 16n ? 1n : n <= 65535n ? 3n : 5n
  if (z < h + n * BigInt(ENTRY_MIN) || z > h + n * BigInt(ENTRY_MAX)) return `a manifest of ${n} entries cannot be ${z} bytes`
  return null
}

/** The manifest blob of a list of entries (plain objects), and the reveal fields naming it. */
export function manifestBlob (manifest) { return canonical(manifest) }
export function manifestFields (manifest) {
  const b = manifestBlob(manifest)
  return { manifest: { sha256: sha256(b), size: b.length }, files: manifest.length }
}

/** §7: the digest from the manifest blob's bytes: sha256(0x92 ‖ canonical(exit_code) ‖ blob). */
export function digestOfManifestBlob (exitCode, blob) {
  const head = canonical([exitCode, []])
  return sha256(head.slice(0, head.length - 1), blob)
}

class ManifestError extends ProtocolError {
  constructor (reason, msg) { super(`manifest blob: ${msg}`); this.reason = reason }
}

/** §4.4.1: check a fetched manifest blob against the reveal naming it ({sha256, files, exit_code, digest});
 * returns the entries, or throws a ManifestError whose `reason` is size, sha256, digest, encoding, count or entry. */
export function checkManifestBlob (blob, { sha256: want, files, exitCode, digest }) {
  const why = manifestSizeError(files, blob.length)
  if (why !== null) throw new ManifestError('size', why)
  if (cmpBytes(sha256(blob), want) !== 0) throw new ManifestError('sha256', 'sha256 does not match the reveal')
  if (cmpBytes(digestOfManifestBlob(exitCode, blob), digest) !== 0) throw new ManifestError('digest', 'does not match the reveal\'s digest and exit code')
  let items
  try { items = decodeCanonical(blob) } catch (e) {
    // a non-canonical map key order is an entry fault; anything else is the encoding's
    throw new ManifestError('encoding', e.message)
  }
  if (!Array.isArray(items)) throw new ManifestError('encoding', 'not a list')
  if (items.length !== Number(files)) throw new ManifestError('count', `${items.length} entries, the reveal says ${files}`)
  let prev = null
  items.forEach((e, i) => {
    try {
      const f = fields(e, ['mode', 'path', 'sha256', 'size'], 'manifest entry')
      intIn(f.mode, 0, 0o777, 'mode'); checkPath(f.path); bin(f.sha256, 32, 32, 'sha256'); bigIn(f.size, 'size')
      const pb = te.encode(f.path)
      if (prev !== null && cmpBytes(prev, pb) >= 0) fail('paths not sorted and distinct')
      prev = pb
    } catch (err) { throw new ManifestError('entry', `manifest[${i}]: ${err.message}`) }
  })
  return items
}

function checkBody (kind, b) {
  switch (kind) {
    case 'offer': return checkOffer(b)
    case 'claim': { const o = fields(b, ['job', 'lease_until', 'identity'], 'claim'); bin(o.job, 32, 32, 'job'); bigIn(o.lease_until, 'lease_until'); bin(o.identity, 0, 32, 'identity'); return }
    case 'commit': { const o = fields(b, ['job', 'hash'], 'commit'); bin(o.job, 32, 32, 'job'); bin(o.hash, 32, 32, 'hash'); return }
    case 'cancel': { const o = fields(b, ['job'], 'cancel'); bin(o.job, 32, 32, 'job'); return }
    case 'reveal': {
      const o = fields(b, ['job', 'digest', 'salt', 'exit_code', 'manifest', 'files', 'log', 'seen'], 'reveal')
      bin(o.job, 32, 32, 'job'); bin(o.digest, 32, 32, 'digest'); bin(o.salt, 16, 32, 'salt')
      intIn(o.exit_code, 0, 255, 'exit_code')
      intIn(o.files, 0, MAX_FILES, 'files')
      const m = blobRef(o.manifest, 'manifest')
      const why = manifestSizeError(o.files, m.size)
      if (why !== null) fail(`manifest.size: ${why}`)
      blobRef(o.log, 'log')
      const seen = arr(o.seen, 0, 1024, 'seen')
      for (const s of seen) bin(s, 32, 32, 'seen item')
      distinctBins(seen, 'seen', false)
      // §4.4: the digest is checked against the manifest blob when it is fetched (§4.4.1), not here
      return
    }
    case 'select': {
      const o = fields(b, ['job', 'round', 'seed', 'created', 'claims', 'workers'], 'select')
      bin(o.job, 32, 32, 'job'); intIn(o.round, 0, 255, 'round'); bin(o.seed, 32, 32, 'seed'); bigIn(o.created, 'created')
      const c = arr(o.claims, 0, 1024, 'claims'); for (const x of c) bin(x, 32, 32, 'claims item'); distinctBins(c, 'claims', true)
      const w = arr(o.workers, 0, 128, 'workers'); for (const x of w) bin(x, 32, 32, 'workers item'); distinctBins(w, 'workers', true)
      return
    }
    case 'decline': {
      const o = fields(b, ['job', 'reason', 'detail', 'log'], 'decline')
      bin(o.job, 32, 32, 'job')
      if (typeof o.reason !== 'string' || !REASON.test(o.reason) || o.reason.length > 32) fail('decline.reason: not a code')
      str(o.detail, 0, 1024, 'detail')
      if (o.log !== null) blobRef(o.log, 'log')
      return
    }
    default: fail(`unknown kind ${kind}`)
  }
}

export function signingMessage (kind, body) {
  return new Uint8Array([...te.encode('p2pci/v2/' + kind), 0, ...canonical(body)])
}

/** Open an envelope; returns {id, kind, signer, body (plain object of Maps/values), bytes} or throws ProtocolError. */
export function openEnvelope (bytes) {
  if (!(bytes instanceof Uint8Array)) fail('envelope: not bytes')
  bytes = Uint8Array.from(bytes) // own copy: nothing below can touch the caller's buffer
  if (bytes.length > MAX_ENVELOPE) fail('envelope: larger than 65536 bytes')
  const v = decodeCanonical(bytes)
  if (!(v instanceof Map)) fail('envelope: not a map')
  if (v.get('v') === 1 && v.size === 5) fail('envelope: protocol version 1 is no longer accepted (this node speaks version 2)')
  const e = fields(v, ['body', 'kind', 'sig', 'signer', 'v'], 'envelope')
  if (e.v === 1) fail('envelope: protocol version 1 is no longer accepted (this node speaks version 2)')
  if (e.v !== 2) fail('envelope: v is not 2')
  if (typeof e.kind !== 'string' || !KINDS.includes(e.kind)) fail('envelope: unknown kind')
  bin(e.sig, 64, 64, 'sig'); bin(e.signer, 32, 32, 'signer')
  if (!(e.body instanceof Map)) fail('envelope: body is not a map')
  checkBody(e.kind, e.body)
  if (!verify(e.sig, signingMessage(e.kind, e.body), e.signer)) fail('envelope: bad signature')
  return { id: sha256(bytes), kind: e.kind, signer: e.signer, body: Object.fromEntries(e.body), bytes }
}

/** Seal a body (Map or plain object) with a 32-byte seed. */
export function seal (kind, body, seed, { v = 2, signer = null, sigOverride = null } = {}) {
  const sig = sigOverride ?? sign(signingMessage(kind, body), seed)
  return canonical({ body, kind, sig, signer: signer ?? publicKey(seed), v })
}

/** §2 identity proof of work. */
export function identityStrength (key, nonce) {
  const h = sha256(te.encode('p2pci/v2/identity'), key, nonce)
  return leadingZeros(h)
}
/** The reference way (§2): 8-byte big-endian counters from 0 (node:crypto's SHA-256 for speed). */
export function mintIdentity (key, bits) {
  const prefix = Buffer.concat([Buffer.from('p2pci/v2/identity'), Buffer.from(key)])
  const nonce = Buffer.alloc(8)
  for (let i = 0n; ; i++) {
    nonce.writeBigUInt64BE(i)
    const h = createHash('sha256').update(prefix).update(nonce).digest()
    if (leadingZeros(h) >= bits) {
      const n = new Uint8Array(nonce)
      if (identityStrength(key, n) < bits) throw new Error('mint: strength mismatch')
      return n
    }
  }
}
function leadingZeros (h) {
  let n = 0
  for (const c of h) { if (c === 0) { n += 8; continue } n += Math.clz32(c) - 24; break }
  return n
}
