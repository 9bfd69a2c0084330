//! `retouch report` and `retouch runs` through the binary.

use crate::harness::Test;

const CSV: &str = "\
run_id,image,step,op,model,reason,status,cost_usd,latency_ms,attempts,in_w,in_h,out_w,out_h,output,error
r-9,../photos/a.jpg,1,remove-bg,stability.rb,cheapest,ok,0.040000,900,1,64,48,64,48,out/a.png,
r-9,../photos/a.jpg,2,upscale,local,only-permitted,ok,0.000000,30,1,64,48,128,96,out/a.png,
r-9,../photos/<script>x</script>.jpg,1,remove-bg,stability.rb,cheapest,failed,0.010000,3000,4,64,48,,,,\"throttled, gave up\"
";

#[test]
fn report_json_from_a_csv() {
    let out = Test::new()
        .file("out/report.csv", CSV.as_bytes())
        .run(&["report", "out/report.csv", "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    assert_eq!(v["run_id"], "r-9");
    assert_eq!(v["images"], 2);
    assert_eq!(v["total_cost_usd"], serde_json::json!(0.05));
    assert_eq!(v["images_by_status"]["failed"], 1);
    assert_eq!(v["by_step"][0]["key"], "1 remove-bg");
    assert_eq!(v["by_step"][0]["cost_usd"], serde_json::json!(0.05));
    assert_eq!(v["failures"][0]["reason"], "cheapest");
    assert_eq!(v["failures"][0]["count"], 1);
    assert_eq!(v["costliest"][0]["image"], "../photos/a.jpg");
}

/// A 3-step run over 15 photos, the last 13 of which were corrupt (failed at every step).
fn corrupt_run_csv() -> String {
    let mut csv = String::from(
        "run_id,image,step,op,model,reason,status,cost_usd,latency_ms,attempts,in_w,in_h,out_w,out_h,output,error\n",
    );
    for i in 0..15 {
        for (step, op) in [(1, "remove-bg"), (2, "fix-lighting"), (3, "upscale")] {
            let row = if i < 2 {
                format!(
                    "r-3,photos/{i:02}.jpg,{step},{op},local,only-permitted,ok,0,20,1,8,8,8,8,out/{i:02}.png,\n"
                )
            } else {
                format!(
                    "r-3,photos/{i:02}.jpg,{step},{op},local,corrupt-image,failed,0,0,0,,,,,,bad data {i}\n"
                )
            };
            csv.push_str(&row);
        }
    }
    csv
}

#[test]
fn failures_count_and_list_each_image_once() {
    let out = Test::new()
        .file("out/report.csv", corrupt_run_csv().as_bytes())
        .run(&["report", "out/report.csv"])
        .success();
    assert!(
        out.stdout
            .contains("\n  corrupt-image (13 images, 39 rows)\n"),
        "{}",
        out.stdout
    );
    for i in 2..15 {
        let line = format!("    photos/{i:02}.jpg: bad data {i}\n");
        assert_eq!(out.stdout.matches(&line).count(), 1, "{}", out.stdout);
    }
    let out = out
        .then()
        .run(&["report", "out/report.csv", "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    let group = &v["failures"][0];
    assert_eq!(
        (&group["reason"], &group["count"], &group["rows"]),
        (&"corrupt-image".into(), &13.into(), &39.into())
    );
    let images: std::collections::BTreeSet<&str> = group["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["image"].as_str().unwrap())
        .collect();
    assert_eq!(images.len(), 13);
    assert_eq!(group["images"].as_array().unwrap().len(), 13);
    assert_eq!(v["images_by_status"]["failed"], 13);
}

#[test]
fn report_html_shows_thumbnails_and_escapes_names() {
    let out = Test::new()
        .file("out/report.csv", CSV.as_bytes())
        .image("photos/a.jpg", 64, 48)
        .image("out/a.png", 128, 96)
        .run(&["report", "out/report.csv", "--html", "out/report.html"])
        .success();
    assert!(out.stdout.contains("cost:   $0.050000"), "{}", out.stdout);
    let page = std::fs::read_to_string(out.root.join("out/report.html")).unwrap();
    assert_eq!(page.matches("<tr class=\"image\"").count(), 2);
    assert_eq!(page.matches("src=\"data:image/").count(), 2);
    assert!(page.contains("&lt;script&gt;x&lt;/script&gt;.jpg"));
    assert!(!page.contains("<script>x"));
}

#[test]
fn unknown_run_is_a_usage_error_and_runs_lists_nothing() {
    let out = Test::new().run(&["report", "no-such-run"]).code(2);
    assert!(
        out.stderr.contains("neither a report CSV nor a run id"),
        "{}",
        out.stderr
    );
    let out = Test::new().run(&["runs"]).success();
    assert!(out.stdout.contains("no runs recorded"), "{}", out.stdout);
    assert!(!out.root.join(".retouch").exists());
}

/// A test folder whose `.retouch` state records one finished run, `run-42`.
fn with_recorded_run() -> Test {
    use retouch::catalog::Op;
    use retouch::ledger::{RunInfo, Status, StepRecord, Store};
    use retouch::money::Usd;

    let test = Test::new();
    let store = Store::open(&test.root().join(".retouch")).unwrap();
    store
        .begin_run(&RunInfo {
            run_id: "run-42".into(),
            manifest: "pipelines/shop.yaml".into(),
            started_at: 1_773_446_400, // 2026-03-14 00:00:00 UTC
            images: 3,
        })
        .unwrap();
    let row = StepRecord {
        image_index: 0,
        image: "../photos/a.jpg".into(),
        step: 0,
        op: Op::Upscale,
        model: "local".into(),
        reason: retouch::reason::Reason::CacheHit,
        status: Status::Ok,
        cost: Usd(0),
        latency_ms: 0,
        attempts: 0,
        input_size: None,
        output_size: None,
        output: String::new(),
        error: String::new(),
        qa: None,
    };
    store.record_rows("run-42", &[row]).unwrap();
    store
        .finish_run("run-42", 3, 0, Usd(120_000), 1_773_446_460)
        .unwrap();
    test
}

#[test]
fn runs_lists_recorded_runs() {
    let out = with_recorded_run().run(&["runs"]).success();
    let line = out.stdout.lines().nth(1).expect(&out.stdout);
    assert!(line.starts_with("2026-03-14 00:00:00"), "{line}");
    assert!(
        line.contains("run-42") && line.contains("0.120000"),
        "{line}"
    );
    assert!(line.ends_with("pipelines/shop.yaml"), "{line}");
}

#[test]
fn report_by_run_id_reads_the_state_store() {
    let out = with_recorded_run()
        .run(&["report", "run-42", "--json"])
        .success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect(&out.stdout);
    assert_eq!(v["run_id"], "run-42");
    assert_eq!(v["by_reason"][0]["key"], "cache-hit");
}
