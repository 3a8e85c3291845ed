//! Shared by the property tests.

/// Replaces, for each `(at, len, with)`, about `len` bytes at a place picked
/// by `at` with `with` (widened to character boundaries).
pub fn apply_damage(
    mut text: String,
    cuts: Vec<(proptest::sample::Index, usize, &'static str)>,
) -> String {
    for (at, len, with) in cuts {
        let mut start = at.index(text.len() + 1);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        text.replace_range(start..end, with);
    }
    text
}
