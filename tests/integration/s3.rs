//! S3 inputs and outputs end to end: the `retouch` binary (and, where counters matter, the
//! library) with the real `aws-sdk-s3` client against an in-process S3 server on 127.0.0.1.

use std::sync::Arc;

use crate::harness::{Retouch, Test};
use crate::support::s3_server::S3Server;

/// A tiny PNG (cheap to list, fetch, upscale and upload by the thousand).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([(x * 30) as u8, (y * 30) as u8, 90])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn manifest(inputs: &str, output: &str, extra: &str) -> String {
    format!(
        "version: 1\nname: s3test\ninputs: [{inputs}]\noutput: {output}\n\
         steps:\n  - op: upscale\n    models: [local]\n    factor: 2\n{extra}"
    )
}

fn report_rows(csv_text: &str) -> (Vec<String>, Vec<csv::StringRecord>) {
    let mut rdr = csv::Reader::from_reader(csv_text.as_bytes());
    let header = rdr.headers().unwrap().iter().map(String::from).collect();
    (header, rdr.records().map(Result::unwrap).collect())
}

#[test]
fn prefix_of_1200_nested_objects_is_listed_and_processed_completely() {
    let server = S3Server::start();
    server.create_bucket("catalogue");
    let img = png(8, 8);
    let mut objects: Vec<(String, Vec<u8>)> = (0..1200)
        .map(|i| {
            (
                format!("cat/{:02}/sub{}/img-{i:05}.png", i % 12, i % 5),
                img.clone(),
            )
        })
        .collect();
    objects.push(("cat/notes.txt".into(), b"not an image".to_vec()));
    objects.push(("cat/00/thumb_skip.png".into(), img.clone()));
    objects.push(("elsewhere/x.png".into(), img.clone()));
    server.put_all("catalogue", objects, "image/png");

    let test = Test::new().manifest(&manifest(
        "\"s3://catalogue/cat/\"",
        "{ dir: ../out }",
        "exclude: [\"thumb_*\"]\nlimits: { concurrency: 16 }\n",
    ));
    let ran = Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml"])
        .code(0);
    assert!(
        ran.stdout.contains("images: 1200 ok, 0 failed of 1200"),
        "{}",
        ran.stdout
    );
    assert!(
        ran.stdout
            .contains("skipped: 1 excluded, 1 non-image files or keys"),
        "{}",
        ran.stdout
    );
    let text = std::fs::read_to_string(test.root().join("out/report.csv")).unwrap();
    let (_, rows) = report_rows(&text);
    assert_eq!(rows.len(), 1200);
    assert!(rows.iter().all(|r| &r[6] == "ok"));
    assert_eq!(&rows[0][1], "s3://catalogue/cat/00/sub0/img-00000.png");
    // Every output mirrors its key below the prefix, and is the 2x upscale.
    let mut written = 0;
    for entry in walkdir::WalkDir::new(test.root().join("out")) {
        let entry = entry.unwrap();
        if entry.path().extension().is_some_and(|e| e == "png") {
            written += 1;
        }
    }
    assert_eq!(written, 1200);
    let one = test.root().join("out/07/sub2/img-00007.png");
    assert_eq!(image::image_dimensions(&one).unwrap(), (16, 16));
}

#[test]
fn a_rerun_downloads_only_objects_whose_etag_changed() {
    let server = S3Server::start();
    server.create_bucket("catalogue");
    let objects: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| (format!("cat/img-{i}.png"), png(8 + i, 8)))
        .collect();
    server.put_all("catalogue", objects, "image/png");
    let test = Test::new().manifest(&manifest("\"s3://catalogue/cat/\"", "{ dir: ../out }", ""));
    let run = || {
        Retouch::at(test.root())
            .s3(&server)
            .run(&["run", "pipelines/test.yaml", "-q"])
            .code(0)
    };
    let reasons = || {
        let text = std::fs::read_to_string(test.root().join("out/report.csv")).unwrap();
        let (_, rows) = report_rows(&text);
        rows.iter().map(|r| r[5].to_string()).collect::<Vec<_>>()
    };
    run();
    assert_eq!(server.object_gets(), 6);
    // Unchanged: listed, found by ETag and size, nothing downloaded, everything reused.
    run();
    assert_eq!(
        server.object_gets(),
        6,
        "an unchanged object was downloaded again"
    );
    assert!(
        reasons().iter().all(|r| r == "cache-hit"),
        "{:?}",
        reasons()
    );
    // One object rewritten: only it is downloaded and processed again.
    server.put_all(
        "catalogue",
        vec![("cat/img-2.png".into(), png(30, 9))],
        "image/png",
    );
    run();
    assert_eq!(server.object_gets(), 7);
    let after = reasons();
    assert_eq!(
        after.iter().filter(|r| *r != "cache-hit").count(),
        1,
        "{after:?}"
    );
    let redone = image::image_dimensions(test.root().join("out/img-2.png")).unwrap();
    assert_eq!(redone, (60, 18));
    // A deleted output needs pixels: the object is downloaded again and checked.
    std::fs::remove_file(test.root().join("out/img-4.png")).unwrap();
    run();
    assert_eq!(server.object_gets(), 8);
    assert_eq!(
        image::image_dimensions(test.root().join("out/img-4.png")).unwrap(),
        (24, 16)
    );
    // --force reads everything.
    Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml", "-q", "--force"])
        .code(0);
    assert_eq!(server.object_gets(), 14);
    // Bytes that do not match what their version recorded (an object rewritten between listing
    // and download) fail that image, and the next run reads it afresh.
    let db = rusqlite::Connection::open(test.root().join("pipelines/.retouch/state.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE inputs SET hash = zeroblob(32) WHERE source LIKE '%/img-1.png'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    std::fs::remove_file(test.root().join("out/img-1.png")).unwrap();
    Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .code(1);
    let failed: Vec<_> = reasons().into_iter().filter(|r| r != "cache-hit").collect();
    assert_eq!(failed, ["input-changed"]);
    run();
    assert!(test.root().join("out/img-1.png").is_file());
}

#[test]
fn local_to_s3_writes_mirrored_keys_with_content_types_and_the_report() {
    let server = S3Server::start();
    server.create_bucket("results");
    let test = Test::new()
        .manifest(&manifest(
            "\"../photos/**/*.{jpg,png}\"",
            "{ dir: \"s3://results/done/\", format: webp }",
            "",
        ))
        .image("photos/a/1.jpg", 40, 30)
        .image("photos/b/1.png", 20, 20);
    Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .code(0);
    assert_eq!(
        server.keys("results", ""),
        ["done/a/1.webp", "done/b/1.webp", "done/report.csv"]
    );
    let (bytes, ct) = server.get("results", "done/a/1.webp");
    assert_eq!(ct, "image/webp");
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (80, 60));
    let (report, ct) = server.get("results", "done/report.csv");
    assert_eq!(ct, "text/csv");
    let (_, rows) = report_rows(&String::from_utf8(report).unwrap());
    assert_eq!(&rows[0][14], "s3://results/done/a/1.webp");
    // The local copy is kept in the pipeline's state folder.
    let local = test.root().join("pipelines/.retouch/s3test/report.csv");
    assert!(local.is_file(), "local copy of the report");
}

#[test]
fn s3_to_s3_with_glob_presigned_urls_and_a_report_key() {
    let server = S3Server::start();
    for b in ["in-bucket", "out-bucket", "reports"] {
        server.create_bucket(b);
    }
    let img = png(8, 6);
    let objects = [
        "cat/a/1.png",
        "cat/a/deep/2.png",
        "cat/b/3.png",
        "cat/c.txt",
        "other/4.png",
    ]
    .iter()
    .map(|k| (k.to_string(), img.clone()))
    .collect();
    server.put_all("in-bucket", objects, "image/png");
    let test = Test::new().manifest(&manifest(
        "\"s3://in-bucket/cat/**/*.png\"",
        "{ dir: \"s3://out-bucket/x\", format: jpeg, presign: 1h }",
        "report: s3://reports/runs/latest.csv\n",
    ));
    Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml", "-q"])
        .code(0);
    assert_eq!(
        server.keys("out-bucket", ""),
        ["x/a/1.jpg", "x/a/deep/2.jpg", "x/b/3.jpg"]
    );
    assert_eq!(server.get("out-bucket", "x/b/3.jpg").1, "image/jpeg");
    let (report, _) = server.get("reports", "runs/latest.csv");
    let (header, rows) = report_rows(&String::from_utf8(report).unwrap());
    assert_eq!(header.len(), 19);
    assert_eq!(header[18], "output_url");
    assert_eq!(rows.len(), 3);
    let url = rows[2][18].to_owned();
    assert!(
        url.starts_with(&server.endpoint) && url.contains("X-Amz-Signature="),
        "{url}"
    );
    // The presigned URL works without credentials, and only while its signature is intact.
    let expected = server.get("out-bucket", "x/b/3.jpg").0;
    let (status, body) = server.block_on(async {
        let resp = reqwest::get(&url).await.unwrap();
        (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
    });
    assert_eq!((status, body == expected), (200, true));
    let tampered = url.replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let status = server.block_on(async { reqwest::get(&tampered).await.unwrap().status() });
    assert!(status.is_client_error(), "{status}");
}

#[test]
fn missing_bucket_empty_prefix_and_bad_credentials_stop_before_any_work() {
    let server = S3Server::start();
    server.create_bucket("present");
    server.put_all("present", vec![("p/1.png".into(), png(8, 8))], "image/png");
    let cases = [
        (
            manifest("\"s3://absent-bucket/photos/\"", "{ dir: ../out }", ""),
            "absent-bucket",
        ),
        (
            manifest("\"s3://present/nothing-here/\"", "{ dir: ../out }", ""),
            "nothing-here/",
        ),
        (
            manifest("\"s3://present/p/\"", "{ dir: \"s3://absent-out/x/\" }", ""),
            "absent-out",
        ),
    ];
    for (yaml, named) in cases {
        let test = Test::new().manifest(&yaml);
        for cmd in ["run", "check"] {
            let ran = Retouch::at(test.root())
                .s3(&server)
                .run(&[cmd, "pipelines/test.yaml"])
                .code(2);
            assert!(ran.stderr.contains(named), "{cmd}: {}", ran.stderr);
        }
        assert!(!test.root().join("out").exists(), "no work was done");
    }
    let test = Test::new().manifest(&manifest(
        "\"s3://absent-bucket/photos/\"",
        "{ dir: ../out }",
        "",
    ));
    let ran = Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    assert!(
        ran.stderr
            .contains("bucket `absent-bucket` does not exist (s3://absent-bucket/photos/)"),
        "{}",
        ran.stderr
    );
    // Wrong secret: the server rejects the signature; the user hears "access denied".
    let test = Test::new().manifest(&manifest("\"s3://present/p/\"", "{ dir: ../out }", ""));
    let out = Retouch::at(test.root())
        .s3(&server)
        .command(
            env!("CARGO_BIN_EXE_retouch"),
            &["run", "pipelines/test.yaml"],
        )
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("access denied to s3://present/p/"),
        "{stderr}"
    );
}

#[test]
fn failed_gets_and_puts_are_retried_then_become_failed_rows() {
    let server = S3Server::start();
    server.create_bucket("src");
    server.create_bucket("dst");
    let objects = [
        "p/flaky.png",
        "p/broken.png",
        "p/fine.png",
        "p/unwritable.png",
    ]
    .iter()
    .map(|k| (k.to_string(), png(8, 8)))
    .collect();
    server.put_all("src", objects, "image/png");
    server.fail("GET", "/src/p/flaky.png", 2);
    server.fail("GET", "/src/p/broken.png", 1000);
    server.fail("PUT", "/dst/o/unwritable.png", 1000);
    let test = Test::new().manifest(&manifest(
        "\"s3://src/p/\"",
        "{ dir: \"s3://dst/o/\" }",
        "limits: { attempts: 3 }\n",
    ));
    let ran = Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml"])
        .code(1);
    assert!(
        ran.stdout.contains("images: 2 ok, 2 failed of 4"),
        "{}",
        ran.stdout
    );
    // 2 transient + 3 attempts for the broken GET + 3 for the unwritable PUT.
    assert_eq!(server.injected(), 2 + 3 + 3);
    assert_eq!(
        server.keys("dst", "o/"),
        ["o/fine.png", "o/flaky.png", "o/report.csv"]
    );
    let (report, _) = server.get("dst", "o/report.csv");
    let (_, rows) = report_rows(&String::from_utf8(report).unwrap());
    let by_image = |name: &str| {
        rows.iter()
            .find(|r| r[1].ends_with(name))
            .map(|r| (r[6].to_string(), r[5].to_string()))
            .unwrap()
    };
    assert_eq!(
        by_image("broken.png"),
        ("failed".into(), "s3-failed".into())
    );
    assert_eq!(
        by_image("unwritable.png"),
        ("failed".into(), "s3-failed".into())
    );
    assert_eq!(by_image("flaky.png").0, "ok");
}

/// XML 1.0 cannot carry a control character, so a listing with a raw `\u{1}` in a key is
/// unreadable: the whole run stops (with a short message, not the listing). Listed URL-encoded,
/// as retouch asks, every key arrives decoded (a space, a `+`), and the one with the control
/// character is a failed row while the others are processed.
#[test]
fn a_key_with_a_control_character_is_one_failed_row() {
    let server = S3Server::start();
    server.create_bucket("src");
    let keys = ["photos/a\u{1}b.png", "photos/c d+e.png", "photos/good.png"];
    let objects = keys.iter().map(|k| (k.to_string(), png(8, 8))).collect();
    server.put_all("src", objects, "image/png");
    let test = Test::new().manifest(&manifest("\"s3://src/photos/\"", "{ dir: ../out }", ""));

    server.set_url_encoding(false);
    let raw = Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml"])
        .code(2);
    let error = raw.stderr.lines().find(|l| l.starts_with("error:"));
    let error = error.unwrap_or_else(|| panic!("{}", raw.stderr));
    assert!(
        error.contains("S3 request for s3://src/photos/ failed"),
        "{error}"
    );
    assert!(error.contains("non-XML character"), "{error}");
    assert!(error.len() < 500, "{} bytes: {error}", error.len());
    assert!(!error.contains("good.png"), "no listing dump: {error}");

    server.set_url_encoding(true);
    let ran = Retouch::at(test.root())
        .s3(&server)
        .run(&["run", "pipelines/test.yaml"])
        .code(1);
    assert!(
        ran.stdout.contains("images: 2 ok, 1 failed of 3"),
        "{}",
        ran.stdout
    );
    let text = std::fs::read_to_string(test.root().join("out/report.csv")).unwrap();
    let (_, rows) = report_rows(&text);
    let row = |image: &str| {
        let r = rows.iter().find(|r| &r[1] == image).expect(image);
        (r[6].to_string(), r[5].to_string(), r[15].to_string())
    };
    let (status, reason, error) = row("s3://src/photos/a\u{1}b.png");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("failed", "unsafe-output-path")
    );
    // The plan names the image first (as the image column does, control character included).
    assert!(
        error.ends_with(": unsafe output path `a\\u{1}b.png`: control character in path"),
        "{error}"
    );
    assert_eq!(row("s3://src/photos/c d+e.png").0, "ok");
    assert_eq!(row("s3://src/photos/good.png").0, "ok");
    assert!(test.root().join("out/c d+e.png").is_file());
    assert!(test.root().join("out/good.png").is_file());
}

/// Keys that would escape a local output folder never get there: the plan refuses them and the
/// run goes on. (s3s-fs stores keys as files, so it cannot hold such keys; they are added to a
/// real listing here, and the rest of the run is real.)
#[test]
fn traversal_keys_are_refused_and_the_run_goes_on() {
    use retouch::sources::{InputItem, InputLocation};

    let server = S3Server::start();
    server.create_bucket("src");
    server.put_all("src", vec![("p/good.png".into(), png(8, 8))], "image/png");
    let root = tempfile::tempdir().unwrap();
    let yaml = manifest("\"s3://src/p/\"", "{ dir: out }", "");
    let path = root.path().join("m.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let catalog = Arc::new(retouch::catalog::Catalog::builtin());
    let mut manifest = retouch::manifest::load(&path, &catalog).unwrap();
    manifest.report = retouch::manifest::Place::Local(root.path().join("report.csv"));
    let settings = retouch::s3_client::S3Settings {
        endpoint_url: Some(server.endpoint.clone()),
        path_style: true,
        region: Some("us-east-1".into()),
        ..Default::default()
    };
    let outcome = server.block_on(async {
        // Static credentials through the SDK's environment chain are not available in-process
        // without set_var; the listing goes through a client built from the same settings.
        let s3 =
            retouch::s3_client::S3::connect_with_credentials(&settings, "test-ak", "test-sk").await;
        let mut listing = retouch::sources::list(&manifest, Some(&s3)).await.unwrap();
        for (i, rel) in ["../../escape.png", "/abs.png", "a\\b.png", "a//b.png"]
            .iter()
            .enumerate()
        {
            listing.items.push(InputItem {
                index: i + 1,
                display: format!("s3://src/p/{rel}"),
                rel_path: rel.to_string(),
                location: InputLocation::S3 {
                    bucket: "src".into(),
                    key: format!("p/{rel}"),
                },
                version: None,
            });
        }
        let plan = retouch::plan::Plan::new(Arc::new(manifest), listing, Some(s3));
        let prepared = retouch::run::Prepared {
            plan,
            catalog,
            warnings: Vec::new(),
            local: Arc::new(retouch::providers::local::LocalOps::classical()),
            table: None,
        };
        let options = retouch::run::RunOptions {
            stateless: true,
            concurrency: Some(4),
            run_id: Some("t".into()),
            ..Default::default()
        };
        Retouch::at(root.path())
            .execute_prepared("m.yaml", prepared, options)
            .await
            .rows
    });
    let statuses: Vec<(String, String)> = outcome
        .iter()
        .map(|r| (r.image.clone(), r.reason.to_string()))
        .collect();
    assert_eq!(statuses[0].0, "s3://src/p/good.png");
    assert_eq!(outcome[0].status, retouch::ledger::Status::Ok);
    assert_eq!(statuses.len(), 5);
    for (image, reason) in &statuses[1..] {
        assert_eq!(reason, "unsafe-output-path", "{image}");
    }
    // Nothing was written outside the output folder.
    let mut files: Vec<String> = walkdir::WalkDir::new(root.path())
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            e.path()
                .strip_prefix(root.path())
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    files.sort();
    assert_eq!(files, ["m.yaml", "out/good.png", "report.csv"]);
}
