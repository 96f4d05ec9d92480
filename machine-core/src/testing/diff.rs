//! A small line diff for failure messages: an expected state against the
//! actual one, a committed diagram against the drawn one. Written here rather
//! than taken from a crate because the inputs are short `Debug` and Mermaid
//! texts and a longest-common-subsequence diff is a few dozen lines.

use std::fmt::Write as _;

/// Unchanged lines shown around each change, unless the caller asks for more.
pub(crate) const CONTEXT: usize = 3;

/// Above this many cells (lines × lines after trimming the common ends) the
/// middle is shown as removed-then-added instead of aligned, to bound memory.
const MAX_CELLS: usize = 4_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The difference from `old` to `new`, line by line: a `--- old_label` /
/// `+++ new_label` header, then changed lines marked `-` and `+` with up to
/// `context` unchanged lines around them, and `...` where unchanged lines are
/// left out. Texts that differ only in line endings or a final newline say so.
pub(crate) fn lines(old: &str, new: &str, old_label: &str, new_label: &str, context: usize) -> String {
    let old_lines: Vec<&str> = old.lines().collect();
    let new_lines: Vec<&str> = new.lines().collect();
    let ops = align(&old_lines, &new_lines);
    let mut out = format!("--- {old_label}\n+++ {new_label}\n");
    if ops.iter().all(|op| matches!(op, Op::Same(_))) {
        if old != new {
            out.push_str("  (the texts differ only in line endings or a final newline)\n");
        }
        return out;
    }
    let changed: Vec<usize> =
        ops.iter().enumerate().filter(|(_, op)| !matches!(op, Op::Same(_))).map(|(at, _)| at).collect();
    let shown = |at: usize| changed.iter().any(|&c| at.saturating_add(context) >= c && at <= c.saturating_add(context));
    let mut skipped = false;
    for (at, op) in ops.iter().enumerate() {
        if !shown(at) {
            skipped = true;
            continue;
        }
        if skipped {
            out.push_str("  ...\n");
            skipped = false;
        }
        // Writing to a String cannot fail.
        let _ = match op {
            Op::Same(line) => writeln!(out, "  {line}"),
            Op::Removed(line) => writeln!(out, "- {line}"),
            Op::Added(line) => writeln!(out, "+ {line}"),
        };
    }
    if skipped {
        out.push_str("  ...\n");
    }
    out
}

/// Aligns `a` and `b`: common ends kept, the middle by longest common
/// subsequence, removals before additions at each change.
fn align<'a>(old: &[&'a str], new: &[&'a str]) -> Vec<Op<'a>> {
    let (a, b) = (old, new);
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (mid_a, mid_b) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);

    let mut ops: Vec<Op<'a>> = a[..prefix].iter().map(|line| Op::Same(line)).collect();
    let (rows, cols) = (mid_a.len(), mid_b.len());
    if rows.saturating_mul(cols) > MAX_CELLS {
        ops.extend(mid_a.iter().map(|line| Op::Removed(line)));
        ops.extend(mid_b.iter().map(|line| Op::Added(line)));
    } else {
        // lcs[i * width + j]: the longest common subsequence of mid_a[i..] and mid_b[j..].
        let width = cols + 1;
        let mut lcs = vec![0_u32; (rows + 1) * width];
        for i in (0..rows).rev() {
            for j in (0..cols).rev() {
                lcs[i * width + j] = if mid_a[i] == mid_b[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < rows || j < cols {
            if i < rows && j < cols && mid_a[i] == mid_b[j] {
                ops.push(Op::Same(mid_a[i]));
                i += 1;
                j += 1;
            } else if i < rows && (j == cols || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push(Op::Removed(mid_a[i]));
                i += 1;
            } else {
                ops.push(Op::Added(mid_b[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|line| Op::Same(line)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_changed_lines_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\n";
        let new = "a\nb\nc\nd\nE\nf\ng\nh\ni\n";
        assert_eq!(
            lines(old, new, "expected", "actual", CONTEXT),
            "--- expected\n+++ actual\n  ...\n  b\n  c\n  d\n- e\n+ E\n  f\n  g\n  h\n  ...\n"
        );
    }

    #[test]
    fn aligns_insertions_and_removals() {
        let diff = lines("keep\nold\nkeep too\n", "keep\nkeep too\nnew\n", "file", "drawn", CONTEXT);
        assert_eq!(diff, "--- file\n+++ drawn\n  keep\n- old\n  keep too\n+ new\n");
    }

    #[test]
    fn reports_texts_that_differ_only_in_line_endings() {
        let diff = lines("a\r\nb\r\n", "a\nb", "file", "drawn", CONTEXT);
        assert_eq!(diff, "--- file\n+++ drawn\n  (the texts differ only in line endings or a final newline)\n");
        assert_eq!(lines("a\n", "a\n", "x", "y", CONTEXT), "--- x\n+++ y\n");
    }

    #[test]
    fn handles_empty_sides() {
        assert_eq!(lines("", "a\n", "x", "y", CONTEXT), "--- x\n+++ y\n+ a\n");
        assert_eq!(lines("a\n", "", "x", "y", CONTEXT), "--- x\n+++ y\n- a\n");
    }
}
