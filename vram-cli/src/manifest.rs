//! The manifest lines `vram digest` prints and `vram digest --check` reads.
//!
//! Text form, one file per line, like `sha256sum` but tagged so that a line
//! cannot be taken for a plain SHA-256 line (or the other way round):
//!
//! ```text
//! vram-tree-sha256:1MiB:<64 hex root>  NAME     tree digest, format version 1
//! sha256:<64 hex>  NAME                         plain SHA-256 (--sha256)
//! ```
//!
//! The leaf size is written `4KiB` ... `512KiB`, `1MiB` ... `512MiB`, `1GiB`.
//! NAME is escaped as `sha256sum` escapes file names (see
//! `vram_validation::escape_line_field`); a line with an escaped name starts
//! with `\`. The JSON form is one object per line, as `vram digest --json`
//! prints it: `file`, `bytes`, `leaf_size`, `tree_digest`, `format_version`,
//! and with `--leaves` every leaf hash, which lets a check name the corrupt
//! byte ranges.

use vram_residency::vram_crypto::{
    LeafHashes, LeafSize, Sha256Digest, TreeDescriptor, TREE_FORMAT_VERSION,
};
use vram_validation::{parse_byte_size, unescape_line_field, OutputLine};

/// The algorithm tag of a tree-digest line: SHA-256 chunk tree, format 1.
pub(crate) const TREE_TAG: &str = "vram-tree-sha256";
/// The algorithm tag of a plain SHA-256 line.
pub(crate) const SHA256_TAG: &str = "sha256";

/// What a manifest line expects of its file.
#[derive(Debug)]
pub(crate) enum Expected {
    /// A tree digest; with the file's length and leaf hashes when the line
    /// has them (a JSON line written with `--leaves`).
    Tree {
        leaf: LeafSize,
        root: Sha256Digest,
        bytes: Option<u64>,
        leaves: Option<LeafHashes>,
    },
    /// A plain SHA-256.
    Sha256(Sha256Digest),
}

/// One line of a manifest.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The file's name, unescaped: exactly the path to open.
    pub(crate) name: String,
    pub(crate) expected: Expected,
}

/// `1MiB`, `64KiB`, `1GiB`: the leaf size as a manifest writes it.
pub(crate) fn leaf_text(leaf: LeafSize) -> String {
    match leaf.log2() {
        30.. => format!("{}GiB", leaf.bytes() >> 30),
        20.. => format!("{}MiB", leaf.bytes() >> 20),
        _ => format!("{}KiB", leaf.bytes() >> 10),
    }
}

/// `vram-tree-sha256:LEAF:ROOT  NAME`.
pub(crate) fn tree_line(leaf: LeafSize, root: &Sha256Digest, name: &str) -> OutputLine {
    let mut line = OutputLine::new();
    line.push(&format!("{TREE_TAG}:{}:{root}  ", leaf_text(leaf)))
        .field(name);
    line
}

/// `sha256:HEX  NAME`.
pub(crate) fn sha256_line(sha: &Sha256Digest, name: &str) -> OutputLine {
    let mut line = OutputLine::new();
    line.push(&format!("{SHA256_TAG}:{sha}  ")).field(name);
    line
}

/// Parses one manifest line (without its line end). `Ok(None)` for a blank
/// line or a `#` comment. The error says, in our words, what is wrong.
pub(crate) fn parse_line(line: &str) -> Result<Option<Entry>, &'static str> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    if line.starts_with('{') {
        return parse_json(line).map(Some);
    }
    let (escaped, rest) = match line.strip_prefix('\\') {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let (digest, name) = rest
        .split_once("  ")
        .ok_or("expected `DIGEST  NAME` (two spaces)")?;
    if name.is_empty() {
        return Err("no file name");
    }
    let name = if escaped {
        unescape_line_field(name).ok_or("the file name is not validly escaped")?
    } else {
        name.to_owned()
    };
    let expected = if let Some(rest) = digest
        .strip_prefix(TREE_TAG)
        .and_then(|r| r.strip_prefix(':'))
    {
        let (leaf, root) = rest
            .split_once(':')
            .ok_or("expected vram-tree-sha256:LEAF:ROOT")?;
        Expected::Tree {
            leaf: parse_leaf(leaf)?,
            root: root.parse().map_err(|_| "the root is not 64 hex digits")?,
            bytes: None,
            leaves: None,
        }
    } else if let Some(hex) = digest
        .strip_prefix(SHA256_TAG)
        .and_then(|r| r.strip_prefix(':'))
    {
        Expected::Sha256(
            hex.parse()
                .map_err(|_| "the SHA-256 is not 64 hex digits")?,
        )
    } else {
        return Err("not a vram digest line (vram-tree-sha256:LEAF:ROOT or sha256:HEX)");
    };
    Ok(Some(Entry { name, expected }))
}

fn parse_leaf(text: &str) -> Result<LeafSize, &'static str> {
    parse_byte_size(text)
        .ok()
        .and_then(|b| LeafSize::new(b).ok())
        .ok_or("the leaf size is not a power of two from 4KiB to 1GiB")
}

#[derive(serde::Deserialize)]
struct JsonEntry {
    file: String,
    tree_digest: Sha256Digest,
    leaf_size: u64,
    #[serde(default)]
    bytes: Option<u64>,
    #[serde(default)]
    format_version: Option<u8>,
    #[serde(default)]
    leaves: Option<Vec<Sha256Digest>>,
}

fn parse_json(line: &str) -> Result<Entry, &'static str> {
    let e: JsonEntry = serde_json::from_str(line)
        .map_err(|_| "not a vram digest JSON line (file, tree_digest, leaf_size)")?;
    if e.format_version.is_some_and(|v| v != TREE_FORMAT_VERSION) {
        return Err("a tree digest format this version does not know");
    }
    if e.file.is_empty() {
        return Err("no file name");
    }
    let leaf = LeafSize::new(e.leaf_size)
        .map_err(|_| "the leaf size is not a power of two from 4KiB to 1GiB")?;
    let leaves = match (e.leaves, e.bytes) {
        (Some(hashes), Some(bytes)) => {
            let leaves = LeafHashes::from_parts(TreeDescriptor::new(leaf, bytes), hashes)
                .map_err(|_| "the leaf hashes do not fit the file's length")?;
            // A line whose leaves do not make its root is no evidence of anything.
            if !leaves.root().root.ct_eq(&e.tree_digest) {
                return Err("the leaf hashes do not make the line's tree digest");
            }
            Some(leaves)
        }
        (Some(_), None) => return Err("leaf hashes without the file's length (bytes)"),
        (None, _) => None,
    };
    Ok(Entry {
        name: e.file,
        expected: Expected::Tree {
            leaf,
            root: e.tree_digest,
            bytes: e.bytes,
            leaves,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_round_trip_with_escaped_names() {
        let root = Sha256Digest([7; 32]);
        for leaf in [LeafSize::MIN, LeafSize::DEFAULT, LeafSize::MAX] {
            for name in ["m.bin", "evil\n\u{1b}]0;x  y.bin", "a\\b"] {
                let line = tree_line(leaf, &root, name).to_string();
                assert!(!line.contains('\n'));
                let e = parse_line(&line).unwrap().unwrap();
                assert_eq!(e.name, name);
                assert!(
                    matches!(e.expected, Expected::Tree { leaf: l, root: r, .. } if l == leaf && r == root)
                );
            }
        }
        assert_eq!(
            tree_line(LeafSize::DEFAULT, &root, "m").to_string(),
            format!("vram-tree-sha256:1MiB:{root}  m")
        );
        let sha = sha256_line(&root, "x y").to_string();
        assert_eq!(sha, format!("sha256:{root}  x y"));
        assert!(
            matches!(parse_line(&sha).unwrap().unwrap().expected, Expected::Sha256(d) if d == root)
        );
    }

    #[test]
    fn plain_sha256sum_lines_and_junk_are_refused() {
        let hex = "ab".repeat(32);
        for bad in [
            format!("{hex}  m.bin"),
            format!("vram-tree-sha256:3KiB:{hex}  m"),
            format!("vram-tree-sha256:1MiB:{hex}"),
            "vram-tree-sha256:1MiB:abc  m".to_owned(),
            format!("\\vram-tree-sha256:1MiB:{hex}  bad\\q"),
            "{\"file\":\"m\"}".to_owned(),
        ] {
            assert!(parse_line(&bad).is_err(), "{bad}");
        }
        assert!(parse_line("").unwrap().is_none());
        assert!(parse_line("# comment").unwrap().is_none());
    }
}
