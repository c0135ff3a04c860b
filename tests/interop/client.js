#!/usr/bin/env node
// An independent p2pci client, written from docs/protocol.md (version 2) alone.
//
//   node client.js vectors DIR            check every test vector (exit 1 on a disagreement)
//   node client.js informative DIR        the informative keys of every job vector, one JSON object
//   node client.js session --peer MA ...  join a mesh; then read commands on stdin:
//        equivocate PROJECT  claim every offer of PROJECT, and once selected commit twice and reveal (test-only)
//        claim JOBHEX [BITS] sign and gossip a claim (identity proof of work at BITS, default: the offer's), answer {"claimed": id}
//        held FACTHEX        sync with every peer until each holds the fact, answer {"held": {peer: true|false}}
//        report JOBHEX ...   pull every fact over /p2pci/sync/1 from every peer, tally, answer the verdicts
//        via FACTHEX         how this client got a fact: ["gossip"], ["sync"], both, or [] (not held)
//        quit
// --no-sign: GossipSub in StrictNoSign mode; --no-serve: do not serve /p2pci/sync/1 (then a fact of
// ours reaches the daemons only over gossip: `held` never offers it).
// Every answer is one JSON line on stdout; logs go to stderr.
import './src/polyfill.js'
import { createInterface } from 'node:readline'
import { randomBytes } from 'node:crypto'
import { checkVectors, informativeOfVectors } from './src/vectors.js'
import { openEnvelope, seal, mintIdentity, resultDigest, manifestFields } from './src/facts.js'
import { tally, informative } from './src/tally.js'
import { hex, unhex, publicKey, peerId, sha256 } from './src/crypto.js'
import { createNode, Framed, multiaddr, TOPIC, SYNC, PEERS, TopicValidatorResult } from './src/net.js'

const log = (...a) => console.error(new Date().toISOString(), ...a)
const say = obj => process.stdout.write(JSON.stringify(obj) + '\n')

async function session (peers, { signPolicy, serve }) {
  const seed = new Uint8Array(randomBytes(32))
  const pub = publicKey(seed)
  const node = await createNode(seed, { signPolicy })
  if (node.peerId.toString() !== peerId(pub)) throw new Error(`§2 peer ID mismatch: libp2p ${node.peerId} vs doc ${peerId(pub)}`)
  const store = new Map() // hex id -> {fact, via:Set}
  const rejected = {}
  const counts = { gossip: 0, sync: 0, duplicate: 0 }
  const reject = why => { const k = why.replace(/: .*/, ''); rejected[k] = (rejected[k] || 0) + 1 }
  function accept (bytes, via) {
    let f
    try { f = openEnvelope(bytes) } catch (e) { reject(e.message); log('rejected', via, e.message); return null }
    const h = hex(f.id)
    if (store.has(h)) { counts.duplicate++; store.get(h).via.add(via); return f }
    counts[via]++
    store.set(h, { fact: f, via: new Set([via]) })
    setImmediate(() => worker(f).catch(e => say({ event: 'error', error: e.stack || e.message })))
    return f
  }

  // Test-only misbehaviour: claim offers of one project, then commit twice (an equivocator, §6 2.2).
  let equivocate = null
  const work = new Map()
  async function publish (env) { accept(env, 'gossip'); await ps.publish(TOPIC, env); return openEnvelope(env) }
  async function worker (f) {
    if (equivocate === null) return
    if (f.kind === 'offer' && f.body.project === equivocate && !work.has(hex(f.id))) {
      const bits = Number(f.body.identity_bits)
      if (bits > 20) { say({ event: 'error', error: `identity_bits ${bits} too costly for the test client` }); return }
      const st = { job: f.id, committed: false, revealed: false }
      work.set(hex(f.id), st)
      const c = await publish(seal('claim', { job: f.id, lease_until: Date.now() + 60000, identity: mintIdentity(pub, bits) }, seed))
      say({ event: 'claimed', job: hex(f.id), claim: hex(c.id) })
      return
    }
    if (f.kind !== 'select' || !work.has(hex(f.body.job))) return
    const st = work.get(hex(f.body.job))
    if (st.committed || !f.body.workers.some(w => Buffer.compare(w, pub) === 0)) return
    st.committed = true
    const te = new TextEncoder()
    const manifest = [{ mode: 0o644, path: 'equivocation.txt', sha256: sha256(te.encode('x')), size: 1 }]
    const digest = resultDigest(0, manifest)
    const salts = [new Uint8Array(randomBytes(16)), new Uint8Array(randomBytes(16))]
    const commits = []
    for (const salt of salts) commits.push([salt, await publish(seal('commit', { job: st.job, hash: sha256(salt, digest, pub) }, seed))])
    say({ event: 'committed', job: hex(st.job), commits: commits.map(([, c]) => hex(c.id)) })
    // §5 step 5: reveal once every selected worker has committed (or after 20 s)
    const t0 = Date.now()
    const selectedKeys = f.body.workers.map(hex)
    while (Date.now() - t0 < 20000) {
      const committers = new Set([...store.values()].filter(x => x.fact.kind === 'commit' && Buffer.compare(x.fact.body.job, st.job) === 0).map(x => hex(x.fact.signer)))
      if (selectedKeys.every(k => committers.has(k))) break
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const seen = [...store.values()].filter(x => x.fact.kind === 'commit' && Buffer.compare(x.fact.body.job, st.job) === 0).map(x => x.fact.id).sort(Buffer.compare)
    const [salt] = commits.sort((a, b) => Buffer.compare(a[1].id, b[1].id))[0]
    const r = await publish(seal('reveal', { job: st.job, digest, salt, exit_code: 0, ...manifestFields(manifest), log: { sha256: sha256(te.encode('no log')), size: 6 }, seen }, seed))
    say({ event: 'revealed', job: hex(st.job), reveal: hex(r.id) })
  }
  const ps = node.services.pubsub
  ps.topicValidators.set(TOPIC, (_peer, msg) => {
    try { openEnvelope(msg.data); return TopicValidatorResult.Accept } catch (e) { reject(e.message); log('rejected gossip:', e.message); return TopicValidatorResult.Reject }
  })
  ps.addEventListener('message', evt => { if (evt.detail.topic === TOPIC) accept(evt.detail.data, 'gossip') })
  ps.subscribe(TOPIC)

  // optional protocols, served so that daemons can sync with and learn from us
  if (serve) await node.handle(SYNC, async ({ stream }) => {
    const f = new Framed(stream)
    try {
      const req = await f.recv()
      const theirs = new Set((req.get('ids') || []).map(hex))
      const facts = []; let size = 0; let more = false
      for (const [h, { fact }] of store) {
        if (theirs.has(h)) continue
        if (size + fact.bytes.length > 4 * 1024 * 1024) { more = true; break }
        facts.push(fact.bytes); size += fact.bytes.length
      }
      const want = [...theirs].filter(h => !store.has(h)).map(unhex)
      f.send({ facts, want, more })
      // §8.3: the client always sends the third frame, {facts: []} when want is empty
      for (const b of (await f.recv()).get('facts') || []) accept(b, 'sync')
    } catch (e) { log('sync server:', e.message) } finally { await f.close() }
  })
  await node.handle(PEERS, async ({ stream }) => {
    const f = new Framed(stream)
    try { await f.recv(); f.send({ addrs: node.getMultiaddrs().map(String), peers: [] }) } catch (e) { log('peers server:', e.message) } finally { await f.close() }
  })

  const daemonIds = []
  for (const a of peers) {
    const ma = multiaddr(a)
    await node.dial(ma)
    daemonIds.push(ma.getPeerId())
  }
  const t0 = Date.now()
  while (!daemonIds.every(id => ps.getSubscribers(TOPIC).some(p => p.toString() === id))) {
    if (Date.now() - t0 > 20000) throw new Error('daemons never subscribed to ' + TOPIC)
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  const joinMs = Date.now() - t0
  log('joined', node.peerId.toString(), 'in', joinMs, 'ms')

  async function syncWith (peer, exclude = new Set()) {
    const got = new Set()
    const extra = []
    for (let round = 0; round < 16; round++) {
      const stream = await node.dialProtocol(peerIdOf(peer), SYNC)
      const f = new Framed(stream)
      try {
        const ids = [...store.keys()].filter(h => !exclude.has(h)).map(unhex).concat(extra)
        f.send({ ids })
        const rep = await f.recv()
        for (const b of rep.get('facts') || []) { const x = accept(b, 'sync'); if (x) { got.add(hex(x.id)); extra.push(x.id) } }
        const want = (rep.get('want') || []).map(hex).filter(h => store.has(h))
        f.send({ facts: want.map(h => store.get(h).fact.bytes) })
        if (rep.get('more') !== true) break
      } finally { await f.close() }
    }
    return got
  }
  const peerIdOf = s => node.getConnections().find(c => c.remotePeer.toString() === s)?.remotePeer ?? multiaddr(peers[daemonIds.indexOf(s)])

  say({ ready: node.peerId.toString(), join_ms: joinMs, protocols: node.getProtocols() })
  const rl = createInterface({ input: process.stdin })
  for await (const line of rl) {
    const [cmd, ...args] = line.trim().split(/\s+/)
    try {
      if (cmd === 'claim') {
        const [job, given] = args
        const offer = store.get(job)?.fact
        const bits = given !== undefined ? Number(given) : offer ? Number(offer.body.identity_bits) : 0
        const t = Date.now()
        const identity = mintIdentity(pub, bits)
        const env = seal('claim', { job: unhex(job), lease_until: Date.now() + 30000, identity }, seed)
        accept(env, 'gossip')
        await ps.publish(TOPIC, env)
        say({ claimed: hex(openEnvelope(env).id), mint_ms: Date.now() - t, identity: hex(identity) })
      } else if (cmd === 'equivocate') {
        equivocate = args[0]
        say({ equivocating: equivocate })
      } else if (cmd === 'held') {
        const [id] = args
        const held = {}
        for (const p of daemonIds) {
          const deadline = Date.now() + 15000
          held[p] = false
          while (Date.now() < deadline) {
            const got = await syncWith(p, new Set([id]))
            if (got.has(id)) { held[p] = true; break }
            await new Promise(resolve => setTimeout(resolve, 200))
          }
        }
        say({ held })
      } else if (cmd === 'report') {
        const pulled = {}
        for (const p of daemonIds) pulled[p] = (await syncWith(p)).size
        const facts = [...store.values()].map(x => x.fact)
        const jobs = {}
        for (const j of args) {
          const v = tally(unhex(j), facts, Date.now())
          jobs[j] = { ...v, ...informative(unhex(j), facts, v) }
        }
        const byVia = { gossip: 0, sync: 0, both: 0 }
        for (const { via } of store.values()) byVia[via.size === 2 ? 'both' : [...via][0]]++
        const kinds = {}
        for (const { fact, via } of store.values()) {
          const k = kinds[fact.kind] ??= { gossip: 0, sync: 0 }
          for (const v of via) k[v]++
        }
        say({ jobs, counts, by_via: byVia, kinds, pulled, rejected, total: store.size })
      } else if (cmd === 'via') {
        const x = store.get(args[0])
        say({ via: x ? [...x.via].sort() : [] })
      } else if (cmd === 'quit') break
      else say({ error: `unknown command ${cmd}` })
    } catch (e) { say({ error: `${cmd}: ${e.stack || e.message}` }) }
  }
  await node.stop()
}

const argv = process.argv.slice(2)
if (argv[0] === 'vectors') {
  const r = checkVectors(argv[1])
  for (const f of r.failures) console.log('FAIL', f)
  console.log(`${r.checked - r.failures.length} passed, ${r.failures.length} failed`)
  process.exit(r.failures.length ? 1 : 0)
} else if (argv[0] === 'informative') {
  console.log(JSON.stringify(informativeOfVectors(argv[1])))
} else if (argv[0] === 'session') {
  const peers = []; let signPolicy = 'StrictSign'; let serve = true
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--peer') peers.push(argv[++i])
    else if (argv[i] === '--no-sign') signPolicy = 'StrictNoSign'
    else if (argv[i] === '--no-serve') serve = false
  }
  session(peers, { signPolicy, serve }).then(() => process.exit(0), e => { log(e.stack || e.message); process.exit(1) })
} else {
  console.error('usage: node client.js vectors DIR | informative DIR | session --peer MULTIADDR ... [--no-sign] [--no-serve]')
  process.exit(2)
}
