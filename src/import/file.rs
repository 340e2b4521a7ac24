//! File DAGs: balanced and trickle layouts exactly as boxo builds them (SPECS.md §3.2–§3.4).
//!
//! Chunks are pulled one at a time; each leaf and internal node is encoded, hashed and handed
//! to the sink the moment it is complete, so memory is bounded by the tree's depth times the
//! max links per node (a few KiB of links each) plus one chunk, whatever the file size.
//!
//! Encoding rules that the CIDs depend on:
//! - dag-pb leaves are `Type=File` in the balanced layout and `Type=Raw` in trickle, with
//!   `Data` and `filesize`; raw leaves are CIDv1 raw blocks whatever the node CID version.
//! - internal nodes carry links `{Hash, Name "", Tsize}` and `Data = {Type=File,
//!   filesize=Σ, blocksizes=[…]}`; Tsize of a dag-pb child = its block length + Σ its links'
//!   Tsize, of a raw child = its length.
//! - an empty input in the balanced layout is a leaf with no `Data` field (`0a04 0802 1800`)
//!   or the empty raw block.
//! - mode/mtime go on the root only (boxo `FillMetadata` on the top-level node).

use std::io::{Read, Seek};

use bytes::Bytes;
use cid::Cid;
use prost::Message;

use super::chunker::{AnyChunker, Chunker};
use super::{BlockSink, ImportError, ImportOptions, Layout, Metadata};
use crate::block::{codec, Block, MAX_BLOCK_SIZE};
use crate::unixfs::pb::{encode_pb_node, Data, DataType, PbLink};

/// boxo's trickle `depthRepeat`: subtrees of each depth per node.
const DEPTH_REPEAT: usize = 4;

/// The root of an imported file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileNode {
    /// Root CID.
    pub cid: Cid,
    /// Cumulative size of the DAG (the Tsize a parent link records).
    pub tsize: u64,
    /// File bytes below the root.
    pub filesize: u64,
}

/// Imports the bytes of `reader` as one UnixFS file with `opts`, putting every block into
/// `sink`, and returns the root. `meta` is written on the root node (dag-pb leaves only:
/// callers resolve options so that metadata disables raw leaves, as Kubo does). The
/// `squashfs` chunker needs [`import_file_seekable`].
pub fn import_file<R: Read, S: BlockSink + ?Sized>(
    reader: R,
    opts: &ImportOptions,
    meta: &Metadata,
    sink: &mut S,
) -> Result<FileNode, ImportError> {
    check_links(opts)?;
    let chunks = opts.chunker.open(reader)?;
    import_chunks(chunks, opts, meta, sink)
}

/// [`import_file`] for a seekable input positioned at its start: every chunker, including
/// `squashfs` (which reads the image's tables before streaming the file).
pub fn import_file_seekable<R: Read + Seek, S: BlockSink + ?Sized>(
    reader: R,
    opts: &ImportOptions,
    meta: &Metadata,
    sink: &mut S,
) -> Result<FileNode, ImportError> {
    check_links(opts)?;
    let chunks = opts.chunker.open_seekable(reader)?;
    import_chunks(chunks, opts, meta, sink)
}

/// [`import_file`] with a chunker built by the caller (benchmarks: a squashfs chunker with
/// another maximum chunk size); `opts.chunker` is ignored.
pub fn import_chunked<R: Read, S: BlockSink + ?Sized>(
    chunks: AnyChunker<R>,
    opts: &ImportOptions,
    meta: &Metadata,
    sink: &mut S,
) -> Result<FileNode, ImportError> {
    check_links(opts)?;
    import_chunks(chunks, opts, meta, sink)
}

fn check_links(opts: &ImportOptions) -> Result<(), ImportError> {
    if opts.max_links < 2 {
        return Err(ImportError::InvalidOptions(format!(
            "max links per file node must be at least 2 (got {})",
            opts.max_links
        )));
    }
    Ok(())
}

fn import_chunks<R: Read, S: BlockSink + ?Sized>(
    chunks: AnyChunker<R>,
    opts: &ImportOptions,
    meta: &Metadata,
    sink: &mut S,
) -> Result<FileNode, ImportError> {
    let mut b = Builder {
        src: Lookahead {
            chunker: chunks,
            peeked: None,
        },
        opts,
        sink,
    };
    match opts.layout {
        Layout::Balanced => b.balanced(meta),
        Layout::Trickle => b.trickle(meta),
    }
}

/// A chunker with one chunk of lookahead (boxo's `Done()` peeks the same way).
struct Lookahead<R> {
    chunker: AnyChunker<R>,
    peeked: Option<Option<Vec<u8>>>,
}

impl<R: Read> Lookahead<R> {
    fn done(&mut self) -> Result<bool, ImportError> {
        if self.peeked.is_none() {
            let next = self.chunker.next_chunk().map_err(ImportError::stream_io)?;
            self.peeked = Some(next);
        }
        Ok(matches!(self.peeked, Some(None)))
    }

    fn next(&mut self) -> Result<Option<Vec<u8>>, ImportError> {
        match self.peeked.take() {
            Some(p) => Ok(p),
            None => self.chunker.next_chunk().map_err(ImportError::stream_io),
        }
    }
}

/// An internal node being filled.
#[derive(Default)]
struct Internal {
    links: Vec<PbLink>,
    blocksizes: Vec<u64>,
    child_tsize: u64,
}

impl Internal {
    fn add(&mut self, child: FileNode) {
        self.links.push(PbLink {
            hash: Some(child.cid.to_bytes()),
            name: Some(String::new()),
            tsize: Some(child.tsize),
        });
        self.blocksizes.push(child.filesize);
        self.child_tsize += child.tsize;
    }

    fn len(&self) -> usize {
        self.links.len()
    }
}

struct Builder<'a, R, S: ?Sized> {
    src: Lookahead<R>,
    opts: &'a ImportOptions,
    sink: &'a mut S,
}

impl<R: Read, S: BlockSink + ?Sized> Builder<'_, R, S> {
    /// A leaf. `data: None` is boxo's `NewLeafNode(nil)` (no Data field).
    fn leaf(
        &mut self,
        data: Option<Vec<u8>>,
        ty: DataType,
        meta: Option<&Metadata>,
    ) -> Result<FileNode, ImportError> {
        let filesize = data.as_ref().map_or(0, |d| d.len() as u64);
        if self.opts.raw_leaves {
            let block = Block::encode(
                cid::Version::V1,
                codec::RAW,
                Bytes::from(data.unwrap_or_default()),
            );
            return self.emit(block, 0, filesize, "raw leaf");
        }
        let bytes = match meta {
            None => encode_leaf(ty, data.as_deref(), filesize),
            Some(m) => {
                let mut ud = Data {
                    r#type: ty as i32,
                    data: data.map(Bytes::from),
                    filesize: Some(filesize),
                    ..Default::default()
                };
                m.apply(&mut ud);
                encode_pb_node(&[], Some(&ud.encode_to_vec()))
            }
        };
        let block = Block::encode(self.opts.cid_version, codec::DAG_PB, Bytes::from(bytes));
        self.emit(block, 0, filesize, "leaf")
    }

    fn next_leaf(
        &mut self,
        ty: DataType,
        meta: Option<&Metadata>,
    ) -> Result<FileNode, ImportError> {
        let chunk = self.src.next()?.unwrap_or_default();
        self.leaf(Some(chunk), ty, meta)
    }

    fn commit(&mut self, node: Internal, meta: Option<&Metadata>) -> Result<FileNode, ImportError> {
        let filesize: u64 = node.blocksizes.iter().sum();
        let mut ud = Data {
            r#type: DataType::File as i32,
            filesize: Some(filesize),
            blocksizes: node.blocksizes,
            ..Default::default()
        };
        if let Some(m) = meta {
            m.apply(&mut ud);
        }
        let bytes = encode_pb_node(&node.links, Some(&ud.encode_to_vec()));
        let block = Block::encode(self.opts.cid_version, codec::DAG_PB, Bytes::from(bytes));
        self.emit(block, node.child_tsize, filesize, "file")
    }

    fn emit(
        &mut self,
        block: Block,
        child_tsize: u64,
        filesize: u64,
        kind: &'static str,
    ) -> Result<FileNode, ImportError> {
        let size = block.data().len();
        if size > MAX_BLOCK_SIZE {
            return Err(ImportError::BlockTooLarge {
                kind,
                size,
                max: MAX_BLOCK_SIZE,
            });
        }
        let node = FileNode {
            cid: *block.cid(),
            tsize: size as u64 + child_tsize,
            filesize,
        };
        self.sink.put(block)?;
        Ok(node)
    }

    /// boxo `balanced.Layout`.
    fn balanced(&mut self, meta: &Metadata) -> Result<FileNode, ImportError> {
        let meta = (!meta.is_empty()).then_some(meta);
        if self.src.done()? {
            return self.leaf(None, DataType::File, meta);
        }
        let first = self.src.next()?.unwrap_or_default();
        let only = self.src.done()?;
        let mut root = self.leaf(Some(first), DataType::File, if only { meta } else { None })?;
        let mut depth = 1;
        while !self.src.done()? {
            let mut node = Internal::default();
            node.add(root);
            self.fill(&mut node, depth)?;
            let last = self.src.done()?;
            root = self.commit(node, if last { meta } else { None })?;
            depth += 1;
        }
        Ok(root)
    }

    /// boxo `fillNodeRec`.
    fn fill(&mut self, node: &mut Internal, depth: usize) -> Result<(), ImportError> {
        while node.len() < self.opts.max_links && !self.src.done()? {
            let child = if depth == 1 {
                self.next_leaf(DataType::File, None)?
            } else {
                let mut inner = Internal::default();
                self.fill(&mut inner, depth - 1)?;
                self.commit(inner, None)?
            };
            node.add(child);
        }
        Ok(())
    }

    /// boxo `trickle.Layout`: the root is always an internal node.
    fn trickle(&mut self, meta: &Metadata) -> Result<FileNode, ImportError> {
        let meta = (!meta.is_empty()).then_some(meta);
        let mut root = Internal::default();
        self.trickle_fill(&mut root, None)?;
        self.commit(root, meta)
    }

    /// boxo `fillTrickleRec`; `max_depth: None` is the unbounded root call (`-1`).
    fn trickle_fill(
        &mut self,
        node: &mut Internal,
        max_depth: Option<usize>,
    ) -> Result<(), ImportError> {
        while node.len() < self.opts.max_links && !self.src.done()? {
            let leaf = self.next_leaf(DataType::Raw, None)?;
            node.add(leaf);
        }
        let mut depth = 1;
        while max_depth.is_none_or(|m| depth < m) {
            if self.src.done()? {
                break;
            }
            let mut repeat = 0;
            while repeat < DEPTH_REPEAT && !self.src.done()? {
                let mut child = Internal::default();
                self.trickle_fill(&mut child, Some(depth))?;
                let child = self.commit(child, None)?;
                node.add(child);
                repeat += 1;
            }
            depth += 1;
        }
        Ok(())
    }
}

/// The bytes of a leaf without metadata, written in one pass (one copy of the chunk):
/// `PBNode{Data: UnixFS{Type, Data?, filesize}}` — the same bytes prost + `encode_pb_node`
/// produce (checked by a test).
fn encode_leaf(ty: DataType, data: Option<&[u8]>, filesize: u64) -> Vec<u8> {
    use prost::encoding::{encode_varint, encoded_len_varint};
    let ty = ty as i32 as u64;
    let mut inner = 1 + encoded_len_varint(ty) + 1 + encoded_len_varint(filesize);
    if let Some(d) = data {
        inner += 1 + encoded_len_varint(d.len() as u64) + d.len();
    }
    let mut out = Vec::with_capacity(1 + encoded_len_varint(inner as u64) + inner);
    out.push(0x0a);
    encode_varint(inner as u64, &mut out);
    out.push(0x08);
    encode_varint(ty, &mut out);
    if let Some(d) = data {
        out.push(0x12);
        encode_varint(d.len() as u64, &mut out);
        out.extend_from_slice(d);
    }
    out.push(0x18);
    encode_varint(filesize, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::{ChunkerSpec, VecSink};

    fn add(data: &[u8], opts: &ImportOptions) -> (FileNode, VecSink) {
        let mut sink = VecSink::default();
        let root = import_file(data, opts, &Metadata::default(), &mut sink).unwrap();
        (root, sink)
    }

    #[test]
    fn fast_leaf_encoding_matches_prost() {
        for len in [0usize, 1, 127, 128, 300, 70_000] {
            let chunk = vec![3u8; len];
            for ty in [DataType::File, DataType::Raw] {
                for data in [None, Some(chunk.as_slice())] {
                    let ud = Data {
                        r#type: ty as i32,
                        data: data.map(Bytes::copy_from_slice),
                        filesize: Some(len as u64),
                        ..Default::default()
                    };
                    let want = encode_pb_node(&[], Some(&ud.encode_to_vec()));
                    assert_eq!(encode_leaf(ty, data, len as u64), want, "{len} {ty:?}");
                }
            }
        }
    }

    #[test]
    fn hello_world_is_kubo_leaf() {
        let (root, sink) = add(b"hello world\n", &ImportOptions::default());
        assert_eq!(
            root.cid.to_string(),
            "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"
        );
        assert_eq!(sink.blocks.len(), 1);
        assert_eq!(root.tsize, 20);
    }

    #[test]
    fn empty_file_encodings() {
        let (root, sink) = add(b"", &ImportOptions::default());
        assert_eq!(hex::encode(sink.blocks[0].data()), "0a0408021800");
        assert_eq!(
            root.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        let raw = ImportOptions {
            raw_leaves: true,
            ..Default::default()
        };
        let (root, _) = add(b"", &raw);
        assert_eq!(
            root.cid.to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        let trickle = ImportOptions {
            layout: Layout::Trickle,
            ..Default::default()
        };
        let (root, _) = add(b"", &trickle);
        assert_eq!(
            root.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
    }

    #[test]
    fn buzhash_files_have_no_empty_leaves() {
        // kubo#6953: go-ipfs < 0.5 buzhash appended an empty leaf (QmaRwA91…, `0a06 0802
        // 1200 1800`) when the data ended on a cut, and turned an empty file into that leaf.
        // Since go-ipfs-chunker#22 neither happens; Kubo 0.22+ behave like this.
        use crate::import::buzhash::{BUZ_MAX, BYTEHASH};
        let opts = ImportOptions {
            chunker: ChunkerSpec::Buzhash,
            ..Default::default()
        };
        let (root, _) = add(b"", &opts);
        assert_eq!(
            root.cid.to_string(),
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
        );
        // A byte whose window hash never hits a boundary: 512 KiB is cut at its very end and
        // the file is exactly that one leaf.
        let odd = (0u8..=255)
            .find(|b| BYTEHASH[usize::from(*b)].count_ones() % 2 == 1)
            .unwrap();
        let (root, sink) = add(&vec![odd; BUZ_MAX], &opts);
        assert_eq!(sink.blocks.len(), 1);
        assert_eq!(root.filesize, BUZ_MAX as u64);
        // Two such buffers: a root with exactly two 512 KiB children.
        let (root, sink) = add(&vec![odd; 2 * BUZ_MAX], &opts);
        let root_block = sink.blocks.iter().find(|b| b.cid() == &root.cid).unwrap();
        let node = crate::unixfs::pb::PbNode::decode(root_block.data().as_ref()).unwrap();
        let ud = Data::decode(node.data.unwrap().as_slice()).unwrap();
        assert_eq!(ud.blocksizes, vec![BUZ_MAX as u64, BUZ_MAX as u64]);
    }

    #[test]
    fn multiblock_fixture_shape() {
        // gateway-conformance multiblock.txt: 1026 bytes, size-256, raw leaves, CIDv1:
        // 5 leaves [256,256,256,256,2] under one 245-byte root.
        let data: Vec<u8> = (0..1026u32).map(|i| (i / 256 + i * 7) as u8).collect();
        let opts = ImportOptions {
            cid_version: cid::Version::V1,
            raw_leaves: true,
            chunker: ChunkerSpec::Size(256),
            ..Default::default()
        };
        let (root, sink) = add(&data, &opts);
        assert_eq!(sink.blocks.len(), 6);
        let root_block = sink.blocks.last().unwrap();
        assert_eq!(root_block.cid(), &root.cid);
        let node = crate::unixfs::pb::PbNode::decode(root_block.data().as_ref()).unwrap();
        let ud = Data::decode(node.data.unwrap().as_slice()).unwrap();
        assert_eq!(ud.blocksizes, vec![256, 256, 256, 256, 2]);
        assert_eq!(root_block.data().len(), 245);
        assert_eq!(root.tsize, 245 + 1026);
    }

    #[test]
    fn balanced_175_chunks_is_two_links() {
        // 175 chunks at width 174: root with a full 174-leaf node and a 1-leaf node.
        let data = vec![5u8; 175 * 4];
        let opts = ImportOptions {
            chunker: ChunkerSpec::Size(4),
            ..Default::default()
        };
        let (root, sink) = add(&data, &opts);
        let root_block = sink.blocks.iter().find(|b| b.cid() == &root.cid).unwrap();
        let node = crate::unixfs::pb::PbNode::decode(root_block.data().as_ref()).unwrap();
        let ud = Data::decode(node.data.unwrap().as_slice()).unwrap();
        assert_eq!(ud.blocksizes, vec![174 * 4, 4]);
        assert_eq!(root.filesize, 700);
    }
}

#[cfg(test)]
mod metadata_tests {
    use super::*;
    use crate::import::{ChunkerSpec, Mtime, VecSink};

    fn decode(block: &Block) -> Data {
        let node = crate::unixfs::pb::PbNode::decode(block.data().as_ref()).unwrap();
        Data::decode(node.data.unwrap().as_slice()).unwrap()
    }

    #[test]
    fn mode_and_mtime_go_on_the_root_only() {
        let meta = Metadata {
            mode: Some(0o644),
            mtime: Some(Mtime {
                seconds: 1_700_000_000,
                nanos: 0,
            }),
        };
        let opts = ImportOptions {
            chunker: ChunkerSpec::Size(4),
            ..Default::default()
        };
        let data: Vec<u8> = (0..10u8).collect();
        let mut sink = VecSink::default();
        let root = import_file(&data[..], &opts, &meta, &mut sink).unwrap();
        for b in &sink.blocks {
            let ud = decode(b);
            if b.cid() == &root.cid {
                assert_eq!(ud.mode, Some(0o644));
                let t = ud.mtime.unwrap();
                assert_eq!(t.seconds, Some(1_700_000_000));
                // A zero fraction is not written (SPECS.md §2.3).
                assert_eq!(t.fractional_nanoseconds, None);
            } else {
                assert_eq!((ud.mode, ud.mtime), (None, None));
            }
        }
        // A single-chunk file is its leaf, which then carries the metadata itself.
        let mut sink = VecSink::default();
        let root = import_file(&b"abc"[..], &opts, &meta, &mut sink).unwrap();
        assert_eq!(sink.blocks.len(), 1);
        assert_eq!(decode(&sink.blocks[0]).mode, Some(0o644));
        assert_ne!(
            root.cid,
            import_file(&b"abc"[..], &opts, &Metadata::default(), &mut sink)
                .unwrap()
                .cid
        );
    }
}
