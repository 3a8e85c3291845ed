//! Benchmarks of vhostfix's core: `analyze()` (parse, detect, rules, edit plan)
//! plus applying the edits, i.e. everything `vhostfix filter` does between
//! reading the input and writing the output.
//!
//! * `small`: a 3.3 KB Windows domain (benches/data/win2019.xml);
//! * `big`: the generated Windows domain of benches/gen_domain.py (1000 disks,
//!   256 NICs, 5.1 MB at scale 1) at scales 0.2, 0.5, 1 and 2 (1 to 10 MB), to
//!   show whether time grows linearly with size (MB/s flat);
//! * `stages`: the 5.1 MB domain split into stages, to see where the time goes,
//!   and analyze + `write_edited` into a sink (the CLI's path: no output copy);
//!   `analyze_tree` is the tree path alone (what every document took before
//!   the fast path), `parse`/`roxmltree_parse` its first stage.
//!
//! Every input is checked once to take the fast path and to get exactly the
//! tree path's answer, so what is timed is what `vhostfix filter` runs.
//!
//! Run: `cargo bench --bench core` (needs python3 for the generator).
//! See BENCHMARKS.md for the figures.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::process::Command;
use std::time::Duration;
use vhostfix::stages as rewrite;
use vhostfix::stages::{analyze_fast, analyze_tree};
use vhostfix::{analyze, Policy};

const SMALL: &str = include_str!("data/win2019.xml");

/// The big domain at `scale`, from the same generator benches/process.sh uses.
fn generated(scale: &str) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/gen_domain.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--scale", scale])
        .output()
        .expect("running python3 benches/gen_domain.py");
    assert!(
        out.status.success(),
        "gen_domain.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("generator output is UTF-8")
}

/// analyze + apply, as `vhostfix filter` does (minus I/O).
fn filter(text: &str, policy: &Policy) -> String {
    let a = analyze(text, policy).expect("benchmark input is valid");
    a.output(text)
}

/// Checks once that the input really exercises the fixing path, on the fast
/// path, with the tree path's answer.
fn check(text: &str, policy: &Policy, expect_fixed: usize) {
    let fast = analyze_fast(text, policy).expect("benchmark input takes the fast path");
    let tree = analyze_tree(text, policy);
    assert_eq!(
        format!("{fast:?}"),
        format!("{tree:?}"),
        "the two paths differ"
    );
    let a = analyze(text, policy).expect("benchmark input is valid");
    assert_eq!(a.edits.len(), expect_fixed, "unexpected number of fixes");
    assert_ne!(a.output(text), text);
}

/// NICs the generator's 16-NIC pattern makes to fix (indices 0..5 of each 16).
fn fixes_in(text: &str) -> usize {
    let nics = text.matches("<interface ").count();
    (0..nics).filter(|i| i % 16 < 5).count()
}

fn small(c: &mut Criterion) {
    let policy = Policy::default();
    check(SMALL, &policy, 2);
    let mut g = c.benchmark_group("small");
    g.throughput(Throughput::Bytes(SMALL.len() as u64));
    g.bench_function("win2019_3k", |b| {
        b.iter(|| filter(black_box(SMALL), &policy))
    });
    g.finish();
}

fn big(c: &mut Criterion) {
    let policy = Policy::default();
    let mut g = c.benchmark_group("big");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    for scale in ["0.2", "0.5", "1", "2"] {
        let text = generated(scale);
        check(&text, &policy, fixes_in(&text));
        g.throughput(Throughput::Bytes(text.len() as u64));
        let id = BenchmarkId::new("filter", format!("scale{scale}_{}B", text.len()));
        g.bench_with_input(id, text.as_str(), |b, t| {
            b.iter(|| filter(black_box(t), &policy))
        });
    }
    g.finish();
}

fn stages(c: &mut Criterion) {
    let policy = Policy::default();
    let text = generated("1");
    check(&text, &policy, fixes_in(&text));
    let a = analyze(&text, &policy).expect("valid");
    let mut g = c.benchmark_group("stages");
    g.sample_size(20).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function("roxmltree_parse", |b| {
        b.iter(|| {
            let opts = roxmltree::ParsingOptions {
                allow_dtd: false,
                nodes_limit: policy.limits.max_nodes,
                ..roxmltree::ParsingOptions::default()
            };
            roxmltree::Document::parse_with_options(black_box(&text), opts)
                .expect("valid")
                .descendants()
                .count()
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| {
            vhostfix::stages::parse(black_box(&text), &policy.limits)
                .map(|p| p.kind)
                .expect("valid")
        })
    });
    g.bench_function("analyze", |b| {
        b.iter(|| {
            analyze(black_box(&text), &policy)
                .expect("valid")
                .edits
                .len()
        })
    });
    g.bench_function("analyze_tree", |b| {
        b.iter(|| {
            analyze_tree(black_box(&text), &policy)
                .expect("valid")
                .edits
                .len()
        })
    });
    // What `vhostfix filter` itself does: the edits streamed out, no output copy.
    g.bench_function("analyze_write_edited", |b| {
        b.iter(|| {
            let a = analyze(black_box(&text), &policy).expect("valid");
            rewrite::write_edited(&mut std::io::sink(), &text, &a.edits).expect("sink")
        })
    });
    g.bench_function("apply", |b| {
        b.iter(|| rewrite::apply(black_box(&text), &a.edits))
    });
    g.finish();
}

criterion_group!(benches, small, big, stages);
criterion_main!(benches);
