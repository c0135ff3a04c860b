// Canonical msgpack (docs/protocol.md §1), written from the document.
// Values: null, boolean, number (safe integers) or bigint (other integers),
// string, Uint8Array (bin), Array, Map (str keys; decoded maps keep wire order).

export const MAX_DEPTH = 16
const U64_MAX = (1n << 64n) - 1n
const I64_MIN = -(1n << 63n)

export class ProtocolError extends Error {}

const te = new TextEncoder()
const td = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

export function isInt (v) {
  return (typeof v === 'number' && Number.isSafeInteger(v)) || typeof v === 'bigint'
}

function cmpBytes (a, b) {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return a.length - b.length
}
export { cmpBytes }

class Writer {
  constructor () { this.buf = new Uint8Array(256); this.n = 0 }
  need (k) {
    if (this.n + k <= this.buf.length) return
    let m = this.buf.length * 2
    while (m < this.n + k) m *= 2
    const b = new Uint8Array(m); b.set(this.buf.subarray(0, this.n)); this.buf = b
  }
  byte (x) { this.need(1); this.buf[this.n++] = x }
  be (x, len) { // x: bigint, big-endian in len bytes
    this.need(len)
    for (let i = len - 1; i >= 0; i--) { this.buf[this.n + i] = Number(x & 0xffn); x >>= 8n }
    this.n += len
  }
  bytes (b) { this.need(b.length); this.buf.set(b, this.n); this.n += b.length }
  out () { return this.buf.slice(0, this.n) }
}

function encInt (w, v) {
  const x = BigInt(v)
  if (x > U64_MAX || x < I64_MIN) throw new ProtocolError('int out of range')
  if (x >= 0n) {
    if (x < 128n) w.byte(Number(x))
    else if (x <= 0xffn) { w.byte(0xcc); w.be(x, 1) }
    else if (x <= 0xffffn) { w.byte(0xcd); w.be(x, 2) }
    else if (x <= 0xffffffffn) { w.byte(0xce); w.be(x, 4) }
    else { w.byte(0xcf); w.be(x, 8) }
  } else {
    if (x >= -32n) w.byte(Number(x & 0xffn))
    else if (x >= -128n) { w.byte(0xd0); w.be(x & 0xffn, 1) }
    else if (x >= -32768n) { w.byte(0xd1); w.be(x & 0xffffn, 2) }
    else if (x >= -2147483648n) { w.byte(0xd2); w.be(x & 0xffffffffn, 4) }
    else { w.byte(0xd3); w.be(x & 0xffffffffffffffffn, 8) }
  }
}

function encLen (w, n, fix, fixMax, c8, c16, c32) {
  if (n <= fixMax && fix !== null) w.byte(fix | n)
  else if (n <= 0xff && c8 !== null) { w.byte(c8); w.be(BigInt(n), 1) }
  else if (n <= 0xffff) { w.byte(c16); w.be(BigInt(n), 2) }
  else { w.byte(c32); w.be(BigInt(n), 4) }
}

function encode (w, v, depth) {
  if (depth > MAX_DEPTH) throw new ProtocolError('nesting too deep')
  if (v === null) w.byte(0xc0)
  else if (v === true) w.byte(0xc3)
  else if (v === false) w.byte(0xc2)
  else if (isInt(v)) encInt(w, v)
  else if (typeof v === 'number') throw new ProtocolError('floats are not allowed')
  else if (typeof v === 'string') {
    const b = te.encode(v)
    encLen(w, b.length, 0xa0, 31, 0xd9, 0xda, 0xdb); w.bytes(b)
  } else if (v instanceof Uint8Array) {
    encLen(w, v.length, null, -1, 0xc4, 0xc5, 0xc6); w.bytes(v)
  } else if (Array.isArray(v)) {
    encLen(w, v.length, 0x90, 15, null, 0xdc, 0xdd)
    for (const x of v) encode(w, x, depth + 1)
  } else if (typeof v === 'object') {
    const entries = (v instanceof Map ? [...v.entries()] : Object.entries(v))
      .map(([k, x]) => {
        if (typeof k !== 'string') throw new ProtocolError('map keys must be str')
        return [te.encode(k), k, x]
      })
      .sort((a, b) => cmpBytes(a[0], b[0]))
    encLen(w, entries.length, 0x80, 15, null, 0xde, 0xdf)
    for (let i = 0; i < entries.length; i++) {
      if (i > 0 && cmpBytes(entries[i - 1][0], entries[i][0]) === 0) throw new ProtocolError('duplicate map key')
      encode(w, entries[i][1], depth + 1)
      encode(w, entries[i][2], depth + 1)
    }
  } else throw new ProtocolError(`cannot encode ${typeof v}`)
}

/** Canonical bytes of a value (maps: Map or plain object; keys sorted by UTF-8 bytes). */
export function canonical (v) {
  const w = new Writer(); encode(w, v, 0); return w.out()
}

class Reader {
  constructor (b) { this.b = b; this.i = 0 }
  take (n) {
    if (this.i + n > this.b.length) throw new ProtocolError('truncated')
    const s = this.b.subarray(this.i, this.i + n); this.i += n; return s
  }
  u (n) { let x = 0n; for (const c of this.take(n)) x = (x << 8n) | BigInt(c); return x }
}

function num (x) { return (x <= BigInt(Number.MAX_SAFE_INTEGER) && x >= BigInt(Number.MIN_SAFE_INTEGER)) ? Number(x) : x }
function signed (x, bits) { const m = 1n << BigInt(bits - 1); return x >= m ? x - (m << 1n) : x }

function dec (r, depth) {
  if (depth > MAX_DEPTH) throw new ProtocolError('nesting too deep')
  const t = r.take(1)[0]
  if (t <= 0x7f) return t
  if (t >= 0xe0) return t - 256
  if ((t & 0xf0) === 0x80) return decMap(r, t & 0x0f, depth)
  if ((t & 0xf0) === 0x90) return decArr(r, t & 0x0f, depth)
  if ((t & 0xe0) === 0xa0) return decStr(r, t & 0x1f)
  switch (t) {
    case 0xc0: return null
    case 0xc2: return false
    case 0xc3: return true
    case 0xc4: return Uint8Array.from(r.take(Number(r.u(1)))) // a copy, also when the input is a Buffer
    case 0xc5: return Uint8Array.from(r.take(Number(r.u(2))))
    case 0xc6: return Uint8Array.from(r.take(Number(r.u(4))))
    case 0xcc: return num(r.u(1))
    case 0xcd: return num(r.u(2))
    case 0xce: return num(r.u(4))
    case 0xcf: return num(r.u(8))
    case 0xd0: return num(signed(r.u(1), 8))
    case 0xd1: return num(signed(r.u(2), 16))
    case 0xd2: return num(signed(r.u(4), 32))
    case 0xd3: return num(signed(r.u(8), 64))
    case 0xd9: return decStr(r, Number(r.u(1)))
    case 0xda: return decStr(r, Number(r.u(2)))
    case 0xdb: return decStr(r, Number(r.u(4)))
    case 0xdc: return decArr(r, Number(r.u(2)), depth)
    case 0xdd: return decArr(r, Number(r.u(4)), depth)
    case 0xde: return decMap(r, Number(r.u(2)), depth)
    case 0xdf: return decMap(r, Number(r.u(4)), depth)
    default: throw new ProtocolError(`type byte 0x${t.toString(16)} not allowed (float, ext or reserved)`)
  }
}
function decStr (r, n) {
  try { return td.decode(r.take(n)) } catch (e) {
    if (e instanceof ProtocolError) throw e
    throw new ProtocolError('str is not valid UTF-8')
  }
}
function decArr (r, n, depth) {
  if (n > r.b.length - r.i) throw new ProtocolError('truncated')
  const a = []; for (let k = 0; k < n; k++) a.push(dec(r, depth + 1)); return a
}
function decMap (r, n, depth) {
  if (2 * n > r.b.length - r.i) throw new ProtocolError('truncated')
  const m = new Map()
  for (let k = 0; k < n; k++) {
    const key = dec(r, depth + 1)
    if (typeof key !== 'string') throw new ProtocolError('map key is not str')
    if (m.has(key)) throw new ProtocolError('duplicate map key')
    m.set(key, dec(r, depth + 1))
  }
  return m
}

/** Plain msgpack decode (stream payloads, §8: any valid encoding). */
export function decodeLoose (bytes) {
  const r = new Reader(bytes)
  if (!(bytes instanceof Uint8Array)) throw new ProtocolError('not bytes')
  const v = dec(r, 0)
  if (r.i !== bytes.length) throw new ProtocolError('trailing bytes')
  return v
}

/** Strict decode (§1): valid only if re-encoding gives exactly the bytes. */
export function decodeCanonical (bytes) {
  const v = decodeLoose(bytes)
  const again = canonical(v)
  if (cmpBytes(again, bytes) !== 0) throw new ProtocolError('not canonical')
  return v
}
