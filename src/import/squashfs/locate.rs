//! Where a file's squashfs image starts: at 0 (a bare image), where an AppImage runtime
//! puts it — the end of its ELF section header table, `e_shoff + e_shentsize × e_shnum` —
//! or, for an ELF file whose sections end elsewhere, at the first valid superblock in its
//! first [`SCAN_WINDOW`] bytes.

use std::io;

use super::image::{ImageSource, Superblock, Unrecognized, MAGIC, SUPERBLOCK_LEN};

/// How far into an ELF file a superblock is searched for when the section headers do not
/// end at one.
pub const SCAN_WINDOW: u64 = 2 << 20;
/// How many `hsqs` candidates the ELF scan tries.
const MAX_CANDIDATES: usize = 64;

/// The image's start and superblock, or why there is none.
pub fn locate<S: ImageSource>(src: &mut S) -> io::Result<Result<(u64, Superblock), Unrecognized>> {
    let size = src.size();
    let mut first_bad = None;
    let mut try_at = |src: &mut S, at: u64| -> io::Result<Option<Superblock>> {
        if at.checked_add(SUPERBLOCK_LEN).is_none_or(|end| end > size) {
            return Ok(None);
        }
        let mut b = [0u8; 96];
        src.read_at(at, &mut b)?;
        match Superblock::parse(&b, size - at) {
            Ok(sb) => Ok(Some(sb)),
            Err("no magic") => Ok(None),
            Err(reason) => {
                first_bad.get_or_insert(Unrecognized::BadSuperblock { offset: at, reason });
                Ok(None)
            }
        }
    };
    if let Some(sb) = try_at(src, 0)? {
        return Ok(Ok((0, sb)));
    }
    let mut head = [0u8; 64];
    if size >= 64 {
        src.read_at(0, &mut head)?;
    }
    if &head[..4] == b"\x7fELF" {
        if let Some(end) = elf_end(&head) {
            if let Some(sb) = try_at(src, end)? {
                return Ok(Ok((end, sb)));
            }
        }
        let mut window = vec![0u8; usize::try_from(size.min(SCAN_WINDOW)).unwrap_or(0)];
        src.read_at(0, &mut window)?;
        let hits = window
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == MAGIC)
            .take(MAX_CANDIDATES)
            .map(|(i, _)| i as u64)
            .collect::<Vec<_>>();
        for at in hits {
            if let Some(sb) = try_at(src, at)? {
                return Ok(Ok((at, sb)));
            }
        }
    }
    Ok(Err(first_bad.unwrap_or(Unrecognized::NotFound)))
}

/// `e_shoff + e_shentsize * e_shnum` from an ELF header (32- or 64-bit, either byte order).
pub fn elf_end(h: &[u8; 64]) -> Option<u64> {
    let le = match h[5] {
        1 => true,
        2 => false,
        _ => return None,
    };
    let u16f = |at: usize| {
        let w = [h[at], h[at + 1]];
        u64::from(if le {
            u16::from_le_bytes(w)
        } else {
            u16::from_be_bytes(w)
        })
    };
    let (shoff, ent, num) = match h[4] {
        1 => {
            let w = [h[0x20], h[0x21], h[0x22], h[0x23]];
            let off = if le {
                u32::from_le_bytes(w)
            } else {
                u32::from_be_bytes(w)
            };
            (u64::from(off), u16f(0x2e), u16f(0x30))
        }
        2 => {
            let mut w = [0u8; 8];
            w.copy_from_slice(&h[0x28..0x30]);
            let off = if le {
                u64::from_le_bytes(w)
            } else {
                u64::from_be_bytes(w)
            };
            (off, u16f(0x3a), u16f(0x3c))
        }
        _ => return None,
    };
    shoff.checked_add(ent * num)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_end_reads_both_classes_and_orders() {
        let mut h = [0u8; 64];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2; // 64-bit
        h[5] = 1; // little-endian
        h[0x28..0x30].copy_from_slice(&33_680u64.to_le_bytes());
        h[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        h[0x3c..0x3e].copy_from_slice(&31u16.to_le_bytes());
        assert_eq!(elf_end(&h), Some(35_664));
        let mut b = [0u8; 64];
        b[4] = 1; // 32-bit
        b[5] = 2; // big-endian
        b[0x20..0x24].copy_from_slice(&1000u32.to_be_bytes());
        b[0x2e..0x30].copy_from_slice(&40u16.to_be_bytes());
        b[0x30..0x32].copy_from_slice(&10u16.to_be_bytes());
        assert_eq!(elf_end(&b), Some(1400));
        b[4] = 9;
        assert_eq!(elf_end(&b), None);
    }
}
