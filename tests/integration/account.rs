//! `retouch models --account` against the control-plane double: each catalog model's standing
//! in the account and region (available, legacy, not enabled with the console step, not offered
//! here), through the library and through the binary.

use retouch::account::{Standing, survey};
use retouch::catalog::Catalog;

use crate::harness::Test;
use crate::support::bedrock_control::ControlDouble;

/// An account where: Stability remove-bg is active and enabled (through its `us.` profile); Nova
/// Canvas is legacy; Stability fast upscale is offered but not enabled; Stable Outpaint is
/// offered but has no profile here; Titan v2 is not offered at all; Nova Lite is enabled.
async fn account() -> ControlDouble {
    let d = ControlDouble::start().await;
    d.offer("stability.stable-image-remove-background-v1:0", false, true);
    d.profile("us.stability.stable-image-remove-background-v1:0");
    d.offer("amazon.nova-canvas-v1:0", true, true);
    d.offer("stability.stable-fast-upscale-v1:0", false, false);
    d.profile("us.stability.stable-fast-upscale-v1:0");
    d.offer("stability.stable-outpaint-v1:0", false, true);
    d.offer("amazon.nova-lite-v1:0", false, true);
    d.offer_only_in("us-west-2", "stability.stable-image-core-v1:1");
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_model_gets_its_standing() {
    let d = account().await;
    let catalog = Catalog::builtin();
    let found = survey(&d.client(), &catalog, "us-east-1").await.unwrap();
    let standing = |alias: &str| {
        found
            .iter()
            .find(|m| m.alias == alias)
            .unwrap_or_else(|| panic!("{alias} surveyed"))
            .standing
            .clone()
    };
    assert_eq!(standing("stability-remove-bg"), Standing::Available);
    assert_eq!(standing("nova-lite"), Standing::Available);
    assert_eq!(
        standing("nova-canvas"),
        Standing::Legacy {
            end_of_life: Some("2026-09-30T00:00:00Z".into())
        }
    );
    match standing("stability-fast-upscale") {
        Standing::NotEnabled { why } => {
            assert!(why.contains("not authorized"), "{why}");
            assert!(why.contains("Bedrock console in us-east-1"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        standing("stability-outpaint"),
        Standing::NotOffered,
        "no profile"
    );
    assert_eq!(standing("titan-image-v2"), Standing::NotOffered);
    // Text-only models that cannot grade are not surveyed.
    assert!(found.iter().all(|m| m.alias != "nova-micro"));
    assert!(standing("nova-canvas").usable() && !standing("titan-image-v2").usable());
    // Availability is asked only of models that are listed.
    assert_eq!(d.calls("/foundation-model-availability/amazon.titan"), 0);
    assert_eq!(d.calls("/foundation-models"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_principal_without_permission_gets_a_clear_error() {
    let d = account().await;
    d.deny();
    let e = survey(&d.client(), &Catalog::builtin(), "us-east-1")
        .await
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("AccessDeniedException"), "{text}");
    assert!(text.contains("us-east-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_prints_the_table() {
    let d = account().await;
    let t = Test::new();
    let mut cmd = t.command(
        env!("CARGO_BIN_EXE_retouch"),
        &["models", "--account", "--region", "us-east-1"],
    );
    cmd.env("AWS_ENDPOINT_URL_BEDROCK", d.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test-ak")
        .env("AWS_SECRET_ACCESS_KEY", "test-sk");
    let out = tokio::task::spawn_blocking(move || t.output(cmd))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let line = |alias: &str| {
        out.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{alias} ")))
            .unwrap_or_else(|| panic!("{alias} in {}", out.stdout))
            .to_owned()
    };
    assert!(line("stability-remove-bg").contains("available"));
    assert!(line("nova-canvas").contains("legacy"));
    assert!(line("stability-fast-upscale").contains("not enabled"));
    assert!(line("titan-image-v2").contains("not offered here"));
    // A generator is offered in us-west-2 only: a us-east-1 run calls it there, so it is asked
    // about there (a client per region) and found available.
    let core = line("stability-core");
    assert!(
        core.contains("available") && core.contains("us-west-2"),
        "{core}"
    );
    assert!(line("stability-ultra").contains("not offered here"));
    assert_eq!(d.regions(), ["us-east-1", "us-west-2"]);
    assert!(
        out.stdout.contains("Bedrock console in us-east-1"),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_says_which_permitted_models_will_fall_back() {
    let d = account().await;
    let manifest = r#"
version: 1
name: acct
inputs: ["../photos/*.png"]
output: { dir: ../out, format: png }
steps:
  - op: remove-bg
    models: [stability-remove-bg, nova-canvas, titan-image-v2]
  - op: upscale
    models: [stability-fast-upscale]
    factor: 2
aws: { region: us-east-1 }
"#;
    let t = Test::new()
        .manifest(manifest)
        .image("photos/p.png", 200, 160);
    let mut cmd = t.command(
        env!("CARGO_BIN_EXE_retouch"),
        &["check", "pipelines/test.yaml", "--account"],
    );
    cmd.env("AWS_ENDPOINT_URL_BEDROCK", d.endpoint())
        .env("AWS_ACCESS_KEY_ID", "test-ak")
        .env("AWS_SECRET_ACCESS_KEY", "test-sk");
    let out = tokio::task::spawn_blocking(move || t.output(cmd))
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("account: step 1 (remove-bg): titan-image-v2 is not offered here"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("account: step 2 (upscale): stability-fast-upscale is not enabled"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("stability-remove-bg is"),
        "{}",
        out.stdout
    );
}
