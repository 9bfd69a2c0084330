//! Shards coordinated through DynamoDB (`shared: { cache: s3://…, dynamodb_table: … }`): real
//! `retouch run --shard i/N` processes started at once, each with a state folder of its own (as
//! separate machines have), against the Bedrock double, the in-process S3 server and moto's
//! DynamoDB on 127.0.0.1 (see `support/dynamodb.rs`). Every image is paid once, the shared run
//! and daily caps are never exceeded however the shards race, killed shards are rerun without
//! paying twice for what was done, and one rpm is shared by every shard.
//!
//! Behind the `moto` feature: `bash .ci/fetch-moto.sh` installs moto's server from PyPI first.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Retouch, Test, all_at_once, report, wait_for_rows};
use crate::support::bedrock_double::BedrockDouble;
use crate::support::dynamodb::Dynamo;
use crate::support::retouch::finish;
use crate::support::s3_server::S3Server;

const REMOVE_BG: &str = "stability.stable-image-remove-background-v1:0";
/// Stability Remove Background's price in the catalog, in micro-dollars.
const PRICE: i64 = 70_000;

/// A remove-bg pipeline coordinated through `table`, its cache under `prefix`, with `budget`
/// and `limits` as YAML flow maps.
fn manifest(table: &str, prefix: &str, out: &str, budget: &str, limits: &str) -> String {
    format!(
        r#"version: 1
name: coordinated
inputs: ["../photos/**/*.png"]
output: {{ dir: ../{out}, format: png }}
steps:
  - op: remove-bg
    models: [stability-remove-bg]
    fallback: skip
shared: {{ cache: "s3://team-cache/{prefix}/", dynamodb_table: {table} }}
budget: {budget}
limits: {limits}
aws: {{ region: us-east-1 }}
"#
    )
}

/// `n` photos, each of a different size (identical photos would rightly be one paid step).
fn photos(mut t: Test, n: usize) -> Test {
    for i in 0..n {
        let (w, h) = (48 + (i % 40) as u32, 48 + (i / 40) as u32);
        t = t.image(&format!("photos/{i:03}.png"), w, h);
    }
    t
}

struct Env {
    s3: S3Server,
    dynamo: Dynamo,
    double: BedrockDouble,
    rt: tokio::runtime::Runtime,
}

fn env(tables: &[&str]) -> Env {
    let s3 = S3Server::start();
    s3.create_bucket("team-cache");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let double = rt.block_on(BedrockDouble::start());
    let dynamo = Dynamo::start();
    for table in tables {
        rt.block_on(dynamo.create_table(table));
    }
    Env {
        s3,
        dynamo,
        double,
        rt,
    }
}

impl Env {
    fn retouch(&self, root: &Path) -> Retouch {
        Retouch::at(root)
            .s3(&self.s3)
            .bedrock(&self.double)
            .dynamodb(&self.dynamo)
    }
}

/// `retouch run MANIFEST --shard i/N --run-group GROUP --state <machine>` for shard `i`.
fn shard(rt: &Retouch, manifest: &str, i: u32, n: u32, group: &str, machine: &str) -> Command {
    let (shard, state) = (format!("{i}/{n}"), format!("machines/{machine}-{i}"));
    let mut cmd = rt.command(
        env!("CARGO_BIN_EXE_retouch"),
        &[
            "run",
            manifest,
            "-q",
            "--shard",
            &shard,
            "--run-group",
            group,
            "--state",
            &state,
        ],
    );
    cmd.stdout(Stdio::null()).stderr(Stdio::piped());
    cmd
}

/// How many times the double billed each distinct photo (by the bytes it was sent).
fn billed_per_photo(double: &BedrockDouble) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for body in double.bodies(REMOVE_BG) {
        let image = body["image"].as_str().unwrap_or_default();
        *seen
            .entry(blake3::hash(image.as_bytes()).to_hex().to_string())
            .or_insert(0) += 1;
    }
    seen
}

#[test]
fn eight_shards_over_400_photos_pay_for_each_once_and_a_rerun_calls_nothing() {
    let env = env(&["retouch-coord"]);
    let yaml = manifest(
        "retouch-coord",
        "all",
        "out",
        "{ max_usd: 100, daily_max_usd: 100 }",
        "{ concurrency: 4, rpm: { stability-remove-bg: 60000 } }",
    );
    let t = photos(Test::new().manifest(&yaml), 400);
    let root = t.root().to_owned();
    let rt = env.retouch(&root);
    let run_all = |machine: &str| {
        all_at_once(
            (0..8)
                .map(|i| shard(&rt, "pipelines/test.yaml", i, 8, "catalogue-1", machine))
                .collect(),
        )
    };
    assert_eq!(run_all("first"), vec![0; 8]);
    // Every photo billed exactly once at the double.
    assert_eq!(env.double.successes(REMOVE_BG), 400);
    let per_photo = billed_per_photo(&env.double);
    assert_eq!(per_photo.len(), 400);
    assert!(per_photo.values().all(|n| *n == 1), "a photo billed twice");
    // The merged report has every row and costs what the double billed.
    let merged = rt.run(&["report", "merge", "out"]).code(0);
    assert!(
        merged.stdout.contains("400 rows, 400 images, $28.000000"),
        "{}",
        merged.stdout
    );
    let rows = report(&root.join("out/report.csv"));
    assert_eq!(rows.len(), 400);
    let total: f64 = rows.iter().map(|r| r[4].parse::<f64>().unwrap()).sum();
    assert!((total - 28.0).abs() < 1e-6, "{total}");
    // The table's run and daily budgets hold exactly what was billed, with nothing left held.
    let table = |pk: &str, attr: &str| {
        env.rt
            .block_on(env.dynamo.number("retouch-coord", pk, attr))
    };
    assert_eq!(table("budget#run#catalogue-1", "spent"), Some(400 * PRICE));
    let today = retouch::catalog::Date::today_utc().to_string();
    assert_eq!(
        table(&format!("budget#day#{today}"), "spent"),
        Some(400 * PRICE)
    );
    let held = env.rt.block_on(env.dynamo.map_len(
        "retouch-coord",
        "budget#run#catalogue-1",
        "holds",
    ));
    assert_eq!(held, 0, "every hold settled");

    // All 8 again, on fresh machines: the shared cache serves everything, nothing is called.
    let requests = env.double.requests(REMOVE_BG);
    assert_eq!(run_all("second"), vec![0; 8]);
    assert_eq!(env.double.requests(REMOVE_BG), requests);
    // What the coordination cost in DynamoDB requests per paid call (claims, holds, settles,
    // rate slots; heartbeats and reads on top), as measured at the server.
    let counts = env.dynamo.counts();
    let writes: u64 = ["PutItem", "UpdateItem", "DeleteItem"]
        .iter()
        .map(|op| counts.get(*op).copied().unwrap_or(0))
        .sum();
    eprintln!("DynamoDB requests for 400 paid calls and a free rerun: {counts:?}");
    assert!(writes >= 400 * 5, "{counts:?}");

    // Every shard of both rounds is in the history any machine reads from the table.
    let elsewhere = tempfile::tempdir().unwrap();
    let history = env
        .retouch(elsewhere.path())
        .run(&["runs", "--table", "retouch-coord", "--group", "catalogue-1"])
        .code(0);
    assert!(
        history
            .stdout
            .contains("run group catalogue-1: 16 runs (16 finished), 800 images done, $28.000000"),
        "{}",
        history.stdout
    );
    for i in 0..8 {
        assert_eq!(
            history.stdout.matches(&format!(" {i}/8 ")).count(),
            2,
            "{}",
            history.stdout
        );
    }
}

#[test]
fn shared_caps_below_the_catalogue_are_never_exceeded_in_ten_runs() {
    let tables: Vec<String> = (0..10).map(|k| format!("caps-{k}")).collect();
    let names: Vec<&str> = tables.iter().map(String::as_str).collect();
    let env = env(&names);
    let mut t = photos(Test::new(), 24);
    // 24 photos at $0.07 ($1.68), both caps below that. Even runs: the run cap of $0.70 binds
    // first; odd: the daily cap of $0.49.
    let caps: Vec<(i64, &str)> = (0..10)
        .map(|k| {
            if k % 2 == 0 {
                (700_000, "{ max_usd: 0.70, daily_max_usd: 1.05 }")
            } else {
                (490_000, "{ max_usd: 1.05, daily_max_usd: 0.49 }")
            }
        })
        .collect();
    for (k, (_, budget)) in caps.iter().enumerate() {
        let yaml = manifest(
            &format!("caps-{k}"),
            &format!("rep-{k}"),
            &format!("out-{k}"),
            budget,
            "{ concurrency: 2, rpm: { stability-remove-bg: 60000 } }",
        );
        t = t.file(&format!("pipelines/rep-{k}.yaml"), yaml.as_bytes());
    }
    let root = t.root().to_owned();
    let rt = env.retouch(&root);
    for (k, (cap, _)) in caps.iter().enumerate() {
        let before = env.double.successes(REMOVE_BG) as i64;
        let manifest = format!("pipelines/rep-{k}.yaml");
        let codes = all_at_once(
            (0..8)
                .map(|i| {
                    shard(
                        &rt,
                        &manifest,
                        i,
                        8,
                        &format!("rep-{k}"),
                        &format!("rep-{k}"),
                    )
                })
                .collect(),
        );
        assert!(codes.iter().all(|c| *c == 0 || *c == 1), "{codes:?}");
        let billed = (env.double.successes(REMOVE_BG) as i64 - before) * PRICE;
        assert!(
            billed <= *cap,
            "run {k}: billed {billed} over the cap {cap}"
        );
        // Shared, not split: the shards together spend up to the last call the cap affords
        // (eight fixed shares of $0.0875 or $0.06125 would afford one call each, $0.56 or $0).
        assert!(
            billed > cap - PRICE,
            "run {k}: billed only {billed} of {cap}"
        );
        // Both caps' items in the table, and the reports, agree with the double.
        let today = retouch::catalog::Date::today_utc().to_string();
        for pk in [format!("budget#run#rep-{k}"), format!("budget#day#{today}")] {
            let spent = env
                .rt
                .block_on(env.dynamo.number(&format!("caps-{k}"), &pk, "spent"));
            assert_eq!(spent, Some(billed), "run {k}: {pk}");
        }
        let mut reported = 0i64;
        for i in 0..8 {
            let part = root.join(format!("out-{k}/report.part-{i:05}-of-00008.csv"));
            for r in report(&part) {
                reported += (r[4].parse::<f64>().unwrap() * 1e6).round() as i64;
            }
        }
        assert_eq!(reported, billed, "run {k}");
    }
}

#[test]
fn three_shards_killed_mid_run_rerun_without_paying_twice_and_a_full_rerun_calls_nothing() {
    let env = env(&["kills"]);
    env.double
        .set_latency(REMOVE_BG, Duration::from_millis(120));
    let yaml = manifest(
        "kills",
        "kills",
        "out",
        "{ max_usd: 100 }",
        "{ concurrency: 2, rpm: { stability-remove-bg: 60000 } }",
    );
    let t = photos(Test::new().manifest(&yaml), 160);
    let root = t.root().to_owned();
    let rt = env.retouch(&root);
    let first: Vec<Child> = (0..8)
        .map(|i| {
            shard(&rt, "pipelines/test.yaml", i, 8, "kills", "m")
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill 3 shards chosen at random with SIGKILL at random moments: after a random number of
    // their rows (1 to 8 of about 20), plus up to one call's latency, so a kill may land
    // anywhere in a call (printed, to replay a failure).
    use rand::seq::SliceRandom;
    let mut rng = rand::rng();
    let mut order: Vec<u32> = (0..8).collect();
    order.shuffle(&mut rng);
    let victims: Vec<(u32, usize, u64)> = order[..3]
        .iter()
        .map(|&i| {
            (
                i,
                rand::Rng::random_range(&mut rng, 1..=8),
                rand::Rng::random_range(&mut rng, 0..120),
            )
        })
        .collect();
    eprintln!("killing (shard, after rows, + ms): {victims:?}");
    let mut killed = Vec::new();
    let mut survivors = Vec::new();
    for (i, child) in first.into_iter().enumerate() {
        match victims.iter().find(|(s, _, _)| *s == i as u32) {
            Some(&(s, rows, ms)) => killed.push((s, rows, ms, child)),
            None => survivors.push(child),
        }
    }
    for (i, rows, ms, mut child) in killed {
        let part = root.join(format!("out/report.part-{i:05}-of-00008.csv"));
        wait_for_rows(&part, rows, Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    for child in survivors {
        assert_eq!(finish(child), 0);
    }
    // Calls the killed shards had in flight stay held in the table (possibly billed).
    let in_flight = env
        .rt
        .block_on(env.dynamo.map_len("kills", "budget#run#kills", "holds"));
    assert!(
        in_flight <= 6,
        "{in_flight} holds left by 3 shards of 2 calls each"
    );
    let merged = rt.run(&["report", "merge", "out"]).code(1);
    assert!(merged.stdout.contains("unfinished"), "{}", merged.stdout);

    // Rerun the three killed shards (the same machines and run group): they finish.
    let codes = all_at_once(
        victims
            .iter()
            .map(|&(i, _, _)| shard(&rt, "pipelines/test.yaml", i, 8, "kills", "m"))
            .collect(),
    );
    assert_eq!(codes, vec![0; 3]);
    let merged = rt.run(&["report", "merge", "out"]).code(0);
    assert!(
        merged.stdout.contains("160 rows, 160 images"),
        "{}",
        merged.stdout
    );
    // No photo whose result was recorded was paid again. A photo billed twice is one a killed
    // shard had in hand: its call in flight or answered but not yet recorded, which is exactly
    // when its hold is still in the table (settled only once the result is recorded).
    let per_photo = billed_per_photo(&env.double);
    assert_eq!(per_photo.len(), 160);
    let twice = per_photo.values().filter(|n| **n > 1).count();
    assert!(per_photo.values().all(|n| *n <= 2));
    eprintln!("killed: {in_flight} calls held in flight, {twice} photos billed twice");
    assert!(
        twice <= in_flight,
        "{twice} photos paid twice, but only {in_flight} calls were held at the kills"
    );
    // The run budget holds every billed call: the settled ones and the killed ones' holds.
    let spent = env
        .rt
        .block_on(env.dynamo.number("kills", "budget#run#kills", "spent"))
        .unwrap();
    let billed = env.double.successes(REMOVE_BG) as i64 * PRICE;
    assert!(spent >= billed && spent <= billed + in_flight as i64 * PRICE);
    // No output is corrupt.
    assert!(
        report(&root.join("out/report.csv"))
            .iter()
            .all(|r| r[3] == "ok")
    );
    let mut rdr = csv::Reader::from_path(root.join("out/report.csv")).unwrap();
    for r in rdr.records() {
        let out = root.join(&r.unwrap()[14]);
        image::open(&out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    }
    // A rerun of all 8 makes no call.
    let requests = env.double.requests(REMOVE_BG);
    let codes = all_at_once(
        (0..8)
            .map(|i| shard(&rt, "pipelines/test.yaml", i, 8, "kills", "m"))
            .collect(),
    );
    assert_eq!(codes, vec![0; 8]);
    assert_eq!(env.double.requests(REMOVE_BG), requests);
    // The history shows the three killed shards as unfinished once their heartbeats are stale.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let history = rt
            .run(&["runs", "--table", "kills", "--group", "kills"])
            .code(0);
        let unfinished = history.stdout.matches("(unfinished)").count();
        if unfinished == 3 {
            assert!(
                history
                    .stdout
                    .contains("run group kills: 19 runs (16 finished)"),
                "{}",
                history.stdout
            );
            break;
        }
        assert!(Instant::now() < deadline, "{}", history.stdout);
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn one_rpm_is_shared_by_every_shard_and_a_lone_shard_may_use_all_of_it() {
    let env = env(&["rates"]);
    let yaml = manifest(
        "rates",
        "rates",
        "out",
        "{ max_usd: 100 }",
        "{ concurrency: 4, rpm: { stability-remove-bg: 600 } }",
    );
    let t = photos(Test::new().manifest(&yaml), 80);
    let root = t.root().to_owned();
    let rt = env.retouch(&root);
    // One shard of 8 alone: with the table it has the whole 600 rpm (its fixed 1/8 share would
    // be 75 a minute, 0.8 s a call).
    let started = Instant::now();
    assert_eq!(
        all_at_once(vec![shard(&rt, "pipelines/test.yaml", 0, 8, "r", "m")]),
        vec![0]
    );
    let alone = env.double.successes(REMOVE_BG) as usize;
    assert!(alone >= 5, "{alone}");
    let first = env.double.arrivals(REMOVE_BG);
    let span = first[alone - 1].duration_since(first[0]);
    assert!(
        span < Duration::from_millis(250 * alone as u64),
        "{alone} calls took {span:?} alone"
    );
    eprintln!(
        "shard 0/8 alone: {alone} calls in {span:?} ({:?} all told)",
        started.elapsed()
    );
    // All 8 at once: never more than the rpm's pace in any window.
    assert_eq!(
        all_at_once(
            (1..8)
                .map(|i| shard(&rt, "pipelines/test.yaml", i, 8, "r", "m"))
                .collect()
        ),
        vec![0; 7]
    );
    let arrivals = env.double.arrivals(REMOVE_BG);
    let rest = &arrivals[alone..];
    assert_eq!(rest.len(), 80 - alone);
    // 600 rpm paced at 97%: a slot every 103.1 ms, so any 2 s holds at most 20 slots (the 3%
    // pace is what keeps 60 s windows within the quota: see the benchmark). What the double sees
    // is each slot plus the time to send the call, which on a loaded machine can reach a few
    // hundred milliseconds: calls granted in the 300 ms before a window may arrive in it, so a
    // window holds at most the slots of 2.3 s, 23. Seven shards each pacing at the whole quota
    // would put about 140 in a window; the span check below holds the average pace.
    let most = (0..rest.len())
        .map(|i| {
            rest[i..]
                .iter()
                .take_while(|t| t.duration_since(rest[i]) < Duration::from_secs(2))
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 23, "{most} calls in 2 s at 600 rpm");
    let span = rest[rest.len() - 1].duration_since(rest[0]);
    let ideal = Duration::from_micros(103_093 * (rest.len() as u64 - 1));
    assert!(
        span >= ideal.mul_f64(0.95),
        "{span:?} for {} calls",
        rest.len()
    );
    assert!(
        span <= ideal.mul_f64(1.3),
        "{span:?} for {} calls: too slow",
        rest.len()
    );
}

/// One shard of a six-photo run coordinated through `table` (its name for the cache prefix and
/// the run group too), every call taking 300 ms, started and awaited until its first row: the
/// moment to change the table under it. The project is returned to keep it alive.
fn one_slow_shard_under_way(env: &Env, table: &str) -> (Test, std::path::PathBuf, Child) {
    env.double
        .set_latency(REMOVE_BG, Duration::from_millis(300));
    let yaml = manifest(
        table,
        table,
        "out",
        "{ max_usd: 100 }",
        "{ concurrency: 1, rpm: { stability-remove-bg: 60000 } }",
    );
    let t = photos(Test::new().manifest(&yaml), 6);
    let root = t.root().to_owned();
    let child = shard(&env.retouch(&root), "pipelines/test.yaml", 0, 1, table, "m")
        .spawn()
        .unwrap();
    wait_for_rows(
        &root.join("out/report.part-00000-of-00001.csv"),
        1,
        Duration::from_secs(60),
    );
    (t, root, child)
}

#[test]
fn when_the_table_goes_away_mid_run_no_call_is_made_without_its_hold() {
    let mut env = env(&["gone"]);
    let (_project, root, child) = one_slow_shard_under_way(&env, "gone");
    // The table stops answering (its server is gone) with the run part-way.
    env.dynamo = Dynamo::start();
    // The photos it could not pay for are skipped (the step's `fallback: skip`).
    assert_eq!(finish(child), 0);
    let rows = report(&root.join("out/report.part-00000-of-00001.csv"));
    assert_eq!(rows.len(), 6);
    let paid = rows.iter().filter(|r| r[3] == "ok").count();
    assert!((1..6).contains(&paid), "{rows:?}");
    // Every photo after the table went is refused by the budget, not paid for uncounted.
    for r in rows.iter().filter(|r| r[3] != "ok") {
        assert_eq!(
            (r[2].as_str(), r[3].as_str()),
            ("fallback-budget", "skipped"),
            "{r:?}"
        );
        assert_eq!(r[4], "0.000000", "{r:?}");
    }
    assert_eq!(env.double.successes(REMOVE_BG) as usize, paid);
}

/// A run's budget item that vanishes mid-run (its time to live, or a hand) is made again as a run
/// item, kept about 90 days like the first, not the 3 days of a day's item.
#[test]
fn a_run_item_made_again_mid_run_keeps_a_run_item_s_lifetime() {
    let env = env(&["again"]);
    let (_project, _, child) = one_slow_shard_under_way(&env, "again");
    env.rt
        .block_on(env.dynamo.delete("again", "budget#run#again"));
    assert_eq!(finish(child), 0);
    let expires = env
        .rt
        .block_on(env.dynamo.number("again", "budget#run#again", "expires_at"))
        .expect("made again");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        expires > now + 80 * 86_400,
        "expires in {} s",
        expires - now
    );
    // What was paid after the item came back is on it.
    assert!(
        env.rt
            .block_on(env.dynamo.number("again", "budget#run#again", "spent"))
            .is_some_and(|spent| spent >= PRICE)
    );
}

#[test]
fn a_shard_without_a_run_group_or_table_stops_before_any_work() {
    let env = env(&[]);
    let yaml = manifest(
        "missing-table",
        "x",
        "out",
        "{ max_usd: 1 }",
        "{ concurrency: 1 }",
    );
    let t = photos(Test::new().manifest(&yaml), 2);
    let rt = env.retouch(t.root());
    let out = rt
        .run(&["run", "pipelines/test.yaml", "--shard", "0/2"])
        .code(2);
    assert!(out.stderr.contains("--run-group"), "{}", out.stderr);
    let out = rt
        .run(&[
            "run",
            "pipelines/test.yaml",
            "--shard",
            "0/2",
            "--run-group",
            "g",
        ])
        .code(2);
    assert!(
        out.stderr.contains("missing-table") && out.stderr.contains("create-table"),
        "{}",
        out.stderr
    );
    assert!(!t.root().join("out").join("000.png").exists());
    assert_eq!(env.double.requests(REMOVE_BG), 0);
}
