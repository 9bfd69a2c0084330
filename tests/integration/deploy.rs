//! The deployment examples parse and carry what their engines require: the Dockerfile (two
//! stages, a non-root runtime), the AWS Batch job definition (container, retry strategy that
//! does not retry manifest errors) and array submission, the Kubernetes Indexed Job (index
//! failure on exit code 2, shard count equal to completions), the IAM policy, and the manifest
//! they run.

use std::path::Path;

use serde_json::Value;

fn file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json(rel: &str) -> Value {
    serde_json::from_str(&file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

#[test]
fn the_dockerfile_builds_in_one_stage_and_runs_as_a_user_in_another() {
    let text = file("Dockerfile");
    let stages: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[0].contains(" AS build"));
    assert!(text.contains("cargo build --release --locked"));
    assert!(text.contains("COPY --from=build"));
    let runtime = text.split("AS runtime").nth(1).expect("a runtime stage");
    let user = runtime
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the runtime stage");
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "{user}"
    );
    assert!(runtime.contains("ENTRYPOINT [\"retouch\"]"));
    assert!(
        !text.to_lowercase().contains(".onnx"),
        "weights are never in the image"
    );
}

#[test]
fn the_batch_job_definition_retries_infrastructure_not_manifest_errors() {
    let def = json("deploy/aws-batch/job-definition.json");
    assert_eq!(def["type"], "container");
    let c = &def["containerProperties"];
    assert!(c["image"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(c["command"][0], "run");
    let resources: Vec<&str> = c["resourceRequirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert!(resources.contains(&"VCPU") && resources.contains(&"MEMORY"));
    let retry = &def["retryStrategy"];
    let attempts = retry["attempts"].as_u64().unwrap();
    assert!((1..=10).contains(&attempts));
    let rules = retry["evaluateOnExit"].as_array().unwrap();
    assert!(rules.len() <= 5, "Batch takes at most 5 conditions");
    for r in rules {
        assert!(
            matches!(r["action"].as_str(), Some("RETRY" | "EXIT")),
            "{r}"
        );
    }
    // First match wins: exit code 2 (nothing processed: a manifest or setup error) must stop
    // before any catch-all retry; an interruption (130) and lost hosts retry.
    let first = |pred: &dyn Fn(&Value) -> bool| rules.iter().position(pred);
    let manifest_error = first(&|r| r["onExitCode"] == "2").expect("a rule for exit code 2");
    assert_eq!(rules[manifest_error]["action"], "EXIT");
    let catch_all = first(&|r| r["onReason"] == "*").unwrap_or(usize::MAX);
    assert!(manifest_error < catch_all);
    assert_eq!(
        rules[first(&|r| r["onExitCode"] == "130").unwrap()]["action"],
        "RETRY"
    );
    assert!(
        first(&|r| r["onStatusReason"]
            .as_str()
            .is_some_and(|s| s.starts_with("Host EC2")))
        .is_some()
    );
    let submit = json("deploy/aws-batch/submit-job.json");
    assert_eq!(submit["jobDefinition"], def["jobDefinitionName"]);
    assert!(submit["arrayProperties"]["size"].as_u64().unwrap() >= 2);
}

#[test]
fn the_indexed_job_fails_an_index_on_exit_code_2_and_counts_its_shards() {
    let job: serde_yaml::Value =
        serde_yaml::from_str(&file("deploy/kubernetes/indexed-job.yaml")).unwrap();
    assert_eq!(job["apiVersion"].as_str(), Some("batch/v1"));
    assert_eq!(job["kind"].as_str(), Some("Job"));
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_u64().unwrap();
    assert!(spec["backoffLimitPerIndex"].as_u64().is_some());
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["restartPolicy"].as_str(),
        Some("Never"),
        "podFailurePolicy needs Never"
    );
    let container = &pod["containers"][0];
    let name = container["name"].as_str().unwrap();
    let rules = spec["podFailurePolicy"]["rules"].as_sequence().unwrap();
    let fail_index = rules
        .iter()
        .find(|r| r["action"].as_str() == Some("FailIndex"))
        .expect("a FailIndex rule");
    assert_eq!(
        fail_index["onExitCodes"]["containerName"].as_str(),
        Some(name)
    );
    assert_eq!(fail_index["onExitCodes"]["operator"].as_str(), Some("In"));
    assert!(
        fail_index["onExitCodes"]["values"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|v| v.as_u64() == Some(2))
    );
    let count = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(retouch::shard::COUNT_VAR))
        .and_then(|e| e["value"].as_str())
        .expect("RETOUCH_SHARD_COUNT");
    assert_eq!(count.parse::<u64>().unwrap(), completions);
    // The run group (shards sharing the run cap in the coordination table) is the Job's uid.
    let group = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some(retouch::shard::GROUP_VAR))
        .expect("RETOUCH_RUN_GROUP");
    assert_eq!(
        group["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("metadata.labels['batch.kubernetes.io/controller-uid']")
    );
    assert_eq!(container["args"][0].as_str(), Some("run"));
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    assert_ne!(pod["securityContext"]["runAsUser"].as_u64(), Some(0));
}

#[test]
fn the_iam_policy_allows_what_a_shard_does_and_the_manifest_it_runs_is_valid() {
    let policy = json("deploy/iam-policy.json");
    assert_eq!(policy["Version"], "2012-10-17");
    let actions: Vec<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|s| assert_eq!(s["Effect"], "Allow"))
        .flat_map(|s| s["Action"].as_array().unwrap().clone())
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    for needed in [
        "s3:GetObject",
        "s3:PutObject",
        "s3:ListBucket",
        "bedrock:InvokeModel",
        "dynamodb:DescribeTable",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
    ] {
        assert!(actions.iter().any(|a| a == needed), "{needed}: {actions:?}");
    }
    let text = file("deploy/catalog-s3.yaml");
    let manifest = retouch::manifest::parse(
        &text,
        Path::new("pipelines/catalog-s3.yaml"),
        &retouch::catalog::Catalog::builtin(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(manifest.report.is_s3() && manifest.output.dir.is_s3());
    assert_eq!(
        manifest.shared.dynamodb_table.as_deref(),
        Some("retouch-coordination")
    );
    assert!(file("deploy/iam-policy.json").contains("table/retouch-coordination"));
    let baked = file("deploy/Dockerfile.pipelines");
    assert!(baked.contains("deploy/catalog-s3.yaml /home/retouch/pipelines/catalog-s3.yaml"));
}
