//! `MemorySegment`: an owned, aligned block of the arena with bounds-checked access.
//!
//! A segment is the unit of memory in weir: sort buffers, hash tables, spill blocks and
//! network buffers are all segments. It is handed out by its owner's
//! [`MemoryManager`](super::MemoryManager), is never cloned, and goes home when dropped.
//!
//! Every accessor is bounds checked and panics on an out-of-range offset: an offset outside
//! a segment is a bug in the caller, never a consequence of input. Multi-byte accessors name
//! their byte order (`_le` / `_be`); there is no native-order access.

use std::cmp::Ordering;
use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use super::owner::OwnerShared;

/// A segment's index in its manager's arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentIndex(pub u32);

/// An owned block of `size` bytes, aligned to [`SEGMENT_ALIGN`](crate::constants::SEGMENT_ALIGN).
///
/// Invariants:
/// 1. `ptr .. ptr + size` is segment `index` of the arena kept alive by `owner`, and no
///    other `MemorySegment` refers to those bytes while this one lives (the manager's free
///    list hands an index out once until it comes back).
/// 2. `size` is the arena's segment size, a power of two of at least 4096.
pub struct MemorySegment {
    ptr: NonNull<u8>,
    size: usize,
    index: SegmentIndex,
    owner: Arc<OwnerShared>,
    // Set by `Reservation::give_back`: on drop, the budget stays with the owner's
    // reservations instead of returning to the manager.
    keep_budget: bool,
}

// SAFETY: a segment exclusively owns its bytes (invariant 1), so moving it to another
// thread moves that ownership; the owner handle is an `Arc` of `Sync` state.
unsafe impl Send for MemorySegment {}
// SAFETY: `&MemorySegment` only permits reads of bytes nobody else can write (invariant 1);
// every mutation takes `&mut self`.
unsafe impl Sync for MemorySegment {}

macro_rules! primitive_accessors {
    ($($ty:ty: $get_le:ident $get_be:ident $put_le:ident $put_be:ident;)*) => {$(
        #[doc = concat!("Reads a little-endian `", stringify!($ty), "` at `offset`.")]
        ///
        /// # Panics
        ///
        /// When the value does not lie within the segment.
        #[inline]
        pub fn $get_le(&self, offset: usize) -> $ty {
            <$ty>::from_le_bytes(self.read_array(offset))
        }

        #[doc = concat!("Reads a big-endian `", stringify!($ty), "` at `offset`.")]
        ///
        /// # Panics
        ///
        /// When the value does not lie within the segment.
        #[inline]
        pub fn $get_be(&self, offset: usize) -> $ty {
            <$ty>::from_be_bytes(self.read_array(offset))
        }

        #[doc = concat!("Writes `value` as a little-endian `", stringify!($ty), "` at `offset`.")]
        ///
        /// # Panics
        ///
        /// When the value does not fit within the segment.
        #[inline]
        pub fn $put_le(&mut self, offset: usize, value: $ty) {
            self.write_array(offset, value.to_le_bytes());
        }

        #[doc = concat!("Writes `value` as a big-endian `", stringify!($ty), "` at `offset`.")]
        ///
        /// # Panics
        ///
        /// When the value does not fit within the segment.
        #[inline]
        pub fn $put_be(&mut self, offset: usize, value: $ty) {
            self.write_array(offset, value.to_be_bytes());
        }
    )*};
}

impl MemorySegment {
    /// Wraps segment `index` of the arena behind `owner`. Only the owner creates segments.
    pub(super) fn new(
        ptr: NonNull<u8>,
        size: usize,
        index: SegmentIndex,
        owner: Arc<OwnerShared>,
    ) -> Self {
        assert!(size.is_power_of_two());
        assert_eq!(ptr.as_ptr() as usize % crate::constants::SEGMENT_ALIGN, 0);
        MemorySegment {
            ptr,
            size,
            index,
            owner,
            keep_budget: false,
        }
    }

    /// Bytes in the segment.
    #[inline]
    pub fn size(&self) -> usize {
        self.size
    }

    /// The segment's index in its manager's arena.
    #[inline]
    pub fn index(&self) -> SegmentIndex {
        self.index
    }

    /// Whether `owner` is the owner this segment is accounted to.
    pub(super) fn is_owned_by(&self, owner: &Arc<OwnerShared>) -> bool {
        Arc::ptr_eq(&self.owner, owner)
    }

    /// Drops the segment keeping its budget with its owner's reservations.
    pub(super) fn release_into_reservation(mut self) {
        self.keep_budget = true;
    }

    /// The name of the owner the segment is accounted to.
    pub fn owner_name(&self) -> &str {
        self.owner.name()
    }

    /// The whole segment as bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: invariant 1: `ptr .. ptr + size` is live, initialised (anonymous mappings
        // are zero-filled) and not mutated through any other handle while `&self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.size) }
    }

    /// The whole segment as mutable bytes.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: invariant 1, and `&mut self` makes this the only live access to the bytes.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.size) }
    }

    #[inline]
    fn read_array<const N: usize>(&self, offset: usize) -> [u8; N] {
        self.check_range(offset, N);
        let mut bytes = [0u8; N];
        bytes.copy_from_slice(&self.as_slice()[offset..offset + N]);
        bytes
    }

    #[inline]
    fn write_array<const N: usize>(&mut self, offset: usize, bytes: [u8; N]) {
        self.check_range(offset, N);
        self.as_mut_slice()[offset..offset + N].copy_from_slice(&bytes);
    }

    /// Flink's collapsed bounds check: one comparison that cannot overflow, because a
    /// range longer than the segment fails the first test.
    #[inline]
    #[track_caller]
    fn check_range(&self, offset: usize, len: usize) {
        assert!(
            len <= self.size && offset <= self.size - len,
            "segment access out of bounds: {len} bytes at offset {offset} in a segment of {}",
            self.size
        );
    }

    /// Reads the byte at `offset`.
    ///
    /// # Panics
    ///
    /// When `offset` is outside the segment.
    #[inline]
    pub fn get_u8(&self, offset: usize) -> u8 {
        self.check_range(offset, 1);
        self.as_slice()[offset]
    }

    /// Writes the byte `value` at `offset`.
    ///
    /// # Panics
    ///
    /// When `offset` is outside the segment.
    #[inline]
    pub fn put_u8(&mut self, offset: usize, value: u8) {
        self.check_range(offset, 1);
        self.as_mut_slice()[offset] = value;
    }

    /// Reads the byte at `offset` as an `i8`.
    ///
    /// # Panics
    ///
    /// When `offset` is outside the segment.
    #[inline]
    pub fn get_i8(&self, offset: usize) -> i8 {
        self.get_u8(offset) as i8
    }

    /// Writes `value` at `offset`.
    ///
    /// # Panics
    ///
    /// When `offset` is outside the segment.
    #[inline]
    pub fn put_i8(&mut self, offset: usize, value: i8) {
        self.put_u8(offset, value as u8);
    }

    primitive_accessors! {
        u16: get_u16_le get_u16_be put_u16_le put_u16_be;
        u32: get_u32_le get_u32_be put_u32_le put_u32_be;
        u64: get_u64_le get_u64_be put_u64_le put_u64_be;
        i16: get_i16_le get_i16_be put_i16_le put_i16_be;
        i32: get_i32_le get_i32_be put_i32_le put_i32_be;
        i64: get_i64_le get_i64_be put_i64_le put_i64_be;
        f32: get_f32_le get_f32_be put_f32_le put_f32_be;
        f64: get_f64_le get_f64_be put_f64_le put_f64_be;
    }

    /// The `len` bytes at `offset`.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    #[inline]
    pub fn bytes(&self, offset: usize, len: usize) -> &[u8] {
        self.check_range(offset, len);
        &self.as_slice()[offset..offset + len]
    }

    /// The `len` bytes at `offset`, mutable.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    #[inline]
    pub fn bytes_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        self.check_range(offset, len);
        &mut self.as_mut_slice()[offset..offset + len]
    }

    /// Copies `target.len()` bytes starting at `offset` into `target`.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    #[inline]
    pub fn get_bytes(&self, offset: usize, target: &mut [u8]) {
        target.copy_from_slice(self.bytes(offset, target.len()));
    }

    /// Copies `source` into the segment starting at `offset`.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    #[inline]
    pub fn put_bytes(&mut self, offset: usize, source: &[u8]) {
        self.bytes_mut(offset, source.len()).copy_from_slice(source);
    }

    /// Copies `len` bytes at `offset` into `target` at `target_offset`.
    ///
    /// # Panics
    ///
    /// When either range is not within its segment.
    #[inline]
    pub fn copy_to(
        &self,
        offset: usize,
        target: &mut MemorySegment,
        target_offset: usize,
        len: usize,
    ) {
        target
            .bytes_mut(target_offset, len)
            .copy_from_slice(self.bytes(offset, len));
    }

    /// Copies `len` bytes from `source` to `target` within this segment; the ranges may
    /// overlap.
    ///
    /// # Panics
    ///
    /// When either range is not within the segment.
    #[inline]
    pub fn copy_within(&mut self, source: usize, target: usize, len: usize) {
        self.check_range(source, len);
        self.check_range(target, len);
        self.as_mut_slice()
            .copy_within(source..source + len, target);
    }

    /// Compares `len` bytes at `offset` with `len` bytes of `other` at `other_offset` as
    /// unsigned bytes in lexicographic order: the order of normalized keys.
    ///
    /// # Panics
    ///
    /// When either range is not within its segment.
    #[inline]
    pub fn compare(
        &self,
        other: &MemorySegment,
        offset: usize,
        other_offset: usize,
        len: usize,
    ) -> Ordering {
        compare_bytes(self.bytes(offset, len), other.bytes(other_offset, len))
    }

    /// Whether `len` bytes at `offset` equal `len` bytes of `other` at `other_offset`.
    ///
    /// # Panics
    ///
    /// When either range is not within its segment.
    #[inline]
    pub fn equal(
        &self,
        other: &MemorySegment,
        offset: usize,
        other_offset: usize,
        len: usize,
    ) -> bool {
        self.bytes(offset, len) == other.bytes(other_offset, len)
    }

    /// Swaps `len` bytes at `offset` with `len` bytes of `other` at `other_offset`.
    ///
    /// # Panics
    ///
    /// When either range is not within its segment.
    #[inline]
    pub fn swap(
        &mut self,
        other: &mut MemorySegment,
        offset: usize,
        other_offset: usize,
        len: usize,
    ) {
        self.bytes_mut(offset, len)
            .swap_with_slice(other.bytes_mut(other_offset, len));
    }

    /// Swaps two non-overlapping ranges of `len` bytes within this segment.
    ///
    /// # Panics
    ///
    /// When a range is not within the segment, or the ranges overlap.
    #[inline]
    pub fn swap_within(&mut self, first: usize, second: usize, len: usize) {
        self.check_range(first, len);
        self.check_range(second, len);
        let (low, high) = (first.min(second), first.max(second));
        assert!(low + len <= high || len == 0, "swap_within: ranges overlap");
        let (head, tail) = self.as_mut_slice().split_at_mut(high);
        head[low..low + len].swap_with_slice(&mut tail[..len]);
    }

    /// Asks the CPU to bring the cache line holding byte `offset` closer, ahead of a read.
    /// A hint only: it never faults and changes no data. Sorted output reads records in
    /// index order, which is random order in memory; prefetching a few records ahead
    /// overlaps their cache misses.
    ///
    /// # Panics
    ///
    /// When `offset` is outside the segment.
    #[inline]
    pub fn prefetch(&self, offset: usize) {
        self.check_range(offset, 1);
        #[cfg(all(target_arch = "x86_64", not(miri)))]
        {
            let ptr = self.as_slice()[offset..].as_ptr();
            // SAFETY: prefetch is a hint that never faults and neither reads nor writes
            // memory architecturally; the pointer is within the segment anyway (checked
            // above), and SSE is part of the x86_64 baseline.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(ptr.cast())
            };
        }
    }

    /// Fills `len` bytes at `offset` with `byte`.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    #[inline]
    pub fn fill(&mut self, offset: usize, len: usize, byte: u8) {
        self.bytes_mut(offset, len).fill(byte);
    }

    /// `count` values of `T` starting at `offset`, when `offset` is aligned for `T`;
    /// `None` when it is not.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    pub fn pod_slice<T: bytemuck::Pod>(&self, offset: usize, count: usize) -> Option<&[T]> {
        let len = count
            .checked_mul(size_of::<T>())
            .expect("pod slice length overflows");
        bytemuck::try_cast_slice(self.bytes(offset, len)).ok()
    }

    /// `count` mutable values of `T` starting at `offset`, when `offset` is aligned for `T`;
    /// `None` when it is not.
    ///
    /// # Panics
    ///
    /// When the range is not within the segment.
    pub fn pod_slice_mut<T: bytemuck::Pod>(
        &mut self,
        offset: usize,
        count: usize,
    ) -> Option<&mut [T]> {
        let len = count
            .checked_mul(size_of::<T>())
            .expect("pod slice length overflows");
        bytemuck::try_cast_slice_mut(self.bytes_mut(offset, len)).ok()
    }

    /// Reads a `T` at `offset`, aligned or not.
    ///
    /// # Panics
    ///
    /// When the value does not lie within the segment.
    #[inline]
    pub fn read_pod<T: bytemuck::Pod>(&self, offset: usize) -> T {
        bytemuck::pod_read_unaligned(self.bytes(offset, size_of::<T>()))
    }

    /// Writes `value` at `offset`, aligned or not.
    ///
    /// # Panics
    ///
    /// When the value does not fit within the segment.
    #[inline]
    pub fn write_pod<T: bytemuck::Pod>(&mut self, offset: usize, value: &T) {
        self.put_bytes(offset, bytemuck::bytes_of(value));
    }
}

/// Unsigned lexicographic comparison, eight bytes at a time.
///
/// Words are loaded big-endian so that comparing them as `u64` is comparing their bytes in
/// order; the first unequal word decides. The tail shorter than a word is compared bytewise.
/// Keys are short (a 16-byte prefix, a few dozen bytes of normalized key), where this beats
/// a call to `memcmp`; for long ranges `memcmp` is vectorised and wins, so we hand over.
#[inline]
pub fn compare_bytes(left: &[u8], right: &[u8]) -> Ordering {
    const MEMCMP_FROM: usize = 64;
    let len = left.len().min(right.len());
    if len >= MEMCMP_FROM {
        return left.cmp(right);
    }
    let (left_words, left_tail) = left[..len].as_chunks::<8>();
    let (right_words, right_tail) = right[..len].as_chunks::<8>();
    for (l, r) in left_words.iter().zip(right_words) {
        let (l, r) = (u64::from_be_bytes(*l), u64::from_be_bytes(*r));
        if l != r {
            return l.cmp(&r);
        }
    }
    left_tail.cmp(right_tail).then(left.len().cmp(&right.len()))
}

impl Drop for MemorySegment {
    fn drop(&mut self) {
        self.owner.take_back(self.index, self.keep_budget);
    }
}

impl fmt::Debug for MemorySegment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySegment")
            .field("index", &self.index.0)
            .field("size", &self.size)
            .field("owner", &self.owner.name())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryManager;

    fn manager() -> MemoryManager {
        crate::memory::test_manager(4)
    }

    #[test]
    fn primitives_round_trip_in_both_byte_orders() {
        let manager = manager();
        let mut segment = manager.owner("test").allocate_one().unwrap();
        segment.put_u64_le(0, 0x0102_0304_0506_0708);
        assert_eq!(segment.bytes(0, 8), &[8, 7, 6, 5, 4, 3, 2, 1]);
        segment.put_u64_be(8, 0x0102_0304_0506_0708);
        assert_eq!(segment.bytes(8, 8), &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(segment.get_u64_le(0), segment.get_u64_be(8));
        segment.put_i32_le(100, -7);
        assert_eq!(segment.get_i32_le(100), -7);
        segment.put_i16_be(200, -300);
        assert_eq!(segment.get_i16_be(200), -300);
        segment.put_u16_le(4094, 0xbeef);
        assert_eq!(segment.get_u16_le(4094), 0xbeef);
        segment.put_f64_be(300, -0.5);
        assert_eq!(segment.get_f64_be(300), -0.5);
        segment.put_f32_le(400, f32::INFINITY);
        assert_eq!(segment.get_f32_le(400), f32::INFINITY);
        segment.put_i8(4095, -1);
        assert_eq!(segment.get_i8(4095), -1);
        assert_eq!(segment.get_u8(4095), 0xff);
        segment.put_i64_le(500, i64::MIN);
        assert_eq!(segment.get_i64_le(500), i64::MIN);
        segment.put_u32_be(600, 1);
        assert_eq!(segment.get_u32_be(600), 1);
    }

    #[test]
    #[should_panic(expected = "out of bounds: 8 bytes at offset 4089")]
    fn access_past_the_end_panics() {
        let manager = manager();
        let segment = manager.owner("test").allocate_one().unwrap();
        let _ = segment.get_u64_le(4089);
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn huge_offset_does_not_wrap() {
        let manager = manager();
        let segment = manager.owner("test").allocate_one().unwrap();
        let _ = segment.get_u16_le(usize::MAX);
    }

    #[test]
    fn copy_compare_equal_swap() {
        let manager = manager();
        let owner = manager.owner("test");
        let mut a = owner.allocate_one().unwrap();
        let mut b = owner.allocate_one().unwrap();
        a.put_bytes(10, b"hello world");
        a.copy_to(10, &mut b, 20, 11);
        assert_eq!(b.bytes(20, 11), b"hello world");
        assert!(a.equal(&b, 10, 20, 11));
        assert_eq!(a.compare(&b, 10, 20, 11), Ordering::Equal);
        b.put_u8(30, b'e');
        assert_eq!(a.compare(&b, 10, 20, 11), Ordering::Less);
        assert!(!a.equal(&b, 10, 20, 11));
        a.swap(&mut b, 10, 20, 11);
        assert_eq!(a.bytes(10, 11), b"hello worle");
        assert_eq!(b.bytes(20, 11), b"hello world");
        a.put_bytes(0, b"ab");
        a.put_bytes(100, b"cd");
        a.swap_within(0, 100, 2);
        assert_eq!(a.bytes(0, 2), b"cd");
        assert_eq!(a.bytes(100, 2), b"ab");
        a.copy_within(0, 1, 2);
        assert_eq!(a.bytes(0, 3), b"ccd");
        a.fill(0, 3, 7);
        assert_eq!(a.bytes(0, 3), &[7, 7, 7]);
        let mut out = [0; 3];
        a.get_bytes(0, &mut out);
        assert_eq!(out, [7, 7, 7]);
    }

    #[test]
    #[should_panic(expected = "ranges overlap")]
    fn swap_within_rejects_overlap() {
        let manager = manager();
        let mut segment = manager.owner("test").allocate_one().unwrap();
        segment.swap_within(0, 4, 8);
    }

    #[test]
    fn compare_bytes_is_unsigned_lexicographic() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"", b""),
            (b"", b"a"),
            (b"abcdefgh", b"abcdefgi"),
            (b"abcdefghij", b"abcdefghi"),
            (&[0x80], &[0x7f]),
            (
                &[1, 2, 3, 4, 5, 6, 7, 8, 0xff],
                &[1, 2, 3, 4, 5, 6, 7, 8, 0x00],
            ),
            (&[0xff; 70], &[0xff; 71]),
            (&[3; 100], &[2; 100]),
        ];
        for (left, right) in cases {
            assert_eq!(
                compare_bytes(left, right),
                left.cmp(right),
                "{left:?} vs {right:?}"
            );
            assert_eq!(
                compare_bytes(right, left),
                right.cmp(left),
                "{right:?} vs {left:?}"
            );
        }
    }

    #[test]
    fn pod_views_respect_alignment() {
        let manager = manager();
        let mut segment = manager.owner("test").allocate_one().unwrap();
        let words = segment
            .pod_slice_mut::<u64>(8, 4)
            .expect("8 is aligned for u64");
        words.copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(segment.pod_slice::<u64>(8, 4).unwrap(), &[1, 2, 3, 4]);
        assert!(segment.pod_slice::<u64>(3, 1).is_none());
        segment.write_pod(3, &0xdead_beef_u32);
        assert_eq!(segment.read_pod::<u32>(3), 0xdead_beef);
        assert_eq!(
            segment.as_slice().as_ptr() as usize % crate::constants::SEGMENT_ALIGN,
            0
        );
    }

    #[test]
    fn segments_move_across_threads() {
        let manager = manager();
        let owner = manager.owner("test");
        let mut segment = owner.allocate_one().unwrap();
        segment.put_u32_le(0, 99);
        let segment = std::thread::spawn(move || {
            assert_eq!(segment.get_u32_le(0), 99);
            segment
        })
        .join()
        .unwrap();
        drop(segment);
        assert_eq!(owner.segments(), 0);
    }
}
