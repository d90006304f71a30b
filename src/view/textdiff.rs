//! A line diff of two texts (prompt files), by longest common subsequence. Prompts are short;
//! texts over [`MAX_LINES`] lines are shown as removed and added whole rather than diffed, so
//! the table stays bounded.
pub(crate) const MAX_LINES: usize = 2000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Same,
    Added,
    Removed,
}

/// The lines of `a` and `b` in order, each marked same, removed (only in `a`) or added.
pub(crate) fn lines<'t>(a: &'t str, b: &'t str) -> Vec<(Op, &'t str)> {
    let (x, y): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    if x.len() > MAX_LINES || y.len() > MAX_LINES {
        let removed = x.into_iter().map(|l| (Op::Removed, l));
        return removed.chain(y.into_iter().map(|l| (Op::Added, l))).collect();
    }
    // lcs[i][j]: length of the longest common subsequence of x[i..] and y[j..].
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] =
                if x[i] == y[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            out.push((Op::Same, x[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push((Op::Removed, x[i]));
            i += 1;
        } else {
            out.push((Op::Added, y[j]));
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_line_is_removed_then_added_between_same_lines() {
        let d = lines("a\nb\nc\n", "a\nB\nc\n");
        assert_eq!(d, vec![(Op::Same, "a"), (Op::Removed, "b"), (Op::Added, "B"), (Op::Same, "c")]);
    }
}
