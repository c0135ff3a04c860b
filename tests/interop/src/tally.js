// Selection (§5) and tally (§6), written from docs/protocol.md alone.
import { cmpBytes } from './codec.js'
import { sha256, hex, peerId, eqBytes } from './crypto.js'
import { identityStrength } from './facts.js'

const K = b => Buffer.from(b).toString('hex') // map key for bytes
const byBytes = (a, b) => cmpBytes(a, b)
const sortKeys = keys => [...keys].sort(byBytes)
const pids = keys => sortKeys(keys).map(peerId)
const bigOf = v => BigInt(v)

export const R_NOT_PUBLISHER = "not signed by the offer's publisher"
export const R_SEED = "seed does not match the offer's select_commit"
export const R_CLAIM = 'lists a claim this node does not hold (yet)'
export const R_PREV = 'does not list every claim of the previous round'
export const R_RANK = 'workers are not the lowest-ranked eligible listed claimants'
export const R_REQUIRE = 'leaves out an eligible listed require key'
export const R_NOT_ELIGIBLE = 'selects a key that is not an eligible listed claimant'
export const R_CREATED = "created is before the offer's or the previous round's, or at or after the deadline"
export const R_TWICE = 'the publisher signed two different selects for this round'
export const R_EARLIER = 'an earlier round is missing, invalid or equivocal'

// §6: the exact reason strings of an EXPIRED verdict
export const X_NO_SELECTION = 'the publisher never selected workers (it must stay online until selection is done)'
export const X_NO_QUORUM = 'not enough agreeing votes by the deadline'

function keySet (arr) { const m = new Map(); for (const k of arr) m.set(K(k), k); return m }

/** Selection chain: {rounds: [{round, fact, workers(Map)}], ignored: [...], selected: Map hex->key, R: Set} */
export function selection (offer, facts, jobId) {
  const o = offer.body
  const publisher = offer.signer
  const allow = o.workers === 'open' ? null : keySet(o.workers)
  const reqKeys = o.require === null ? new Map() : keySet(o.require.get('keys'))
  const claimsById = new Map()
  for (const f of facts) if (f.kind === 'claim' && eqBytes(f.body.job, jobId)) claimsById.set(K(f.id), f)
  const ignored = []
  const byRound = new Map()
  for (const f of facts) {
    if (f.kind !== 'select' || !eqBytes(f.body.job, jobId)) continue
    if (!eqBytes(f.signer, publisher)) { ignored.push({ f, reason: R_NOT_PUBLISHER }); continue }
    const r = Number(f.body.round)
    if (!byRound.has(r)) byRound.set(r, [])
    byRound.get(r).push(f)
  }
  const rounds = []
  let prev = null
  let dropped = new Map() // X
  let ended = false
  const maxRound = Math.max(-1, ...byRound.keys())
  for (let r = 0; r <= maxRound; r++) {
    const fs = byRound.get(r) || []
    if (ended || fs.length === 0) { ended = true; for (const f of fs) ignored.push({ f, reason: R_EARLIER }); continue }
    if (fs.length > 1) { ended = true; for (const f of fs) ignored.push({ f, reason: R_TWICE }); continue }
    const f = fs[0]; const s = f.body
    const reason = checkRound(s, r, prev, dropped)
    if (reason !== null) { ended = true; ignored.push({ f, reason }); continue }
    rounds.push({ round: r, fact: f, workers: keySet(s.workers) })
    if (prev !== null) {
      const Kset = ranked(prev.body.workers)
      for (const [h, k] of Kset) if (!s.workers.some(w => K(w) === h)) dropped.set(h, k)
    }
    prev = f
  }

  function ranked (workers) { return new Map([...keySet(workers)].filter(([h]) => !reqKeys.has(h))) }

  // §5: the checks of one round, in the document's order; the first that fails is the reason
  function checkRound (s, r, prevF, X) {
    if (!eqBytes(sha256(s.seed), o.select_commit)) return R_SEED
    const created = bigOf(s.created)
    if (created < bigOf(o.created) || created >= bigOf(o.deadline)) return R_CREATED
    if (prevF !== null && created < bigOf(prevF.body.created)) return R_CREATED
    for (const c of s.claims) if (!claimsById.has(K(c))) return R_CLAIM
    if (prevF !== null) {
      const listed = new Set(s.claims.map(K))
      for (const c of prevF.body.claims) if (!listed.has(K(c))) return R_PREV
    }
    // eligible keys of the listed claims
    const E = new Map()
    for (const c of s.claims) {
      const cf = claimsById.get(K(c))
      const h = K(cf.signer)
      if (allow !== null && !allow.has(h)) continue
      if (identityStrength(cf.signer, cf.body.identity) < Number(o.identity_bits)) continue
      E.set(h, cf.signer)
    }
    const R = new Map([...E].filter(([h]) => reqKeys.has(h)))
    const P = new Map([...E].filter(([h]) => !reqKeys.has(h)))
    const W = keySet(s.workers)
    if ([...W.keys()].some(h => !E.has(h))) return R_NOT_ELIGIBLE
    if ([...R.keys()].some(h => !W.has(h))) return R_REQUIRE
    const rankOf = k => sha256(s.seed, jobId, k)
    const lowest = (m, n) => [...m.values()].map(k => [rankOf(k), k]).sort((a, b) => cmpBytes(a[0], b[0])).slice(0, Math.max(0, n)).map(x => x[1])
    let expect
    if (prevF === null) {
      expect = keySet([...R.values(), ...lowest(P, Number(o.replicas))])
    } else {
      const Kset = ranked(prevF.body.workers)
      const D = new Map([...Kset].filter(([h]) => !W.has(h)))
      const Xp = new Map([...X, ...D])
      const kept = [...Kset].filter(([h]) => !D.has(h)).map(([, k]) => k)
      const pool = new Map([...P].filter(([h]) => !Kset.has(h) && !Xp.has(h)))
      expect = keySet([...R.values(), ...kept, ...lowest(pool, Number(o.replicas) - kept.length)])
    }
    const same = expect.size === W.size && [...W.keys()].every(h => expect.has(h))
    if (!same) return R_RANK
    return null
  }

  const selected = new Map()
  for (const rd of rounds) for (const [h, k] of rd.workers) selected.set(h, k)
  return { rounds, ignored, selected }
}

/**
 * tally(facts of job J, now, observer policy) -> the verdict object of §6.
 * facts: opened envelopes (see facts.js) — the node's facts, any order.
 * policy: {count: 'all'|'listed', trusted: [key], quorum: int|null, require: {keys, min}|null}
 */
export function tally (jobId, allFacts, now, policy = { count: 'all', trusted: [], quorum: null, require: null }) {
  const facts = allFacts.filter(f => f.kind === 'offer' ? eqBytes(f.id, jobId) : eqBytes(f.body.job, jobId))
  const out = {
    job: hex(jobId), project: null, verdict: 'PENDING', digest: null, replicas: null, quorum: null,
    groups: [], dissenters: [], equivocators: [], ignored: [], reason: null, rounds: [], ignored_selects: [], missing: [], declines: []
  }
  const offer = facts.find(f => f.kind === 'offer')
  if (!offer) return out
  const o = offer.body
  out.project = o.project; out.replicas = Number(o.replicas); out.quorum = Number(o.quorum)
  const { rounds, ignored: badSelects, selected: S } = selection(offer, facts, jobId)
  out.rounds = rounds.map(r => ({ round: r.round, select: hex(r.fact.id), created: Number(r.fact.body.created), workers: pids(r.workers.values()) }))
  out.ignored_selects = badSelects
    .sort((a, b) => (Number(a.f.body.round) - Number(b.f.body.round)) || cmpBytes(a.f.id, b.f.id))
    .map(({ f, reason }) => ({ select: hex(f.id), round: Number(f.body.round), signer: peerId(f.signer), reason }))

  const allow = o.workers === 'open' ? null : keySet(o.workers)
  const offerReq = o.require === null ? null : { keys: keySet(o.require.get('keys')), min: Number(o.require.get('min')) }
  const obsReq = policy.require ? { keys: keySet(policy.require.keys), min: policy.require.min } : null
  const trusted = keySet(policy.trusted || [])
  const byId = (a, b) => cmpBytes(a.id, b.id)
  const commits = new Map(); const reveals = new Map(); const declines = new Map()
  const keys = new Map()
  for (const f of facts) {
    const m = f.kind === 'commit' ? commits : f.kind === 'reveal' ? reveals : f.kind === 'decline' ? declines : null
    if (m === null) continue
    const h = K(f.signer); keys.set(h, f.signer)
    if (!m.has(h)) m.set(h, [])
    m.get(h).push(f)
  }
  for (const m of [commits, reveals, declines]) for (const l of m.values()) l.sort(byId)

  const equivocators = new Map()
  for (const [h, k] of S) if ((commits.get(h)?.length ?? 0) >= 2 || (reveals.get(h)?.length ?? 0) >= 2) equivocators.set(h, k)
  out.equivocators = pids(equivocators.values())

  const ignored = []
  const candidates = []
  for (const h of [...reveals.keys()].sort((a, b) => cmpBytes(keys.get(a), keys.get(b)))) {
    const key = keys.get(h)
    if (!S.has(h)) { ignored.push([key, 'not selected by the publisher']); continue }
    if (equivocators.has(h)) continue
    if (declines.has(h)) { ignored.push([key, 'declined its place']); continue } // §6 2.3: a decline voids the vote
    if (allow !== null && !allow.has(h)) { ignored.push([key, "not in the offer's allowlist"]); continue }
    if (policy.count === 'listed' && !trusted.has(h)) { ignored.push([key, "not in the observer's trust set"]); continue }
    if (!commits.has(h)) { ignored.push([key, 'no commit']); continue }
    const c = commits.get(h)[0]; const r = reveals.get(h)[0]
    if (!eqBytes(sha256(r.body.salt, r.body.digest, key), c.body.hash)) { ignored.push([key, 'reveal does not match its commit']); continue }
    candidates.push({ h, key, commit: c, reveal: r, digest: r.body.digest, exit: Number(r.body.exit_code) })
  }
  // witness rule
  const exempt = v => (allow !== null && allow.has(v.h)) || (offerReq !== null && offerReq.keys.has(v.h)) ||
    (obsReq !== null && obsReq.keys.has(v.h)) || !candidates.some(w => w !== v && eqBytes(w.digest, v.digest))
  const ex = new Set(candidates.filter(exempt))
  let C = new Set(candidates)
  for (;;) {
    const drop = [...C].filter(v => !ex.has(v) && ![...C].some(w => w !== v && eqBytes(w.digest, v.digest) &&
      w.reveal.body.seen.some(s => eqBytes(s, v.commit.id))))
    if (drop.length === 0) break
    for (const v of drop) { C.delete(v); ignored.push([v.key, 'commit not in the seen list of another counted vote for the same digest (possible copy)']) }
  }
  out.ignored = ignored.sort((a, b) => cmpBytes(a[0], b[0])).map(([k, reason]) => ({ worker: peerId(k), reason }))

  const groupsM = new Map()
  for (const v of C) {
    const g = K(v.digest) + ':' + v.exit
    if (!groupsM.has(g)) groupsM.set(g, { digest: v.digest, exit_code: v.exit, votes: [] })
    groupsM.get(g).votes.push(v)
  }
  const groups = [...groupsM.values()].sort((a, b) => (b.votes.length - a.votes.length) || cmpBytes(a.digest, b.digest) || (a.exit_code - b.exit_code))
  out.groups = groups.map(g => ({ digest: hex(g.digest), exit_code: g.exit_code, workers: pids(g.votes.map(v => v.key)) }))

  const N = Math.max(Number(o.quorum), policy.quorum ?? 0)
  const satisfies = g => [offerReq, obsReq].every(q => q === null || g.votes.filter(v => q.keys.has(v.h)).length >= q.min)
  const decisive = groups.filter(g => g.votes.length >= N && satisfies(g))
  const cancelled = facts.some(f => f.kind === 'cancel' && eqBytes(f.signer, offer.signer))
  let winner = null
  if (cancelled) out.verdict = 'CANCELLED'
  else if (decisive.length >= 2) out.verdict = 'DISPUTED'
  else if (decisive.length === 1) { winner = decisive[0]; out.verdict = winner.exit_code === 0 ? 'REPRODUCED' : 'FAILED'; out.digest = hex(winner.digest) }
  else if (offerReq === null && obsReq === null && !groups.some(g => g.votes.length >= N) && C.size >= Math.max(Number(o.replicas), N)) out.verdict = 'DISPUTED'
  else if (BigInt(now) >= BigInt(o.deadline)) {
    out.verdict = 'EXPIRED'
    out.reason = rounds.length === 0 ? X_NO_SELECTION : X_NO_QUORUM
  }
  if (winner !== null) out.dissenters = pids([...C].filter(v => !winner.votes.includes(v)).map(v => v.key))

  const latest = rounds.length ? rounds[rounds.length - 1].workers : new Map()
  const missing = new Map()
  for (const [h, k] of S) {
    if (reveals.has(h)) continue
    if (commits.has(h) || (latest.has(h) && !declines.has(h))) missing.set(h, k)
  }
  out.missing = pids(missing.values())
  const dl = []
  for (const [h, l] of declines) if (S.has(h)) for (const f of l) dl.push([f.signer, f.body.reason, f.body.detail])
  dl.sort((a, b) => cmpBytes(a[0], b[0]) || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0) || (a[2] < b[2] ? -1 : a[2] > b[2] ? 1 : 0))
  out.declines = dl.map(([k, reason, detail]) => ({ worker: peerId(k), reason, detail }))
  return out
}

export const C_NO_CLAIM = 'no eligible worker claimed the job'
export const C_PUBLISHER_GONE = 'publisher gone: workers claimed, nobody selected them'

/**
 * The informative keys of the verdict object (§6, "The reference verdict object also has these
 * keys"): cause, workers, created, deadlines. `v` is tally()'s result for the same facts.
 */
export function informative (jobId, allFacts, v) {
  const facts = allFacts.filter(f => f.kind === 'offer' ? eqBytes(f.id, jobId) : eqBytes(f.body.job, jobId))
  const offer = facts.find(f => f.kind === 'offer')
  if (!offer) return { cause: null, workers: [], created: null, deadlines: null }
  const o = offer.body
  const { rounds, selected: S } = selection(offer, facts, jobId)
  const latest = rounds.length ? rounds[rounds.length - 1].workers : new Map()
  const by = kind => {
    const m = new Map()
    for (const f of facts) if (f.kind === kind) { const h = K(f.signer); if (!m.has(h)) m.set(h, []); m.get(h).push(f) }
    for (const l of m.values()) l.sort((a, b) => cmpBytes(a.id, b.id))
    return m
  }
  const claims = by('claim'); const commits = by('commit'); const reveals = by('reveal'); const declines = by('decline')
  const keys = new Map()
  for (const m of [claims, commits, reveals, declines]) for (const [h, l] of m) keys.set(h, l[0].signer)
  for (const [h, k] of S) keys.set(h, k)
  // each decliner's first decline by fact id
  const first = new Map([...declines].map(([h, l]) => [h, l[0].body]))

  // workers: selected keys first, then by key bytes; at most 256; then sorted by key bytes
  const ordered = [...keys.values()]
    .sort((a, b) => (Number(!S.has(K(a))) - Number(!S.has(K(b)))) || cmpBytes(a, b))
    .slice(0, 256).sort(byBytes)
  const workers = ordered.map(k => {
    const h = K(k); const d = first.get(h) ?? null
    let phase
    if (reveals.has(h)) phase = 'revealed'
    else if (d !== null) phase = d.reason === 'timeout' ? 'timed_out' : 'declined'
    else if (commits.has(h)) phase = 'committed'
    else if (latest.has(h)) phase = 'selected'
    else if (S.has(h)) phase = 'dropped'
    else phase = 'claimed'
    return {
      worker: peerId(k), phase, selected: S.has(h),
      reason: d === null ? null : d.reason, detail: d === null ? null : d.detail,
      log: d === null || d.log === null ? null : hex(d.log.get('sha256'))
    }
  })

  let cause = null
  if (v.verdict === 'EXPIRED') {
    const counts = new Map()
    for (const d of first.values()) counts.set(d.reason, (counts.get(d.reason) ?? 0) + 1)
    const ranked = [...counts].sort((a, b) => (b[1] - a[1]) || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
    const rest = ranked.slice(8).reduce((n, [, c]) => n + c, 0)
    const declined = `${first.size} declined: ` + [...ranked.slice(0, 8).map(([c, n]) => `${n} ${c}`), ...(rest ? [`${rest} other`] : [])].join(', ')
    const parts = []
    if (rounds.length === 0) {
      parts.push(claims.size ? C_PUBLISHER_GONE : C_NO_CLAIM + (first.size ? '; ' + declined : ''))
    } else {
      if (S.size === 0) parts.push('no worker was selected')
      if (first.size) {
        parts.push(declined)
        const timeouts = [...first.values()].filter(d => d.reason === 'timeout').length
        if (timeouts) parts.push(`${timeouts} timed out`)
      }
      if (v.missing.length) parts.push(`${v.missing.length} selected worker(s) did not reveal`)
    }
    cause = parts.length ? parts.join('; ') : null
  }
  const created = Number(o.created)
  const reveal = Math.min(created + Number(o.limits.get('timeout_s')) * 1000 + 30000, Number(o.deadline))
  return {
    cause,
    workers,
    created,
    deadlines: { claim_window_end: created + Number(o.claim_window), reveal, offer: Number(o.deadline) }
  }
}
