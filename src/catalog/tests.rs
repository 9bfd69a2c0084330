//! Unit tests for the catalog: built-in data, lookups, fit/size/price rules, lifecycle, overrides.

use std::io::Write;

use super::*;

fn cat() -> Catalog {
    Catalog::builtin()
}

fn model(name: &str) -> ModelEntry {
    cat().resolve(name).unwrap().clone()
}

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

fn usd(d: f64) -> Usd {
    Usd::from_dollars(d).unwrap()
}

#[test]
fn builtin_yaml_parses_and_validates() {
    let c = Catalog::default_empty()
        .merged_yaml(BUILTIN_YAML, "builtin")
        .unwrap();
    assert_eq!(c.entries().len(), 25);
    assert!(c.entries().iter().all(|m| m.validate().is_ok()));
}

#[test]
fn resolves_by_alias_id_and_invoke_id() {
    let c = cat();
    let a = c.resolve("stability-fast-upscale").unwrap();
    assert_eq!(a.id, "stability.stable-fast-upscale-v1:0");
    assert_eq!(a.invoke_id, "us.stability.stable-fast-upscale-v1:0");
    assert_eq!(c.resolve(&a.invoke_id).unwrap().alias, a.alias);
    assert_eq!(
        c.resolve("amazon.nova-canvas-v1:0").unwrap().alias,
        "nova-canvas"
    );
    // Nova and Titan are invoked by their bare ids.
    assert_eq!(
        c.resolve("nova-canvas").unwrap().invoke_id,
        "amazon.nova-canvas-v1:0"
    );
    assert!(c.resolve("nova-canvass").is_none());
}

#[test]
fn models_for_each_op() {
    let c = cat();
    let names = |op| -> Vec<String> { c.models_for(op).iter().map(|m| m.alias.clone()).collect() };
    assert_eq!(
        names(Op::RemoveBg),
        ["nova-canvas", "titan-image-v2", "stability-remove-bg"]
    );
    assert_eq!(
        names(Op::FixLighting),
        [
            "nova-canvas",
            "titan-image-v2",
            "titan-image-v1",
            "nova-2-omni"
        ]
    );
    assert_eq!(
        names(Op::Upscale),
        [
            "stability-fast-upscale",
            "stability-conservative-upscale",
            "stability-creative-upscale"
        ]
    );
    assert_eq!(
        names(Op::Generate),
        [
            "nova-canvas",
            "titan-image-v2",
            "stability-core",
            "sd3.5-large",
            "stability-ultra",
            "nova-2-omni"
        ]
    );
    assert_eq!(
        names(Op::Variation),
        [
            "stability-control-sketch",
            "stability-style-transfer",
            "stability-control-structure",
            "stability-style-guide",
            "nova-2-omni"
        ]
    );
    assert_eq!(
        names(Op::ReplaceBg),
        [
            "nova-canvas",
            "stability-inpaint",
            "stability-search-replace",
            "nova-2-omni"
        ]
    );
    let text = c.resolve("nova-2-lite").unwrap();
    assert_eq!(text.kind, ModelKind::TextUnderstanding);
    assert!(text.ops.is_empty());
}

#[test]
fn fit_rules_per_family() {
    let nova = model("nova-canvas");
    assert_eq!(nova.fit(Op::RemoveBg, 1000, 800), Ok(Fit::AsIs));
    // A 12.2 MP phone photo is downscaled below 4,194,304 px, aspect kept.
    let Ok(Fit::Resize { w, h }) = nova.fit(Op::RemoveBg, 4032, 3024) else {
        panic!()
    };
    assert!(
        u64::from(w) * u64::from(h) < 4_194_304 && (w as f64 / h as f64 - 4.0 / 3.0).abs() < 0.01
    );
    // Too small for Nova's 320 px minimum: enlarged (the alpha is mapped back down later).
    assert_eq!(
        nova.fit(Op::RemoveBg, 200, 400),
        Ok(Fit::Resize { w: 320, h: 640 })
    );
    assert!(matches!(
        nova.fit(Op::RemoveBg, 5000, 1000),
        Err(Exclusion::AspectOutOfRange { .. })
    ));
    assert!(matches!(
        nova.fit(Op::Upscale, 100, 100),
        Err(Exclusion::OpNotSupported { .. })
    ));

    let titan = model("titan-image-v2");
    assert_eq!(
        titan.fit(Op::RemoveBg, 2816, 1408),
        Ok(Fit::Resize { w: 1408, h: 704 })
    );

    let fast = model("stability-fast-upscale");
    assert_eq!(fast.fit(Op::Upscale, 512, 512), Ok(Fit::AsIs));
    assert_eq!(
        fast.fit(Op::Upscale, 2048, 1024),
        Ok(Fit::Resize { w: 1448, h: 724 })
    );
    // Inputs below the upscaler's minimum are not enlarged first: the model is excluded.
    assert!(matches!(
        fast.fit(Op::Upscale, 20, 20),
        Err(Exclusion::TooSmallToUpscale { .. })
    ));
    let rbg = model("stability-remove-bg");
    assert!(matches!(
        rbg.fit(Op::RemoveBg, 3000, 1000),
        Err(Exclusion::AspectOutOfRange { .. })
    ));
    assert_eq!(
        rbg.fit(Op::RemoveBg, 4000, 3000),
        Ok(Fit::Resize { w: 3547, h: 2660 })
    );
}

#[test]
fn output_sizes() {
    let nova = model("nova-canvas");
    let (w, h) = nova.output_size(Op::FixLighting, 1000, 750).unwrap();
    assert_eq!((w % 16, h % 16), (0, 0));
    assert!((w as f64 / h as f64 - 4.0 / 3.0).abs() < 0.03, "{w}x{h}");
    assert_eq!(nova.output_size(Op::RemoveBg, 1000, 750), Ok((1000, 750)));
    let titan = model("titan-image-v2");
    assert_eq!(
        titan.output_size(Op::FixLighting, 1000, 1000),
        Ok((1024, 1024))
    );
    assert_eq!(
        titan.output_size(Op::FixLighting, 1400, 700),
        Ok((1408, 768))
    );
    assert_eq!(titan.output_size(Op::FixLighting, 300, 300), Ok((512, 512)));
    assert_eq!(
        model("stability-fast-upscale").output_size(Op::Upscale, 300, 200),
        Ok((1200, 800))
    );
    let cons = model("stability-conservative-upscale");
    assert_eq!(cons.output_size(Op::Upscale, 1024, 512), Ok((4096, 2048)));
    assert_eq!(cons.output_size(Op::Upscale, 256, 256), Ok((1024, 1024)));
}

#[test]
fn price_tiers_by_output_size() {
    let nova = model("nova-canvas");
    assert_eq!(nova.price_for(Op::RemoveBg, 1024, 1024), Some(usd(0.04)));
    assert_eq!(nova.price_for(Op::RemoveBg, 1025, 1024), Some(usd(0.06)));
    assert_eq!(nova.price_for(Op::RemoveBg, 4032, 3024), Some(usd(0.06)));
    let titan = model("titan-image-v2");
    assert_eq!(titan.price_for(Op::FixLighting, 300, 300), Some(usd(0.008)));
    assert_eq!(
        titan.price_for(Op::FixLighting, 1000, 1000),
        Some(usd(0.01))
    );
    assert_eq!(
        model("stability-creative-upscale").price_for(Op::Upscale, 512, 512),
        Some(usd(0.6))
    );
    assert_eq!(nova.price_for(Op::Upscale, 512, 512), None);
}

#[test]
fn lifecycle_by_date() {
    let nova = model("nova-canvas");
    let eol = Some(date("2026-09-30"));
    assert_eq!(
        nova.lifecycle_on(date("2026-05-01")),
        Lifecycle::Legacy { eol }
    );
    assert_eq!(
        nova.lifecycle_on(date("2026-09-29")),
        Lifecycle::Legacy { eol }
    );
    assert_eq!(
        nova.lifecycle_on(date("2026-09-30")),
        Lifecycle::PastEndOfLife { eol }
    );
    assert_eq!(
        nova.lifecycle_on(date("2026-11-22")),
        Lifecycle::PastEndOfLife { eol }
    );
    let titan = model("titan-image-v2");
    assert!(matches!(
        titan.lifecycle_on(date("2026-11-22")),
        Lifecycle::PastEndOfLife { .. }
    ));
    assert!(matches!(
        titan.lifecycle_on(date("2025-01-01")),
        Lifecycle::Legacy { .. }
    ));
    assert!(matches!(
        model("titan-image-v1").lifecycle_on(date("2020-01-01")),
        Lifecycle::PastEndOfLife { .. }
    ));
    assert_eq!(
        model("stability-remove-bg").lifecycle_on(date("2030-01-01")),
        Lifecycle::Active
    );
}

#[test]
fn regions_and_rpm() {
    let nova = model("nova-canvas");
    assert!(nova.offered_in("eu-west-1") && !nova.offered_in("us-west-2"));
    assert!(model("stability-fast-upscale").offered_in("us-east-2"));
    assert_eq!(nova.default_rpm, 20);
}

fn write_tmp(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

#[test]
fn overrides_merge_fields_and_add_models() {
    let f = write_tmp(
        r#"
models:
  - alias: nova-canvas
    lifecycle: { end_of_life: "2027-06-30" }
    default_rpm: 5
    ops:
      remove-bg:
        prices: [{ usd: 0.05 }]
  - id: amazon.my-custom-v1:0
    alias: my-custom
    family: titan
    kind: image-editing
    lifecycle: { status: active }
    ops:
      remove-bg:
        task: BACKGROUND_REMOVAL
        input: { max_side: 2000, max_pixels: 4000000, aspect: [0.5, 2.0], formats: [png], max_bytes: 1000000 }
        output: { rule: same-as-input }
        prices: [{ usd: 0.001 }]
"#,
    );
    let c = Catalog::load_overrides(f.path()).unwrap();
    let nova = c.resolve("nova-canvas").unwrap();
    assert!(matches!(
        nova.lifecycle_on(date("2026-11-22")),
        Lifecycle::Legacy { .. }
    ));
    assert_eq!(nova.default_rpm, 5);
    assert_eq!(nova.price_for(Op::RemoveBg, 2000, 2000), Some(usd(0.05)));
    // Untouched fields survive the merge.
    assert_eq!(nova.price_for(Op::FixLighting, 1000, 1000), Some(usd(0.04)));
    assert_eq!(nova.regions.len(), 3);
    let custom = c.resolve("my-custom").unwrap();
    assert_eq!(custom.invoke_id, "amazon.my-custom-v1:0");
    assert_eq!(c.models_for(Op::RemoveBg).len(), 4);
}

#[test]
fn bad_override_files_name_the_file() {
    let cases = [
        ("models: [ { alias: nova-canvas, colour: red } ]", "colour"),
        (
            "models: [ { alias: nova-canvas, lifecycle: { end_of_life: 2027-13-01 } } ]",
            "invalid date",
        ),
        ("modles: []", "modles"),
        ("models: [ { alias: new-one, id: x } ]", "new-one"),
        (
            "models: [ { alias: nova-canvas, ops: { remove-bg: { prices: [] } } } ]",
            "prices",
        ),
        (
            "models: [ { alias: nova-canvas, id: amazon.titan-image-generator-v2:0 } ]",
            "also used",
        ),
        ("models: [", "line 2"),
    ];
    for (text, needle) in cases {
        let f = write_tmp(text);
        let err = Catalog::load_overrides(f.path()).unwrap_err().to_string();
        let path = f.path().display().to_string();
        assert!(err.contains(&path) && err.contains(needle), "{text}: {err}");
    }
    let missing = Catalog::load_overrides(Path::new("/nonexistent/cat.yaml")).unwrap_err();
    assert!(missing.to_string().contains("/nonexistent/cat.yaml"));
}

#[test]
fn set_price_replaces_tiers() {
    let mut c = cat();
    c.set_price("titan-image-v2", usd(0.5)).unwrap();
    let t = c.resolve("titan-image-v2").unwrap();
    assert_eq!(t.price_for(Op::RemoveBg, 100, 100), Some(usd(0.5)));
    assert!(matches!(
        c.set_price("nope", usd(1.0)),
        Err(CatalogError::UnknownModel { .. })
    ));
}

#[test]
fn generators_take_no_image_and_return_the_size_of_the_ratio_asked() {
    let c = cat();
    let core = c.resolve("stability-core").unwrap();
    assert_eq!(core.fit(Op::Generate, 0, 0), Ok(Fit::AsIs));
    assert_eq!(core.output_size(Op::Generate, 16, 9), Ok((1344, 768)));
    assert_eq!(core.output_size(Op::Generate, 0, 0), Ok((1024, 1024)));
    // The closest listed ratio: 2:1 asked, 16:9 listed.
    assert_eq!(core.output_size(Op::Generate, 2, 1), Ok((1344, 768)));
    assert_eq!(core.price_for(Op::Generate, 0, 0), Some(usd(0.04)));
    assert_eq!(core.call_region("us-east-1", &[]), Some("us-west-2"));
    assert_eq!(core.call_region("eu-west-1", &[]), None);
    // Nova 2 Omni is a preview: routed like an active model, shown as a preview.
    let omni = c.resolve("nova-2-omni").unwrap();
    let today = Date::new(2026, 12, 2).unwrap();
    assert_eq!(omni.lifecycle_on(today), Lifecycle::Preview);
    assert_eq!(omni.invoke_id, "us.amazon.nova-2-omni-v1:0");
    assert_eq!(omni.output_size(Op::Generate, 4, 5), Ok((896, 1088)));
    // An override giving generate input limits, or an editor none, is refused.
    let bad = "models:\n  - alias: stability-core\n    ops:\n      generate:\n        input: { max_side: 10, max_pixels: 100, aspect: [0.5, 2.0], formats: [png], max_bytes: 10 }\n        output: { rule: aspect-ratio, sizes: { \"1:1\": [1024, 1024] } }\n        prices: [{ usd: 0.04 }]\n";
    let e = c.merged_yaml(bad, "user.yaml").unwrap_err().to_string();
    assert!(e.contains("takes no image"), "{e}");
    let bad = "models:\n  - { id: acme.up-v1, alias: acme-up, family: stability, kind: image-editing, regions: [us-east-1], lifecycle: { status: active }, ops: { upscale: { output: { rule: same-as-input }, prices: [{ usd: 0.03 }] } } }\n";
    let e = c.merged_yaml(bad, "user.yaml").unwrap_err().to_string();
    assert!(e.contains("needs `input` limits"), "{e}");
}
