// Promise.withResolvers is ES2024 (Node >= 22). js-libp2p 2.x's transitive
// dependencies (it-queue, mortice) call it; Debian's/NodeSource's Node 20 lacks
// it. This is the whole of it; import this module before anything libp2p.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
