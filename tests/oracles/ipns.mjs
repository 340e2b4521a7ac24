#!/usr/bin/env node
// JS reference oracle for IPNS records and keys, using the `ipns` and `@libp2p/crypto`
// packages pinned in package.json. One operation per run; results on stdout as JSON.
//
//   node ipns.mjs keygen KEYFILE
//       writes a new Ed25519 key as a libp2p PrivateKey protobuf; prints {"name":"k51…"}
//   node ipns.mjs create KEYFILE VALUE SEQ LIFETIME_MS TTL_NS OUT [v1v2|v2]
//       signs a record with the key in KEYFILE (any libp2p PrivateKey protobuf, e.g. one
//       written by `distfs key gen`); writes the marshalled record to OUT; prints {"name":…}
//   node ipns.mjs validate NAME RECORDFILE
//       runs the package's own validator (size, key vs. name, signature, V1/V2 agreement,
//       expiry) and prints the decoded fields {"value","sequence","validity","ttl"}
//
// Exit 1 with the package's error on stderr when validation or signing fails; 2 on usage.
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { createIPNSRecord, marshalIPNSRecord, multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { base36 } from 'multiformats/bases/base36'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { readFileSync, writeFileSync } from 'node:fs'

function die (code, msg) {
  process.stderr.write(`ipns.mjs: ${msg}\n`)
  process.exit(code)
}

const nameOf = (key) => key.publicKey.toCID().toString(base36)

function multihashOfName (name) {
  if (name.startsWith('k') || name.startsWith('b')) return CID.parse(name, base36).multihash
  return Digest.decode(base58btc.baseDecode(name))
}

const [op, ...args] = process.argv.slice(2)
try {
  if (op === 'keygen' && args.length === 1) {
    const key = await generateKeyPair('Ed25519')
    writeFileSync(args[0], privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
    process.stdout.write(JSON.stringify({ name: nameOf(key) }) + '\n')
  } else if (op === 'create' && (args.length === 6 || args.length === 7)) {
    const [keyFile, value, seq, lifetimeMs, ttlNs, out, shape = 'v1v2'] = args
    const key = privateKeyFromProtobuf(readFileSync(keyFile))
    const record = await createIPNSRecord(key, value, BigInt(seq), Number(lifetimeMs), {
      v1Compatible: shape === 'v1v2',
      ttlNs: BigInt(ttlNs)
    })
    writeFileSync(out, marshalIPNSRecord(record))
    process.stdout.write(JSON.stringify({ name: nameOf(key) }) + '\n')
  } else if (op === 'validate' && args.length === 2) {
    const [name, file] = args
    const bytes = readFileSync(file)
    await ipnsValidator(multihashToIPNSRoutingKey(multihashOfName(name)), bytes)
    const r = unmarshalIPNSRecord(bytes)
    process.stdout.write(JSON.stringify({
      value: r.value,
      sequence: r.sequence.toString(),
      validity: r.validity,
      ttl: r.ttl.toString()
    }) + '\n')
  } else {
    die(2, 'usage: ipns.mjs keygen KEYFILE | create KEYFILE VALUE SEQ LIFETIME_MS TTL_NS OUT [v1v2|v2] | validate NAME RECORDFILE')
  }
} catch (err) {
  die(1, `${err.name ?? 'Error'}: ${err.message}`)
}
