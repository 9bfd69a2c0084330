//! The one way tests and benchmarks run retouch: a builder for the real binary, or for the
//! library's entry point (`retouch::run::Run`), in one folder, plain or pointed at the Bedrock
//! double and the S3 server, with or without credentials. Every run has no AWS config or
//! credential files, no instance metadata and no network beyond the doubles on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::bedrock_double::BedrockDouble;
use super::dynamodb::Dynamo;
use super::s3_server::{self, S3Server};

/// How to run retouch in one folder.
#[derive(Clone)]
pub(crate) struct Retouch {
    root: PathBuf,
    /// The Bedrock double's endpoint.
    bedrock: Option<String>,
    /// The S3 server's endpoint.
    s3: Option<String>,
    /// The DynamoDB server's endpoint.
    dynamodb: Option<String>,
    /// Dummy credentials for the doubles.
    credentials: bool,
    /// The folder of installed local networks.
    models: PathBuf,
}

/// What a run of the binary said.
pub(crate) struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub(crate) fn code(self, expected: i32) -> Ran {
        assert_eq!(
            self.code, expected,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    pub(crate) fn success(self) -> Ran {
        self.code(0)
    }
}

impl Retouch {
    /// Runs in `root`, with no credentials and no doubles.
    pub(crate) fn at(root: impl AsRef<Path>) -> Retouch {
        Retouch {
            root: root.as_ref().to_owned(),
            bedrock: None,
            s3: None,
            dynamodb: None,
            credentials: false,
            models: root.as_ref().join("no-models"),
        }
    }

    /// Local networks are installed in `dir` (default: an empty folder, so a network the
    /// machine's user installed never changes what a test sees).
    pub(crate) fn models(mut self, dir: impl AsRef<Path>) -> Retouch {
        self.models = dir.as_ref().to_owned();
        self
    }

    /// Bedrock calls go to `double`, with dummy credentials.
    pub(crate) fn bedrock(mut self, double: &BedrockDouble) -> Retouch {
        self.bedrock = Some(double.endpoint().to_owned());
        self.credentials = true;
        self
    }

    /// S3 calls go to `server`, with its credentials.
    pub(crate) fn s3(mut self, server: &S3Server) -> Retouch {
        self.s3 = Some(server.endpoint.clone());
        self.credentials = true;
        self
    }

    /// DynamoDB calls go to `server`, with dummy credentials.
    pub(crate) fn dynamodb(mut self, server: &Dynamo) -> Retouch {
        self.dynamodb = Some(server.endpoint.clone());
        self.credentials = true;
        self
    }

    /// With or without the doubles' dummy credentials.
    pub(crate) fn credentials(mut self, yes: bool) -> Retouch {
        self.credentials = yes;
        self
    }

    /// `program args` set up to run here (to wrap the binary in `sh -c` or `setpriv`).
    pub(crate) fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir(&self.root)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", self.root.join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.root.join("no-aws-credentials"),
            )
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("RETOUCH_MODEL_DIR", &self.models);
        if let Some(endpoint) = &self.bedrock {
            cmd.env("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", endpoint)
                .env("AWS_REGION", "us-east-1");
        }
        if let Some(endpoint) = &self.s3 {
            cmd.env("AWS_ENDPOINT_URL_S3", endpoint)
                .env("AWS_REGION", "us-east-1");
        }
        if let Some(endpoint) = &self.dynamodb {
            cmd.env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
                .env("AWS_REGION", "us-east-1");
        }
        if self.credentials {
            cmd.env("AWS_ACCESS_KEY_ID", s3_server::ACCESS_KEY)
                .env("AWS_SECRET_ACCESS_KEY", s3_server::SECRET_KEY);
        }
        cmd
    }

    /// Runs the binary to completion.
    pub(crate) fn run(&self, args: &[&str]) -> Ran {
        ran(self.command(env!("CARGO_BIN_EXE_retouch"), args))
    }

    /// [`Retouch::run`] off the async workers, for tests whose doubles run on their runtime.
    pub(crate) async fn run_async(&self, args: &[&str]) -> Ran {
        let cmd = self.command(env!("CARGO_BIN_EXE_retouch"), args);
        tokio::task::spawn_blocking(move || ran(cmd)).await.unwrap()
    }

    /// Starts the binary without waiting for it (to kill it part-way).
    pub(crate) fn spawn(&self, args: &[&str]) -> Child {
        self.command(env!("CARGO_BIN_EXE_retouch"), args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start retouch")
    }

    /// Runs the manifest `rel` in process through the library's entry point, pointed at the
    /// doubles as the binary would be.
    pub(crate) async fn execute(
        &self,
        rel: &str,
        options: retouch::run::RunOptions,
    ) -> retouch::run::RunOutcome {
        let path = self.root.join(rel);
        let options = self.with_doubles(options, &path).await;
        let run = retouch::run::Run::prepare(&path, options)
            .await
            .unwrap_or_else(|e| panic!("prepare {rel}: {e}"));
        self.finish(run).await
    }

    /// Runs an already prepared (and perhaps edited) plan through the library's entry point.
    pub(crate) async fn execute_prepared(
        &self,
        rel: &str,
        prepared: retouch::run::Prepared,
        options: retouch::run::RunOptions,
    ) -> retouch::run::RunOutcome {
        let options = self.with_doubles(options, &self.root.join(rel)).await;
        let run = retouch::run::Run::from_prepared(&self.root.join(rel), prepared, options)
            .unwrap_or_else(|e| panic!("prepare {rel}: {e}"));
        self.finish(run).await
    }

    /// The S3 client this builder's runs use (for preparing a plan by hand).
    pub(crate) async fn s3_client(&self) -> Option<retouch::s3_client::S3> {
        let endpoint = self.s3.clone()?;
        let settings = retouch::s3_client::S3Settings {
            endpoint_url: Some(endpoint),
            path_style: true,
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let (ak, sk) = (s3_server::ACCESS_KEY, s3_server::SECRET_KEY);
        Some(retouch::s3_client::S3::connect_with_credentials(&settings, ak, sk).await)
    }

    /// Points the run at the doubles, in the manifest's `aws.region` (else us-east-1), as the
    /// binary would run.
    async fn with_doubles(
        &self,
        mut options: retouch::run::RunOptions,
        manifest: &Path,
    ) -> retouch::run::RunOptions {
        if let Some(endpoint) = self.bedrock.as_ref().filter(|_| self.credentials) {
            let sdk = super::bedrock_double::sdk_config(endpoint);
            options.connection = retouch::run::Connection::Client {
                client: retouch::providers::BedrockClient::from_conf(sdk),
                region: manifest_region(manifest),
            };
        }
        if options.overrides.model_dir.is_none() {
            options.overrides.model_dir = Some(self.models.clone());
        }
        if options.overrides.s3.is_none() {
            options.overrides.s3 = self.s3_client().await;
        }
        options
    }

    async fn finish(&self, run: retouch::run::Run) -> retouch::run::RunOutcome {
        let cancel = tokio_util::sync::CancellationToken::new();
        run.execute(std::sync::Arc::new(retouch::run::Unobserved), cancel)
            .await
            .expect("the run completes")
    }
}

pub(crate) fn ran(mut cmd: Command) -> Ran {
    let out = cmd.output().expect("run retouch");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Starts every command at once (stdout dropped, stderr kept), then waits for all: their exit
/// codes, each failure's stderr shown.
pub(crate) fn all_at_once(cmds: Vec<Command>) -> Vec<i32> {
    let children: Vec<Child> = cmds
        .into_iter()
        .map(|mut c| {
            c.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start retouch")
        })
        .collect();
    children.into_iter().map(finish).collect()
}

/// Waits for a started run: its exit code, its stderr shown when it failed.
pub(crate) fn finish(c: Child) -> i32 {
    let out = c.wait_with_output().unwrap();
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    }
    out.status.code().unwrap_or(-1)
}

/// Waits until the report part at `part` holds at least `rows` rows; fails the test when
/// `limit` passes first.
pub(crate) fn wait_for_rows(part: &Path, rows: usize, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while std::fs::read_to_string(part)
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
        < rows
    {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than {rows} rows in {} after {limit:?}",
            part.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Report rows as (image, model, reason, status, cost_usd, attempts).
pub(crate) fn report(path: &Path) -> Vec<[String; 6]> {
    let mut rdr = csv::Reader::from_path(path).expect("report exists");
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            [1, 4, 5, 6, 7, 9].map(|i| r[i].to_string())
        })
        .collect()
}

/// Runs the pipeline `pipelines/test.yaml` under `dir` through the library against `double`,
/// as of 2026-11-01 with short back-offs, under `run_id`; the rows it reported.
/// The manifest's `aws.region`, else us-east-1.
fn manifest_region(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap_or_default();
    yaml["aws"]["region"]
        .as_str()
        .unwrap_or("us-east-1")
        .to_owned()
}

pub(crate) async fn run_with_double(
    dir: &Path,
    double: &BedrockDouble,
    run_id: &str,
) -> Vec<retouch::ledger::StepRecord> {
    let options = retouch::run::RunOptions {
        today: Some(retouch::catalog::Date::new(2026, 11, 1).unwrap()),
        backoff: Some((
            std::time::Duration::from_millis(5),
            std::time::Duration::from_millis(40),
        )),
        run_id: Some(run_id.into()),
        ..retouch::run::RunOptions::default()
    };
    Retouch::at(dir)
        .bedrock(double)
        .execute("pipelines/test.yaml", options)
        .await
        .rows
}
