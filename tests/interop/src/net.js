// The libp2p side (§8): TCP + Noise + Yamux + identify + GossipSub on /p2pci/board/1,
// the anti-entropy stream /p2pci/sync/1 and peer exchange /p2pci/peers/1.
import { createLibp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import { gossipsub } from '@chainsafe/libp2p-gossipsub'
import { TopicValidatorResult } from '@libp2p/interface'
import { generateKeyPairFromSeed } from '@libp2p/crypto/keys'
import { multiaddr } from '@multiformats/multiaddr'
import { canonical, decodeLoose, ProtocolError } from './codec.js'
import { sha256 } from './crypto.js'

export const TOPIC = '/p2pci/board/1'
export const SYNC = '/p2pci/sync/1'
export const PEERS = '/p2pci/peers/1'
const MAX_FRAME = 8 * 1024 * 1024
const TIMEOUT_MS = 10000

export async function createNode (seed, { signPolicy = 'StrictSign' } = {}) {
  const privateKey = await generateKeyPairFromSeed('Ed25519', seed)
  return createLibp2p({
    privateKey,
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        globalSignaturePolicy: signPolicy,
        msgIdFn: msg => sha256(msg.data), // §8.1 message id = sha256(data) = fact id
        D: 6, Dlo: 4, Dhi: 12, heartbeatInterval: 1000, mcacheLength: 5, mcacheGossip: 3,
        doPX: false, allowPublishToZeroTopicPeers: true, emitSelf: false,
        pruneBackoff: 5000, unsubcribeBackoff: 5000
      })
    }
  })
}

/** A framed duplex over a libp2p 2.x stream: 4-byte big-endian length + msgpack map (§8). */
export class Framed {
  constructor (stream) {
    this.stream = stream
    this.it = stream.source[Symbol.asyncIterator]()
    this.buf = new Uint8Array(0)
    this.queue = []; this.wake = null; this.ended = false
    const self = this
    this.sinkDone = stream.sink((async function * () {
      for (;;) {
        while (self.queue.length) yield self.queue.shift()
        if (self.ended) return
        await new Promise(resolve => { self.wake = resolve })
      }
    })()).catch(() => {})
  }
  send (obj) {
    const p = canonical(obj)
    const f = new Uint8Array(4 + p.length)
    new DataView(f.buffer).setUint32(0, p.length)
    f.set(p, 4)
    this.queue.push(f); if (this.wake) { this.wake(); this.wake = null }
  }
  endWrite () { this.ended = true; if (this.wake) { this.wake(); this.wake = null } }
  async need (n, deadline) {
    while (this.buf.length < n) {
      const left = deadline - Date.now()
      if (left <= 0) throw new ProtocolError('read timeout')
      let timer
      const r = await Promise.race([this.it.next(), new Promise((resolve, reject) => { timer = setTimeout(() => reject(new ProtocolError('read timeout')), left) })])
      clearTimeout(timer)
      if (r.done) throw new ProtocolError('stream ended')
      const chunk = r.value.subarray()
      const b = new Uint8Array(this.buf.length + chunk.length); b.set(this.buf); b.set(chunk, this.buf.length); this.buf = b
    }
  }
  async recv (timeoutMs = TIMEOUT_MS, maxFrame = MAX_FRAME) {
    const deadline = Date.now() + timeoutMs
    await this.need(4, deadline)
    const n = new DataView(this.buf.buffer, this.buf.byteOffset).getUint32(0)
    if (n > maxFrame) throw new ProtocolError(`frame of ${n} bytes`)
    await this.need(4 + n, deadline)
    const payload = this.buf.slice(4, 4 + n); this.buf = this.buf.slice(4 + n)
    const v = decodeLoose(payload)
    if (!(v instanceof Map)) throw new ProtocolError('payload is not a map')
    return v
  }
  async close () { this.endWrite(); await this.sinkDone; try { await this.stream.close() } catch {} }
}

export { multiaddr, TopicValidatorResult }
