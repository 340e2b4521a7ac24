//! Read planning: which part of a file node's inline data and which children a byte
//! range needs, computed from `blocksizes` alone so no other child is ever fetched.
//! Also the gateway's `entity-bytes` range type (SPECS.md §6.1).

use std::ops::Range;

use cid::Cid;

use super::node::FileNode;

/// One child a read needs, and which part of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildRead {
    /// Index of the child in the node's links.
    pub index: usize,
    /// The child's block.
    pub cid: Cid,
    /// Offset into the child's content.
    pub offset: u64,
    /// Bytes to read from the child (≥ 1).
    pub len: u64,
    /// Where those bytes go, relative to the start of the planned range.
    pub dest: u64,
}

/// The result of [`plan_read`]: `inline` bytes of the node's own data (they go first in
/// the output, at position 0), then each child part at its `dest`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadPlan {
    /// Range of `FileNode::data` to copy (empty when none is needed).
    pub inline: Range<usize>,
    /// Child parts, in content order.
    pub children: Vec<ChildRead>,
    /// Total bytes the plan yields: the request clamped to the end of the file.
    pub len: u64,
}

/// Plans reading `len` bytes at `offset` of `file`, clamped at the end of the file (an
/// offset at or past the end gives an empty plan).
pub fn plan_read(file: &FileNode, offset: u64, len: u64) -> ReadPlan {
    let start = offset.min(file.size);
    let end = offset.saturating_add(len).min(file.size);
    let mut plan = ReadPlan {
        len: end - start,
        ..ReadPlan::default()
    };
    if start == end {
        return plan;
    }
    let inline_len = file.data.len() as u64;
    if start < inline_len {
        // Both ends are ≤ inline_len, which is a usize.
        plan.inline = start as usize..end.min(inline_len) as usize;
    }
    let mut child_start = inline_len;
    for (index, child) in file.children.iter().enumerate() {
        if child_start >= end {
            break;
        }
        // Sizes were checked not to overflow when the node was decoded.
        let child_end = child_start.saturating_add(child.blocksize);
        let from = start.max(child_start);
        let to = end.min(child_end);
        if from < to {
            plan.children.push(ChildRead {
                index,
                cid: child.cid,
                offset: from - child_start,
                len: to - from,
                dest: from - start,
            });
        }
        child_start = child_end;
    }
    plan
}

/// A gateway `entity-bytes=from:to` range: inclusive offsets, negative = from the end,
/// `to = None` for `*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte (negative counts from the end).
    pub from: i64,
    /// Last byte, inclusive (negative counts from the end); `None` = end of file.
    pub to: Option<i64>,
}

impl ByteRange {
    /// The `(offset, len)` this range selects in a file of `size` bytes, or `None` when
    /// it selects nothing (empty, inverted or entirely past the end). A range that is only
    /// partly inside is clamped, as the gateway spec asks.
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        let abs = |v: i64| -> i128 {
            if v < 0 {
                (i128::from(size) + i128::from(v)).max(0)
            } else {
                i128::from(v)
            }
        };
        let from = abs(self.from);
        let last = match self.to {
            Some(to) => abs(to).min(i128::from(size) - 1),
            None => i128::from(size) - 1,
        };
        if size == 0 || from >= i128::from(size) || last < from {
            return None;
        }
        // 0 ≤ from ≤ last < size ≤ u64::MAX.
        Some((from as u64, (last - from + 1) as u64))
    }
}

impl std::str::FromStr for ByteRange {
    type Err = String;

    /// Parses `from:to` where `to` may be `*`; e.g. `0:1000`, `-1024:*`, `499:-1000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s
            .split_once(':')
            .ok_or_else(|| format!("entity-bytes {s:?}: expected FROM:TO"))?;
        let from = from
            .parse::<i64>()
            .map_err(|e| format!("entity-bytes {s:?}: bad FROM: {e}"))?;
        let to = match to {
            "*" => None,
            t => Some(
                t.parse::<i64>()
                    .map_err(|e| format!("entity-bytes {s:?}: bad TO: {e}"))?,
            ),
        };
        Ok(ByteRange { from, to })
    }
}
