//! Table-driven router tests over the built-in catalog.

use super::*;
use crate::manifest::{
    FixLightingParams, Op, OpParams, RemoveBgParams, UpscaleParams, UpscaleTarget,
};

fn step(op: Op, models: &[&str], fallback: Fallback) -> Step {
    let catalog = Catalog::builtin();
    let models = models
        .iter()
        .map(|m| match *m {
            "local" => ModelRef::Local,
            alias => ModelRef::Remote(catalog.resolve(alias).expect(alias).id.clone()),
        })
        .collect();
    let params = match op {
        Op::RemoveBg => OpParams::RemoveBg(RemoveBgParams::default()),
        Op::FixLighting => OpParams::FixLighting(FixLightingParams { strength: 0.8 }),
        Op::Upscale => OpParams::Upscale(UpscaleParams {
            target: UpscaleTarget::Factor(2.0),
            sharpen: 0.0,
        }),
        Op::Frame => unreachable!("no model can frame: nothing to route"),
        Op::Inpaint | Op::Erase => OpParams::Masked(crate::manifest::MaskedParams {
            region: crate::manifest::MaskRegion::Described("the tag".into()),
        }),
        Op::Variation => OpParams::Variation(Default::default()),
        Op::Generate => OpParams::Generate(crate::manifest::GenerateParams {
            aspect: (1, 1),
            seed: None,
        }),
        Op::Outpaint => OpParams::Outpaint(crate::manifest::OutpaintParams::Aspect(1, 1)),
        Op::ReplaceBg => OpParams::ReplaceBg(crate::manifest::ReplaceBgParams {
            behind: None,
            shadow: 0.0,
        }),
    };
    Step {
        index: 0,
        op,
        models,
        fallback,
        params,
        prompt: None,
        negative_prompt: None,
        similarity: None,
        escalate: None,
        grader: None,
    }
}

const JAN: Date = Date {
    y: 2026,
    m: 1,
    d: 15,
};
const NOV: Date = Date {
    y: 2026,
    m: 11,
    d: 22,
};

/// Decides and renders the outcome as (models tried in order, reason).
fn outcome(
    step: &Step,
    size: (u32, u32),
    catalog: &Catalog,
    region: &str,
    today: Date,
    open: &[&str],
) -> (Vec<String>, String) {
    let unhealthy = |id: &str| {
        open.iter()
            .any(|o| catalog.resolve(o).is_some_and(|m| m.id == id))
            .then_some(Reason::FallbackAccessDenied)
    };
    let facts = Facts {
        catalog,
        region,
        regions: &[],
        today,
        remote_available: true,
        unhealthy: &unhealthy,
    };
    match decide(step, size, &facts) {
        Decision::Remote {
            candidates, reason, ..
        } => (
            candidates.iter().map(|c| c.model.alias.clone()).collect(),
            reason.to_string(),
        ),
        Decision::Other { route, .. } => (vec![route.model()], route.reason().to_string()),
    }
}

/// (name, step, image size, catalog, region, date, open circuits, expected models, expected reason)
type Case<'a> = (
    &'a str,
    Step,
    (u32, u32),
    &'a Catalog,
    &'a str,
    Date,
    Vec<&'a str>,
    Vec<&'a str>,
    &'a str,
);

#[test]
fn routes_by_table() {
    let builtin = Catalog::builtin();
    let mut pricey_titan = Catalog::builtin();
    pricey_titan
        .set_price("titan-image-v2", Usd::from_dollars(0.09).unwrap())
        .unwrap();
    let mut tied = Catalog::builtin();
    tied.set_price("stability-remove-bg", Usd::from_dollars(0.04).unwrap())
        .unwrap();
    let bg3 = ["titan-image-v2", "nova-canvas", "stability-remove-bg"];
    let up2 = ["stability-fast-upscale", "stability-conservative-upscale"];
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("local only", step(Op::RemoveBg, &["local"], Fallback::Local), (800, 600), &builtin, "us-east-1", JAN, vec![], vec!["local"], "only-permitted"),
        ("cheapest wins, rest in price order", step(Op::RemoveBg, &bg3, Fallback::Local), (1000, 1000), &builtin, "us-east-1", JAN, vec![], vec!["titan-image-v2", "nova-canvas", "stability-remove-bg"], "cheapest"),
        ("single permitted model", step(Op::RemoveBg, &["stability-remove-bg"], Fallback::Local), (1000, 1000), &builtin, "us-east-1", JAN, vec![], vec!["stability-remove-bg"], "only-permitted"),
        ("end-of-life models excluded", step(Op::RemoveBg, &bg3, Fallback::Local), (1000, 1000), &builtin, "us-east-1", NOV, vec![], vec!["stability-remove-bg"], "cheapest"),
        ("all past end of life", step(Op::FixLighting, &["nova-canvas", "titan-image-v2"], Fallback::Local), (1000, 1000), &builtin, "us-east-1", NOV, vec![], vec!["local"], "fallback-end-of-life"),
        ("unhealthy model skipped", step(Op::RemoveBg, &bg3, Fallback::Local), (1000, 1000), &builtin, "us-east-1", JAN, vec!["titan-image-v2"], vec!["nova-canvas", "stability-remove-bg"], "cheapest"),
        ("all unhealthy", step(Op::RemoveBg, &["titan-image-v2"], Fallback::Skip), (1000, 1000), &builtin, "us-east-1", JAN, vec!["titan-image-v2"], vec!["-"], "fallback-access-denied"),
        ("region", step(Op::RemoveBg, &["titan-image-v2", "stability-remove-bg"], Fallback::Local), (1000, 1000), &builtin, "eu-west-1", JAN, vec![], vec!["local"], "fallback-region"),
        ("price override changes the winner", step(Op::RemoveBg, &["titan-image-v2", "stability-remove-bg"], Fallback::Local), (1000, 1000), &pricey_titan, "us-east-1", JAN, vec![], vec!["stability-remove-bg", "titan-image-v2"], "cheapest"),
        ("per-image exclusion: 4:1 too wide for stability", step(Op::RemoveBg, &["titan-image-v2", "stability-remove-bg"], Fallback::Local), (4000, 1000), &pricey_titan, "us-east-1", JAN, vec![], vec!["titan-image-v2"], "cheapest"),
        ("aspect excludes all", step(Op::RemoveBg, &["stability-remove-bg"], Fallback::Fail), (3000, 1000), &builtin, "us-east-1", JAN, vec![], vec!["-"], "fallback-aspect-ratio"),
        ("tiny image cannot be upscaled remotely", step(Op::Upscale, &up2, Fallback::Local), (20, 20), &builtin, "us-east-1", JAN, vec![], vec!["local"], "fallback-too-small"),
        ("fast upscale is cheapest", step(Op::Upscale, &up2, Fallback::Local), (512, 512), &builtin, "us-east-1", JAN, vec![], vec!["stability-fast-upscale", "stability-conservative-upscale"], "cheapest"),
        ("ties keep manifest order", step(Op::RemoveBg, &["nova-canvas", "stability-remove-bg"], Fallback::Local), (1000, 1000), &tied, "us-east-1", JAN, vec![], vec!["nova-canvas", "stability-remove-bg"], "cheapest"),
    ];
    for (name, step, size, catalog, region, today, open, models, reason) in cases {
        let (got_models, got_reason) = outcome(&step, size, catalog, region, today, &open);
        assert_eq!(
            (
                got_models.iter().map(String::as_str).collect::<Vec<_>>(),
                got_reason.as_str()
            ),
            (models, reason),
            "{name}"
        );
    }
}

fn healthy(_: &str) -> Option<Reason> {
    None
}

/// Facts for us-east-1 in January 2026 with every model healthy.
fn healthy_facts(catalog: &Catalog, remote_available: bool) -> Facts<'_> {
    Facts {
        catalog,
        region: "us-east-1",
        regions: &[],
        today: JAN,
        remote_available,
        unhealthy: &healthy,
    }
}

#[test]
fn no_credentials_falls_back_at_once() {
    let catalog = Catalog::builtin();
    let facts = healthy_facts(&catalog, false);
    for (fallback, model) in [
        (Fallback::Local, "local"),
        (Fallback::Skip, "-"),
        (Fallback::Fail, "-"),
    ] {
        let s = step(Op::Upscale, &["stability-fast-upscale"], fallback);
        let Decision::Other { route, .. } = decide(&s, (100, 100), &facts) else {
            panic!("expected a fallback");
        };
        assert_eq!(
            (route.model().as_str(), route.reason().as_str()),
            (model, "fallback-no-credentials")
        );
    }
}

#[test]
fn price_is_by_size_tier() {
    let catalog = Catalog::builtin();
    let facts = healthy_facts(&catalog, true);
    let s = step(Op::RemoveBg, &["nova-canvas"], Fallback::Local);
    let price = |size| match decide(&s, size, &facts) {
        Decision::Remote { candidates, .. } => candidates[0].price,
        other => panic!("{other:?}"),
    };
    assert_eq!(price((1000, 1000)), Usd::from_dollars(0.04).unwrap());
    assert_eq!(price((1800, 1800)), Usd::from_dollars(0.06).unwrap());
}

#[test]
fn generators_are_called_in_us_west_2_from_any_us_region_and_nowhere_else() {
    let catalog = Catalog::builtin();
    let s = step(
        Op::Generate,
        &["stability-ultra", "stability-core", "sd3.5-large"],
        Fallback::Skip,
    );
    let decide_in = |region: &str, regions: &[String]| {
        let facts = Facts {
            catalog: &catalog,
            region,
            regions,
            today: NOV,
            remote_available: true,
            unhealthy: &healthy,
        };
        decide(&s, (0, 0), &facts)
    };
    // Cheapest first, each called in its only region; no input size applies.
    let Decision::Remote { candidates, .. } = decide_in("us-east-1", &[]) else {
        panic!("the generators serve a us-east-1 run");
    };
    let got: Vec<(&str, &str, String)> = candidates
        .iter()
        .map(|c| {
            (
                c.model.alias.as_str(),
                c.region.as_str(),
                c.price.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("stability-core", "us-west-2", "0.040000".to_string()),
            ("sd3.5-large", "us-west-2", "0.080000".to_string()),
            ("stability-ultra", "us-west-2", "0.140000".to_string()),
        ]
    );
    // An EU run never sends a prompt to the US unless the manifest says so.
    let Decision::Other { route, excluded } = decide_in("eu-west-1", &[]) else {
        panic!("no generator is in the EU");
    };
    assert_eq!(route.reason(), Reason::FallbackRegion);
    assert_eq!(excluded.len(), 3);
    let allowed = ["us-west-2".to_string()];
    assert!(matches!(
        decide_in("eu-west-1", &allowed),
        Decision::Remote { .. }
    ));
    // `aws.regions` also narrows: a us-east-1 run limited to us-east-1 calls none of them.
    let only_here = ["us-east-1".to_string()];
    assert!(matches!(
        decide_in("us-east-1", &only_here),
        Decision::Other { .. }
    ));
    // An editor offered in the run's region is called there.
    let edit = step(Op::Upscale, &["stability-fast-upscale"], Fallback::Local);
    let facts = healthy_facts(&catalog, true);
    let Decision::Remote { candidates, .. } = decide(&edit, (512, 512), &facts) else {
        panic!("fast upscale serves us-east-1");
    };
    assert_eq!(candidates[0].region, "us-east-1");
}
