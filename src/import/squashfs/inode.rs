//! Walking a decoded squashfs inode table: where each regular file's data blocks start and
//! its list of block size words. Every read is bounds-checked against the table; each inode
//! takes at least 20 bytes, so the walk ends within the table whatever the inode count says.

use super::meta::{u16_at, u32_at, u64_at};

/// "No fragment" in a file inode.
const NO_FRAGMENT: u32 = u32::MAX;

/// One regular file's data: the first block's offset (image-relative) and the 4-byte block
/// size words, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileBlocks<'t> {
    /// Where the first block starts.
    pub start: u64,
    /// `4 × block count` bytes of size words.
    pub words: &'t [u8],
}

/// The regular files among the first `inode_count` inodes of table `t`, in table order.
pub fn regular_files(
    t: &[u8],
    inode_count: u32,
    block_size: u32,
    fragments: u32,
) -> Result<Vec<FileBlocks<'_>>, &'static str> {
    let block_size = u64::from(block_size);
    let need = |pos: usize, n: usize| -> Result<(), &'static str> {
        if pos.checked_add(n).is_none_or(|e| e > t.len()) {
            Err("inode runs past the table")
        } else {
            Ok(())
        }
    };
    let mut files = Vec::new();
    let mut pos = 0usize;
    for _ in 0..inode_count {
        need(pos, 16)?;
        let ty = u16_at(t, pos);
        let body = pos + 16;
        // Layouts: squashfs 4.0, after the 16-byte common header.
        let (start, size, frag, list) = match ty {
            1 => {
                pos = body + 16; // basic directory
                continue;
            }
            2 => {
                // basic file: start u32, fragment u32, offset u32, size u32, blocks
                need(body, 16)?;
                (
                    u64::from(u32_at(t, body)),
                    u64::from(u32_at(t, body + 12)),
                    u32_at(t, body + 4),
                    body + 16,
                )
            }
            3 | 10 => {
                // symlink: nlink u32, target size u32, target (+ xattr u32 when extended)
                need(body, 8)?;
                let target = u32_at(t, body + 4) as usize;
                pos = (body + 8)
                    .saturating_add(target)
                    .saturating_add(if ty == 10 { 4 } else { 0 });
                continue;
            }
            4 | 5 => {
                pos = body + 8; // device: nlink, rdev
                continue;
            }
            6 | 7 => {
                pos = body + 4; // fifo, socket: nlink
                continue;
            }
            8 => {
                // extended directory: 24 bytes, then index entries with names
                need(body, 24)?;
                let count = u16_at(t, body + 16);
                pos = body + 24;
                for _ in 0..count {
                    need(pos, 12)?;
                    pos = (pos + 13).saturating_add(u32_at(t, pos + 8) as usize);
                }
                continue;
            }
            9 => {
                // extended file: start u64, size u64, sparse u64, nlink, fragment, offset,
                // xattr, blocks
                need(body, 40)?;
                (
                    u64_at(t, body),
                    u64_at(t, body + 8),
                    u32_at(t, body + 28),
                    body + 40,
                )
            }
            11 | 12 => {
                pos = body + 12; // extended device: nlink, rdev, xattr
                continue;
            }
            13 | 14 => {
                pos = body + 8; // extended fifo, socket: nlink, xattr
                continue;
            }
            _ => return Err("unknown inode type"),
        };
        if frag != NO_FRAGMENT && frag >= fragments {
            return Err("file names a fragment that does not exist");
        }
        // The tail is in a fragment unless there is none; then it is a short last block.
        let count = if frag == NO_FRAGMENT {
            size.div_ceil(block_size)
        } else {
            size / block_size
        };
        let count = usize::try_from(count).map_err(|_| "file too large")?;
        need(list, count.saturating_mul(4))?;
        files.push(FileBlocks {
            start,
            words: &t[list..list + 4 * count],
        });
        pos = list + 4 * count;
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ty: u16) -> Vec<u8> {
        let mut h = ty.to_le_bytes().to_vec();
        h.resize(16, 0);
        h
    }

    #[test]
    fn finds_files_among_other_inodes() {
        let mut t = header(1);
        t.extend([0u8; 16]); // basic dir
        t.extend(header(3));
        t.extend(1u32.to_le_bytes());
        t.extend(3u32.to_le_bytes());
        t.extend(b"abc"); // symlink "abc"
        t.extend(header(2));
        for v in [1000u32, NO_FRAGMENT, 0, 5000] {
            t.extend(v.to_le_bytes()); // start, no fragment, offset, 5000 bytes
        }
        for w in [100u32, 200] {
            t.extend(w.to_le_bytes()); // two blocks (4096-byte blocks)
        }
        let files = regular_files(&t, 3, 4096, 0).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].start, 1000);
        assert_eq!(files[0].words.len(), 8);
        // A count that claims more inodes than the table holds, a missing block list, a
        // fragment that does not exist, an unknown type: errors, not panics.
        assert!(regular_files(&t, 4, 4096, 0).is_err());
        assert!(regular_files(&t[..t.len() - 1], 3, 4096, 0).is_err());
        let mut frag = t.clone();
        let f = frag.len() - 8 - 12;
        frag[f..f + 4].copy_from_slice(&7u32.to_le_bytes());
        assert!(regular_files(&frag, 3, 4096, 0).is_err());
        assert!(regular_files(&header(99), 1, 4096, 0).is_err());
    }
}
