//! Repository policy, enforced by the plain test run (rust-analyzer's tidy).

use crate::run::root;
use std::path::{Path, PathBuf};

const CRATES: &[&str] = &[
    "vram-validation",
    "vram-crypto",
    "vram-secrets",
    "vram-audit",
    "vram-core",
    "vram-mock",
    "vram-residency",
    "vram-format",
    "vram-hub",
    "vram-signing",
    "vram-worker",
    "vram-cli",
    "vram-embed",
    "vram-llm",
    "vram-py",
    "vram-serve",
    "xtask",
];

/// The root manifest's `members`, in its order.
fn members() -> Vec<String> {
    let ws = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members = ws
        .split("members = [")
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    members
        .split(',')
        .map(|m| m.trim().trim_matches('"').to_string())
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn the_crate_list_is_the_workspace() {
    let mut listed = members();
    listed.sort_unstable();
    let mut ours: Vec<String> = CRATES.iter().map(|c| c.to_string()).collect();
    ours.sort_unstable();
    assert_eq!(listed, ours, "CRATES must list every workspace member");
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name != "target" && !name.starts_with('.') {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Splits a file at its first `#[cfg(test)]` module: what follows is test code.
fn library_part(text: &str) -> &str {
    text.find("#[cfg(test)]").map_or(text, |i| &text[..i])
}

#[test]
fn every_crate_has_a_readme_and_opts_into_workspace_lints() {
    for c in CRATES {
        let dir = root().join(c);
        assert!(dir.join("README.md").is_file(), "{c} has no README.md");
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        if *c == "vram-core" || *c == "vram-llm" || *c == "vram-py" || *c == "vram-embed" {
            // The CUDA backend's crate (and vram-llm, for its view of leased
            // blocks, vram-py, for its DLPack export and NumPy views, and vram-embed, for
            // gemm and cuBLAS on leased memory) keeps its own copy
            // of the table, with unsafe_code relaxed from forbid to deny;
            // every other lint must match.
            let ws = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
            let lints = ws.split("[workspace.lints.rust]").nth(1).unwrap();
            let lints = lints.split("[profile").next().unwrap();
            for line in lints
                .lines()
                .filter(|l| l.contains(" = ") && !l.contains("unsafe_code"))
            {
                assert!(
                    manifest.contains(line),
                    "{c} lints lack workspace line `{line}`"
                );
            }
            assert!(manifest.contains("unsafe_code = \"deny\""));
        } else {
            assert!(
                manifest.contains("[lints]\nworkspace = true"),
                "{c}/Cargo.toml must opt into [lints] workspace = true"
            );
        }
    }
}

#[test]
fn no_ignored_or_should_panic_tests_and_no_placeholders_in_libraries() {
    // Built from pieces so this file does not flag itself.
    let ignore = concat!("#[", "ignore");
    let should_panic = concat!("#[", "should_panic");
    let placeholders = [
        concat!("todo", "!("),
        concat!("unimplemented", "!("),
        concat!("dbg", "!("),
    ];
    let mut files = Vec::new();
    for c in CRATES {
        rust_files(&root().join(c), &mut files);
    }
    rust_files(&root().join("fuzz"), &mut files);
    assert!(files.len() > 5, "tidy found too few files: {}", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        if text.contains(ignore) {
            problems.push(format!(
                "{rel}: an ignored test (tests run everywhere or print why not)"
            ));
        }
        if text.contains(should_panic) {
            problems.push(format!(
                "{rel}: a should-panic test (assert on Err instead)"
            ));
        }
        let is_library = rel.contains("/src/") && !rel.starts_with("xtask/");
        if is_library {
            for p in placeholders {
                if library_part(&text).contains(p) {
                    problems.push(format!("{rel}: `{p}` in library code"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "repository policy violations:\n{}",
        problems.join("\n")
    );
}

#[test]
fn unsafe_code_lives_only_in_the_cuda_backend_and_the_file_map() {
    let mut files = Vec::new();
    for c in CRATES {
        rust_files(&root().join(c).join("src"), &mut files);
    }
    let mut problems = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        if rel.starts_with("vram-core/src/cuda")
            || rel == "vram-core/src/source/map.rs"
            || rel == "vram-llm/src/kernels/view.rs"
            || rel == "vram-llm/src/kernels/avx2.rs"
            || rel == "vram-llm/src/cuda.rs"
            || rel == "vram-py/src/dlpack.rs"
            || rel == "vram-py/src/ndview.rs"
            || rel == "vram-embed/src/cuda.rs"
            || rel == "vram-embed/src/host.rs"
            || rel.starts_with("xtask/")
        {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        if text.contains(concat!("unsafe", " {")) || text.contains(concat!("unsafe", " fn")) {
            problems.push(rel);
        }
    }
    assert!(
        problems.is_empty(),
        "unsafe outside vram-core/src/cuda, vram-core/src/source/map.rs, vram-llm/src/kernels/{{view,avx2}}.rs, vram-llm/src/cuda.rs, vram-py/src/{{dlpack,ndview}}.rs and vram-embed/src/{{cuda,host}}.rs: {problems:?}"
    );
}

#[test]
fn the_key_id_label_has_one_owner() {
    // A label that derives key identities is written in one place, vram-secrets
    // (the lower floor); others call `vram_secrets::KeyId::of_mac_key`. Tests
    // keep the literal as a known answer. Built from pieces so this file does
    // not count.
    let label = concat!("vram-residency/", "key-id/v1");
    let owner = "vram-secrets/src/key.rs";
    let mut files = Vec::new();
    for c in CRATES {
        rust_files(&root().join(c).join("src"), &mut files);
    }
    let mut owners = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root()).unwrap_or(f).display().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        if library_part(&text).contains(label) {
            owners.push(rel);
        }
    }
    assert_eq!(
        owners,
        [owner],
        "the key-id label belongs to {owner} alone; elsewhere use vram_secrets::KeyId::of_mac_key"
    );
}

/// No file of a crate depends on a file that depends back on it: each crate's
/// file-level import graph (edges from `use crate::…`, `super::…`, `self::…`
/// and child-module paths, and from `crate::…`/`super::…` paths written in
/// code) has no cycle outside [`import_graph::ALLOWED`].
///
/// A path names the file of its longest module prefix (`src/a/b.rs` or
/// `src/a/b/mod.rs` is `a::b`); a name a file imports (a re-export, say) is
/// followed to the file it comes from. The crate root (`lib.rs`, or `main.rs`
/// without one) declares and re-exports every module, so edges out of it are
/// not counted. Test modules (after `#[cfg(test)]`) and comment lines are
/// skipped.
mod import_graph {
    use super::{library_part, root, rust_files, CRATES};
    use std::collections::{BTreeMap, BTreeSet};

    /// Cycles known today, as (crate, files under `src/`): a cycle of files
    /// that all appear in one entry passes. Each entry is debt, not policy.
    pub(super) const ALLOWED: &[(&str, &[&str])] = &[];

    type ModPath = Vec<String>;

    /// One source file: its module path, the child modules it declares and
    /// the paths its code names (whether `use`d or written out).
    pub(super) struct File {
        module: ModPath,
        children: BTreeSet<String>,
        /// Name bound by each `use` (its alias, or the last segment) and the
        /// path as written.
        imports: Vec<(String, Vec<String>)>,
        /// Paths written in code, outside `use` declarations.
        inline: Vec<Vec<String>>,
    }

    /// The module path of a file, given relative to `src/`.
    fn module_of(rel: &str) -> ModPath {
        let mut parts: ModPath = rel
            .strip_suffix(".rs")
            .unwrap_or(rel)
            .split('/')
            .map(str::to_string)
            .collect();
        let last = parts.last().map(String::as_str);
        if parts.len() == 1 && matches!(last, Some("lib" | "main")) {
            parts.clear();
        } else if last == Some("mod") {
            parts.pop();
        }
        parts
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_' || c == '$'
    }

    fn segments(path: &str) -> Vec<String> {
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Splits a `use` group's inside at its top-level commas.
    fn split_top(inner: &str) -> Vec<&str> {
        let (mut out, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth = depth.saturating_add(1),
                '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    out.push(&inner[start..i]);
                    start = i.saturating_add(1);
                }
                _ => {}
            }
        }
        out.push(&inner[start..]);
        out.into_iter().filter(|s| !s.trim().is_empty()).collect()
    }

    /// The (bound name, path) pairs of a `use` tree: `a::{b, c::{d as e}}`
    /// gives (`b`, `a::b`) and (`e`, `a::c::d`).
    pub(super) fn flatten(tree: &str, prefix: &[String], out: &mut Vec<(String, Vec<String>)>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let mut path = prefix.to_vec();
            path.extend(segments(&tree[..open]));
            let inner = tree[open..]
                .trim_start_matches('{')
                .trim_end()
                .strip_suffix('}')
                .unwrap_or_default();
            for item in split_top(inner) {
                flatten(item, &path, out);
            }
            return;
        }
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p, Some(a.trim().to_string())),
            None => (tree, None),
        };
        let mut full = prefix.to_vec();
        full.extend(segments(path));
        if full.last().is_some_and(|s| s == "self") {
            full.pop();
        }
        if let Some(name) = alias.or_else(|| full.last().cloned()) {
            out.push((name, full));
        }
    }

    /// Reads one file's library part.
    pub(super) fn parse(rel: &str, text: &str) -> File {
        let code: String = library_part(text)
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut children = BTreeSet::new();
        let mut imports = Vec::new();
        let mut rest = String::new();
        let mut prev = ' ';
        let mut i = 0usize;
        while let Some(tail) = code.get(i..) {
            let Some(c) = tail.chars().next() else { break };
            let boundary = !is_ident(prev) && prev != ':';
            if boundary && (tail.starts_with("use ") || tail.starts_with("mod ")) {
                let end = tail.find([';', '{']).unwrap_or(tail.len());
                let is_use = tail.starts_with("use ");
                let end = if is_use {
                    tail.find(';').unwrap_or(tail.len())
                } else {
                    end
                };
                let body = &tail[4..end];
                if is_use {
                    flatten(body, &[], &mut imports);
                    i = i.saturating_add(end);
                    prev = ';';
                    continue;
                }
                if tail[end..].starts_with(';') {
                    children.insert(body.trim().to_string());
                }
            }
            rest.push(c);
            prev = c;
            i = i.saturating_add(c.len_utf8());
        }
        let mut inline = Vec::new();
        for start in ["crate::", "super::"] {
            for (at, _) in rest.match_indices(start) {
                let before = rest[..at].chars().next_back().unwrap_or(' ');
                if (is_ident(before) && before != '$') || before == ':' {
                    continue;
                }
                let path: String = rest[at..]
                    .chars()
                    .take_while(|c| is_ident(*c) || *c == ':')
                    .collect();
                inline.push(segments(&path));
            }
        }
        File {
            module: module_of(rel),
            children,
            imports,
            inline,
        }
    }

    /// The absolute module path a path written in `file` names, or `None`
    /// for another crate's.
    fn absolute(segs: &[String], file: &File) -> Option<ModPath> {
        let first = segs.first()?.as_str();
        let mut base = file.module.clone();
        let mut rest = segs;
        match first {
            "crate" | "$crate" => {
                base.clear();
                rest = &segs[1..];
            }
            "self" => rest = &segs[1..],
            "super" => {
                while rest.first().is_some_and(|s| s == "super") {
                    base.pop()?;
                    rest = &rest[1..];
                }
            }
            name if file.children.contains(name) => {}
            _ => return None,
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file (its key in `files`) that defines what `path` names.
    fn file_of(path: &[String], files: &BTreeMap<String, File>, depth: u8) -> Option<String> {
        let (key, file, len) = (0..=path.len()).rev().find_map(|len| {
            files
                .iter()
                .find(|(_, f)| f.module == path[..len])
                .map(|(k, f)| (k, f, len))
        })?;
        // The root's re-exports are the crate's facade, not followed (every
        // file would otherwise reach every other through the error type).
        if let Some(next) = path.get(len).filter(|_| !file.module.is_empty()) {
            let imported = file.imports.iter().find(|(name, _)| name == next);
            if let (Some((_, target)), true) = (imported, depth < 16) {
                if let Some(mut target) = absolute(target, file) {
                    target.extend(path[len..].iter().skip(1).cloned());
                    return file_of(&target, files, depth.saturating_add(1));
                }
            }
        }
        Some(key.clone())
    }

    /// Each file's edges to the other files of its crate, but not to the
    /// modules it declares (or theirs): a module owns its children and
    /// dispatches to them, and they may use what it holds.
    pub(super) fn edges(files: &BTreeMap<String, File>) -> BTreeMap<String, BTreeSet<String>> {
        let mut out = BTreeMap::new();
        for (key, file) in files {
            let paths = file.imports.iter().map(|(_, p)| p).chain(&file.inline);
            let to: BTreeSet<String> = paths
                .filter_map(|p| absolute(p, file))
                .filter_map(|p| file_of(&p, files, 0))
                .filter(|t| {
                    files.get(t).is_some_and(|f| {
                        !f.module.is_empty() && !f.module.starts_with(&file.module)
                    })
                })
                .collect();
            out.insert(key.clone(), to);
        }
        out
    }

    fn reach(from: &str, edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for m in edges.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    }

    /// The sets of files that reach each other (strongly connected, two or more).
    pub(super) fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> BTreeSet<BTreeSet<String>> {
        let reaches: BTreeMap<&String, BTreeSet<String>> =
            edges.keys().map(|k| (k, reach(k, edges))).collect();
        reaches
            .iter()
            .filter(|(k, r)| r.contains(**k))
            .map(|(k, r)| {
                r.iter()
                    .filter(|m| reaches.get(m).is_some_and(|back| back.contains(*k)))
                    .cloned()
                    .collect::<BTreeSet<String>>()
            })
            .collect()
    }

    /// A crate's source files, keyed by their path under `src/`.
    pub(super) fn crate_files(krate: &str) -> BTreeMap<String, File> {
        let src = root().join(krate).join("src");
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let has_lib = src.join("lib.rs").is_file();
        paths
            .iter()
            .filter_map(|p| {
                let rel = p.strip_prefix(&src).ok()?.display().to_string();
                // With a library, `main.rs` is a crate of its own.
                if has_lib && rel == "main.rs" {
                    return None;
                }
                let text = std::fs::read_to_string(p).ok()?;
                let file = parse(&rel, &text);
                Some((rel, file))
            })
            .collect()
    }

    #[test]
    fn no_file_depends_on_a_file_that_depends_back_on_it() {
        let mut problems = Vec::new();
        let mut edge_count = 0usize;
        for krate in CRATES {
            let edges = edges(&crate_files(krate));
            edge_count = edge_count.saturating_add(edges.values().map(BTreeSet::len).sum());
            for cycle in cycles(&edges) {
                let allowed = ALLOWED.iter().any(|(c, files)| {
                    c == krate && cycle.iter().all(|f| files.contains(&f.as_str()))
                });
                if !allowed {
                    let detail: Vec<String> = cycle
                        .iter()
                        .map(|f| {
                            let to: Vec<&String> =
                                edges[f].iter().filter(|t| cycle.contains(*t)).collect();
                            format!("{f} -> {to:?}")
                        })
                        .collect();
                    problems.push(format!("{krate}: {}", detail.join(", ")));
                }
            }
        }
        assert!(edge_count > 50, "tidy found too few imports: {edge_count}");
        assert!(
            problems.is_empty(),
            "files that import each other (move the shared item to the file that owns it):\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn imports_are_read_as_the_compiler_reads_them() {
        let mut out = Vec::new();
        flatten("crate::a::{b, c::{d as e, self}, f::*}", &[], &mut out);
        let got: Vec<(String, String)> = out.into_iter().map(|(n, p)| (n, p.join("::"))).collect();
        let want = [
            ("b", "crate::a::b"),
            ("e", "crate::a::c::d"),
            ("c", "crate::a::c"),
            ("*", "crate::a::f::*"),
        ];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        assert_eq!(got, want);

        let files: BTreeMap<String, File> = [
            ("lib.rs", "mod a;\nmod b;\npub use a::Thing;\n"),
            ("a.rs", "use crate::b::helper;\npub struct Thing;\n"),
            (
                "b.rs",
                "// use crate::c::Ignored;\npub fn helper() -> crate::a::Thing { crate::a::Thing }\n#[cfg(test)]\nmod tests { use super::super::c::*; }\n",
            ),
            ("c/mod.rs", "mod d;\npub(crate) use d::Deep;\n"),
            ("f.rs", "fn f() -> crate::Thing { crate::Thing }\n"),
            ("c/d.rs", "pub struct Deep(super::super::b::X);\n"),
            ("e.rs", "fn f() -> super::c::Deep { todo() }\n"),
        ]
        .into_iter()
        .map(|(rel, text)| (rel.to_string(), parse(rel, text)))
        .collect();
        let edges = edges(&files);
        let to = |f: &str| edges[f].iter().cloned().collect::<Vec<_>>();
        assert_eq!(to("a.rs"), ["b.rs"]);
        assert_eq!(to("b.rs"), ["a.rs"]);
        // A module's paths into its own children are not edges.
        assert!(to("c/mod.rs").is_empty());
        // The root's re-exports are not followed.
        assert!(to("f.rs").is_empty());
        assert_eq!(to("c/d.rs"), ["b.rs"]);
        // Through `c`'s import, to `c/d.rs`.
        assert_eq!(to("e.rs"), ["c/d.rs"]);
        let found: Vec<Vec<String>> = cycles(&edges)
            .into_iter()
            .map(|c| c.into_iter().collect())
            .collect();
        assert_eq!(found, [["a.rs", "b.rs"]]);
    }
}

/// The floor table and the dependency diagram of `docs/ARCHITECTURE.md`,
/// checked against every member's `Cargo.toml`.
///
/// The document is the one copy of the table: this module parses it, so the
/// test and the text cannot disagree.
mod floors {
    use std::collections::{BTreeMap, BTreeSet};

    /// Which manifest table a dependency was declared in.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Kind {
        Normal,
        Build,
        Dev,
    }

    impl Kind {
        fn table(self) -> &'static str {
            match self {
                Kind::Normal => "dependencies",
                Kind::Build => "build-dependencies",
                Kind::Dev => "dev-dependencies",
            }
        }
    }

    /// One dependency of a manifest, by package name.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Dep {
        pub(super) name: String,
        pub(super) kind: Kind,
    }

    /// The floor table: each crate's floor and the crates of its own floor
    /// it may depend on.
    #[derive(Debug, Default)]
    pub(super) struct Table {
        pub(super) floor: BTreeMap<String, u32>,
        pub(super) same_floor: BTreeMap<String, BTreeSet<String>>,
    }

    /// Every `` `name` `` in a piece of markdown.
    fn backticked(text: &str) -> Vec<String> {
        text.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    /// Reads the table under `## Floors`: rows `` | `crate` | N | `other`, ... |``.
    pub(super) fn parse_table(doc: &str) -> Result<Table, String> {
        let section = doc
            .split("\n## Floors")
            .nth(1)
            .ok_or("no `## Floors` section")?;
        let section = section.split("\n## ").next().unwrap_or(section);
        let mut table = Table::default();
        for line in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let [krate, floor, also] = cells[..] else {
                return Err(format!("a floor-table row without three cells: {line}"));
            };
            let name = krate.trim_matches('`').to_string();
            let floor: u32 = floor
                .parse()
                .map_err(|_| format!("floor of {name} is not a number: {floor}"))?;
            // Only the names before the first `:` are allowances; the rest is why.
            let allowed = backticked(also.split(':').next().unwrap_or(""));
            if table.floor.insert(name.clone(), floor).is_some() {
                return Err(format!("{name} has two rows in the floor table"));
            }
            table.same_floor.insert(name, allowed.into_iter().collect());
        }
        if table.floor.is_empty() {
            return Err("the floor table has no rows".into());
        }
        Ok(table)
    }

    /// Reads the diagram (the first ```` ```text ```` block): `floor N` starts
    /// a floor, `crate -> a, b` gives a crate's arrows. Returns each crate's
    /// floor and its arrows.
    pub(super) fn parse_diagram(
        doc: &str,
    ) -> Result<BTreeMap<String, (u32, BTreeSet<String>)>, String> {
        let block = doc
            .split("```text\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .ok_or("no ```text diagram")?;
        let mut out = BTreeMap::new();
        let mut floor = None;
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let mut rest = line.trim();
            if let Some(after) = rest.strip_prefix("floor ") {
                let (n, tail) = after.split_once(' ').unwrap_or((after, ""));
                floor = Some(
                    n.parse::<u32>()
                        .map_err(|_| format!("bad floor number in diagram line: {line}"))?,
                );
                rest = tail.trim();
            }
            let (name, targets) = rest
                .split_once("->")
                .ok_or_else(|| format!("a diagram line without `->`: {line}"))?;
            let floor = floor.ok_or_else(|| format!("a diagram line before any floor: {line}"))?;
            let targets: BTreeSet<String> = targets
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            if out
                .insert(name.trim().to_string(), (floor, targets))
                .is_some()
            {
                return Err(format!("{} is drawn twice", name.trim()));
            }
        }
        Ok(out)
    }

    /// The `name = "..."` of a manifest's `[package]`.
    pub(super) fn package_name(manifest: &str) -> Option<String> {
        let package = manifest.split("[package]").nth(1)?;
        let package = package.split("\n[").next().unwrap_or(package);
        package.lines().find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
    }

    /// The kind of dependency table a section header opens, and for the
    /// dotted form (`[dependencies.foo]`) the dependency it names.
    fn section(header: &str) -> Option<(Kind, Option<String>)> {
        // `[target.'cfg(unix)'.dev-dependencies]` counts as `dev-dependencies`.
        let header = header.trim().trim_start_matches('[').trim_end_matches(']');
        let header = match header.strip_prefix("target.") {
            Some(rest) => {
                // Skip the quoted platform, which may hold dots.
                let after = match rest.strip_prefix('\'') {
                    Some(q) => q.split_once('\'')?.1,
                    None => match rest.strip_prefix('"') {
                        Some(q) => q.split_once('"')?.1,
                        None => rest.split_once('.').map_or("", |(_, r)| r),
                    },
                };
                after.trim_start_matches('.')
            }
            None => header,
        };
        let (table, dotted) = match header.split_once('.') {
            Some((t, name)) => (t, Some(name.trim_matches('"').to_string())),
            None => (header, None),
        };
        let kind = match table {
            "dependencies" => Kind::Normal,
            "build-dependencies" => Kind::Build,
            "dev-dependencies" => Kind::Dev,
            _ => return None,
        };
        Some((kind, dotted))
    }

    /// The `package = "..."` of an inline table, the real name of a renamed
    /// dependency.
    fn renamed(value: &str) -> Option<String> {
        let at = value.find("package")?;
        let rest = value.get(at..)?.split_once('=')?.1.trim_start();
        let rest = rest.strip_prefix('"')?;
        Some(rest.split('"').next()?.to_string())
    }

    /// Every dependency a manifest declares, in any dependency table
    /// (target-specific ones included), by package name.
    pub(super) fn dependencies(manifest: &str) -> Vec<Dep> {
        let mut out = Vec::new();
        let mut current: Option<Kind> = None;
        for line in manifest.lines() {
            let line = line.split(" #").next().unwrap_or(line).trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                current = None;
                if let Some((kind, dotted)) = section(line) {
                    match dotted {
                        // `[dependencies.foo]`: the name is in the header; a
                        // `package = ` line below would rename it, which no
                        // manifest here does.
                        Some(name) => out.push(Dep { name, kind }),
                        None => current = Some(kind),
                    }
                }
                continue;
            }
            let Some(kind) = current else { continue };
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim();
            // `foo.workspace = true`, `foo = "1"`, `"foo" = { .. }`.
            let key = key.split('.').next().unwrap_or(key).trim_matches('"');
            let name = renamed(value).unwrap_or_else(|| key.to_string());
            out.push(Dep { name, kind });
        }
        out
    }

    /// Every edge that breaks the table, one line each, naming the edge.
    /// `manifests` holds `(package name, manifest text)` for every member.
    pub(super) fn violations(table: &Table, manifests: &[(String, String)]) -> Vec<String> {
        let mut problems = Vec::new();
        for (krate, manifest) in manifests {
            let Some(&from) = table.floor.get(krate) else {
                problems.push(format!("{krate} has no row in the floor table"));
                continue;
            };
            for dep in dependencies(manifest) {
                let Some(&to) = table.floor.get(&dep.name) else {
                    continue; // not a workspace crate
                };
                if dep.kind == Kind::Dev && dep.name == *krate {
                    // A crate's tests turning on its own test-only features
                    // (`vram-audit`'s `test-hooks`): no edge between crates.
                    continue;
                }
                let allowed = to < from
                    || (to == from
                        && table
                            .same_floor
                            .get(krate)
                            .is_some_and(|a| a.contains(&dep.name)));
                if !allowed {
                    problems.push(format!(
                        "{krate} (floor {from}) -> {} (floor {to}) in [{}]: {}",
                        dep.name,
                        dep.kind.table(),
                        if to > from {
                            "a higher floor"
                        } else {
                            "its own floor, which the table does not allow for it"
                        }
                    ));
                }
            }
        }
        problems
    }

    /// The workspace edges of normal and build dependencies: what the
    /// diagram draws.
    pub(super) fn edges(
        table: &Table,
        manifests: &[(String, String)],
    ) -> BTreeMap<String, BTreeSet<String>> {
        manifests
            .iter()
            .map(|(krate, manifest)| {
                let to = dependencies(manifest)
                    .into_iter()
                    .filter(|d| d.kind != Kind::Dev && table.floor.contains_key(&d.name))
                    .map(|d| d.name)
                    .collect();
                (krate.clone(), to)
            })
            .collect()
    }

    /// What the diagram draws that the manifests and table do not say, and
    /// the other way round.
    pub(super) fn diagram_problems(
        doc: &str,
        table: &Table,
        manifests: &[(String, String)],
    ) -> Result<Vec<String>, String> {
        let drawn = parse_diagram(doc)?;
        let real = edges(table, manifests);
        let mut problems = Vec::new();
        for (krate, to) in &real {
            let Some((floor, arrows)) = drawn.get(krate) else {
                problems.push(format!("{krate} is not in the diagram"));
                continue;
            };
            if table.floor.get(krate) != Some(floor) {
                problems.push(format!(
                    "the diagram puts {krate} on floor {floor}, the table on {:?}",
                    table.floor.get(krate)
                ));
            }
            for missing in to.difference(arrows) {
                problems.push(format!("the diagram lacks the edge {krate} -> {missing}"));
            }
            for extra in arrows.difference(to) {
                problems.push(format!(
                    "the diagram draws {krate} -> {extra}, which no manifest declares"
                ));
            }
        }
        for krate in drawn.keys().filter(|k| !real.contains_key(*k)) {
            problems.push(format!(
                "the diagram draws {krate}, which is no workspace member"
            ));
        }
        Ok(problems)
    }
}

/// `(package name, manifest text)` of every workspace member, from the root
/// manifest's `members`.
fn member_manifests() -> Vec<(String, String)> {
    members()
        .iter()
        .map(|dir| {
            let text = std::fs::read_to_string(root().join(dir).join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{dir}/Cargo.toml: {e}"));
            let name = floors::package_name(&text)
                .unwrap_or_else(|| panic!("{dir}/Cargo.toml has no package name"));
            (name, text)
        })
        .collect()
}

fn architecture_doc() -> String {
    std::fs::read_to_string(root().join("docs/ARCHITECTURE.md")).unwrap()
}

#[test]
fn every_dependency_respects_the_floor_table() {
    let doc = architecture_doc();
    let table = floors::parse_table(&doc).unwrap();
    let manifests = member_manifests();
    let members: std::collections::BTreeSet<&String> = manifests.iter().map(|(n, _)| n).collect();
    let rows: std::collections::BTreeSet<&String> = table.floor.keys().collect();
    assert_eq!(
        rows, members,
        "the floor table in docs/ARCHITECTURE.md must have one row per workspace member"
    );
    let problems = floors::violations(&table, &manifests);
    assert!(
        problems.is_empty(),
        "dependencies the floor table (docs/ARCHITECTURE.md) forbids:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_architecture_diagram_draws_the_real_edges() {
    let doc = architecture_doc();
    let table = floors::parse_table(&doc).unwrap();
    let problems = floors::diagram_problems(&doc, &table, &member_manifests()).unwrap();
    assert!(
        problems.is_empty(),
        "docs/ARCHITECTURE.md's diagram and the manifests disagree:\n{}",
        problems.join("\n")
    );
}

/// Whether a manifest's `[features]` table declares `test-hooks`.
fn declares_test_hooks(manifest: &str) -> bool {
    let Some(features) = manifest.split("\n[features]").nth(1) else {
        return false;
    };
    let features = features.split("\n[").next().unwrap_or(features);
    features.lines().any(|l| {
        l.split_once('=')
            .is_some_and(|(k, _)| k.trim().trim_matches('"') == "test-hooks")
    })
}

/// The lines of `cargo tree -e features` output that turn on a crate's
/// `test-hooks` feature.
fn test_hook_lines(tree: &str) -> Vec<String> {
    let mut lines: Vec<String> = tree
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("feature \"test-hooks\""))
        .map(String::from)
        .collect();
    lines.sort();
    lines.dedup();
    lines
}

/// The binaries an operator installs, `vram`, `vram-embed` and `vram-serve`, built as
/// they ship (default features, both in one build so that features unify as
/// in a workspace build), reach no crate's `test-hooks` (fault injection,
/// device memory read and written behind an owner's back). Dev-dependencies
/// are left out: tests may turn the hooks on.
#[test]
fn the_binaries_default_features_enable_no_test_hooks() {
    // The members that have test hooks; `cargo tree -i` lists what turns
    // each of their features on (the forward tree leaves out features a
    // package turns on from its own features).
    let hooked_crates: Vec<String> = member_manifests()
        .into_iter()
        .filter(|(_, manifest)| declares_test_hooks(manifest))
        .map(|(name, _)| name)
        .collect();
    assert!(
        hooked_crates.iter().any(|c| c == "vram-core"),
        "vram-core's test-hooks feature was not found: {hooked_crates:?}"
    );
    let mut cmd = crate::run::cargo();
    cmd.args([
        "tree",
        "--locked",
        "--offline",
        "-p",
        "vram-cli",
        "-p",
        "vram-embed",
        "-p",
        "vram-serve",
        "--edges",
        "normal,build,features",
        "--target",
        "all",
        "--prefix",
        "none",
    ]);
    for krate in &hooked_crates {
        cmd.args(["--invert", krate]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.contains("vram-core feature \"default\""),
        "cargo tree -e features printed no features of vram-core:\n{tree}"
    );
    let hooked = test_hook_lines(&tree);
    assert!(
        hooked.is_empty(),
        "the default build of vram and vram-embed turns on test hooks (use a narrower feature, e.g. vram-core's `demo`):\n{}",
        hooked.join("\n")
    );
}

#[test]
fn test_hook_lines_are_found_in_cargo_trees_output() {
    let tree = "vram-cli v0.1.0 (/w/vram-cli)\nvram-core feature \"default\"\nvram-core feature \"test-hooks\"\nvram-core v0.1.0 (/w/vram-core)\nvram-audit feature \"test-hooks\" (*)\n";
    assert_eq!(
        test_hook_lines(tree),
        vec![
            "vram-audit feature \"test-hooks\" (*)".to_string(),
            "vram-core feature \"test-hooks\"".to_string()
        ]
    );
    assert!(test_hook_lines("vram-core feature \"demo\"\n").is_empty());
    assert!(declares_test_hooks(
        "[package]\nname = \"x\"\n\n[features]\ncuda = []\ntest-hooks = []\n\n[dependencies]\n"
    ));
    assert!(!declares_test_hooks(
        "[package]\nname = \"x\"\n\n[features]\ndemo = []\n\n[dependencies]\ny = { features = [\"test-hooks\"] }\n"
    ));
}

mod floor_checks_reject {
    use super::floors;

    const DOC: &str = "\
# Architecture

```text
floor 2   high -> low
floor 1   peer ->
          low  -> peer
```

## Floors

| crate | floor | may also depend on (same floor), and why |
|---|---|---|
| `low` | 1 | `peer`: a reason that names `high` after the colon |
| `peer` | 1 | nothing |
| `high` | 2 | nothing |

## Code map
";

    fn manifest(name: &str, body: &str) -> (String, String) {
        (
            name.to_string(),
            format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\n\n{body}\n[lints]\nworkspace = true\n"),
        )
    }

    fn good() -> Vec<(String, String)> {
        vec![
            manifest(
                "low",
                "[dependencies]\npeer.workspace = true\nserde = \"1\"\n",
            ),
            manifest("peer", "[dependencies]\n"),
            manifest("high", "[dependencies]\nlow = { path = \"../low\" }\n"),
        ]
    }

    fn with(name: &str, body: &str) -> Vec<(String, String)> {
        let mut all: Vec<_> = good().into_iter().filter(|(n, _)| n != name).collect();
        all.push(manifest(name, body));
        all
    }

    fn problems(manifests: &[(String, String)]) -> Vec<String> {
        let table = floors::parse_table(DOC).unwrap();
        floors::violations(&table, manifests)
    }

    #[test]
    fn the_table_is_read_with_its_allowances() {
        let table = floors::parse_table(DOC).unwrap();
        assert_eq!(table.floor["high"], 2);
        assert_eq!(table.floor["low"], 1);
        assert!(table.same_floor["low"].contains("peer"));
        // A name after the colon is a reason, not an allowance.
        assert!(!table.same_floor["low"].contains("high"));
        assert!(table.same_floor["peer"].is_empty());
    }

    #[test]
    fn an_allowed_workspace_passes() {
        assert_eq!(problems(&good()), Vec::<String>::new());
        let table = floors::parse_table(DOC).unwrap();
        assert_eq!(
            floors::diagram_problems(DOC, &table, &good()).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_dependency_on_a_higher_floor_is_named() {
        let p = problems(&with("low", "[dependencies]\nhigh.workspace = true\n"));
        assert_eq!(
            p,
            ["low (floor 1) -> high (floor 2) in [dependencies]: a higher floor"]
        );
    }

    #[test]
    fn build_dev_target_dotted_and_renamed_dependencies_count_too() {
        for body in [
            "[build-dependencies]\nhigh = \"0.1\"\n",
            "[dev-dependencies]\nhigh.workspace = true\n",
            "[target.'cfg(loom)'.dependencies]\nhigh.workspace = true\n",
            "[target.\"cfg(unix)\".dev-dependencies]\nhigh = { path = \"../high\" }\n",
            "[target.x86_64-unknown-linux-gnu.dependencies]\nhigh.workspace = true\n",
            "[dependencies.high]\npath = \"../high\"\n",
            "[dependencies]\nalias = { package = \"high\", path = \"../high\" }\n",
            "[dependencies]\n\"high\" = \"0.1\" # a comment\n",
        ] {
            let p = problems(&with("peer", body));
            assert_eq!(p.len(), 1, "{body}: {p:?}");
            assert!(
                p[0].starts_with("peer (floor 1) -> high (floor 2)"),
                "{body}: {p:?}"
            );
        }
    }

    #[test]
    fn a_same_floor_dependency_the_table_does_not_allow_is_named() {
        let p = problems(&with("peer", "[dependencies]\nlow.workspace = true\n"));
        assert_eq!(
            p,
            ["peer (floor 1) -> low (floor 1) in [dependencies]: its own floor, which the table does not allow for it"]
        );
    }

    #[test]
    fn a_crate_without_a_row_is_named() {
        let mut all = good();
        all.push(manifest("stray", ""));
        assert_eq!(problems(&all), ["stray has no row in the floor table"]);
    }

    #[test]
    fn a_diagram_that_misdraws_an_edge_is_named() {
        let table = floors::parse_table(DOC).unwrap();
        // `peer` gains a real edge the diagram lacks; `low -> peer` disappears.
        let manifests = vec![
            manifest("low", "[dependencies]\nserde = \"1\"\n"),
            manifest(
                "peer",
                "[dev-dependencies]\nlow.workspace = true\n[build-dependencies]\nlow = \"0.1\"\n",
            ),
            manifest("high", "[dependencies]\nlow.workspace = true\n"),
        ];
        let p = floors::diagram_problems(DOC, &table, &manifests).unwrap();
        assert_eq!(
            p,
            [
                "the diagram draws low -> peer, which no manifest declares",
                "the diagram lacks the edge peer -> low",
            ]
        );
        let misplaced = DOC.replace(
            "floor 1   peer ->\n          low  -> peer",
            "          low  -> peer\nfloor 1   peer ->",
        );
        let p = floors::diagram_problems(&misplaced, &table, &good()).unwrap();
        assert_eq!(p, ["the diagram puts low on floor 2, the table on Some(1)"]);
    }
}
