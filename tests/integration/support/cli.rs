//! The real `retouch` binary pointed at an in-process Bedrock double through the standard
//! `AWS_ENDPOINT_URL_BEDROCK_RUNTIME` variable, with dummy credentials (or none), no AWS config
//! files and no instance metadata.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::bedrock_double::BedrockDouble;

/// The binary, ready to run in `root` against `double`.
pub fn command(root: &Path, double: &BedrockDouble, creds: bool, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_retouch"));
    cmd.args(args)
        .current_dir(root)
        .env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", double.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", root.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            root.join("no-aws-credentials"),
        )
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_ENDPOINT_URL");
    if creds {
        cmd.env("AWS_ACCESS_KEY_ID", "test-ak")
            .env("AWS_SECRET_ACCESS_KEY", "test-sk");
    } else {
        cmd.env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY");
    }
    cmd
}

/// Runs the binary to completion. The double runs on the test's runtime, so the child is waited
/// for off it.
pub async fn retouch(root: &Path, double: &BedrockDouble, creds: bool, args: &[&str]) -> Outcome {
    let mut cmd = command(root, double, creds, args);
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run retouch"))
        .await
        .unwrap();
    Outcome {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// Starts the binary without waiting for it (to kill it part-way).
pub fn spawn(root: &Path, double: &BedrockDouble, args: &[&str]) -> Child {
    command(root, double, true, args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start retouch")
}

pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn success(self) -> Outcome {
        assert_eq!(
            self.code, 0,
            "--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Report rows as (image, model, reason, status, cost_usd, attempts).
pub fn report(path: &Path) -> Vec<[String; 6]> {
    let mut rdr = csv::Reader::from_path(path).expect("report exists");
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            [1, 4, 5, 6, 7, 9].map(|i| r[i].to_string())
        })
        .collect()
}
