//! Size classes: the fixed slot geometries requested stack sizes are rounded up to.
//!
//! A slot is a guard region followed by the usable stack:
//!
//! ```text
//!   slot base                bottom()                                 top() = next slot
//!   |-- guard (GUARD_SIZE) --|---------- usable (2^k bytes) ----------|
//!   inaccessible              the stack grows down from top() towards bottom()
//! ```
//!
//! The usable size is a power of two of at least [`MIN_SHIFT`] bits and at least a page;
//! the guard is [`GUARD_SIZE`] rounded up to a page. Both are page multiples, so every
//! slot boundary, and with it every `top()`, is page-aligned (hence 16-byte aligned).

use super::os;
use crate::stack::StackError;

/// log2 of the smallest usable size (16 KiB).
const MIN_SHIFT: u32 = 14;

/// log2 of the largest usable size: 1 GiB on 64-bit targets, 256 MiB on 32-bit ones.
#[cfg(target_pointer_width = "64")]
const MAX_SHIFT: u32 = 30;
#[cfg(not(target_pointer_width = "64"))]
const MAX_SHIFT: u32 = 28;

/// The largest usable size a stack can have, in bytes.
///
/// Asking for more fails with [`StackError::TooLarge`].
///
/// ```
/// use greenlet_backends::stack::{GuardedStack, MAX_STACK_SIZE};
/// assert!(GuardedStack::new(MAX_STACK_SIZE + 1).is_err());
/// ```
pub const MAX_STACK_SIZE: usize = 1 << MAX_SHIFT;

/// The usable size of the stack a greenlet that asks for `requested` bytes gets: what
/// [`GuardedStack::new`](super::GuardedStack::new) and
/// [`StackPool::take`](super::StackPool::take) round it up to. A size no stack can have
/// comes back as it is (asking for it fails).
///
/// ```
/// use greenlet_backends::stack::{GuardedStack, usable_size_for};
/// let size = usable_size_for(100_000);
/// assert_eq!(GuardedStack::new(100_000).unwrap().usable_size(), size);
/// assert_eq!(usable_size_for(size), size);
/// ```
pub fn usable_size_for(requested: usize) -> usize {
    SizeClass::for_size(requested).map_or(requested, SizeClass::usable)
}

/// How many size classes there are.
pub(super) const COUNT: usize = (MAX_SHIFT - MIN_SHIFT + 1) as usize;

/// Bytes of guard below each stack before rounding up to a page.
///
/// Several pages, so that a frame larger than one page that is not probed page by page
/// still lands in the guard rather than in the stack below.
const GUARD_SIZE: usize = 16 * 1024;

/// One size class, held as its usable size: `2^(MIN_SHIFT + index)`. (Held so, the size
/// a greenlet asks for is compared with a stack's in one instruction, when a greenlet
/// starts on the stack its state kept; the index is a count of trailing zeros away.)
///
/// Invariant: the index is below [`COUNT`]; only [`for_size`](Self::for_size),
/// [`SMALLEST`](Self::SMALLEST), [`all`](Self::all) and [`of_index`](Self::of_index) make
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SizeClass(usize);

impl SizeClass {
    /// The class of the smallest stacks (16 KiB; unused where pages are larger).
    pub(super) const SMALLEST: SizeClass = SizeClass(1 << MIN_SHIFT);

    /// The class at `index`, below [`COUNT`].
    const fn of_index(index: usize) -> SizeClass {
        assert!(index < COUNT);
        SizeClass((1 << MIN_SHIFT) << index)
    }

    /// The smallest class with at least `usable_size` usable bytes.
    pub(super) fn for_size(usable_size: usize) -> Result<Self, StackError> {
        if usable_size > MAX_STACK_SIZE {
            return Err(StackError::TooLarge(usable_size));
        }
        let wanted = usable_size.max(1 << MIN_SHIFT).max(os::page_size());
        // `wanted <= MAX_STACK_SIZE` unless pages are larger than that, which no system has.
        let shift = wanted.next_power_of_two().trailing_zeros().min(MAX_SHIFT);
        Ok(SizeClass::of_index((shift - MIN_SHIFT) as usize))
    }

    /// Every class, in the order of their indices.
    pub(super) fn all() -> impl Iterator<Item = SizeClass> {
        (0..COUNT).map(SizeClass::of_index)
    }

    /// The requested sizes [`for_size`](Self::for_size) answers with this class, as the
    /// inclusive range `(lowest, highest)`: the upper half of the class's usable size, or
    /// everything from 0 for the smallest class a page allows.
    pub(super) fn sizes(self) -> (usize, usize) {
        let highest = self.usable();
        let below = highest / 2;
        if SizeClass::for_size(below).ok() == Some(self) {
            (0, highest)
        } else {
            (below + 1, highest)
        }
    }

    /// Position of this class among all classes, for per-class tables: below [`COUNT`].
    #[inline]
    pub(super) fn index(self) -> usize {
        let index = (self.usable().trailing_zeros() - MIN_SHIFT) as usize;
        // SAFETY: the type's invariant. Telling the compiler spares every per-class table
        // lookup its bounds check.
        unsafe { std::hint::assert_unchecked(index < COUNT) };
        index
    }

    /// Usable bytes of a stack of this class.
    #[inline]
    pub(super) fn usable(self) -> usize {
        // SAFETY: the type's invariant. Telling the compiler lets it see that the size is
        // at least 16 KiB, and a power of two.
        unsafe {
            std::hint::assert_unchecked(
                self.0 >= 1 << MIN_SHIFT && self.0 <= MAX_STACK_SIZE && self.0.is_power_of_two(),
            )
        };
        self.0
    }

    /// Bytes of one slot: guard plus usable stack.
    pub(super) fn slot_size(self) -> usize {
        guard_len() + self.usable()
    }
}

/// Bytes of guard at the low end of every slot: [`GUARD_SIZE`] rounded up to a page.
///
/// The page size is a power of two (`os::page_size` makes sure), so this is a mask. Only
/// carving slots and reserving arenas ask: a stack keeps its top, and finds its bottom
/// from the usable size.
pub(super) fn guard_len() -> usize {
    let page = os::page_size();
    (GUARD_SIZE + page - 1) & !(page - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_to_a_power_of_two_of_at_least_16_kib_and_a_page() {
        let page = os::page_size();
        let min = (16 * 1024).max(page);
        assert_eq!(SizeClass::for_size(0).unwrap().usable(), min);
        assert_eq!(SizeClass::for_size(1).unwrap().usable(), min);
        assert_eq!(SizeClass::for_size(min).unwrap().usable(), min);
        assert_eq!(SizeClass::for_size(min + 1).unwrap().usable(), 2 * min);
        assert_eq!(SizeClass::for_size(200_000).unwrap().usable(), 256 * 1024);
        let largest = SizeClass::for_size(MAX_STACK_SIZE).unwrap();
        assert_eq!(largest.usable(), MAX_STACK_SIZE);
        assert_eq!(largest.index(), COUNT - 1);
    }

    #[test]
    fn each_class_knows_the_sizes_it_answers() {
        let mut next = 0;
        for index in 0..COUNT {
            let class = SizeClass::of_index(index);
            let (lowest, highest) = class.sizes();
            if highest < SizeClass::for_size(0).unwrap().usable() {
                continue; // below the page size: no size maps here
            }
            assert_eq!(lowest, next, "class {index}");
            for size in [
                lowest,
                lowest + 1,
                (lowest + highest) / 2,
                highest - 1,
                highest,
            ] {
                assert_eq!(SizeClass::for_size(size).unwrap(), class, "size {size}");
            }
            next = highest + 1;
        }
        assert_eq!(next, MAX_STACK_SIZE + 1);
    }

    #[test]
    fn sizes_above_the_maximum_are_too_large() {
        assert!(matches!(
            SizeClass::for_size(MAX_STACK_SIZE + 1),
            Err(StackError::TooLarge(n)) if n == MAX_STACK_SIZE + 1
        ));
        assert!(SizeClass::for_size(usize::MAX).is_err());
    }

    #[test]
    fn slots_are_page_multiples_with_a_guard_of_several_pages() {
        let page = os::page_size();
        assert_eq!(guard_len() % page, 0);
        assert!(guard_len() >= 16 * 1024);
        for index in 0..COUNT {
            let class = SizeClass::of_index(index);
            assert_eq!(class.slot_size() % page, 0);
            assert_eq!(class.slot_size(), guard_len() + class.usable());
        }
    }
}
