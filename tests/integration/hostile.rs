//! The hostile-input campaign as tests: every generated hostile image gets the row reason it
//! must get, in one run, with memory bounded; every hostile manifest is refused by `check` with
//! a clear message, fast. The cases themselves live in `retouch::testset::hostile`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use retouch::testset::hostile::{self, BombSize};

use crate::harness::Test;

/// The run's own peak resident memory in bytes, from the `memory:` line of its summary.
///
/// Not `wait4`'s `ru_maxrss`: Linux records the replaced address space's peak at exec, and std
/// spawns with vfork, so that figure is at least this test process's own peak, which other
/// tests running beside this one drive to hundreds of MiB.
fn peak_rss_of_run(stdout: &str) -> u64 {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("memory: peak "))
        .unwrap_or_else(|| panic!("no memory line in the summary:\n{stdout}"));
    let mib: u64 = line
        .strip_suffix(" MiB resident")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("memory line: {line}"));
    mib << 20
}

#[cfg(target_os = "linux")]
#[test]
fn every_hostile_image_gets_its_reason_and_memory_stays_bounded() {
    let cases = hostile::images(BombSize::TEST);
    let mut test = Test::new().manifest(
        "version: 1\nname: hostile\ninputs: [\"../in/*\"]\noutput: { dir: ../out }\n\
         steps:\n  - op: fix-lighting\n    models: [local]\nlimits: { concurrency: 8, max_megapixels: 12 }\n",
    );
    for case in &cases {
        test = test.file(&format!("in/{}", case.name), &case.bytes);
    }
    // Ballast in this process: the figure must be the run's alone, whatever its parent holds.
    let ballast = vec![1u8; 512 << 20];
    let out = test
        .command(
            env!("CARGO_BIN_EXE_retouch"),
            &["run", "pipelines/test.yaml"],
        )
        .output()
        .expect("start retouch");
    assert_eq!(std::hint::black_box(ballast).len(), 512 << 20);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some images fail, the run finishes"
    );
    let rss = peak_rss_of_run(&String::from_utf8_lossy(&out.stdout));
    let mut report = csv::Reader::from_path(test.root().join("out/report.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = report.records().map(Result::unwrap).collect();
    let got: BTreeMap<String, String> = rows
        .iter()
        .map(|r| {
            let name = r[1].trim_start_matches("../in/").to_string();
            let reason = if &r[6] == "ok" { "ok" } else { &r[5] };
            (name, reason.to_string())
        })
        .collect();
    let mut wrong = Vec::new();
    for case in &cases {
        let reason = got.get(case.name).map_or("(no row)", String::as_str);
        if reason != case.expect {
            wrong.push(format!(
                "{}: expected {}, got {reason}",
                case.name, case.expect
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    eprintln!("hostile peak RSS {} MiB", rss >> 20);
    assert!(
        rss < 300 << 20,
        "peak RSS {} MiB over the hostile folder at concurrency 8",
        rss >> 20
    );
    // Nothing oversized reached an output.
    for case in cases.iter().filter(|c| c.expect == "ok") {
        let stem = case.name.rsplit_once('.').unwrap().0;
        let len = std::fs::metadata(test.root().join(format!("out/{stem}.png")))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
            .len();
        assert!(len < 8 << 20, "{}: {len} bytes", case.name);
    }
}

#[test]
fn every_hostile_manifest_is_refused_with_a_clear_message_fast() {
    let mut test = Test::new().image("in/a.jpg", 20, 20);
    let cases = hostile::manifests();
    for case in &cases {
        test = test.file(&format!("pipelines/{}", case.name), &case.text);
    }
    let mut slow = Vec::new();
    let mut wrong = Vec::new();
    for case in &cases {
        let manifest = format!("pipelines/{}", case.name);
        let started = Instant::now();
        let mut cmd = test.command(env!("CARGO_BIN_EXE_retouch"), &["check", &manifest]);
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(case.exit) || !stderr.contains(case.says) {
            wrong.push(format!(
                "{}: exit {:?} (expected {}), expected to say `{}`:\n{stderr}",
                case.name,
                out.status.code(),
                case.exit,
                case.says
            ));
        }
        // Generous for a loaded CI machine; the bracket bomb took 45-55 s before the guard.
        if took > Duration::from_secs(10) {
            slow.push(format!("{}: {took:?}", case.name));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(slow.is_empty(), "{}", slow.join("\n"));
}
