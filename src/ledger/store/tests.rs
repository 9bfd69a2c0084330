//! Unit tests of the state store (kept beside `store.rs` to keep that file short).

use super::money::days_from_civil;
use super::*;
use crate::catalog::{Date, Op};
use crate::ledger::{Status, StepKey, StepRecord, unix_now};
use crate::ledger::{StepSpec, spec_for};
use crate::manifest::{Fallback, FixLightingParams, ModelRef, OpParams, Step};
use crate::money::Usd;
use rusqlite::Connection;

use crate::qa::{Flag, Qa};

fn record(image_index: usize, step: usize, status: Status, cost: i64) -> StepRecord {
    StepRecord {
        image_index,
        image: format!("photos/img{image_index}.jpg"),
        step,
        op: Op::FixLighting,
        model: "amazon.nova-canvas-v1:0".into(),
        reason: crate::reason::Reason::Cheapest,
        status,
        cost: Usd(cost),
        latency_ms: 120 + step as u64,
        attempts: 1,
        input_size: Some((640, 480)),
        output_size: (status == Status::Ok).then_some((1280, 960)),
        output: format!("out/img{image_index}.png"),
        error: if status == Status::Failed {
            "throttled".into()
        } else {
            String::new()
        },
        qa: (status == Status::Ok).then(|| Qa::of(vec![Flag::TouchesFrame])),
    }
}

/// The money calls of a run, named by run and model only (the image and step do not matter
/// to the daily budget).
trait Money {
    fn spend(&self, run: &str, model: &str, cost: Usd, at: i64) -> Result<(), LedgerError>;
    fn hold_daily(
        &self,
        run: &str,
        day: Date,
        cap: Usd,
        amount: Usd,
        now: i64,
    ) -> Result<Result<HoldId, Usd>, LedgerError>;
    fn settle(
        &self,
        hold: HoldId,
        run: &str,
        model: &str,
        billed: Usd,
        at: i64,
    ) -> Result<(), LedgerError>;
}

fn call<'a>(run_id: &'a str, model: &'a str) -> PaidCall<'a> {
    PaidCall {
        run_id,
        image: "photos/a.jpg",
        step: 0,
        model,
    }
}

impl Money for Store {
    fn spend(&self, run: &str, model: &str, cost: Usd, at: i64) -> Result<(), LedgerError> {
        self.record_spend(&call(run, model), cost, at)
    }

    fn hold_daily(
        &self,
        run: &str,
        day: Date,
        cap: Usd,
        amount: Usd,
        now: i64,
    ) -> Result<Result<HoldId, Usd>, LedgerError> {
        self.hold(&call(run, "m"), amount, Some((day, cap)), now)
    }

    fn settle(
        &self,
        hold: HoldId,
        run: &str,
        model: &str,
        billed: Usd,
        at: i64,
    ) -> Result<(), LedgerError> {
        self.settle_hold(hold, &call(run, model), billed, at)
    }
}

fn key(n: u8) -> StepKey {
    let step = Step {
        index: 0,
        op: Op::FixLighting,
        models: vec![ModelRef::Local],
        fallback: Fallback::Local,
        params: OpParams::FixLighting(FixLightingParams { strength: 0.5 }),
        prompt: None,
        negative_prompt: None,
        similarity: None,
        escalate: None,
        grader: None,
    };
    let spec: StepSpec = spec_for(&step, "local", 1);
    StepKey::chain(blake3::hash(&[n]), &spec)
}

fn cached(blob: String, created_at: i64) -> CachedStep {
    CachedStep {
        blob,
        model: "amazon.nova-canvas-v1:0".into(),
        cost: Usd(40_000),
        latency_ms: 2_300,
        out_w: 1024,
        out_h: 768,
        created_at,
        qa: Some(Qa::of(vec![Flag::Fragmented, Flag::SemiTransparent])),
    }
}

#[test]
fn runs_and_rows_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(dir.path().join("state.db").is_file());
    let info = |id: &str, at| RunInfo {
        run_id: id.into(),
        manifest: "pipelines/shop.yaml".into(),
        started_at: at,
        images: 2,
    };
    store.begin_run(&info("r1", 100)).unwrap();
    store.begin_run(&info("r2", 200)).unwrap();
    let rows = vec![
        record(1, 0, Status::Ok, 40_000),
        record(0, 0, Status::Ok, 40_000),
        record(0, 1, Status::Failed, 0),
    ];
    store.record_rows("r1", &rows).unwrap();
    // Recording a row again replaces it, never duplicates it.
    store.record_rows("r1", &rows[..1]).unwrap();
    let back = store.rows("r1").unwrap();
    assert_eq!(
        back,
        vec![rows[1].clone(), rows[2].clone(), rows[0].clone()]
    );
    assert!(store.rows("r2").unwrap().is_empty());

    // r1 never finished: totals come from its rows. r2 finished: its own totals.
    store.finish_run("r2", 2, 0, Usd(7), 260).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].info, info("r2", 200));
    assert_eq!(
        (
            runs[0].finished_at,
            runs[0].ok,
            runs[0].failed,
            runs[0].cost
        ),
        (Some(260), 2, 0, Usd(7))
    );
    assert_eq!(
        (
            runs[1].finished_at,
            runs[1].ok,
            runs[1].failed,
            runs[1].cost
        ),
        (None, 1, 1, Usd(80_000))
    );
    assert_eq!(store.run("r1").unwrap().unwrap().info.run_id, "r1");
    assert_eq!(store.run("nope").unwrap(), None);
}

#[test]
fn state_survives_reopening_and_the_schema_is_versioned() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.spend("r1", "m", Usd(5), 1_000).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.spent_on(Date::from_days_since_epoch(0)).unwrap(),
        Usd(5)
    );
    let conn = Connection::open(dir.path().join("state.db")).unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.execute_batch("PRAGMA user_version = 99").unwrap();
    drop(store);
    assert!(matches!(
        Store::open(dir.path()),
        Err(LedgerError::SchemaTooNew { found: 99, .. })
    ));
}

#[test]
fn two_handles_write_concurrently_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_owned();
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = Store::open(&path).unwrap();
                let run = format!("run-{t}");
                for i in 0..200 {
                    store.spend(&run, "m", Usd(1), 86_400 + i).unwrap();
                    store
                        .record_rows(&run, &[record(i as usize, 0, Status::Ok, 1)])
                        .unwrap();
                    let k = key((i % 250) as u8);
                    store.record_step(&k, &cached("b".repeat(64), i)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = Store::open(&path).unwrap();
    assert_eq!(
        store.spent_on(Date::from_days_since_epoch(1)).unwrap(),
        Usd(400)
    );
    assert_eq!(store.rows("run-0").unwrap().len(), 200);
    assert_eq!(store.rows("run-1").unwrap().len(), 200);
}

#[test]
fn spend_is_counted_per_utc_day_across_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let day: Date = "2026-03-14".parse().unwrap();
    let midnight = days_from_civil(day) * 86_400;
    store.spend("a", "m1", Usd(100), midnight - 1).unwrap();
    store.spend("a", "m1", Usd(10), midnight).unwrap();
    store.spend("b", "m2", Usd(20), midnight + 86_399).unwrap();
    store
        .spend("b", "m2", Usd(1_000), midnight + 86_400)
        .unwrap();
    assert_eq!(store.spent_on(day).unwrap(), Usd(30));
    assert_eq!(
        store.spent_on("2026-03-13".parse().unwrap()).unwrap(),
        Usd(100)
    );
    assert_eq!(
        store.spent_on("2026-03-15".parse().unwrap()).unwrap(),
        Usd(1_000)
    );
}

#[test]
fn daily_holds_are_shared_by_every_handle_and_settle_into_spend() {
    let dir = tempfile::tempdir().unwrap();
    // Two handles on one folder, as two runs (processes) sharing the state have.
    let (a, b) = (
        Store::open(dir.path()).unwrap(),
        Store::open(dir.path()).unwrap(),
    );
    let day: Date = "2026-03-14".parse().unwrap();
    let noon = days_from_civil(day) * 86_400 + 43_200;
    let cap = Usd(100);
    a.spend("earlier", "m", Usd(30), noon - 600).unwrap();
    let held_a = a
        .hold_daily("run-a", day, cap, Usd(40), noon)
        .unwrap()
        .unwrap();
    // The other run sees the first one's hold: 30 spent + 40 held + 40 > 100.
    assert_eq!(
        b.hold_daily("run-b", day, cap, Usd(40), noon).unwrap(),
        Err(Usd(70))
    );
    let held_b = b
        .hold_daily("run-b", day, cap, Usd(30), noon)
        .unwrap()
        .unwrap();
    // Settling turns a hold into spend (here less than held); an unbilled call frees its hold.
    a.settle(held_a, "run-a", "m", Usd(25), noon + 5).unwrap();
    b.settle(held_b, "run-b", "m", Usd::ZERO, noon + 5).unwrap();
    assert_eq!(b.spent_on(day).unwrap(), Usd(55));
    assert_eq!(
        a.hold_daily("run-a", day, cap, Usd(46), noon + 6).unwrap(),
        Err(Usd(55))
    );
    let last = a.hold_daily("run-a", day, cap, Usd(45), noon + 6).unwrap();
    assert!(last.is_ok(), "exactly up to the cap is allowed");
    // A hold whose run died expires, and stops counting, after HOLD_EXPIRES_SECS.
    let later = noon + 6 + HOLD_EXPIRES_SECS + 1;
    assert!(
        b.hold_daily("run-c", day, cap, Usd(45), later)
            .unwrap()
            .is_ok()
    );
}

#[test]
fn many_processes_opening_a_new_store_at_once_all_succeed() {
    // Runs started together all create and migrate the same new database.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
        let opened: Vec<_> = (0..6)
            .map(|_| {
                let (path, barrier) = (dir.path().to_owned(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    Store::open(&path).map(drop)
                })
            })
            .collect();
        for t in opened {
            t.join().unwrap().expect("a concurrent open failed");
        }
    }
}

#[test]
fn days_from_civil_inverts_the_date_type() {
    for days in [-800_000, -1, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
        assert_eq!(days_from_civil(Date::from_days_since_epoch(days)), days);
    }
    assert_eq!(days_from_civil("2000-03-01".parse().unwrap()), 11_017);
}

#[test]
fn step_cache_round_trips_and_needs_its_blob() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.lookup(&key(1)).unwrap(), None);
    let blob = store.blobs().put(b"result png").unwrap();
    let entry = cached(blob.clone(), 1_700_000_000);
    store.record_step(&key(1), &entry).unwrap();
    assert_eq!(store.lookup(&key(1)).unwrap(), Some(entry.clone()));
    assert_eq!(store.lookup(&key(2)).unwrap(), None);
    // A forced recompute replaces the entry.
    let newer = CachedStep {
        cost: Usd(1),
        ..entry.clone()
    };
    store.record_step(&key(1), &newer).unwrap();
    assert_eq!(store.lookup(&key(1)).unwrap().unwrap().cost, Usd(1));
    // Blob gone: the entry is a miss (the step must be recomputed), not a dangling hit.
    std::fs::remove_file(store.blobs().path(&blob)).unwrap();
    assert_eq!(store.lookup(&key(1)).unwrap(), None);
}

#[test]
fn gc_trims_unused_entries_and_their_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = unix_now() - 40 * 86_400;
    let stale = store.blobs().put(b"stale").unwrap();
    let fresh = store.blobs().put(b"fresh").unwrap();
    let shared = store.blobs().put(b"shared").unwrap();
    let orphan = store.blobs().put(b"orphan, never recorded").unwrap();
    store
        .record_step(&key(1), &cached(stale.clone(), old))
        .unwrap();
    store
        .record_step(&key(2), &cached(fresh.clone(), old))
        .unwrap();
    store
        .record_step(&key(3), &cached(shared.clone(), old))
        .unwrap();
    store
        .record_step(&key(4), &cached(shared.clone(), old))
        .unwrap();
    // Used recently: survives although created long ago.
    assert!(store.lookup(&key(2)).unwrap().is_some());
    assert!(store.lookup(&key(4)).unwrap().is_some());

    // Blobs were just written, so only a cutoff in the future can collect them: that exercises
    // the entry and blob rules together.
    let stats = store.gc_before(unix_now() - 30 * 86_400).unwrap();
    assert_eq!((stats.entries_removed, stats.blobs_removed), (2, 0));
    let stats = store.gc_before(unix_now() + 10).unwrap();
    // Every remaining entry was used before `now + 10`: all are trimmed, and every blob with
    // them, including the orphan a crash could have left.
    assert_eq!(stats.entries_removed, 2);
    assert_eq!(stats.blobs_removed, 4);
    for b in [&stale, &fresh, &shared, &orphan] {
        assert!(!store.blobs().contains(b));
    }
}

#[test]
fn gc_keeps_blobs_still_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let old = unix_now() - 40 * 86_400;
    let shared = store.blobs().put(b"shared").unwrap();
    let orphan = store.blobs().put(b"orphan").unwrap();
    store
        .record_step(&key(1), &cached(shared.clone(), old))
        .unwrap();
    store
        .record_step(&key(2), &cached(shared.clone(), unix_now()))
        .unwrap();
    let stats = store.gc_before(unix_now() + 1).unwrap();
    // Both entries were last used before the cutoff: both go, and their blob with them.
    assert_eq!(stats.entries_removed, 2);
    assert!(!store.blobs().contains(&orphan));
    assert!(!store.blobs().contains(&shared));

    let shared = store.blobs().put(b"shared").unwrap();
    let orphan = store.blobs().put(b"orphan").unwrap();
    store
        .record_step(&key(1), &cached(shared.clone(), old))
        .unwrap();
    store
        .record_step(&key(2), &cached(shared.clone(), unix_now() + 100))
        .unwrap();
    let stats = store.gc_before(unix_now() + 1).unwrap();
    assert_eq!((stats.entries_removed, stats.blobs_removed), (1, 1));
    assert!(
        store.blobs().contains(&shared),
        "entry 2 still refers to it"
    );
    assert!(!store.blobs().contains(&orphan));
    assert!(store.lookup(&key(2)).unwrap().is_some());
    assert!(store.lookup(&key(1)).unwrap().is_none());
}

#[test]
fn the_last_lock_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.last_lock().unwrap().is_empty());
    store
        .record_lock("r1", &[("b".into(), Usd(2)), ("a".into(), Usd(1))])
        .unwrap();
    assert_eq!(
        store.last_lock().unwrap(),
        vec![("a".to_string(), Usd(1)), ("b".to_string(), Usd(2))]
    );
    store.record_lock("r2", &[("a".into(), Usd(3))]).unwrap();
    assert_eq!(store.last_lock().unwrap(), vec![("a".to_string(), Usd(3))]);
}

#[test]
fn a_killed_runs_money_is_all_accounted_for() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let run = RunInfo {
        run_id: "killed".into(),
        manifest: "m.yaml".into(),
        started_at: 1_000,
        images: 3,
    };
    store.begin_run(&run).unwrap();
    // Image 0 finished: its two steps have rows and were billed.
    store
        .record_rows(
            "killed",
            &[record(0, 0, Status::Ok, 40), record(0, 1, Status::Ok, 30)],
        )
        .unwrap();
    let img = |i: usize, step: usize| PaidCall {
        run_id: "killed",
        image: if i == 0 {
            "photos/img0.jpg"
        } else {
            "photos/img1.jpg"
        },
        step,
        model: "m",
    };
    store.record_spend(&img(0, 0), Usd(40), 1_001).unwrap();
    store.record_spend(&img(0, 1), Usd(30), 1_002).unwrap();
    // Image 1's first step was billed, but the run died before the image finished.
    let h = store
        .hold(&img(1, 0), Usd(40), None, 1_003)
        .unwrap()
        .unwrap();
    store.settle_hold(h, &img(1, 0), Usd(40), 1_004).unwrap();
    // Its second step was in flight at the kill: held, never settled.
    store
        .hold(&img(1, 1), Usd(30), None, 1_005)
        .unwrap()
        .unwrap();

    let summary = store.run("killed").unwrap().unwrap();
    assert_eq!(summary.finished_at, None);
    assert_eq!(summary.cost, Usd(110), "rows say 70; the spend table 110");
    assert_eq!(summary.possibly_billed, Usd(30));
    let money = store.run_money("killed").unwrap();
    assert_eq!(money.billed, Usd(110));
    assert_eq!(
        money.outside_rows,
        vec![CallRecord {
            image: "photos/img1.jpg".into(),
            step: Some(0),
            model: "m".into(),
            cost: Usd(40)
        }]
    );
    assert_eq!(money.held.len(), 1);
    assert_eq!(money.held[0].step, Some(1));
    assert_eq!(money.possibly_billed(), Usd(30));
}

#[test]
fn a_step_is_claimed_by_one_task_until_released_and_dead_runs_lose_their_claims() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let k = key(7);
    let lease_a = crate::ledger::lease::RunLease::acquire(dir.path(), "run-a").unwrap();
    assert_eq!(store.claim(&k, "run-a", 1, 10).unwrap(), Claim::Mine);
    assert_eq!(
        store.claim(&k, "run-a", 1, 11).unwrap(),
        Claim::Mine,
        "idempotent"
    );
    // A duplicate image of the same run waits, as does another live run.
    let theirs = Claim::Theirs {
        run_id: "run-a".into(),
    };
    assert_eq!(store.claim(&k, "run-a", 2, 12).unwrap(), theirs);
    let _lease_b = crate::ledger::lease::RunLease::acquire(dir.path(), "run-b").unwrap();
    assert_eq!(store.claim(&k, "run-b", 1, 12).unwrap(), theirs);
    store.release_claim(&k, 1).unwrap();
    assert_eq!(store.claim(&k, "run-b", 1, 13).unwrap(), Claim::Mine);
    // run-b dies (its lease ends) holding the claim: run-a takes it over at once.
    drop(_lease_b);
    assert_eq!(store.claim(&k, "run-a", 3, 14).unwrap(), Claim::Mine);
    store.release_claims("run-a").unwrap();
    assert_eq!(store.claim(&k, "run-c", 1, 15).unwrap(), Claim::Mine);
    drop(lease_a);
}

#[test]
fn a_version_6_store_keeps_its_rows_and_then_takes_several_rows_per_step() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join("state.db")).unwrap();
        for sql in [
            SCHEMA, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
        ] {
            conn.execute_batch(sql).unwrap();
        }
        conn.execute_batch(
            "PRAGMA user_version = 6;
             INSERT INTO rows VALUES ('old', 0, 0, 'photos/a.jpg', 'remove-bg', 'local',
               'only-permitted', 'ok', 0, 12, 1, 10, 10, 10, 10, 'out/a.png', '', 'empty');",
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let old = store.rows("old").unwrap();
    assert_eq!(old.len(), 1);
    assert_eq!(old[0].qa, Some(Qa::of(vec![Flag::Empty])));

    // An escalated step: the superseded local attempt, then the kept remote one.
    let mut local = record(0, 0, Status::Superseded, 0);
    local.model = "local:u2netp".into();
    local.reason = crate::reason::Reason::Escalated;
    local.qa = Some(Qa::of(vec![Flag::Empty]));
    let mut remote = record(0, 0, Status::Ok, 40_000);
    remote.reason = crate::reason::Reason::EscalationPassed;
    remote.qa = Some(Qa::default());
    let rows = vec![local.clone(), remote.clone(), record(0, 1, Status::Ok, 0)];
    store.record_rows("new", &rows).unwrap();
    assert_eq!(store.rows("new").unwrap(), rows);

    // The pass history counts results that ran, each once: one of the two local ones passed.
    let mut good = record(1, 0, Status::Ok, 0);
    good.model = "local:u2netp".into();
    good.qa = Some(Qa::default());
    let mut reused = good.clone();
    reused.image_index = 2;
    reused.attempts = 0; // a cache hit: not a result of its own
    store.record_rows("new", &[good, reused]).unwrap();
    assert_eq!(
        store.passed(Op::FixLighting, "local:u2netp", 0.8).unwrap(),
        (1, 2)
    );
}
