//! [`Test`]: a project folder laid out like a user's (`pipelines/`, `photos/`, `out/`) with a
//! fluent `Test::new().manifest(..).image(..).run(&["run", ..]).success()`. Runs go through the
//! one builder, [`Retouch`] (`support/retouch.rs`), re-exported here.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};
use tempfile::TempDir;

pub(crate) use crate::support::retouch::{Ran, Retouch, all_at_once, ran, report, wait_for_rows};

/// A project folder.
pub(crate) struct Test {
    pub dir: TempDir,
}

/// A run of the binary in a [`Test`] folder, which it keeps alive for inspection.
pub(crate) struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub root: PathBuf,
    /// Keeps the test folder alive while the outcome is inspected.
    _dir: TempDir,
}

impl Test {
    pub(crate) fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// How to run retouch in this folder.
    pub(crate) fn retouch(&self) -> Retouch {
        Retouch::at(self.root())
    }

    /// Writes `pipelines/test.yaml`.
    pub(crate) fn manifest(self, yaml: &str) -> Test {
        self.file("pipelines/test.yaml", yaml.as_bytes())
    }

    pub(crate) fn file(self, rel: &str, bytes: &[u8]) -> Test {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    /// Writes a synthetic product photo (a dark rounded box on a light backdrop) at `rel`,
    /// encoded by its extension.
    pub(crate) fn image(self, rel: &str, w: u32, h: u32) -> Test {
        let img = product_photo(w, h);
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(&path).unwrap();
        self
    }

    /// Runs the binary in the test folder, plain.
    pub(crate) fn run(self, args: &[&str]) -> Outcome {
        let cmd = self.retouch().command(env!("CARGO_BIN_EXE_retouch"), args);
        self.output(cmd)
    }

    /// `program args` set up like [`Test::run`]'s (see [`Retouch::command`]).
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> Command {
        self.retouch().command(program, args)
    }

    /// Runs `cmd` (from [`Test::command`]) to completion.
    pub(crate) fn output(self, cmd: Command) -> Outcome {
        let Ran {
            code,
            stdout,
            stderr,
        } = ran(cmd);
        Outcome {
            code,
            stdout,
            stderr,
            root: self.root().to_owned(),
            _dir: self.dir,
        }
    }
}

impl Outcome {
    pub(crate) fn code(self, expected: i32) -> Outcome {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub(crate) fn success(self) -> Outcome {
        self.code(0)
    }

    /// The same test folder, for another command.
    pub(crate) fn then(self) -> Test {
        Test { dir: self._dir }
    }

    /// The report CSV at `rel`: header and rows.
    pub(crate) fn csv(&self, rel: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
        let mut rdr = csv::Reader::from_path(self.root.join(rel)).expect("report exists");
        let header = rdr.headers().unwrap().iter().map(String::from).collect();
        let rows = rdr.records().map(Result::unwrap).collect();
        (header, rows)
    }
}

/// A dark rounded box with a highlight, centred on an off-white backdrop.
pub(crate) fn product_photo(w: u32, h: u32) -> RgbImage {
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (rx, ry) = (w as f32 * 0.28, h as f32 * 0.3);
    RgbImage::from_fn(w, h, |x, y| {
        let dx = (x as f32 - cx) / rx;
        let dy = (y as f32 - cy) / ry;
        if dx.abs().powi(4) + dy.abs().powi(4) < 1.0 {
            let shade = (60.0 + 40.0 * (1.0 - dy)) as u8;
            Rgb([shade.saturating_add(80), shade, shade / 2])
        } else {
            Rgb([238, 236, 232])
        }
    })
}
