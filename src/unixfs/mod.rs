//! UnixFS over dag-pb: typed nodes, read planning and HAMT lookup (placeholder).
pub mod pb;
