// Ed25519 with the verification rules of docs/protocol.md §3 (libsodium 1.0.18
// crypto_sign_verify_detached), SHA-256, and libp2p peer IDs (§2).
import { ed25519, ED25519_TORSION_SUBGROUP } from '@noble/curves/ed25519'
import { sha512, sha256 as nobleSha256 } from '@noble/hashes/sha2'

const Point = ed25519.ExtendedPoint
export const L = (1n << 252n) + 27742317777372353535851937790883648493n
export const P = (1n << 255n) - 19n

export function sha256 (...parts) {
  const h = nobleSha256.create()
  for (const p of parts) h.update(p)
  return h.digest()
}

export function le (b) { let x = 0n; for (let i = b.length - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]); return x }
export function leBytes (x, n = 32) { const b = new Uint8Array(n); for (let i = 0; i < n; i++) { b[i] = Number(x & 0xffn); x >>= 8n } return b }
export function hex (b) { return Buffer.from(b).toString('hex') }
export function unhex (s) { return new Uint8Array(Buffer.from(s, 'hex')) }
export function eqBytes (a, b) { if (a.length !== b.length) return false; for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false; return true }

// y coordinates (sign bit masked) of the 8 points of small order, plus the
// non-canonical twins y+p that still fit in 255 bits (p = 0+p, p+1 = 1+p).
const SMALL_ORDER_Y = new Set()
for (const h of ED25519_TORSION_SUBGROUP) {
  const b = unhex(h); b[31] &= 0x7f; SMALL_ORDER_Y.add(le(b))
}
for (const y of [...SMALL_ORDER_Y]) if (y + P < (1n << 255n)) SMALL_ORDER_Y.add(y + P)

// Uint8Array.from copies: Buffer#slice would be a view, and clearing the sign bit would
// then corrupt the caller's signature bytes (gossipsub hands validators a Buffer).
function yOf (enc) { const b = Uint8Array.from(enc); b[31] &= 0x7f; return le(b) }
export function hasSmallOrder (enc) { return SMALL_ORDER_Y.has(yOf(enc)) }
export function isCanonicalPoint (enc) { return yOf(enc) < P }

/** Strict verification, rules 1–4 of §3. */
export function verify (sig, msg, pub) {
  if (!(sig instanceof Uint8Array) || sig.length !== 64 || !(pub instanceof Uint8Array) || pub.length !== 32) return false
  const R = sig.subarray(0, 32)
  const S = le(sig.subarray(32, 64))
  if (S >= L) return false // 1. canonical S
  if (hasSmallOrder(R)) return false // 2. R not of small order
  if (!isCanonicalPoint(pub) || hasSmallOrder(pub)) return false // 3.
  let A
  try { A = Point.fromHex(pub, false) } catch { return false }
  const k = le(sha512(new Uint8Array([...R, ...pub, ...msg]))) % L
  const Rp = Point.BASE.multiplyUnsafe(S).subtract(A.multiplyUnsafe(k)) // 4. cofactorless
  return eqBytes(Rp.toRawBytes(), R)
}

export function publicKey (seed) { return ed25519.getPublicKey(seed) }
export function sign (msg, seed) { return ed25519.sign(msg, seed) }

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
export function base58 (b) {
  let x = 0n; for (const c of b) x = (x << 8n) | BigInt(c)
  let s = ''
  while (x > 0n) { s = B58[Number(x % 58n)] + s; x /= 58n }
  for (const c of b) { if (c !== 0) break; s = '1' + s }
  return s
}
/** §2: base58btc(00 24 08 01 12 20 ‖ key). */
export function peerId (key) { return base58(new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20, ...key])) }
