//! Validation tests: one per class of manifest error, each asserting where the problem is reported
//! (line:column and key path) and the help, plus defaults, path resolution and the shipped pipelines.

use std::path::{Path, PathBuf};

use super::*;

const PATH: &str = "pipelines/t.yaml";

/// A valid manifest whose `steps:` block is `steps`, starting on line 7.
fn with_steps(steps: &str) -> String {
    format!("version: 1\nname: t\ninputs: [\"in/*.jpg\"]\noutput:\n  dir: out\nsteps:\n{steps}")
}

/// A valid manifest with one local upscale step, followed by `extra` top-level lines from line 9.
fn with_extra(extra: &str) -> String {
    with_steps(&format!(
        "  - op: upscale\n    models: [local]\n    factor: 2\n{extra}"
    ))
}

fn parse_ok(text: &str) -> Manifest {
    match parse(text, Path::new(PATH), &Catalog::builtin()) {
        Ok(m) => m,
        Err(e) => panic!("expected a valid manifest, got:\n{e}"),
    }
}

fn errors(text: &str) -> ManifestErrors {
    match parse(text, Path::new(PATH), &Catalog::builtin()) {
        Ok(m) => panic!("expected errors, got {m:?}"),
        Err(e) => e,
    }
}

/// The single diagnostic for `text`, checked to be at `line:column` with `key_path`.
fn only_error(text: &str, key_path: &str, line: usize, column: usize) -> Diagnostic {
    let e = errors(text);
    assert_eq!(e.diagnostics.len(), 1, "expected one problem, got:\n{e}");
    let d = e.diagnostics.into_iter().next().unwrap();
    assert_eq!(d.location.key_path, key_path, "{d:?}");
    assert_eq!(
        d.location.position,
        Some(Position { line, column }),
        "{d:?}"
    );
    d
}

fn help(d: &Diagnostic) -> &str {
    d.help.as_deref().unwrap_or("")
}

#[test]
fn syntax_error_uses_serde_yaml_location() {
    let e = errors("version: 1\nname: [unclosed\ninputs: x\n");
    assert_eq!(e.diagnostics.len(), 1);
    let d = &e.diagnostics[0];
    assert!(d.message.starts_with("invalid YAML:"), "{}", d.message);
    let pos = d.location.position.expect("syntax errors carry a position");
    assert_eq!(pos, Position { line: 3, column: 7 });
    assert!(e.to_string().contains(&format!("--> {PATH}:{pos}")), "{e}");
}

#[test]
fn unknown_top_level_key_suggests_and_lists() {
    let d = only_error(&with_extra("limts:\n  concurrency: 2\n"), "limts", 10, 1);
    assert_eq!(d.message, "unknown top-level key `limts`");
    assert!(
        help(&d).starts_with("did you mean `limits`?"),
        "{}",
        help(&d)
    );
    assert!(
        help(&d).contains("valid keys here: version, name, inputs"),
        "{}",
        help(&d)
    );
}

#[test]
fn unknown_step_key_suggests() {
    let text = with_steps("  - op: fix-lighting\n    models: [local]\n    strenght: 0.5\n");
    let d = only_error(&text, "steps[0].strenght", 9, 5);
    assert_eq!(d.message, "unknown key `strenght` in steps[0]");
    assert!(
        help(&d).starts_with("did you mean `strength`?"),
        "{}",
        help(&d)
    );
    assert!(
        help(&d).contains("sharpen"),
        "lists the valid step keys: {}",
        help(&d)
    );
}

#[test]
fn wrong_type_names_the_expected_type() {
    let d = only_error(
        &with_extra("limits:\n  concurrency: eight\n"),
        "limits.concurrency",
        11,
        16,
    );
    assert_eq!(
        d.message,
        "wrong type for limits.concurrency: expected a whole number between 1 and 1024, \
         found a string (`eight`)"
    );
    let d = only_error(
        &with_extra("limits: {attempts: \"3\"}\n"),
        "limits.attempts",
        10,
        20,
    );
    assert_eq!(help(&d), "write the number without quotes: `3`");
    let d = only_error(
        &with_steps("  - op: upscale\n    models: local\n    factor: 2\n"),
        "steps[0].models",
        8,
        13,
    );
    assert!(d.message.contains("expected a list"), "{}", d.message);
}

#[test]
fn unknown_op_suggests_and_renders_like_rustc() {
    let text = with_steps("  - op: remove-backgrund\n    models: [local]\n");
    let d = only_error(&text, "steps[0].op", 7, 9);
    assert_eq!(d.message, "unknown op `remove-backgrund` in steps[0].op");
    assert_eq!(
        help(&d),
        "did you mean `remove-bg`? valid ops: remove-bg, fix-lighting, upscale, frame, replace-bg, outpaint, inpaint, erase, variation, generate"
    );
    assert_eq!(
        errors(&text).to_string(),
        "error: unknown op `remove-backgrund` in steps[0].op\n  --> pipelines/t.yaml:7:9\n  \
         = help: did you mean `remove-bg`? valid ops: remove-bg, fix-lighting, upscale, frame, replace-bg, outpaint, inpaint, erase, variation, generate\n\n\
         error: manifest has 1 problem(s)"
    );
}

#[test]
fn bad_colour_shows_an_example() {
    let step = |bg: &str| {
        with_steps(&format!(
            "  - op: remove-bg\n    models: [local]\n    background: {bg}\n"
        ))
    };
    let d = only_error(&step("\"#12345\""), "steps[0].background", 9, 17);
    assert_eq!(d.message, "invalid colour `#12345` in steps[0].background");
    assert!(help(&d).contains("\"#FFFFFF\""), "{}", help(&d));
    // Unquoted, `#FFFFFF` is a comment and leaves no value.
    let d = only_error(&step("#FFFFFF"), "steps[0].background", 9, 5);
    assert!(
        d.message.contains("unquoted `#` starts a YAML comment"),
        "{}",
        d.message
    );
    assert!(help(&d).contains("quotes"), "{}", help(&d));
}

#[test]
fn rgb_and_rrggbb_colours_any_case() {
    let m = parse_ok(&with_steps(
        "  - op: remove-bg\n    models: [local]\n    background: \"#fA0\"\n\
         \x20 - op: remove-bg\n    models: [local]\n    background: '#00ff7F'\n",
    ));
    let bg = |i: usize| match &m.steps[i].params {
        OpParams::RemoveBg(p) => p.background,
        other => panic!("{other:?}"),
    };
    assert_eq!(bg(0), Some(Rgb([0xFF, 0xAA, 0x00])));
    assert_eq!(bg(1), Some(Rgb([0x00, 0xFF, 0x7F])));
}

#[test]
fn out_of_range_values_name_the_range() {
    let cases = [
        (
            with_steps("  - op: upscale\n    models: [local]\n    factor: 9\n"),
            "steps[0].factor",
            (9, 13),
            "steps[0].factor is 9, but must be > 1 and <= 8",
        ),
        (
            with_steps("  - op: fix-lighting\n    models: [local]\n    strength: 1.5\n"),
            "steps[0].strength",
            (9, 15),
            "steps[0].strength is 1.5, but must be >= 0 and <= 1",
        ),
        (
            with_extra("limits:\n  concurrency: 0\n"),
            "limits.concurrency",
            (11, 16),
            "limits.concurrency is 0, but must be between 1 and 1024",
        ),
        (
            with_extra("limits:\n  downloads: 2000\n"),
            "limits.downloads",
            (11, 14),
            "limits.downloads is 2000, but must be between 1 and 1024",
        ),
        (
            "version: 1\nname: t\ninputs: [a]\noutput: {dir: o, quality: 0}\n\
             steps: [{op: upscale, models: [local], factor: 2}]\n"
                .to_owned(),
            "output.quality",
            (4, 27),
            "output.quality is 0, but must be between 1 and 100",
        ),
    ];
    for (text, key_path, (line, column), message) in cases {
        let d = only_error(&text, key_path, line, column);
        assert_eq!(d.message, message);
    }
}

#[test]
fn upscale_needs_exactly_one_target() {
    let both =
        with_steps("  - op: upscale\n    models: [local]\n    factor: 2\n    min_side: 1024\n");
    let d = only_error(&both, "steps[0].factor", 9, 5);
    assert_eq!(
        d.message,
        "steps[0] sets both factor and min_side/max_side; use one or the other"
    );
    assert!(help(&d).contains("factor: 2"), "{}", help(&d));
    let neither = with_steps("  - op: upscale\n    models: [local]\n");
    let d = only_error(&neither, "steps[0]", 7, 5);
    assert_eq!(
        d.message,
        "steps[0] (upscale) needs `factor` or `min_side`/`max_side`"
    );
    let inverted =
        with_steps("  - op: upscale\n    models: [local]\n    min_side: 900\n    max_side: 100\n");
    let d = only_error(&inverted, "steps[0].min_side", 9, 5);
    assert!(
        d.message.contains("min_side 900 greater than max_side 100"),
        "{}",
        d.message
    );
}

#[test]
fn parameter_on_the_wrong_op_names_its_op() {
    let text = with_steps("  - op: remove-bg\n    models: [local]\n    factor: 2\n");
    let d = only_error(&text, "steps[0].factor", 9, 5);
    assert_eq!(
        d.message,
        "`factor` in steps[0].factor is not a parameter of remove-bg steps; only upscale takes it"
    );
    assert!(
        help(&d).contains("move it to a upscale step"),
        "{}",
        help(&d)
    );
}

#[test]
fn unknown_model_suggests_an_alias() {
    let text = with_steps("  - op: remove-bg\n    models: [nova-canvs]\n");
    let d = only_error(&text, "steps[0].models[0]", 8, 14);
    assert_eq!(
        d.message,
        "unknown model `nova-canvs` in steps[0].models[0]"
    );
    assert_eq!(
        help(&d),
        "did you mean `nova-canvas`? models that can do remove-bg: local, nova-canvas, titan-image-v2, stability-remove-bg"
    );
}

#[test]
fn text_model_is_rejected_with_the_models_for_the_op() {
    let text = with_steps("  - op: fix-lighting\n    models: [nova-lite]\n");
    let d = only_error(&text, "steps[0].models[0]", 8, 14);
    assert_eq!(
        d.message,
        "model `nova-lite` in steps[0].models[0] reads images but cannot edit them"
    );
    assert_eq!(
        help(&d),
        "models that can do fix-lighting: local, nova-canvas, titan-image-v2, titan-image-v1, nova-2-omni"
    );
}

#[test]
fn model_that_cannot_do_the_op_is_rejected() {
    let text = with_steps("  - op: upscale\n    models: [nova-canvas]\n    factor: 2\n");
    let d = only_error(&text, "steps[0].models[0]", 8, 14);
    assert!(
        d.message
            .starts_with("model `nova-canvas` in steps[0].models[0] cannot do upscale")
    );
    assert_eq!(
        help(&d),
        "models that can do upscale: local, stability-fast-upscale, stability-conservative-upscale, stability-creative-upscale"
    );
}

#[test]
fn local_mixed_with_remote_points_to_fallback() {
    let text = with_steps("  - op: remove-bg\n    models: [nova-canvas, local]\n");
    let d = only_error(&text, "steps[0].models", 8, 13);
    assert_eq!(
        d.message,
        "steps[0].models mixes `local` with remote models"
    );
    assert!(help(&d).contains("fallback: local"), "{}", help(&d));
}

#[test]
fn duplicate_models_count_aliases_and_ids_as_one() {
    let text =
        with_steps("  - op: remove-bg\n    models: [nova-canvas, amazon.nova-canvas-v1:0]\n");
    let d = only_error(&text, "steps[0].models[1]", 8, 27);
    assert_eq!(
        d.message,
        "model `amazon.nova-canvas-v1:0` is listed twice in steps[0].models"
    );
}

#[test]
fn version_must_be_one() {
    let text = with_extra("").replace("version: 1", "version: 2");
    let d = only_error(&text, "version", 1, 10);
    assert_eq!(d.message, "unsupported manifest version 2 in version");
    assert!(help(&d).contains("version: 1"), "{}", help(&d));
}

#[test]
fn empty_steps_and_missing_keys() {
    let d = only_error(&with_steps("  []\n"), "steps", 7, 3);
    assert_eq!(d.message, "steps must not be empty");
    let e = errors("version: 1\nname: t\noutput: {format: png}\n");
    let messages: Vec<_> = e.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "missing required top-level key `inputs`",
            "missing required top-level key `steps`",
            "missing required key `dir` in output",
        ]
    );
    let at = |i: usize| e.diagnostics[i].location.position;
    assert_eq!(at(0), Some(Position { line: 1, column: 1 }));
    assert_eq!(at(2), Some(Position { line: 3, column: 1 }));
}

#[test]
fn bad_glob_is_reported_with_syntax_help() {
    let text = with_extra("exclude: [\"**/*_thumb.*\", \"in/[ab.jpg\"]\n");
    let d = only_error(&text, "exclude[1]", 10, 27);
    assert!(
        d.message
            .starts_with("invalid glob `in/[ab.jpg` in exclude[1]: "),
        "{}",
        d.message
    );
    assert!(help(&d).contains("must be closed"), "{}", help(&d));
}

#[test]
fn s3_inputs_outputs_and_report_are_parsed() {
    let text = with_extra(
        "report: s3://cat-reports/runs/r.csv\naws:\n  s3: { endpoint_url: \"http://127.0.0.1:9000\", path_style: true }\n",
    )
    .replace("[\"in/*.jpg\"]", "[\"s3://cat-in/photos/\", \"s3://cat-in/a/**/*.jpg\"]")
    .replace("dir: out", "dir: s3://cat-out/done\n  presign: 24h");
    let m = parse_ok(&text);
    let s3 = |bucket: &str, prefix: &str, pattern: Option<&str>| InputSpec::S3 {
        bucket: bucket.into(),
        prefix: prefix.into(),
        pattern: pattern.map(String::from),
    };
    assert_eq!(
        m.inputs,
        [
            s3("cat-in", "photos/", None),
            s3("cat-in", "a/", Some("**/*.jpg"))
        ]
    );
    assert_eq!(m.output.dir.to_string(), "s3://cat-out/done/");
    assert_eq!(
        m.output.presign,
        Some(std::time::Duration::from_secs(86_400))
    );
    assert_eq!(m.report.to_string(), "s3://cat-reports/runs/r.csv");
    assert_eq!(
        m.aws.s3.endpoint_url.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    assert!(m.aws.s3.path_style && m.uses_s3());
    // The report defaults to the S3 output prefix.
    let default_report = text.replace("report: s3://cat-reports/runs/r.csv\n", "");
    assert_eq!(
        parse_ok(&default_report).report.to_string(),
        "s3://cat-out/done/report.csv"
    );
}

#[test]
fn bad_s3_locations_are_reported_where_written() {
    let text = with_extra("").replace("[\"in/*.jpg\"]", "[\"s3://AB/photos/\"]");
    let d = only_error(&text, "inputs[0]", 3, 10);
    assert!(
        d.message
            .starts_with("bad S3 input `s3://AB/photos/` in inputs[0]: invalid bucket name"),
        "{}",
        d.message
    );
    let text = with_extra("").replace("dir: out", "dir: out\n  presign: 24h");
    let d = only_error(&text, "output.presign", 6, 12);
    assert_eq!(d.message, "output.presign needs an S3 output.dir");
    let text = with_extra("").replace("dir: out", "dir: s3://cat-out/x\n  presign: 8d");
    let d = only_error(&text, "output.presign", 6, 12);
    assert!(d.message.contains("between 1s and 7d"), "{}", d.message);
}

#[test]
fn every_problem_is_reported_at_once_in_source_order() {
    let text = "version: 1\nname: bad name\ninputs: [\"in/*.jpg\"]\noutput:\n  dir: out\n  qualty: 80\n\
                steps:\n  - op: upscale\n    models: [local]\n    factor: 20\nlimits: {concurrency: 0}\n";
    let e = errors(text);
    let at: Vec<_> = e
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.location.key_path.as_str(),
                d.location.position.map(|p| p.line),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            ("name", Some(2)),
            ("output.qualty", Some(6)),
            ("steps[0].factor", Some(10)),
            ("limits.concurrency", Some(11)),
        ]
    );
    assert!(
        e.to_string().ends_with("error: manifest has 4 problem(s)"),
        "{e}"
    );
}

#[test]
fn defaults_are_filled_in() {
    let m = parse_ok(&with_steps(
        "  - op: fix-lighting\n    models: [local]\n  - op: upscale\n    models: [local]\n    max_side: 4096\n",
    ));
    assert_eq!(m.version, 1);
    assert_eq!(m.output.format, OutputFormat::Png);
    assert_eq!(m.output.quality, 90);
    assert_eq!(m.report, local("pipelines/out/report.csv"));
    assert_eq!(m.output.presign, None);
    assert_eq!(m.aws.s3, S3Endpoint::default());
    assert_eq!(m.limits, Limits::default());
    assert_eq!(
        (m.limits.concurrency, m.limits.downloads, m.limits.attempts),
        (8, 16, 4)
    );
    assert_eq!(m.budget, Budget::default());
    assert_eq!(m.steps[0].fallback, Fallback::Local);
    assert_eq!(
        m.steps[0].params,
        OpParams::FixLighting(FixLightingParams { strength: 0.8 })
    );
    let sides = UpscaleTarget::Sides {
        min_side: None,
        max_side: Some(4096),
    };
    assert_eq!(
        m.steps[1].params,
        OpParams::Upscale(UpscaleParams {
            target: sides,
            sharpen: 0.0
        })
    );
    assert_eq!((m.steps[1].index, m.steps[1].prompt.as_deref()), (1, None));
}

#[test]
fn relative_paths_resolve_onto_the_manifest_folder() {
    let m = parse_ok(&with_extra("report: ../r.csv\ncatalog: models.yaml\n"));
    assert_eq!(m.base_dir, PathBuf::from("pipelines"));
    assert_eq!(m.output.dir, local("pipelines/out"));
    assert_eq!(m.report, local("r.csv"), "`..` resolved lexically");
    assert_eq!(m.catalog, Some(PathBuf::from("pipelines/models.yaml")));
    // Globs stay as written; the engine splits and joins them.
    assert_eq!(
        m.inputs,
        [InputSpec::LocalGlob {
            pattern: "in/*.jpg".into()
        }]
    );
    let abs = with_extra("").replace("dir: out", "dir: /srv/out");
    assert_eq!(parse_ok(&abs).output.dir, local("/srv/out"));
    let bare = parse(&with_extra(""), Path::new("t.yaml"), &Catalog::builtin()).unwrap();
    assert_eq!(bare.output.dir, local("out"));
}

fn local(p: &str) -> Place {
    Place::Local(PathBuf::from(p))
}

#[test]
fn rpm_and_prices_are_keyed_by_canonical_id() {
    let m = parse_ok(&with_extra(
        "limits:\n  rpm: {nova-canvas: 60}\nprices: {titan-image-v2: 0.05}\nbudget: {max_usd: 25, per_image_max_usd: 0.5}\n\
         aws: {region: eu-west-2, profile: catalog}\n",
    ));
    assert_eq!(m.limits.rpm.get("amazon.nova-canvas-v1:0"), Some(&60));
    assert_eq!(
        m.prices.get("amazon.titan-image-generator-v2:0"),
        Some(&Usd(50_000))
    );
    assert_eq!(m.budget.max_usd, Some(Usd(25_000_000)));
    assert_eq!(m.budget.per_image_max_usd, Some(Usd(500_000)));
    assert_eq!(m.aws.region.as_deref(), Some("eu-west-2"));
    let d = only_error(
        &with_extra("prices: {nova-canvass: 0.05}\n"),
        "prices.nova-canvass",
        10,
        10,
    );
    assert!(
        help(&d).starts_with("did you mean `nova-canvas`?"),
        "{}",
        help(&d)
    );
}

#[test]
fn budget_region_and_fallback_values_are_checked() {
    let d = only_error(
        &with_extra("budget:\n  max_usd: -1\n"),
        "budget.max_usd",
        11,
        12,
    );
    assert!(d.message.contains("must be >= 0"), "{}", d.message);
    let d = only_error(
        &with_extra("aws: {region: useast1}\n"),
        "aws.region",
        10,
        15,
    );
    assert!(help(&d).contains("us-east-1"), "{}", help(&d));
    let text =
        with_steps("  - op: upscale\n    models: [local]\n    factor: 2\n    fallback: skipp\n");
    let d = only_error(&text, "steps[0].fallback", 10, 15);
    assert!(help(&d).starts_with("did you mean `skip`?"), "{}", help(&d));
}

#[test]
fn unreadable_file_is_one_diagnostic() {
    let e = load(Path::new("/nonexistent/m.yaml"), &Catalog::builtin()).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1);
    assert!(
        e.to_string().starts_with("error: cannot read manifest: "),
        "{e}"
    );
    assert!(e.to_string().contains("--> /nonexistent/m.yaml\n"), "{e}");
}

#[test]
fn shipped_pipelines_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = load(&root.join("pipelines/demo.yaml"), &Catalog::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(demo.name, "demo");
    let ops: Vec<Op> = demo.steps.iter().map(|s| s.op).collect();
    assert_eq!(ops, [Op::RemoveBg, Op::FixLighting, Op::Upscale]);
    assert!(demo.steps.iter().all(|s| s.models == [ModelRef::Local]));
    let catalog = load(&root.join("pipelines/catalog.yaml"), &Catalog::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        catalog
            .steps
            .iter()
            .any(|s| s.models.iter().any(|m| !m.is_local()))
    );
    assert!(catalog.budget.max_usd.is_some());
    let amazon = load(&root.join("pipelines/amazon.yaml"), &Catalog::builtin())
        .unwrap_or_else(|e| panic!("{e}"));
    let OpParams::Frame(frame) = &amazon.steps[1].params else {
        panic!("step 2 frames");
    };
    assert_eq!(frame.preset, Some(crate::marketplace::Preset::AmazonMain));
    assert_eq!(frame.options.frame_size(), (2000, 2000));
    assert_eq!(amazon.output.format, OutputFormat::Jpeg);
}

#[test]
fn duplicate_keys_point_at_the_second_one() {
    let e = errors("version: 1\nname: a\noutput:\n  dir: x\n  dir: y\n");
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    let d = &e.diagnostics[0];
    assert_eq!(
        d.message,
        "duplicate key `dir` in output (first given on line 4)"
    );
    assert_eq!(d.location.key_path, "output.dir");
    assert_eq!(d.location.position, Some(Position { line: 5, column: 3 }));
}

/// `(text, key path, line:column, message)` for numbers that are not finite or do not fit: each
/// is one diagnostic at its key.
#[test]
fn non_finite_and_huge_numbers_are_located_with_the_range() {
    let cases = [
        (
            with_steps("  - op: upscale\n    models: [local]\n    factor: .inf\n"),
            "steps[0].factor",
            (9, 13),
            "`.inf` in steps[0].factor is not a finite number: expected a number > 1 and <= 8",
        ),
        (
            with_steps("  - op: upscale\n    models: [local]\n    factor: 1e999\n"),
            "steps[0].factor",
            (9, 13),
            "`1e999` in steps[0].factor is not a finite number: expected a number > 1 and <= 8",
        ),
        (
            with_extra("budget:\n  max_usd: .nan\n"),
            "budget.max_usd",
            (11, 12),
            "`.nan` in budget.max_usd is not a finite number: \
             expected a number >= 0 and <= 1000000000",
        ),
        (
            with_extra("limits:\n  concurrency: 99999999999999999999999\n"),
            "limits.concurrency",
            (11, 16),
            "limits.concurrency is 99999999999999999999999, but must be between 1 and 1024",
        ),
        (
            with_extra("limits:\n  downloads: -99999999999999999999999\n"),
            "limits.downloads",
            (11, 14),
            "limits.downloads is -99999999999999999999999, but must be between 1 and 1024",
        ),
        (
            with_extra(&format!("limits:\n  attempts: 1{}\n", "0".repeat(40))),
            "limits.attempts",
            (11, 13),
            "limits.attempts is 1e40, but must be between 1 and 10",
        ),
        (
            with_extra("budget: {max_usd: 99999999999999999999999}\n"),
            "budget.max_usd",
            (10, 19),
            "budget.max_usd is 99999999999999999999999, but must be >= 0 and <= 1000000000",
        ),
        (
            with_extra("limits: {concurrency: .inf}\n"),
            "limits.concurrency",
            (10, 23),
            "`.inf` in limits.concurrency is not a finite number: \
             expected a whole number between 1 and 1024",
        ),
    ];
    for (text, key_path, (line, column), message) in cases {
        let d = only_error(&text, key_path, line, column);
        assert_eq!(d.message, message);
    }
}

/// Nesting is refused before any YAML parser sees it (they take time quadratic in depth, or
/// overflow the stack), at the first level too deep.
#[test]
fn deeply_nested_text_is_refused_where_it_gets_too_deep() {
    let bomb = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let block: String = (0..1_400)
        .map(|i| format!("{}a{i}:\n", " ".repeat(i)))
        .collect();
    let cases = [
        (bomb.clone(), (1, 32)),
        (with_extra(&format!("exclude: {bomb}\n")), (10, 41)),
        (block, (33, 33)),
        (format!("{}x\n", "- ".repeat(50_000)), (1, 63)),
        (format!("{}x\n", "{a: ".repeat(50_000)), (1, 125)),
    ];
    for (text, (line, column)) in cases {
        let d = only_error(&text, "", line, column);
        assert_eq!(d.message, "the manifest is nested more than 32 levels deep");
        assert!(
            help(&d).contains("looks generated or corrupt"),
            "{}",
            help(&d)
        );
    }
}

#[test]
fn a_huge_integer_is_one_problem_among_the_others() {
    let text = with_extra(
        "limits:\n  concurrency: 99999999999999999999999\n  attempts: 0\nbudget: {max_usd: .inf}\n",
    )
    .replace("name: t", "name: bad name");
    let e = errors(&text);
    let at: Vec<_> = e
        .diagnostics
        .iter()
        .map(|d| {
            (
                d.location.key_path.as_str(),
                d.location.position.map(|p| p.line),
            )
        })
        .collect();
    assert_eq!(
        at,
        [
            ("name", Some(2)),
            ("limits.concurrency", Some(11)),
            ("limits.attempts", Some(12)),
            ("budget.max_usd", Some(13)),
        ],
        "{e}"
    );
    assert!(!e.to_string().contains("u128"), "{e}");
}

#[test]
fn brackets_in_quotes_comments_and_block_scalars_do_not_count_as_nesting() {
    let deep = "[{".repeat(40);
    let m = parse_ok(&with_steps(&format!(
        "  - op: remove-bg # {deep}\n    models: [nova-canvas]\n    prompt: \"{deep} \\\" [\"\n\
         \x20   negative_prompt: '{deep}'' ['\n\
         \x20 - op: fix-lighting\n    models: [local]\n    prompt: |\n      {deep}\n      {deep}\n\
         \x20 - op: upscale\n    models: [local]\n    factor: 2\n    prompt: >-\n      {deep}\n",
    )));
    assert_eq!(m.steps.len(), 3);
    assert!(m.steps[0].prompt.as_deref().unwrap().ends_with("\" ["));
    assert_eq!(
        m.steps[1].prompt.as_deref(),
        Some(&*format!("{deep}\n{deep}\n"))
    );
    // Flow collections, quoted keys and values with brackets in them, and plain globs.
    let flow = with_extra(
        "exclude: [\"in/[ab].jpg\", 'x[', {\"a\":\"]\"}, in/[cd]*.png]\naws: {s3: {path_style: true}}\n",
    );
    assert!(
        errors(&flow)
            .diagnostics
            .iter()
            .all(|d| !d.message.contains("nested"))
    );
}

#[test]
fn oversized_and_non_utf8_files_are_one_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, b"version: 1\nname: caf\xe9\ninputs: [a]\n").unwrap();
    let e = load(&path, &Catalog::builtin()).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    let d = &e.diagnostics[0];
    assert_eq!(
        d.message,
        "the manifest is not valid UTF-8: invalid byte 0xe9"
    );
    assert_eq!(
        d.location.position,
        Some(Position {
            line: 2,
            column: 10
        })
    );
    let big = format!("name: x\n{}", "# padding\n".repeat(110_000));
    std::fs::write(&path, &big).unwrap();
    let e = load(&path, &Catalog::builtin()).unwrap_err();
    assert_eq!(e.diagnostics.len(), 1, "{e}");
    assert_eq!(
        e.diagnostics[0].message,
        "the manifest is 1048577 bytes, over the limit of 1048576 bytes (1 MiB)"
    );
    let e = errors(&big);
    assert_eq!(
        e.diagnostics[0].message,
        format!(
            "the manifest is {} bytes, over the limit of 1048576 bytes (1 MiB)",
            big.len()
        )
    );
}

#[test]
fn catalog_key_is_read_through_the_same_guard() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.yaml");
    std::fs::write(&path, with_extra("catalog: models.yaml\n")).unwrap();
    assert_eq!(catalog_key(&path), Some(dir.path().join("models.yaml")));
    std::fs::write(&path, format!("catalog: x\nsteps: {}", "[".repeat(200_000))).unwrap();
    assert_eq!(catalog_key(&path), None);
    std::fs::write(&path, b"catalog: caf\xe9\n").unwrap();
    assert_eq!(catalog_key(&path), None);
}

#[test]
fn a_coordination_table_needs_the_shared_cache_and_a_valid_name() {
    let ok = parse_ok(&with_extra(
        "shared:\n  cache: s3://team-cache/cache/\n  dynamodb_table: retouch-coordination\n",
    ));
    assert_eq!(
        ok.shared.dynamodb_table.as_deref(),
        Some("retouch-coordination")
    );
    let alone = only_error(
        &with_extra("shared:\n  dynamodb_table: retouch-coordination\n"),
        "shared.dynamodb_table",
        11,
        3,
    );
    assert!(alone.message.contains("needs shared.cache"), "{alone:?}");
    assert!(help(&alone).contains("cache: s3://"), "{alone:?}");
    let bad = only_error(
        &with_extra("shared:\n  cache: s3://team-cache/cache/\n  dynamodb_table: \"no spaces\"\n"),
        "shared.dynamodb_table",
        12,
        3,
    );
    assert!(bad.message.contains("not a DynamoDB table name"), "{bad:?}");
}
