//! Tests of the whole-file tier: writing, proofs, checked reads, eviction.

use super::*;
use crate::block::{codec, Block};
use crate::store::disk::DiskStore;
use std::os::fd::AsRawFd;

const SIZE: usize = 3 * 1024 * 1024 + 77;

fn setup(dir: &Path, limit: Option<u64>) -> Arc<WholeFiles> {
    let disk = DiskStore::open_unsynced(dir).unwrap();
    WholeFiles::new(Arc::new(Quota::open(disk, limit).unwrap()))
}

fn content() -> (Cid, Vec<u8>) {
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 251) as u8).collect();
    // Any CID names the file here; a raw block's is the simplest to make.
    let cid = *Block::encode(cid::Version::V1, codec::RAW, Bytes::from_static(b"root")).cid();
    (cid, data)
}

fn reader(data: &[u8]) -> impl FnMut(u64, u64) -> Result<Bytes, String> + '_ {
    |off, len| {
        Ok(Bytes::copy_from_slice(
            &data[off as usize..(off + len) as usize],
        ))
    }
}

fn write_job(whole: &Arc<WholeFiles>) -> Ticket {
    match whole.begin(&content().0, SIZE as u64) {
        Some(Job::Write(t)) => t,
        other => panic!("expected a write, got {other:?}"),
    }
}

fn prove(whole: &Arc<WholeFiles>, size: u64) {
    match whole.begin(&content().0, size) {
        Some(Job::Prove(p)) => p.run(),
        other => panic!("expected a proof, got {other:?}"),
    }
}

/// A cache dir holding the test content's whole copy, written by a process of its own:
/// the dir, and the copy's path.
fn written_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let whole = setup(dir.path(), None);
    write_job(&whole).write(reader(&content().1)).unwrap();
    let path = whole.quota.disk().whole_path_of(&content().0);
    (dir, path)
}

#[test]
fn a_written_file_is_handed_out_and_proved_again_by_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let (cid, data) = content();
    let whole = setup(dir.path(), None);
    assert!(
        whole.open(&cid, SIZE as u64).is_none(),
        "nothing written yet"
    );
    let ticket = write_job(&whole);
    assert!(
        whole.begin(&cid, SIZE as u64).is_none(),
        "one job at a time"
    );
    ticket.write(reader(&data)).unwrap();
    assert!(
        whole.begin(&cid, SIZE as u64).is_none(),
        "written and proved"
    );
    let mut f = whole.open(&cid, SIZE as u64).expect("proved by its writer");
    let mut back = Vec::new();
    f.read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    assert_eq!(
        whole.quota.usage().bytes,
        SIZE as u64,
        "counted by the quota"
    );

    // A new process finds it and counts it, but hands it out only once proved.
    let again = setup(dir.path(), None);
    assert_eq!(again.quota.usage().bytes, SIZE as u64);
    assert!(again.open(&cid, SIZE as u64).is_none(), "not proved yet");
    prove(&again, SIZE as u64);
    assert_eq!(again.stats().proved, 1);
    assert!(again.open(&cid, SIZE as u64).is_some());
    assert_eq!(again.stats().opened, 1);

    // A hot restart hands the proofs over: no second read of the copy.
    let next = setup(dir.path(), None);
    next.restore_proved(&again.proved_snapshot());
    next.restore_proved(&["zz".into(), hex::encode(b"not a whole key")]);
    // A block's key whose digest happens to end in the mark's byte is no whole file's.
    let mut block_key = vec![0x12, 32];
    block_key.extend([9u8; 31]);
    block_key.push(WHOLE_MARK);
    next.quota.written_key(block_key.clone(), 10);
    next.restore_proved(&[hex::encode(&block_key)]);
    assert_eq!(next.proved_snapshot(), again.proved_snapshot());
    assert!(next.open(&cid, SIZE as u64).is_some());

    // Evicted like a block: the file goes, and is no longer handed out.
    again.quota.evict_to(0);
    assert!(!again.quota.disk().whole_path_of(&cid).exists());
    assert!(again.open(&cid, SIZE as u64).is_none());
}

#[test]
fn a_changed_or_short_whole_file_is_deleted_not_handed_out() {
    let (dir, path) = written_copy();
    let (cid, data) = content();
    // One flipped bit, in place (the seal attribute stays).
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[SIZE / 2] ^= 1;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all(&bytes)
        .unwrap();
    let again = setup(dir.path(), None);
    prove(&again, SIZE as u64);
    assert_eq!(again.stats().dropped, 1);
    assert!(!path.exists(), "the wrong whole file is deleted");
    assert_eq!(again.quota.usage().bytes, 0, "and forgotten by the quota");
    assert!(again.open(&cid, SIZE as u64).is_none());

    // A whole file written afresh, then asked for under another length.
    let third = setup(dir.path(), None);
    write_job(&third).write(reader(&data)).unwrap();
    let fourth = setup(dir.path(), None);
    prove(&fourth, SIZE as u64 + 1);
    assert_eq!(fourth.stats().dropped, 1);
    assert!(!path.exists());
    assert!(fourth.open(&cid, SIZE as u64).is_none());
}

#[test]
fn a_failed_write_leaves_nothing_and_a_full_cache_gets_no_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (cid, data) = content();
    let whole = setup(dir.path(), None);
    let mut calls = 0;
    let err = write_job(&whole)
        .write(|off, len| {
            calls += 1;
            if calls == 2 {
                Err("block missing".to_string())
            } else {
                reader(&data)(off, len)
            }
        })
        .unwrap_err();
    assert!(err.to_string().contains("block missing"), "{err}");
    let left = walkdir(whole.quota.disk().whole_dir());
    assert!(left.is_empty(), "left behind: {left:?}");
    assert_eq!(whole.quota.usage().bytes, 0);
    assert!(whole.open(&cid, SIZE as u64).is_none());
    // The turn is free again after a failure.
    assert!(!whole.is_busy());
    write_job(&whole);

    // A cache whose limit leaves no room under low water gets no copy.
    let small = tempfile::tempdir().unwrap();
    let tight = setup(small.path(), Some(SIZE as u64));
    assert!(tight.begin(&cid, SIZE as u64).is_none());
    // Files below the minimum are never copied.
    assert!(whole.begin(&cid, MIN_SIZE - 1).is_none());
}

/// `read_checked`, with its read-ahead run at once.
fn read_at(whole: &Arc<WholeFiles>, offset: u64, len: u64) -> Option<Bytes> {
    let (bytes, ahead) = whole.read_checked(&content().0, SIZE as u64, offset, len)?;
    if let Some(ahead) = ahead {
        ahead.run();
    }
    Some(bytes)
}

/// Reads all of `cid`'s file through `read_checked` in `step`-byte reads.
fn read_through(whole: &Arc<WholeFiles>, step: u64) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    while (out.len() as u64) < SIZE as u64 {
        let got = read_at(whole, out.len() as u64, step)?;
        assert!(!got.is_empty());
        out.extend_from_slice(&got);
    }
    Some(out)
}

#[test]
fn a_new_process_reads_a_copy_chunk_by_chunk_and_is_proved_at_its_end() {
    let (dir, _) = written_copy();
    let (cid, data) = content();
    let size = SIZE as u64;

    let again = setup(dir.path(), None);
    assert!(again.has_copy(&cid, size));
    assert!(again.open(&cid, size).is_none(), "not proved yet");
    // A read across a chunk boundary, one at the end, and one past it.
    let mid = (1 << 20) - 100;
    // (Their read-ahead of chunk 2 is not run.)
    let (got, ahead) = again.read_checked(&cid, size, mid, 300).unwrap();
    assert_eq!(got, data[mid as usize..mid as usize + 300]);
    assert_eq!(ahead.map(|a| a.chunk), Some(2));
    let got = read_at(&again, size - 10, 4096).unwrap();
    assert_eq!(got, data[SIZE - 10..]);
    assert!(read_at(&again, size, 10).unwrap().is_empty());
    assert_eq!(again.stats().proved, 0, "chunk 3 of 4 is unread");
    assert!(again.open(&cid, size).is_none());
    assert_eq!(read_through(&again, 128 * 1024).unwrap(), data);
    assert_eq!(again.stats().proved, 1, "every chunk checked");
    assert!(again.open(&cid, size).is_some());
    assert!(again.begin(&cid, size).is_none(), "no proof left to run");
    // Reads after the proof are plain reads of the copy.
    assert_eq!(read_through(&again, 1 << 20).unwrap(), data);
    assert_eq!(again.stats().proved, 1);
    // The chunks kept for those reads are bounded, and freed when the file is closed.
    let kept = || again.checking.kept.load(Ordering::Acquire);
    let most = checked::WINDOW as u64 * (1 << 20);
    assert!(kept() > 0 && kept() <= most, "{} bytes kept", kept());
    again.closed(&cid);
    assert_eq!(kept(), 0);

    // With no room to keep chunks, each is streamed through its check, and the reads
    // are read on their own: the same bytes, and the same proof.
    let tight = setup(dir.path(), None);
    tight
        .checking
        .kept
        .store(checked::BUDGET, Ordering::Release);
    assert_eq!(read_through(&tight, 100_000).unwrap(), data);
    assert_eq!(tight.stats().proved, 1);
    assert_eq!(tight.checking.kept.load(Ordering::Acquire), checked::BUDGET);

    // Evicted: nothing to read from, and its file is let go.
    again.quota.evict_to(0);
    assert!(!again.has_copy(&cid, size));
    assert!(read_at(&again, 0, 10).is_none());
    assert!(again.checking.get(&key_of(&cid)).is_none());
}

#[test]
fn a_wrong_chunk_deletes_the_copy_before_any_of_its_bytes_are_answered() {
    let (dir, path) = written_copy();
    let (cid, data) = content();
    let size = SIZE as u64;
    // One flipped bit in chunk 2, in place (the attributes stay).
    let at = (2 << 20) + 12345;
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &[data[at] ^ 4], at as u64).unwrap();

    let again = setup(dir.path(), None);
    let got = read_at(&again, 0, 1 << 20).unwrap();
    assert_eq!(got, data[..1 << 20], "chunk 0 is right");
    // A read-ahead of chunk 2, asked for now and run only after a read found it wrong:
    // the copy is dropped once, not once per reader that finds it.
    let (_, late) = again.read_checked(&cid, size, 1 << 20, 10).unwrap();
    let late = late.expect("a read-ahead");
    assert_eq!(late.chunk, 2);
    // A read of a few right bytes of the wrong chunk is refused all the same.
    assert!(read_at(&again, 2 << 20, 10).is_none());
    assert_eq!(again.stats().dropped, 1);
    late.run();
    assert_eq!(again.stats().dropped, 1, "dropped twice");
    assert!(!path.exists(), "the wrong copy is deleted");
    assert_eq!(again.quota.usage().bytes, 0, "and forgotten by the quota");
    assert!(read_at(&again, 0, 10).is_none());
    assert!(again.open(&cid, size).is_none());
}

#[test]
fn a_copy_without_sums_is_read_only_once_proved_and_gets_them_then() {
    let (dir, path) = written_copy();
    let (cid, data) = content();
    let size = SIZE as u64;
    let file = File::open(&path).unwrap();
    assert!(
        seal::read_sums(&file, &cid, size).is_some(),
        "written with sums"
    );
    // As a copy written before chunk sums existed.
    let rc = unsafe { libc::fremovexattr(file.as_raw_fd(), c"user.distfs.sums".as_ptr()) };
    assert_eq!(rc, 0);

    let again = setup(dir.path(), None);
    assert!(read_at(&again, 0, 10).is_none());
    prove(&again, size);
    assert_eq!(again.stats().proved, 1);
    assert_eq!(read_through(&again, 1 << 20).unwrap(), data);
    assert!(
        seal::read_sums(&file, &cid, size).is_some(),
        "the proof wrote them"
    );
    let third = setup(dir.path(), None);
    assert_eq!(read_through(&third, 1 << 20).unwrap(), data);
    assert_eq!(third.stats().proved, 1);
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for e in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            out.push(e.path());
        }
    }
    out
}
