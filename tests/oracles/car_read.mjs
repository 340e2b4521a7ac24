#!/usr/bin/env node
// JS reference oracle for CAR files: reads a CARv1 with `@ipld/car` (streaming, so large
// CARs are fine), re-hashes every block and checks it against its CID, and prints
//   {"version":1,"roots":["<cid>",...],"blocks":["<cid>",...],"bytes":<total block bytes>}
// on stdout (block CIDs in file order, duplicates kept). Exit 1 with the offending CID on
// stderr if a block does not verify or the hash function is unknown; 2 on usage errors.
//
// Usage: node car_read.mjs FILE.car
import { CarBlockIterator } from '@ipld/car/iterator'
import { identity } from 'multiformats/hashes/identity'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import { createReadStream } from 'node:fs'

const HASHERS = new Map([[sha256.code, sha256], [sha512.code, sha512], [identity.code, identity]])

function die (code, msg) {
  process.stderr.write(`car_read: ${msg}\n`)
  process.exit(code)
}

function equalBytes (a, b) {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

const file = process.argv[2]
if (file == null || process.argv.length !== 3) die(2, 'usage: car_read.mjs FILE.car')

let iter
try {
  iter = await CarBlockIterator.fromIterable(createReadStream(file))
} catch (err) {
  die(1, `${file}: not a readable CARv1: ${err.message}`)
}
const roots = (await iter.getRoots()).map(c => c.toString())
const blocks = []
let bytes = 0
try {
  for await (const { cid, bytes: data } of iter) {
    const hasher = HASHERS.get(cid.multihash.code)
    if (hasher == null) die(1, `${cid}: unsupported multihash code 0x${cid.multihash.code.toString(16)}`)
    const digest = await hasher.digest(data)
    if (!equalBytes(digest.bytes, cid.multihash.bytes)) die(1, `${cid}: block bytes do not match the CID`)
    blocks.push(cid.toString())
    bytes += data.length
  }
} catch (err) {
  die(1, `${file}: ${err.message}`)
}
process.stdout.write(JSON.stringify({ version: iter.version, roots, blocks, bytes }) + '\n')
