//! Byte searches for the scan and for positions.
//!
//! The memchr crate's fastest routines ask the CPU what it can do (CPUID) on
//! their first use in a process. On a virtual machine each CPUID traps to the
//! hypervisor: measured here, the first `memchr::memchr` call adds 0.05 to
//! 0.09 ms of CPU time to a process (a Rust program's whole start-up is about
//! 0.8 ms), as much as analysing a 3 KB domain. Haystacks shorter than
//! [`WIDE`] bytes use the crate's portable routines, which ask nothing; a
//! large document pays the question once and gets the vector routines.

use memchr::arch::all::memchr::{One, Two};

/// From this many bytes on, the CPU-specific routines.
const WIDE: usize = 64 * 1024;

/// The first `n` in `hay`.
pub(crate) fn find(n: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() >= WIDE {
        memchr::memchr(n, hay)
    } else {
        One::new(n).find(hay)
    }
}

/// The first `a` or `b` in `hay`.
pub(crate) fn find2(a: u8, b: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() >= WIDE {
        memchr::memchr2(a, b, hay)
    } else {
        Two::new(a, b).find(hay)
    }
}

/// The last `n` in `hay`.
pub(crate) fn rfind(n: u8, hay: &[u8]) -> Option<usize> {
    if hay.len() >= WIDE {
        memchr::memrchr(n, hay)
    } else {
        One::new(n).rfind(hay)
    }
}

/// How many `n` are in `hay`. Counted in byte lanes 255 bytes at a time,
/// which the compiler vectorises (as fast as memchr's AVX2 count, measured;
/// `iter().filter().count()` is ten times slower).
pub(crate) fn count(n: u8, hay: &[u8]) -> usize {
    hay.chunks(255)
        .map(|chunk| usize::from(chunk.iter().fold(0u8, |acc, &b| acc + u8::from(b == n))))
        .sum()
}

/// The first `needle` (not empty) in `hay`.
pub(crate) fn find_seq(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() >= WIDE {
        return memchr::memmem::find(hay, needle);
    }
    let (&first, rest) = needle.split_first()?;
    let mut at = 0;
    while let Some(i) = find(first, &hay[at..]) {
        let i = at + i;
        if hay[i + 1..].starts_with(rest) {
            return Some(i);
        }
        at = i + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_and_wide_agree() {
        let mut long = "ab-->c\n".repeat(WIDE / 7 + 10).into_bytes();
        long.extend_from_slice(b"xyz]]>");
        for hay in [&b"ab-->c\n-x"[..], &long[..], b"", b"--", b"-->"] {
            assert_eq!(find(b'\n', hay), hay.iter().position(|&b| b == b'\n'));
            assert_eq!(rfind(b'\n', hay), hay.iter().rposition(|&b| b == b'\n'));
            assert_eq!(
                find2(b'c', b'x', hay),
                hay.iter().position(|&b| b == b'c' || b == b'x')
            );
            assert_eq!(count(b'-', hay), hay.iter().filter(|&&b| b == b'-').count());
            for needle in [&b"-->"[..], b"]]>", b"--", b"q"] {
                assert_eq!(
                    find_seq(hay, needle),
                    hay.windows(needle.len()).position(|w| w == needle),
                    "{needle:?}"
                );
            }
        }
    }
}
