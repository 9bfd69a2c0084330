//! A run never destroys a user's files, and one broken entry in an input folder never stops it:
//! outputs, the report and the state folder may not land on an input or the manifest; dangling
//! symlinks, symlink loops and FIFOs become rows or counted skips; new files get the umask's
//! permissions.

use crate::harness::{Outcome, Test};

fn manifest(inputs: &str, output: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: safety\ninputs: [\"{inputs}\"]\noutput: {{ {output} }}\n\
         steps:\n  - op: upscale\n    models: [local]\n    factor: 2\n{extra}"
    )
}

/// Runs `check` then `run` on the same folder; both must refuse with exit 2. Returns what
/// `check` said on stderr, and the run.
fn refused_by_check_and_run(test: Test) -> (String, Outcome) {
    let check = test.run(&["check", "pipelines/test.yaml"]).code(2);
    let said = check.stderr.clone();
    let run = check
        .then()
        .run(&["run", "pipelines/test.yaml", "-q"])
        .code(2);
    (said, run)
}

fn bytes(out: &Outcome, rel: &str) -> Vec<u8> {
    std::fs::read(out.root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn an_output_folder_that_is_the_input_folder_is_refused_before_any_work() {
    // Upscale to PNG over PNG inputs: every output would replace its own input.
    let test = Test::new()
        .manifest(&manifest("../in/*.png", "dir: ../in", ""))
        .image("in/a.png", 40, 30)
        .image("in/b.png", 30, 30);
    let before = std::fs::read(test.root().join("in/a.png")).unwrap();
    let (check, run) = refused_by_check_and_run(test);
    for stderr in [&check, &run.stderr] {
        assert!(
            stderr.contains(
                "output in/a.png (the result of ../in/a.png) would overwrite input ../in/a.png"
            ),
            "{stderr}"
        );
        assert!(stderr.contains("../in/b.png"), "{stderr}");
    }
    assert_eq!(bytes(&run, "in/a.png"), before, "the input is untouched");
    assert!(
        !run.root.join("pipelines/.retouch").exists(),
        "no state was created"
    );
    assert!(
        !run.root.join("in/report.csv").exists(),
        "no report was written"
    );
}

#[test]
fn the_same_folder_as_dot_and_jpeg_over_jpg_are_refused_too() {
    // `dir: .` with inputs `*.png` next to the manifest.
    let test = Test::new()
        .manifest(&manifest("*.png", "dir: .", ""))
        .image("pipelines/a.png", 20, 20);
    let (_, run) = refused_by_check_and_run(test);
    assert!(
        run.stderr.contains("would overwrite input a.png"),
        "{}",
        run.stderr
    );

    // JPEG output over `.jpg` inputs in the same folder.
    let test = Test::new()
        .manifest(&manifest("../in/**/*.jpg", "dir: ../in, format: jpeg", ""))
        .image("in/x/a.jpg", 20, 20);
    let (_, run) = refused_by_check_and_run(test);
    assert!(
        run.stderr.contains("would overwrite input ../in/x/a.jpg"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_output_folder_inside_the_input_folder_is_a_warning_not_a_refusal() {
    let out = Test::new()
        .manifest(&manifest("../in/**/*.jpg", "dir: ../in/done", ""))
        .image("in/a.jpg", 20, 20)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .success();
    assert!(
        out.stderr
            .contains("warning: output folder in/done overlaps the input folder in"),
        "{}",
        out.stderr
    );
    assert!(out.root.join("in/done/a.png").is_file());
}

#[test]
fn a_report_on_an_input_or_the_manifest_or_a_folder_is_refused() {
    for (report, victim) in [
        ("../in/b.jpg", "would overwrite input ../in/b.jpg"),
        ("test.yaml", "would overwrite the manifest"),
        ("../in", "is a folder; it must name a file"),
    ] {
        let test = Test::new()
            .manifest(&manifest(
                "../in/*.jpg",
                "dir: ../out",
                &format!("report: {report}\n"),
            ))
            .image("in/a.jpg", 20, 20)
            .image("in/b.jpg", 20, 20);
        let manifest_before = std::fs::read(test.root().join("pipelines/test.yaml")).unwrap();
        let photo_before = std::fs::read(test.root().join("in/b.jpg")).unwrap();
        let (check, run) = refused_by_check_and_run(test);
        for stderr in [&check, &run.stderr] {
            assert!(stderr.contains(victim), "{report}: {stderr}");
        }
        assert_eq!(bytes(&run, "pipelines/test.yaml"), manifest_before);
        assert_eq!(bytes(&run, "in/b.jpg"), photo_before);
        assert!(!run.root.join("pipelines/.retouch").exists(), "{report}");
        assert!(!run.root.join("out").exists(), "{report}: nothing written");
    }
    // The flag is checked like the key.
    let out = Test::new()
        .manifest(&manifest("../in/*.jpg", "dir: ../out", ""))
        .image("in/a.jpg", 20, 20)
        .run(&["run", "pipelines/test.yaml", "--report", "in/a.jpg"])
        .code(2);
    assert!(
        out.stderr.contains("would overwrite input ../in/a.jpg"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_state_folder_that_is_a_file_is_refused_before_any_work() {
    let test = Test::new()
        .manifest(&manifest(
            "../in/*.jpg",
            "dir: ../out",
            "state: test.yaml\n",
        ))
        .image("in/a.jpg", 20, 20);
    let (check, run) = refused_by_check_and_run(test);
    for stderr in [&check, &run.stderr] {
        assert!(
            stderr.contains(
                "state folder pipelines/test.yaml is the manifest pipelines/test.yaml, not a folder"
            ),
            "{stderr}"
        );
    }
    assert!(!run.root.join("out").exists());
    let out = run
        .then()
        .file("notes.txt", b"keep me")
        .run(&["run", "pipelines/test.yaml", "--state", "notes.txt", "-q"])
        .code(2);
    assert!(
        out.stderr
            .contains("state folder notes.txt is a file, not a folder"),
        "{}",
        out.stderr
    );
    assert_eq!(bytes(&out, "notes.txt"), b"keep me");
}

#[cfg(unix)]
#[test]
fn outputs_and_reports_get_the_permissions_the_umask_gives() {
    use std::os::unix::fs::PermissionsExt;
    for (umask, expected) in [("022", 0o644), ("027", 0o640)] {
        let test = Test::new()
            .manifest(&manifest("../in/*.jpg", "dir: ../out", ""))
            .image("in/a.jpg", 20, 20);
        let bin = env!("CARGO_BIN_EXE_retouch");
        let script = format!(
            "umask {umask} && {bin} run pipelines/test.yaml -q && \
             {bin} report out/report.csv --html out/report.html > /dev/null"
        );
        let cmd = test.command("sh", &["-c", &script]);
        let out = test.output(cmd).success();
        for rel in ["out/a.png", "out/report.csv", "out/report.html"] {
            let mode = std::fs::metadata(out.root.join(rel))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, expected, "{rel} under umask {umask}: {mode:o}");
        }
    }
}

/// Reasons of the report's rows, by image.
fn reasons(out: &Outcome) -> Vec<(String, String, String)> {
    let (_, rows) = out.csv("out/report.csv");
    rows.iter()
        .map(|r| (r[1].to_string(), r[5].to_string(), r[6].to_string()))
        .collect()
}

#[cfg(unix)]
#[test]
fn broken_links_and_fifos_become_rows_or_counted_skips_and_the_run_goes_on() {
    let test = Test::new()
        .manifest(&manifest("../in/**/*.jpg", "dir: ../out", ""))
        .image("in/good.jpg", 20, 20)
        .image("in/sub/good2.jpg", 20, 20);
    let root = test.root().to_owned();
    let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    link("gone.jpg", "in/dangling.jpg"); // matched: a failed row
    link("nowhere.txt", "in/stale-link.txt"); // not matched: a counted skip
    link("loop-b.jpg", "in/loop-a.jpg"); // a loop the glob matches
    link("loop-a.jpg", "in/loop-b.jpg");
    let fifo = std::ffi::CString::new(root.join("in/pipe.jpg").to_str().unwrap()).unwrap();
    // SAFETY: mkfifo only creates a file system node at a path we own.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);

    // `check` lists them without blocking on the FIFO.
    let check = test.run(&["check", "pipelines/test.yaml"]).success();
    assert!(
        check.stdout.contains("inputs:   6 images"),
        "{}",
        check.stdout
    );
    assert!(
        check.stdout.contains("1 broken links skipped"),
        "{}",
        check.stdout
    );

    let out = check.then().run(&["run", "pipelines/test.yaml"]).code(1);
    let rows = reasons(&out);
    let row = |image: &str| {
        rows.iter()
            .find(|(i, _, _)| i == image)
            .unwrap_or_else(|| panic!("no row for {image}: {rows:?}"))
            .clone()
    };
    assert_eq!(row("../in/good.jpg").2, "ok");
    assert_eq!(row("../in/sub/good2.jpg").2, "ok");
    assert_eq!(row("../in/dangling.jpg").1, "broken-link");
    assert_eq!(row("../in/loop-a.jpg").1, "broken-link");
    assert_eq!(row("../in/loop-b.jpg").1, "broken-link");
    assert_eq!(row("../in/pipe.jpg").1, "not-a-file");
    assert_eq!(rows.len(), 6, "{rows:?}");
    let (_, csv) = out.csv("out/report.csv");
    let pipe_error = &csv.iter().find(|r| &r[1] == "../in/pipe.jpg").unwrap()[15];
    assert!(pipe_error.contains("FIFO"), "{pipe_error}");
    let dangling_error = &csv.iter().find(|r| &r[1] == "../in/dangling.jpg").unwrap()[15];
    assert!(
        dangling_error.contains("`gone.jpg` does not exist"),
        "{dangling_error}"
    );
    assert!(
        out.stdout.contains("1 broken links, 0 unreadable folders"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("2 ok, 4 failed"), "{}", out.stdout);
}

/// Runs the binary as an unprivileged user when the tests run as root (root reads any folder).
#[cfg(unix)]
fn run_unprivileged(test: Test, args: &[&str]) -> Outcome {
    use std::os::unix::fs::PermissionsExt;
    // SAFETY: geteuid has no preconditions.
    let root_user = unsafe { libc::geteuid() } == 0;
    let bin = env!("CARGO_BIN_EXE_retouch");
    if !root_user {
        return test.run(args);
    }
    for dir in ["", "pipelines"] {
        let mode = std::fs::Permissions::from_mode(0o777);
        std::fs::set_permissions(test.root().join(dir), mode).unwrap();
    }
    let mut wrapped = vec!["--reuid=65534", "--regid=65534", "--clear-groups", bin];
    wrapped.extend_from_slice(args);
    let mut cmd = test.command("setpriv", &wrapped);
    cmd.env("HOME", test.root());
    test.output(cmd)
}

#[cfg(unix)]
#[test]
fn an_unreadable_subfolder_is_skipped_with_a_warning_and_the_run_goes_on() {
    use std::os::unix::fs::PermissionsExt;
    for (glob, warned) in [("../in/**/*.jpg", true), ("../in/*.jpg", false)] {
        let test = Test::new()
            .manifest(&manifest(glob, "dir: ../out", ""))
            .image("in/a.jpg", 20, 20)
            .image("in/locked/b.jpg", 20, 20);
        std::fs::set_permissions(
            test.root().join("in"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        std::fs::set_permissions(
            test.root().join("in/locked"),
            std::fs::Permissions::from_mode(0o000),
        )
        .unwrap();
        let out = run_unprivileged(test, &["run", "pipelines/test.yaml"]);
        assert_eq!(out.code, 0, "{glob}\n{}\n{}", out.stdout, out.stderr);
        let rows = reasons(&out);
        assert_eq!(rows.len(), 1, "{glob}: {rows:?}");
        assert_eq!(rows[0].0, "../in/a.jpg");
        assert_eq!(
            out.stderr.contains("skipping") && out.stderr.contains("in/locked"),
            warned,
            "{glob}: {}",
            out.stderr
        );
        assert_eq!(
            out.stdout.contains("1 unreadable folders"),
            warned,
            "{glob}: {}",
            out.stdout
        );
    }
}
