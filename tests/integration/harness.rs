//! A small fluent helper for end-to-end tests:
//! `Test::new().manifest(..).image(..).run(&["run", ..]).success()`.
//!
//! Each test gets its own temporary folder laid out like a user's project (`pipelines/`,
//! `photos/`, `out/`); the real binary runs there with no AWS credentials and no network.

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{Rgb, RgbImage};
use tempfile::TempDir;

pub struct Test {
    pub dir: TempDir,
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub root: PathBuf,
    /// Keeps the test folder alive while the outcome is inspected.
    _dir: TempDir,
}

impl Test {
    pub fn new() -> Test {
        Test {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `pipelines/test.yaml`.
    pub fn manifest(self, yaml: &str) -> Test {
        self.file("pipelines/test.yaml", yaml.as_bytes())
    }

    pub fn file(self, rel: &str, bytes: &[u8]) -> Test {
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    /// Writes a synthetic product photo (a dark rounded box on a light backdrop) at `rel`,
    /// encoded by its extension.
    pub fn image(self, rel: &str, w: u32, h: u32) -> Test {
        let img = product_photo(w, h);
        let path = self.root().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        img.save(&path).unwrap();
        self
    }

    /// Runs the binary in the test folder.
    pub fn run(self, args: &[&str]) -> Outcome {
        let mut cmd = self.command(env!("CARGO_BIN_EXE_retouch"), args);
        self.output(&mut cmd)
    }

    /// `program args` set up to run in the test folder with no AWS credentials or config (to
    /// wrap the binary in another program, e.g. `sh -c` or `setpriv`).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(self.root())
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", self.root().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.root().join("no-aws-credentials"),
            );
        cmd
    }

    /// Runs `cmd` (from [`Test::command`]) to completion.
    pub fn output(self, cmd: &mut Command) -> Outcome {
        let out = cmd.output().expect("run retouch");
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            root: self.root().to_owned(),
            _dir: self.dir,
        }
    }
}

impl Outcome {
    pub fn code(self, expected: i32) -> Outcome {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub fn success(self) -> Outcome {
        self.code(0)
    }

    /// The same test folder, for another command.
    pub fn then(self) -> Test {
        Test { dir: self._dir }
    }

    /// The report CSV at `rel`: header and rows.
    pub fn csv(&self, rel: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
        let mut rdr = csv::Reader::from_path(self.root.join(rel)).expect("report exists");
        let header = rdr.headers().unwrap().iter().map(String::from).collect();
        let rows = rdr.records().map(Result::unwrap).collect();
        (header, rows)
    }
}

/// A dark rounded box with a highlight, centred on an off-white backdrop.
pub fn product_photo(w: u32, h: u32) -> RgbImage {
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
